"""The view-model the dashboard reads: immutable, built off the UI thread.

One module: the view-model is one set of plain data types and the feed that
builds them; the widgets read it whole.

A :class:`SweepModel` holds one :class:`RunRow` per run (everything the runs
table, the sweep grid and the status bar show) and the alarm feed. A
:class:`DetailPlot` holds one run's full-resolution curves and markers for the
detail view. Both are plain data: the UI only formats and draws them; no
signal is computed here or in the widgets (DESIGN section 1).

Values that are not known are ``None`` (never NaN), so two rows compare equal
exactly when they would draw the same, and the table redraws only rows that
changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from grokwatch.runs.defaults import ANTI_VAL_ACC, GROK_VAL_ACC, GROKKING_VAL_ACC, MEM_TRAIN_ACC
from grokwatch.store.contract import RunStatus
from grokwatch.watch.snapshot import OnsetPrediction

# Phases of DESIGN section 4, plus "waiting" (planned, queued or pending: no
# data yet) and states a run can end in before its phase settles.
PHASE_ORDER = (
    "waiting",
    "learning",
    "memorized",
    "grokking",
    "grokked",
    "anti-grokking",
    "diverged",
    "stalled",
    "failed",
    "preempted",
)
# Single letters for the status bar and the sweep grid, so they read without colour too.
PHASE_LETTER = {
    "waiting": ".",
    "learning": "l",
    "memorized": "M",
    "grokking": "g",
    "grokked": "G",
    "anti-grokking": "A",
    "diverged": "D",
    "stalled": "S",
    "failed": "F",
    "preempted": "P",
}
# What each phase means (the help screen's legend of the letters).
PHASE_MEANING = {
    "waiting": "no data yet: planned, submitted, pending or requeued before its first step",
    "learning": f"train accuracy below {MEM_TRAIN_ACC:g}",
    "memorized": f"train accuracy >= {MEM_TRAIN_ACC:g}, validation accuracy still low (the plateau)",
    "grokking": f"validation accuracy past {GROKKING_VAL_ACC:g}, not yet {GROK_VAL_ACC:g}",
    "grokked": f"validation accuracy reached {GROK_VAL_ACC:g} after memorizing",
    "anti-grokking": f"after grokking, validation accuracy fell below {ANTI_VAL_ACC:g} while train accuracy stays "
    f">= {MEM_TRAIN_ACC:g}",
    "diverged": "a non-finite training loss",
    "stalled": "running, but no heartbeat within the stall timeout",
    "failed": "the trainer failed (status.json)",
    "preempted": "stopped with a checkpoint, not resumed yet",
}
# What a run is doing (the state column), in sort order: from not started to over.
# slurm.states.display_state's words: "planned" (in the sweep manifest, never
# submitted), "submitted" (the queue does not say more), "pending", ...
STATE_ORDER = (
    "planned",
    "submitted",
    "pending",
    "requeued",
    "running",
    "suspended",
    "stalled",
    "preempted",
    "timeout",
    "completed",
    "diverged",
    "cancelled",
    "node-fail",
    "oom",
    "failed",
    "unknown",
)


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    seed: int | None = None
    weight_decay: float | None = None
    step: int = 0
    total_steps: int | None = None
    phase: str = "learning"
    state: str | None = None  # STATE_ORDER: what the run is doing (SLURM + status.json + heartbeat)
    train_acc: float | None = None
    val_acc: float | None = None
    val_spark: tuple[float, ...] = ()  # val_acc, decimated for a sparkline
    gai_z: float | None = None
    alpha_min: float | None = None
    h0_entropy_z: float | None = None
    # Which of gai_z, alpha_min, h0_entropy_z are past the threshold of a loaded rule on
    # their signal (the rule's own comparison and threshold): the table shows them in red.
    over: tuple[str, ...] = ()
    alarms: tuple[str, ...] = ()  # rules currently firing
    t_mem: int | None = None
    t_grok: int | None = None
    prediction: OnsetPrediction | None = None
    slurm_state: str | None = None
    restarts: int = 0
    restart_steps: tuple[int, ...] = ()

    @property
    def progress(self) -> float | None:
        return self.step / self.total_steps if self.total_steps else None


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """One alarm event: a rule on a run changed state at a step."""

    run_id: str
    rule: str
    step: int | None
    value: float | None = None
    threshold: float | None = None
    severity: str | None = None
    state: str = "firing"  # pending, firing, resolved
    time: str | None = None  # UTC ISO time the event was recorded
    seq: int = 0  # order of arrival; the feed is newest first

    @property
    def key(self) -> tuple:
        return (self.seq, self.run_id, self.rule, self.step, self.state)


@dataclass(frozen=True)
class SweepModel:
    sweep: str
    path: str
    rows: tuple[RunRow, ...] = ()
    alarms: tuple[AlarmRow, ...] = ()  # newest first
    generation: int = 0
    updated: float | None = None  # wall-clock time (epoch s) of the data
    errors: tuple[str, ...] = ()
    # Where the alarms come from when not the dashboard's own engine on the built-in
    # rules: "rules: FILE" (grokwatch tui --rules), or the alarm daemon whose journal is shown.
    alarm_source: str | None = None
    _by_id: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id.update({r.run_id: r for r in self.rows})

    def row(self, run_id: str) -> RunRow | None:
        return self._by_id.get(run_id)

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(r.run_id for r in self.rows)

    def changed_since(self, prev: SweepModel | None) -> set[str]:
        """Run ids whose row differs from ``prev`` (added ones included)."""
        if prev is None:
            return set(self._by_id)
        return {r.run_id for r in self.rows if prev.row(r.run_id) != r}

    def phase_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.phase] = counts.get(r.phase, 0) + 1
        return counts

    def seeds(self) -> list[int | None]:
        return sorted({r.seed for r in self.rows}, key=lambda s: (s is None, s or 0))

    def weight_decays(self) -> list[float | None]:
        return sorted({r.weight_decay for r in self.rows}, key=lambda w: (w is None, w or 0.0))


# --- detail view -----------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One curve: steps and values at full resolution (finite values only)."""

    label: str
    x: np.ndarray
    y: np.ndarray
    color: int = 0  # index into the plot palette
    points: bool = False  # draw as isolated points (e.g. GAI spikes)


@dataclass(frozen=True)
class Marker:
    """A vertical marker at a step."""

    step: float
    kind: str  # t_mem, t_grok, alarm, predicted, restart; band: a span step..end
    label: str = ""
    end: float | None = None


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    series: tuple[Series, ...]
    log: bool = False
    hlines: tuple[tuple[float, str], ...] = ()  # (value, label)
    y_range: tuple[float, float] | None = None
    note: str = ""  # shown when the panel has no data


@dataclass(frozen=True)
class DetailPlot:
    """What the detail view plots for one run, or an overlay of several."""

    run_ids: tuple[str, ...]
    panels: tuple[Panel, ...]
    markers: tuple[Marker, ...] = ()
    x_range: tuple[float, float] = (0.0, 1.0)
    rows: tuple[RunRow, ...] = ()
    generation: int = 0

    def panel(self, key: str) -> Panel | None:
        return next((p for p in self.panels if p.key == key), None)


# --- building rows from a run's raw data (used by the watcher source) -------


def last_finite(x: np.ndarray | None) -> float | None:
    if x is None or len(x) == 0:
        return None
    x = np.asarray(x)
    v = x[-1]
    if np.isfinite(v):
        return float(v)
    idx = np.flatnonzero(np.isfinite(x))
    return float(x[idx[-1]]) if idx.size else None


def _int(v) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _float(v) -> float | None:
    try:
        f = None if v is None else float(v)
    except (TypeError, ValueError):
        return None
    return f if f is None or np.isfinite(f) else None


def fin(v) -> float | None:
    """A finite float, or None."""
    return _float(v)


def restart_steps(status: RunStatus | None) -> tuple[int, ...]:
    """Steps at which a resumed attempt started (status.json ``attempts[*].start_step``)."""
    attempts = status.attempts if status is not None else ()
    out = []
    for a in attempts[1:]:
        s = _int(a.get("start_step"))
        if s is not None:
            out.append(s)
    return tuple(out)


# --- the feed: coalesces change notifications into models for the UI -------


M = TypeVar("M")  # what ModelFeed builds and posts: a SweepModel in the app


class ModelFeed(Generic[M]):
    """A plain thread that turns "something changed" into a fresh model.

    ``notify()`` may be called from any thread, as often as it likes (the
    watcher calls it once per run update); the feed builds at most one model
    per ``min_interval`` seconds with ``build()`` and hands it to ``post``.
    ``wait_ready`` (optional) blocks while the receiver is still busy with
    earlier posts: backpressure, so 90 runs updating at once cannot flood the
    UI's message queue. ``pause`` (optional) is called before each build: the
    dashboard's quiet window, so a key press repaints before the next model.
    """

    def __init__(
        self,
        build: Callable[[], M],
        post: Callable[[M], None],
        min_interval: float = 0.25,
        wait_ready: Callable[[], bool] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        pause: Callable[[], object] | None = None,
    ):
        self.build = build
        self.pause = pause
        self.post = post
        self.min_interval = min_interval
        self.wait_ready = wait_ready
        self.on_error = on_error
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.builds = 0
        self.build_seconds: list[float] = []

    def start(self) -> ModelFeed[M]:
        self._thread = threading.Thread(target=self._loop, name="grokwatch-tui-feed", daemon=True)
        self._thread.start()
        return self

    def notify(self, *_args, **_kwargs) -> None:
        self._dirty.set()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            wait = self.min_interval - (time.monotonic() - last)
            if wait > 0 and self._stop.wait(wait):
                return
            while self.wait_ready is not None and not self.wait_ready():
                if self._stop.wait(0.02):
                    return
            if self.pause is not None:
                self.pause()
            self._dirty.clear()
            t0 = time.perf_counter()
            try:
                model = self.build()
            except BaseException as exc:  # reported to the app, which exits non-zero
                if self.on_error is not None:
                    self.on_error(exc)
                    return
                raise
            self.build_seconds.append(time.perf_counter() - t0)
            self.builds += 1
            last = time.monotonic()
            self.post(model)


def newest_first(alarms: Iterable[AlarmRow]) -> tuple[AlarmRow, ...]:
    """Newest first: by the time the event was recorded, then by step (a backfill
    records many events at once), then by arrival."""
    return tuple(
        sorted(alarms, key=lambda a: (a.time or "", a.step if a.step is not None else -1, a.seq), reverse=True)
    )
