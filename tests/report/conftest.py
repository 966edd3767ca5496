"""Simulated sweeps for the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from grokwatch.sim.simulate import simulate_sweep


@pytest.fixture(scope="session")
def sim_sweep(tmp_path_factory):
    """30 runs x 20,000 steps (3 weight decays x 10 seeds), seed 0: ~3 s to write."""
    return simulate_sweep(tmp_path_factory.mktemp("report-sim"), "sim", runs=30, steps=20_000, seed=0)


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory):
    """6 runs x 3,000 steps: a small sweep for the end-to-end checks."""
    return simulate_sweep(tmp_path_factory.mktemp("report-small"), "small", runs=6, steps=3_000, seed=3)


@pytest.fixture(scope="session")
def seed_rules():
    """The seed's alarm rules (before the evidence sweep changed the defaults): the report's
    mechanics are checked against the simulator's planted signals, which these rules see."""
    return Path(__file__).resolve().parents[2] / "bench" / "seed_rules.toml"
