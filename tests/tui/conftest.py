"""Fixtures for the dashboard tests: one small simulated sweep per session,
an isolated HOME, and the app built exactly as ``grokwatch tui`` builds it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tui_helpers import frozen_config

from grokwatch.sim.simulate import simulate_sweep
from grokwatch.tui.app import make_app

RUNS, STEPS = 12, 3000


@pytest.fixture(scope="session")
def sim_sweep(tmp_path_factory) -> Path:
    """12 runs x 3000 steps (3 weight decays x 4 seeds): every phase, alarms, a stalled run."""
    return simulate_sweep(tmp_path_factory.mktemp("tui-sweep"), "sim", runs=RUNS, steps=STEPS, seed=0)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No developer config leaks in: HOME and XDG_CONFIG_HOME point at an empty dir;
    local time is UTC."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("GROKWATCH_TUI_CONFIG", raising=False)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"  # the alarm feed's wall-clock times are local
    time.tzset()
    yield home
    if old_tz is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old_tz
    time.tzset()


@pytest.fixture
def app_factory(sim_sweep):
    def build(source=None, **overrides):
        return make_app(source if source is not None else sim_sweep, frozen_config(**overrides))

    return build
