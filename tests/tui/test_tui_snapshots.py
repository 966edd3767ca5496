"""Snapshots of every view at 80x24 and 160x48, on the fixed simulated sweep.

Deterministic: the test configuration freezes the clock and host name, reads
the sweep once (no file watchers), and turns off cursor blink and animation.
Update after a deliberate change with ``pytest tests/tui --snapshot-update``
and look at the SVGs under ``tests/tui/__snapshots__/``.
"""

from __future__ import annotations

import dataclasses

import pytest
from tui_helpers import settle

from grokwatch.predict.subscriber import PredictorSubscriber
from grokwatch.tui.config import FROZEN_TIME
from grokwatch.tui.watcher_source import WatcherSource
from grokwatch.watch.snapshot import OnsetPrediction

SIZES = {"small": (80, 24), "large": (160, 48)}

# The predictor is tuned in its own module; pin what the table shows so these
# snapshots change only when the dashboard does (test_tui_app checks the real ones).
PINNED_PREDICTIONS = {
    "wd0.1-s01": OnsetPrediction(step=3634, lo=3443, hi=3824, method="wnorm-analog", made_at=3000),
    "wd0.1-s02": OnsetPrediction(step=2017, lo=1886, hi=2148, method="wnorm-analog", made_at=1580),
}


@pytest.fixture(autouse=True)
def pinned_predictions(monkeypatch):
    monkeypatch.setattr(
        PredictorSubscriber, "view_fields", lambda self, rid: {"prediction": PINNED_PREDICTIONS.get(rid)}
    )


@pytest.fixture(autouse=True)
def frozen_alarm_times(monkeypatch):
    """The engine stamps alarms with the real clock: recorded at the frozen time plus
    one second per step instead, so the feed's time column (and its order) is fixed."""
    on_alarms = WatcherSource._on_alarms

    def frozen(self, events):
        on_alarms(self, [dataclasses.replace(e, time_unix=FROZEN_TIME + e.step) for e in events])

    monkeypatch.setattr(WatcherSource, "_on_alarms", frozen)


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
        # wd1.0-s01: the anti-grokking run, with alarms and HTSR alpha below 2
        press = ("j",) * 9 + ("enter",)
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys(*press))

    def test_overlay(self, snap_compare, app_factory, size):
        press = ("space", "j", "j", "j", "space", "space", "o")
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys(*press))


@pytest.mark.parametrize("size", SIZES)
class TestHelp:
    def test_help(self, snap_compare, app_factory, size):
        assert snap_compare(app_factory(), terminal_size=SIZES[size], run_before=keys("question_mark"))
