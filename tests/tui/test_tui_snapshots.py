"""Snapshots of every view at 80x24 and 160x48, on the fixed simulated sweep.

Deterministic: the test configuration freezes the clock and host name, reads
the sweep once (no file watchers), and turns off cursor blink and animation.
Update after a deliberate change with ``pytest tests/tui --snapshot-update``
and look at the SVGs under ``tests/tui/__snapshots__/``.
"""

from __future__ import annotations

import pytest
from tui_helpers import settle

SIZES = {"small": (80, 24), "large": (160, 48)}


def keys(*presses: str):
    async def run_before(pilot):
        await settle(pilot.app, pilot)
        for key in presses:
            await pilot.press(key)
            await settle(pilot.app, pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES)
class TestRunsTable:
    def test_runs(self, snap_compare, app_factory, size):
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys("j", "j"))

    def test_sorted_and_filtered(self, snap_compare, app_factory, size):
        press = ("s", "s", "s", "s", "S", "slash", *"phase:grokked", "enter")
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys(*press))


@pytest.mark.parametrize("size", SIZES)
class TestSweepGrid:
    def test_grid(self, snap_compare, app_factory, size):
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys("g", "down", "right"))


@pytest.mark.parametrize("size", SIZES)
class TestAlarmFeed:
    def test_alarms(self, snap_compare, app_factory, size):
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys("a", "j"))


@pytest.mark.parametrize("size", SIZES)
class TestRunDetail:
    def test_detail(self, snap_compare, app_factory, size):
        # wd1-s01: the anti-grokking run, with alarms and HTSR alpha below 2
        press = ("j",) * 9 + ("enter",)
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys(*press))

    def test_overlay(self, snap_compare, app_factory, size):
        press = ("space", "j", "j", "j", "space", "space", "o")
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys(*press))


@pytest.mark.parametrize("size", SIZES)
class TestHelp:
    def test_help(self, snap_compare, app_factory, size):
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys("question_mark"))
