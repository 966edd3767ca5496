"""The immutable sweep snapshot a dashboard (or any reader) consumes.

Built in the watcher thread and swapped in under a lock (nvitop's pattern):
a reader takes ``watcher.snapshot()`` once per redraw and reads it freely; it
never changes afterwards. Runs that did not change keep the very same
:class:`RunView` object between snapshots, so ``view is old_view`` (or
``view.version``) tells a table what to redraw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from grokwatch.alerts.engine import ActiveAlarm

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True, eq=False)
class RunView:
    """One run as of a snapshot. Arrays are read-only views (no copies).

    ``scalars``: the columns the watcher keeps (step, attempt, train_loss,
    train_acc, val_loss, val_acc, grad_norm, weight_norm), one row per step,
    sorted; ``val_acc`` is NaN between evaluations. ``probes``: every probe
    column, one row per probe step. ``scores``: ``gai_z`` (rows aligned with
    ``scalars``), ``h0_entropy_z``, ``htsr_alpha_min``, ``htsr_traps`` (rows
    aligned with ``probes``).
    """

    run_id: str
    path: str
    seed: int | None
    weight_decay: float | None
    step: int | None  # newest step read
    total_steps: int | None
    phase: str  # grokwatch.phases.PHASES; "stalled" layered over the run's phase
    run_phase: str  # the phase from the metrics alone (never "stalled")
    t_mem: int | None
    t_grok: int | None
    t_anti: int | None
    t_diverged: int | None
    train_acc: float | None  # latest finite values
    val_acc: float | None
    train_loss: float | None
    val_loss: float | None
    signals: Mapping[str, float | None]  # latest: grad_norm weight_norm gai_z h0_entropy h0_entropy_z htsr_alpha_min htsr_traps
    alarms: tuple[ActiveAlarm, ...]  # pending or firing now, firing first
    status: str | None  # status.json state: running completed failed preempted diverged
    stalled: bool
    heartbeat_unix: float | None  # the trainer's last heartbeat (its clock)
    heartbeat_age: float | None  # seconds, as of the snapshot's time
    restarts: int
    message: str | None
    failed_files: int  # shards that could not be read yet (retried)
    version: int  # grows when this run's data or status changed
    config: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # run.json
    scalars: Mapping[str, np.ndarray] = field(default_factory=lambda: _EMPTY)
    probes: Mapping[str, np.ndarray] = field(default_factory=lambda: _EMPTY)
    scores: Mapping[str, np.ndarray] = field(default_factory=lambda: _EMPTY)

    @property
    def progress(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    @property
    def firing(self) -> tuple[ActiveAlarm, ...]:
        return tuple(a for a in self.alarms if a.state == "firing")


@dataclass(frozen=True, eq=False)
class SweepSnapshot:
    """Every run of a sweep at one moment."""

    sweep: str  # the sweep's name (its directory name)
    path: str
    version: int  # grows with every published snapshot
    time: float  # unix time it was built
    mode: str  # "inotify" or "poll"
    ready: bool  # the initial scan (backfill) is complete
    runs: Mapping[str, RunView]  # by run id, sorted
    changed: frozenset[str] = frozenset()  # run ids whose view changed since the previous snapshot
    removed: frozenset[str] = frozenset()  # run ids gone since the previous snapshot
    warnings: tuple[str, ...] = ()  # recent warnings (unreadable shards, vanished runs), newest last

    def phase_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.runs.values():
            out[v.phase] = out.get(v.phase, 0) + 1
        return out

    def active_alarms(self) -> list[tuple[str, ActiveAlarm]]:
        return [(rid, a) for rid, v in self.runs.items() for a in v.alarms]

    def __len__(self) -> int:
        return len(self.runs)


EMPTY_SNAPSHOT = SweepSnapshot(sweep="", path="", version=0, time=0.0, mode="", ready=False, runs=_EMPTY)
