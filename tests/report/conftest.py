"""Simulated sweeps for the report tests."""

from __future__ import annotations

import pytest

from grokwatch.simulate import simulate_sweep


@pytest.fixture(scope="session")
def sim_sweep(tmp_path_factory):
    """30 runs x 20,000 steps (3 weight decays x 10 seeds), seed 0: ~3 s to write."""
    return simulate_sweep(tmp_path_factory.mktemp("report-sim"), "sim", runs=30, steps=20_000, seed=0)


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory):
    """6 runs x 3,000 steps: a small sweep for the end-to-end checks."""
    return simulate_sweep(tmp_path_factory.mktemp("report-small"), "small", runs=6, steps=3_000, seed=3)


#: The seed's alarm rules (before the evidence sweep changed the defaults): the report's
#: mechanics are checked against the simulator's planted signals, which these rules see.
SEED_RULES = """
[rules.gai_spike]
enabled = true
signal = "gai_z"
comparison = ">"
threshold = 3.5
for_steps = 3
when = "memorized"
cooldown_steps = 2000
[rules.persistence_entropy_shift]
signal = "h0_entropy_z"
comparison = ">"
absolute = true
threshold = 5.0
when = "memorized"
cooldown_steps = 5000
[rules.htsr_alpha_below_2]
signal = "htsr_alpha_min"
comparison = "<"
threshold = 2.0
when = ""
cooldown_steps = 5000
[rules.correlation_trap]
signal = "htsr_traps"
comparison = ">"
threshold = 0
when = ""
cooldown_steps = 5000
"""


@pytest.fixture(scope="session")
def seed_rules(tmp_path_factory):
    path = tmp_path_factory.mktemp("seed-rules") / "seed.toml"
    path.write_text(SEED_RULES)
    return path
