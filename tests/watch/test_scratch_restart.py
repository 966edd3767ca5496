"""Lifecycle alarm ``restarted_from_scratch`` through the watcher:
runs written by the real RunWriter, resumed as a second attempt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grokwatch.alerts import AlarmSubscriber
from grokwatch.alerts.engine import AlertEngine
from grokwatch.alerts.rules import load_rules
from grokwatch.store import RunWriter
from grokwatch.watch import SweepWatcher

INITIAL_LOSS = 4.6
CONFIG = {"seed": 1, "weight_decay": 0.3, "total_steps": 3000}


def columns(a: int, b: int, loss_start_step: int = 1) -> dict[str, np.ndarray]:
    """Steps a..b-1; the loss decays from INITIAL_LOSS counted from ``loss_start_step``
    (a scratch restart starts the decay over)."""
    steps = np.arange(a, b)
    t = steps - loss_start_step
    return {
        "step": steps,
        "train_loss": INITIAL_LOSS * np.exp(-t / 150.0) + 0.01,
        "train_acc": np.where(t >= 300, 1.0, 0.3),
        "val_acc": np.where(steps % 10 == 0, 0.02, np.nan),
        "grad_norm": np.ones(len(steps)),
        "weight_norm": np.full(len(steps), 30.0),
    }


class Rig:
    def __init__(self, sweep: Path):
        self.sweep = sweep
        self.events: list = []
        self.engine = AlertEngine(load_rules())
        self.watcher = SweepWatcher(
            sweep, subscribers=[AlarmSubscriber(self.engine, on_events=self.events.extend)], poll=True
        )

    def cycle(self):
        self.watcher.cycle()

    def fired(self, rule: str = "restarted_from_scratch") -> list:
        return [e for e in self.events if e.rule == rule and e.state == "firing"]


def first_attempt(run_dir: Path, n: int = 1000) -> None:
    w = RunWriter(run_dir, CONFIG, heartbeat_seconds=0.0).open()
    for a in range(1, n + 1, 250):
        w.write_shard("scalars", columns(a, min(n + 1, a + 250)))
    w.close("preempted")


@pytest.fixture
def rig(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    first_attempt(sweep / "r0")
    r = Rig(sweep)
    r.cycle()
    assert r.fired() == [] and r.fired("memorized")
    return r


def test_restart_from_step_one_fires_once(rig):
    w = RunWriter(rig.sweep / "r0", CONFIG, heartbeat_seconds=0.0, resume=True, start_step=0).open()
    rig.cycle()  # the new attempt is in status.json before any of its rows
    w.write_shard("scalars", columns(1, 101))
    rig.cycle()
    w.write_shard("scalars", columns(101, 301))
    rig.cycle()
    fired = rig.fired()
    assert len(fired) == 1
    assert fired[0].run == "r0" and fired[0].severity == "warning" and fired[0].value == 1.0
    # More rows, a finish, a third attempt: still exactly once.
    w.write_shard("scalars", columns(301, 1200))
    w.close("preempted")
    rig.cycle()
    w = RunWriter(rig.sweep / "r0", CONFIG, heartbeat_seconds=0.0, resume=True, start_step=1100).open()
    w.write_shard("scalars", columns(1101, 1300))
    w.close("completed")
    rig.cycle()
    assert len(rig.fired()) == 1


def test_restart_found_by_a_fresh_watcher(rig):
    w = RunWriter(rig.sweep / "r0", CONFIG, heartbeat_seconds=0.0, resume=True, start_step=0).open()
    w.write_shard("scalars", columns(1, 1200))  # already past the first attempt's reach
    w.close("completed")
    fresh = Rig(rig.sweep)
    fresh.cycle()
    assert len(fresh.fired()) == 1


def test_loss_back_at_initial_level_fires(rig):
    # The step counter was restored but the weights were not: loss starts over.
    w = RunWriter(rig.sweep / "r0", CONFIG, heartbeat_seconds=0.0, resume=True, start_step=800).open()
    rig.cycle()
    w.write_shard("scalars", columns(801, 1001, loss_start_step=801))
    rig.cycle()
    assert len(rig.fired()) == 1


def test_resume_from_a_checkpoint_does_not_fire(rig):
    w = RunWriter(rig.sweep / "r0", CONFIG, heartbeat_seconds=0.0, resume=True, start_step=750).open()
    rig.cycle()
    w.write_shard("scalars", columns(751, 901))
    rig.cycle()
    w.write_shard("scalars", columns(901, 1500))
    w.close("completed")
    rig.cycle()
    assert rig.fired() == []
    assert rig.engine.to_dict()["runs"]["r0"]["restarted_from_scratch"]["evaluated"] is not None
