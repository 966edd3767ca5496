"""Phases and lifecycle events of one run (DESIGN section 4). Pure numpy.

``t_mem``: first step with train_acc >= 0.99. ``t_grok``: first step with
val_acc >= 0.95 after t_mem. Phases: learning (before t_mem), memorized
(plateau), grokking (val_acc past 0.5, not yet t_grok), grokked, anti-grokking
(after t_grok, val_acc < 0.5 while train_acc >= 0.99), diverged (a non-finite
loss). ``stalled`` and the run's own status are layered on by the watcher.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grokwatch.runs.defaults import ANTI_VAL_ACC, GROK_VAL_ACC, GROKKING_VAL_ACC, MEM_TRAIN_ACC

PHASES = ("learning", "memorized", "grokking", "grokked", "anti-grokking", "diverged", "stalled")


@dataclass(frozen=True)
class Thresholds:
    """DESIGN section 4's thresholds; the defaults live in :mod:`grokwatch.runs.defaults`."""

    mem_train_acc: float = MEM_TRAIN_ACC
    grok_val_acc: float = GROK_VAL_ACC
    grokking_val_acc: float = GROKKING_VAL_ACC
    anti_val_acc: float = ANTI_VAL_ACC


@dataclass(frozen=True)
class PhaseInfo:
    phase: str
    t_mem: int | None
    t_grok: int | None
    t_anti: int | None
    t_diverged: int | None


def first_step(steps: np.ndarray, mask: np.ndarray, after: int | None = None) -> int | None:
    """First step where ``mask`` holds (strictly after ``after`` if given)."""
    if after is not None:
        mask = mask & (steps > after)
    idx = np.flatnonzero(mask)
    return int(steps[idx[0]]) if idx.size else None


def phase_of(scalars: dict[str, np.ndarray], th: Thresholds = Thresholds()) -> PhaseInfo:
    """The phase of a run from its scalar columns (sorted by step)."""
    steps = scalars.get("step")
    if steps is None or len(steps) == 0:
        return PhaseInfo("learning", None, None, None, None)
    n = len(steps)
    nan = np.full(n, np.nan)
    train_acc = np.asarray(scalars.get("train_acc", nan), dtype=np.float64)
    val_acc = np.asarray(scalars.get("val_acc", nan), dtype=np.float64)
    loss = np.asarray(scalars.get("train_loss", nan), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        t_div = first_step(steps, ~np.isfinite(loss) & ~np.isnan(loss) | _nan_after_finite(loss))
        t_mem = first_step(steps, train_acc >= th.mem_train_acc)
        t_grok = first_step(steps, val_acc >= th.grok_val_acc, after=t_mem - 1) if t_mem is not None else None
        t_anti = None
        if t_grok is not None:
            t_anti = first_step(steps, (val_acc < th.anti_val_acc) & (train_acc >= th.mem_train_acc), after=t_grok)
    if t_div is not None:
        return PhaseInfo("diverged", t_mem, t_grok, t_anti, t_div)
    last_val = _last_finite(val_acc)
    last_train = _last_finite(train_acc)
    if t_grok is not None:
        if (
            t_anti is not None
            and last_val is not None
            and last_val < th.anti_val_acc
            and (last_train or 0) >= th.mem_train_acc
        ):
            phase = "anti-grokking"
        else:
            phase = "grokked"
    elif t_mem is not None:
        phase = "grokking" if last_val is not None and last_val > th.grokking_val_acc else "memorized"
    else:
        phase = "learning"
    return PhaseInfo(phase, t_mem, t_grok, t_anti, None)


def _last_finite(x: np.ndarray) -> float | None:
    idx = np.flatnonzero(np.isfinite(x))
    return float(x[idx[-1]]) if idx.size else None


def _nan_after_finite(loss: np.ndarray) -> np.ndarray:
    # train_loss is logged every step, so a NaN there is divergence, not "not
    # measured"; leading NaNs (no data yet) do not count.
    bad = np.isnan(loss)
    finite = np.isfinite(loss)
    if not finite.any():
        return np.zeros_like(bad)
    return bad & (np.arange(len(loss)) > np.flatnonzero(finite)[0])
