"""Small runs written through the real RunWriter, for the watcher tests."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from grokwatch.store import RunWriter


def flat_run_columns(a: int, b: int, spike_at: int | None = None, grad: float = 1.0) -> dict[str, np.ndarray]:
    """Steps a..b-1 of a run that memorizes at step 50 and never groks; grad_norm flat."""
    steps = np.arange(a, b)
    g = np.full(len(steps), grad)
    if spike_at is not None and a <= spike_at < b:
        g[spike_at - a] = grad * 3.0
    return {
        "step": steps,
        "train_loss": np.full(len(steps), 0.01),
        "train_acc": np.where(steps >= 50, 1.0, 0.5),
        "val_acc": np.where(steps % 10 == 0, 0.02, np.nan),
        "val_loss": np.where(steps % 10 == 0, 9.0, np.nan),
        "grad_norm": g,
        "weight_norm": np.full(len(steps), 30.0),
    }


def start_run(sweep_dir: Path, run_id: str, **config) -> RunWriter:
    cfg = {"seed": 1, "weight_decay": 0.3, "total_steps": 10_000, **config}
    return RunWriter(Path(sweep_dir) / run_id, cfg, heartbeat_seconds=0.0).open()


def write_flat_run(
    sweep_dir: Path,
    run_id: str,
    n: int = 1000,
    shard: int = 250,
    spike_at: int | None = None,
    state: str | None = "completed",
) -> RunWriter:
    w = start_run(sweep_dir, run_id)
    for a in range(1, n + 1, shard):
        w.write_shard("scalars", flat_run_columns(a, min(n + 1, a + shard), spike_at))
    if state:
        w.close(state)
    else:
        w.write_status(force=True)
    return w


def wait_for(pred, timeout: float = 10.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    return pred()
