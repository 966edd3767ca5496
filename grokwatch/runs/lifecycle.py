"""Lifecycle checks over a run's attempts (requeues and resumes). Pure numpy.

:func:`scratch_restarts` finds resumed attempts that did not really resume:
the attempt's first step goes back to the start of the run although an
earlier attempt had got further, or its training loss jumps back towards the
run's initial loss. Either means the checkpoint was lost or not loaded, and
the steps since the start are being paid for twice.
:func:`restarted_from_scratch` is its yes/no form, for an alarm rule
(``restarted_from_scratch``).

Inputs are what :class:`grokwatch.store.RunReader` holds: ``scalars`` (sorted
by step, one row per step, newest attempt's row kept, with the ``attempt``
column the reader adds) and the ``attempts`` list of ``status.json`` (each
with ``attempt`` and ``start_step``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grokwatch.store.layout import ShardName


@dataclass(frozen=True)
class ScratchRestart:
    """One attempt that went back to the start (or to the initial loss)."""

    attempt: int
    step: int  # the attempt's first step
    reason: str  # "step" (went back to the start) or "loss" (loss jumped back)
    reached: int | None  # furthest step an earlier attempt is known to have reached
    loss_before: float | None = None  # training loss just before the resume point
    loss_after: float | None = None  # training loss at the attempt's first steps
    loss_initial: float | None = None  # the run's initial training loss


def scratch_restarts(
    scalars: Mapping[str, np.ndarray],
    attempts: Sequence[Mapping] | None = None,
    *,
    attempt_reach: Mapping[int, int] | None = None,
    checkpoint_every: int | None = None,
    jump_fraction: float = 0.5,
    min_progress: float = 0.1,
    window: int = 5,
) -> list[ScratchRestart]:
    """Resumed attempts (attempt >= 1) that restarted from scratch.

    By step: the attempt starts at the run's first step (or its
    ``start_step`` in status.json is at or below the run's start) while an
    earlier attempt had reached a later step; with ``checkpoint_every``, only
    when that earlier attempt got at least that far (so a checkpoint should
    have existed). By loss: the earlier attempts had brought the training loss
    down by at least ``min_progress`` of the initial loss, and the attempt's
    first losses (median of ``window`` rows) are back more than
    ``jump_fraction`` of the way from the loss before the resume point to the
    initial loss.

    ``attempt_reach``: the furthest step each attempt wrote, e.g. from shard
    names (:func:`attempt_reach_from_shards`). Without it, an earlier
    attempt's reach is known only while its rows are still in view: once a
    scratch restart has passed it, the rows that proved it are overwritten.
    """
    steps = np.asarray(scalars.get("step", np.zeros(0)), dtype=np.int64)
    n = len(steps)
    att = np.asarray(scalars.get("attempt", np.zeros(n)), dtype=np.int64) if n else np.zeros(0, np.int64)
    loss = np.asarray(scalars.get("train_loss", np.full(n, np.nan)), dtype=np.float64)
    run_start = int(steps[0]) if n else 0

    start_steps: dict[int, int] = {}
    for rec in attempts or ():
        try:
            start_steps[int(rec["attempt"])] = int(rec.get("start_step", 0) or 0)
        except (KeyError, TypeError, ValueError):
            continue
    numbers = sorted(set(int(a) for a in np.unique(att)) | set(start_steps) | set(attempt_reach or {}))
    finite = np.isfinite(loss)
    initial = _median(loss[finite][:window]) if finite.any() else None

    found: list[ScratchRestart] = []
    for a in numbers:
        if a < 1:
            continue
        mine = att == a
        first = int(steps[mine][0]) if mine.any() else None
        start = start_steps.get(a)
        # Furthest step any earlier attempt is known to have reached: its rows
        # still in view, and the start steps of earlier attempts (a checkpoint
        # existed there).
        earlier = att < a
        reached_rows = int(steps[earlier].max()) if earlier.any() else None
        reached_starts = max((s for b, s in start_steps.items() if b < a), default=None)
        reached_shards = max((s for b, s in (attempt_reach or {}).items() if b < a), default=None)
        reached = max((r for r in (reached_rows, reached_starts, reached_shards) if r is not None), default=None)

        at_start = (first is not None and first <= run_start) or (start is not None and start <= 0)
        resume_at = first if first is not None else (start + 1 if start is not None else None)
        lost = False
        if reached is not None and resume_at is not None and reached >= resume_at:
            lost = checkpoint_every is None or reached - (resume_at - 1) >= checkpoint_every
        # A backwards start: an earlier attempt itself resumed later than this one starts.
        backwards = start is not None and reached_starts is not None and start < reached_starts
        if (at_start and lost) or backwards:
            found.append(
                ScratchRestart(
                    attempt=a,
                    step=resume_at if resume_at is not None else 0,
                    reason="step",
                    reached=reached,
                    loss_initial=initial,
                )
            )
            continue

        if first is None or initial is None:
            continue
        before_mask = earlier & (steps < first) & finite
        after_mask = mine & finite
        if not before_mask.any() or not after_mask.any():
            continue
        before = _median(loss[before_mask][-window:])
        after = _median(loss[after_mask][:window])
        progress = initial - before
        if progress <= min_progress * abs(initial) or progress <= 0:
            continue  # nothing learnt yet: a jump means nothing
        if after - before > jump_fraction * progress:
            found.append(
                ScratchRestart(
                    attempt=a,
                    step=first,
                    reason="loss",
                    reached=reached,
                    loss_before=before,
                    loss_after=after,
                    loss_initial=initial,
                )
            )
    return found


def restarted_from_scratch(
    scalars: Mapping[str, np.ndarray],
    attempts: Sequence[Mapping] | None = None,
    **kwargs,
) -> bool:
    """True when some resumed attempt restarted from scratch (see :func:`scratch_restarts`)."""
    return bool(scratch_restarts(scalars, attempts, **kwargs))


def attempt_reach_from_shards(names: Iterable[str]) -> dict[int, int]:
    """attempt -> furthest step written, from shard file names (``scalars-<last>-aNN.arrow``)."""
    reach: dict[int, int] = {}
    for name in names:
        parsed = ShardName.parse(name)
        if parsed is not None:
            reach[parsed.attempt] = max(reach.get(parsed.attempt, parsed.last_step), parsed.last_step)
    return reach


def _median(x: np.ndarray) -> float:
    return float(np.median(x))
