"""A simulated sweep with known onsets, written once per session (about 3 s)."""

from __future__ import annotations

import pytest

from grokwatch.predict import load_sweep
from grokwatch.sim.simulate import simulate_sweep


@pytest.fixture(scope="session")
def sim_sweep(tmp_path_factory):
    """30 runs x 20,000 steps (3 weight decays x 10 seeds), seed 0."""
    root = tmp_path_factory.mktemp("predict-sim")
    return simulate_sweep(root, "sim", runs=30, steps=20_000, seed=0)


@pytest.fixture(scope="session")
def sim_runs(sim_sweep):
    return load_sweep(sim_sweep)
