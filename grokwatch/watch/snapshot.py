"""The immutable sweep snapshot a dashboard (or any reader) consumes.

Built in the watcher thread and swapped in under a lock (nvitop's pattern):
a reader takes ``watcher.snapshot()`` once per redraw and reads it freely; it
never changes afterwards. Runs that did not change keep the very same
:class:`RunView` object between snapshots, so ``view is old_view`` (or
``view.version``) tells a table what to redraw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from grokwatch.store.contract import RunConfig

_EMPTY: Mapping = MappingProxyType({})


# What subscribers (:mod:`grokwatch.watch.subscribe`) add to a run's view. The
# types live here, beside the snapshot, so the watcher knows nothing of the
# alarm engine or the predictor that fill them.


@dataclass(frozen=True)
class ActiveAlarm:
    """An alarm now pending or firing on a run (the alarm engine's, for a view)."""

    rule: str
    state: str  # "pending" or "firing"
    severity: str
    signal: str
    since_step: int  # first step of the episode
    fired_step: int | None  # step it fired at (None while pending)
    value: float | None  # latest value of the signal
    threshold: float
    comparison: str


@dataclass(frozen=True, slots=True)
class OnsetPrediction:
    """A run's newest predicted grokking step, with its interval and the method
    that made it (the onset predictor's, for a view)."""

    step: int
    lo: int | None = None
    hi: int | None = None
    method: str | None = None
    made_at: int | None = None  # the step it was made at
    source: str | None = None  # whose runs made it: "prior", "sweep" or "prior+sweep"
    p_grok: float | None = None  # the newest P(groks within budget), when there is one


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
    phase: str  # grokwatch.runs.phases.PHASES; "stalled" layered over the run's phase
    run_phase: str  # the phase from the metrics alone (never "stalled")
    t_mem: int | None
    t_grok: int | None
    t_anti: int | None
    t_diverged: int | None
    train_acc: float | None  # latest finite values
    val_acc: float | None
    train_loss: float | None
    val_loss: float | None
    signals: Mapping[
        str, float | None
    ]  # latest: grad_norm weight_norm gai_z h0_entropy h0_entropy_z htsr_alpha_min htsr_traps
    alarms: tuple[ActiveAlarm, ...]  # pending or firing now, firing first
    status: str | None  # status.json state: running completed failed preempted diverged
    stalled: bool
    heartbeat_unix: float | None  # the trainer's last heartbeat (its clock)
    heartbeat_age: float | None  # seconds, as of the snapshot's time
    restarts: int
    message: str | None
    failed_files: int  # shards that could not be read yet (retried)
    version: int  # grows when this run's data or status changed
    config: RunConfig | None = None  # run.json (None until it is read)
    scalars: Mapping[str, np.ndarray] = field(default_factory=lambda: _EMPTY)
    probes: Mapping[str, np.ndarray] = field(default_factory=lambda: _EMPTY)
    scores: Mapping[str, np.ndarray] = field(default_factory=lambda: _EMPTY)
    prediction: OnsetPrediction | None = None  # the newest predicted t_grok (a predictor subscribes)
    # SLURM, when a queue poller is plugged into the watcher: the task's state as
    # SLURM words it (None when the queue does not know the run), and the state
    # column's word joining it with status.json and the heartbeat
    # (slurm.states.display_state, what `grokwatch sweep status` shows).
    slurm_state: str | None = None
    state: str | None = None

    @property
    def progress(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    @property
    def firing(self) -> tuple[ActiveAlarm, ...]:
        return tuple(a for a in self.alarms if a.state == "firing")


def shown_phase(view: RunView) -> str:
    """The phase a person sees for a run (the dashboard's phase column, ``grokwatch
    sweep status``): the view's phase, except that a run whose status.json says it
    failed shows "failed" (unless its metrics diverged) and one the trainer saw
    diverge shows "diverged", whatever the rows it flushed say."""
    if view.status == "failed" and view.phase != "diverged":
        return "failed"
    if view.status == "diverged":
        return "diverged"
    return view.phase


@dataclass(frozen=True)
class PlannedRun:
    """A run the sweep manifest (``<sweep>/sweep.json``: ``grokwatch sweep plan``,
    the demo) declares, whether or not it has started."""

    run_id: str
    weight_decay: float | None = None
    seed: int | None = None
    task: int | None = None  # its SLURM array task (SLURM_ARRAY_TASK_ID)
    total_steps: int | None = None  # the plan's step budget (None: the preset's)
    # Joined in by the watcher when it publishes: SLURM's state of its task (a
    # queue poller plugged in) and the state column's word (planned, submitted,
    # pending, ...).
    slurm_state: str | None = None
    state: str | None = None


def planned_runs(manifest: Mapping[str, Any] | None) -> dict[str, PlannedRun]:
    """The runs of a sweep manifest by run id, in its order; entries it cannot
    read (or with an unsafe run id) are skipped."""
    from grokwatch.store.layout import is_valid_run_id  # here: the alarm engine imports this module, light

    out: dict[str, PlannedRun] = {}
    if not isinstance(manifest, Mapping):
        return out
    options = manifest.get("options")
    if not isinstance(options, Mapping):
        options = {}
    steps = _int_or_none(options.get("steps"))
    for t in manifest.get("tasks") or []:
        if not isinstance(t, Mapping) or not is_valid_run_id(str(t.get("run_id", ""))):
            continue
        rid = str(t["run_id"])
        wd = t.get("weight_decay")
        out[rid] = PlannedRun(
            rid,
            float(wd) if isinstance(wd, (int, float)) and not isinstance(wd, bool) else None,
            _int_or_none(t.get("seed")),
            _int_or_none(t.get("index")),
            steps,
        )
    return out


def _int_or_none(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


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
    # Runs the sweep manifest declares (started or not), by run id; empty without one.
    planned: Mapping[str, PlannedRun] = field(default_factory=lambda: _EMPTY)
    submitted: bool = False  # the manifest records a SLURM submission (an array job id)

    @property
    def not_started(self) -> tuple[PlannedRun, ...]:
        """Planned runs with no run directory yet (queued, pending, or never submitted)."""
        return tuple(p for rid, p in self.planned.items() if rid not in self.runs)

    @property
    def total(self) -> int:
        """Every run of the sweep: those on disk and those planned but not started."""
        return len(self.runs) + len(self.not_started)

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
