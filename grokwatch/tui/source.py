"""Where the dashboard's data comes from: adapters that build the view-model.

The dashboard talks to a :class:`SweepSource`:

- ``start(on_change)``: begin following the sweep; ``on_change()`` is called
  from the source's own thread whenever something changed.
- ``refresh()``: one synchronous pass (tests, the frozen test config).
- ``model()``: the current :class:`~grokwatch.tui.model.SweepModel`.
- ``series(run_ids, smoothing)``: full-resolution curves for the detail view.
- ``close()``: stop and join every thread.

``model()`` and ``series()`` are called off the UI thread (the feed thread and
workers). No textual here: this module is headless and testable alone.

:class:`StoreSource` is the minimal adapter over :mod:`grokwatch.store`
(polling, phases from :mod:`grokwatch.phases`, alarms tailed from
``<sweep>/.grokwatch/alarms.jsonl``); :func:`open_source` prefers the watcher
adapter in :mod:`grokwatch.tui.watcher_source` when the watcher is installed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from ..memory import pin_mmap_threshold
from ..phases import phase_of
from ..store import WATCHER_DIR, RunReader, list_runs
from .model import (
    AlarmRow,
    Marker,
    Panel,
    Prediction,
    RunRow,
    RunSeries,
    Series,
    SweepModel,
    fin,
    last_finite,
    newest_first,
    restart_steps,
    run_identity,
)
from .series import prepare, sparkline_values

log = logging.getLogger("grokwatch.tui")

ALARMS_FILE = "alarms.jsonl"
SPARK_WIDTH = 10
# Columns the table needs from every run; the detail view reads the rest on demand.
ROW_COLUMNS = ("train_acc", "val_acc", "train_loss")


class SweepSource(Protocol):
    sweep_dir: Path

    def start(self, on_change: Callable[[], None]) -> None: ...
    def refresh(self) -> bool: ...
    def model(self) -> SweepModel: ...
    def series(self, run_ids: Sequence[str], smoothing: float = 0.0) -> RunSeries: ...
    def close(self) -> None: ...


# --- hooks for modules other engineers write --------------------------------


class SlurmHook:
    """SLURM state per run id: the hook for ``slurm.queue`` (QueueState).

    Active only when the sweep has a manifest (``<sweep>/sweep.json``, written
    by ``grokwatch sweep submit``) that records a submission and the ``slurm``
    package imports; then a plain thread asks the queue every ``every`` seconds
    (squeue can be slow: never on the feed's path); ``states()`` returns the
    latest answer as SLURM's own state, ``tasks()`` as the raw task records
    (for :func:`run_state`). Otherwise both are {} and the column shows '-'.
    """

    def __init__(self, sweep_dir: Path, stall_timeout: float = 600.0, every: float = 10.0):
        self.sweep_dir = Path(sweep_dir)
        self.stall_timeout = stall_timeout
        self.every = every
        self._states: dict[str, str] = {}
        self._tasks: dict[str, object] = {}  # run id -> slurm.queue.TaskState
        self._queue = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def _manifest(self) -> dict | None:
        try:
            from slurm.plan import MANIFEST  # type: ignore[import-not-found]
        except Exception:
            return None
        path = self.sweep_dir / MANIFEST
        if not path.exists():
            return None
        from ..store import read_json

        return read_json(path)

    def refresh(self) -> bool:
        manifest = self._manifest()
        if manifest is None or not manifest.get("submissions"):
            return False  # planned, not submitted (or the demo's plan): nothing to ask the queue
        try:
            from slurm.queue import QueueState  # type: ignore[import-not-found]
            from slurm.states import display_state  # type: ignore[import-not-found]

            if self._queue is None:
                self._queue = QueueState()
            tasks = self._queue.for_manifest(manifest)
            states = {rid: display_state(ts.state, ts.exit_code, ts.restarts) for rid, ts in tasks.items()}
            self.last_error = getattr(self._queue, "last_error", None)
        except Exception as exc:  # the queue being unreachable must not stop the dashboard
            self.last_error = f"slurm queue: {exc}"
            log.warning("%s", self.last_error)
            return False
        changed = states != self._states or tasks != self._tasks
        self._states, self._tasks = states, dict(tasks)
        return changed

    def start(self, on_change: Callable[[], None]) -> None:
        if self._manifest() is None:
            return
        self._thread = threading.Thread(target=self._loop, args=(on_change,), name="grokwatch-tui-slurm", daemon=True)
        self._thread.start()

    def _loop(self, on_change: Callable[[], None]) -> None:
        while not self._stop.is_set():
            if self.refresh():
                on_change()
            self._stop.wait(self.every)

    def states(self) -> dict[str, str]:
        return dict(self._states)

    def tasks(self) -> dict[str, object]:
        return dict(self._tasks)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(35)


class PredictionHook:
    """Predicted t_grok per run: the hook for :mod:`grokwatch.predict`.

    With a watcher snapshot (``from_views``): an in-process
    :class:`~grokwatch.predict.SweepPredictor`, resumed from the sweep's
    prediction log and not writing to it (the alert daemon owns the log), fed
    each run's newest due step. Without one (``from_log``): the log's latest
    predictions, re-read when the file changes. {} when the module is absent;
    a failure is reported once in ``error`` and the column shows '-'.
    """

    def __init__(self, sweep_dir: Path, every: float = 2.0):
        self.sweep_dir = Path(sweep_dir)
        self.every = every  # seconds between predictor updates (predictions move at cadence steps)
        self.error: str | None = None
        self._predictor = None
        self._last = float("-inf")
        self._latest: dict[str, Prediction] = {}
        self._sig = None
        self._log_cache: dict[str, Prediction] = {}
        try:
            from .. import predict
        except Exception as exc:  # not installed or broken: no predictions, no crash
            self._mod = None
            self.error = f"predictions unavailable: {exc}"
        else:
            self._mod = predict

    @staticmethod
    def _convert(p) -> Prediction | None:
        if p is None or p.t_grok_pred is None or not np.isfinite(p.t_grok_pred):
            return None
        as_int = lambda v: None if v is None or not np.isfinite(v) else int(round(v))  # noqa: E731
        return Prediction(step=int(round(p.t_grok_pred)), lo=as_int(p.lo), hi=as_int(p.hi), method=p.method,
                          made_at=int(p.step))

    def from_views(self, views, pause: Callable[[], object] | None = None) -> dict[str, Prediction]:
        if self._mod is None:
            return {}
        now = time.monotonic()
        if now - self._last < self.every:
            return self._latest
        self._last = now
        try:
            if self._predictor is None:
                self._predictor = self._mod.SweepPredictor(resume=self._mod.read_predictions(self.sweep_dir))
            self._predictor.update_views(views, backfill=False, pause=pause)
            latest = self._predictor.latest_all()
        except Exception as exc:
            self.error = f"prediction failed: {type(exc).__name__}: {exc}"
            log.warning("%s", self.error)
            self._mod = None
            return {}
        self._latest = {rid: q for rid, p in latest.items() if (q := self._convert(p)) is not None}
        return self._latest

    def from_log(self) -> dict[str, Prediction]:
        if self._mod is None:
            return {}
        path = self._mod.predictions_path(self.sweep_dir)
        try:
            st = os.stat(path)
        except OSError:
            return {}
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig != self._sig:
            self._sig = sig
            try:
                latest = self._mod.latest_predictions(self.sweep_dir)
            except Exception as exc:
                self.error = f"cannot read predictions: {exc}"
                return self._log_cache
            self._log_cache = {rid: q for rid, p in latest.items() if (q := self._convert(p)) is not None}
        return self._log_cache


# --- what a run is doing: the state column ------------------------------------


def run_state(task=None, status: str | None = None, heartbeat_age: float | None = None, *,
              started: bool = True, submitted: bool = False, stall_timeout: float = 600.0) -> str:
    """One word (:data:`~grokwatch.tui.model.STATE_ORDER`) for the state column:
    :func:`slurm.states.display_state` of the run's SLURM task (``task``, a
    ``slurm.queue.TaskState`` or None), its ``status.json`` state and heartbeat
    age -- what ``grokwatch sweep status`` shows. A run only the manifest names
    (not ``started``) is pending / requeued / ... while the queue knows its task,
    else "submitted" or "planned".
    """
    from slurm.states import display_state

    return display_state(getattr(task, "state", None), getattr(task, "exit_code", None),
                         getattr(task, "restarts", 0) or 0, status, heartbeat_age, stall_seconds=stall_timeout,
                         started=started, submitted=submitted)


def planned_rows(planned, have: set[str], tasks: Mapping[str, object], submitted: bool) -> list[RunRow]:
    """Rows for the runs a sweep manifest plans that have no directory yet
    (``planned``: run id -> :class:`grokwatch.watch.snapshot.PlannedRun`)."""
    out = []
    for rid, p in planned.items():
        if rid in have:
            continue
        out.append(RunRow(run_id=rid, seed=p.seed, weight_decay=p.weight_decay, step=0, total_steps=p.total_steps,
                          phase="waiting", state=run_state(tasks.get(rid), started=False, submitted=submitted)))
    return out


# --- resolving SOURCE ---------------------------------------------------------


def resolve_sweep(source: str | os.PathLike) -> Path:
    """The local sweep directory SOURCE names (:func:`grokwatch.source.resolve_source`:
    a path, ``file://``, and remote schemes as they are registered)."""
    from ..source import resolve_source

    return resolve_source(str(source))


def open_source(source: str | os.PathLike, *, stall_timeout: float = 600.0, interval: float = 1.0,
                clock: Callable[[], float] = time.time, prefer_watcher: bool = True,
                pause: Callable[[], object] | None = None) -> SweepSource:
    """``pause``: called by the source's thread between runs (the dashboard's
    :class:`grokwatch.quiet.QuietWindow`), so key presses repaint first."""
    sweep = resolve_sweep(source)
    if prefer_watcher:
        try:
            from .watcher_source import WatcherSource, watcher_available
        except ImportError:
            pass
        else:
            if watcher_available():
                return WatcherSource(sweep, stall_timeout=stall_timeout, interval=interval, clock=clock, pause=pause)
    return StoreSource(sweep, stall_timeout=stall_timeout, interval=interval, clock=clock, pause=pause)


# --- alarms.jsonl, read incrementally ----------------------------------------


class AlarmTail:
    """Follows ``<sweep>/.grokwatch/alarms.jsonl``: reads only what was appended."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.inode: int | None = None
        self.events: list[AlarmRow] = []
        self._partial = b""

    def poll(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            self.offset, self.events, self._partial = 0, [], b""  # rotated or truncated
        self.inode = st.st_ino
        if st.st_size <= self.offset:
            return False
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unterminated last line waits for its end
        added = False
        for line in lines:
            row = parse_alarm(line, len(self.events))
            if row is not None:
                self.events.append(row)
                added = True
        return added

    def active(self) -> dict[str, tuple[str, ...]]:
        """Rules whose latest event per (run, rule) is firing, per run id."""
        return active_alarms(self.events)


def parse_alarm(line: bytes | str, seq: int) -> AlarmRow | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    run = rec.get("run") or rec.get("run_id")
    rule = rec.get("rule") or rec.get("name")
    if not run or not rule:
        return None
    step = rec.get("step")
    return AlarmRow(
        run_id=str(run), rule=str(rule),
        step=int(step) if isinstance(step, (int, float)) and np.isfinite(step) else None,
        value=fin(rec.get("value")), threshold=fin(rec.get("threshold")),
        severity=rec.get("severity"), state=str(rec.get("state") or rec.get("status") or "firing"),
        time=rec.get("time") or rec.get("ts"), seq=seq,
    )


def active_alarms(events: Sequence[AlarmRow]) -> dict[str, tuple[str, ...]]:
    latest: dict[tuple[str, str], str] = {}
    for e in events:
        latest[(e.run_id, e.rule)] = e.state
    out: dict[str, list[str]] = {}
    for (run, rule), state in latest.items():
        if state == "firing":
            out.setdefault(run, []).append(rule)
    return {k: tuple(sorted(v)) for k, v in out.items()}


# --- detail series from raw columns (shared by every adapter) ---------------


@dataclass
class RunData:
    """One run's raw columns and events, as an adapter hands them to :func:`build_series`."""

    row: RunRow
    scalars: Mapping[str, np.ndarray]
    probes: Mapping[str, np.ndarray]
    gai_spikes: np.ndarray = field(default_factory=lambda: np.zeros(0))  # steps
    alarms: Sequence[AlarmRow] = ()


def _series(label: str, cols: Mapping[str, np.ndarray], name: str, smoothing: float, color: int) -> Series | None:
    if name not in cols or "step" not in cols:
        return None
    x, y = prepare(cols["step"], cols[name], smoothing)
    if len(x) == 0:
        return None
    return Series(label, x, y, color)


def build_series(runs: Sequence[RunData], smoothing: float = 0.0, generation: int = 0) -> RunSeries:
    """Panels and markers for one run (every curve) or an overlay (one curve per run)."""
    if len(runs) == 1:
        return _single(runs[0], smoothing, generation)
    return _overlay(runs, smoothing, generation)


def _markers(d: RunData, color: int | None = None) -> list[Marker]:
    r = d.row
    out: list[Marker] = []
    tag = f"{r.run_id} " if color is not None else ""
    if r.t_mem is not None:
        out.append(Marker(r.t_mem, "t_mem", f"{tag}t_mem {r.t_mem}"))
    if r.t_grok is not None:
        out.append(Marker(r.t_grok, "t_grok", f"{tag}t_grok {r.t_grok}"))
    if r.prediction is not None:
        out.append(Marker(r.prediction.step, "predicted", f"{tag}predicted {r.prediction.step}"))
    for s in r.restart_steps:
        out.append(Marker(s, "restart", f"{tag}restart {s}"))
    for a in d.alarms:
        # memorized / grokked events are the t_mem / t_grok markers already
        if a.step is not None and a.state != "resolved" and a.rule not in ("memorized", "grokked"):
            out.append(Marker(a.step, "alarm", f"{tag}{a.rule} {a.step}"))
    return out


def _single(d: RunData, smoothing: float, generation: int) -> RunSeries:
    sc, pr = d.scalars, d.probes
    panels = []

    def add(key, title, specs, cols, **kw):
        ss = [s for s in (_series(lbl, cols, name, smoothing, i) for i, (lbl, name) in enumerate(specs)) if s is not None]
        panels.append(Panel(key, title, tuple(ss), **kw))

    add("acc", "accuracy", [("train", "train_acc"), ("val", "val_acc")], sc, y_range=(0.0, 1.0))
    add("loss", "loss (log)", [("train", "train_loss"), ("val", "val_loss")], sc, log=True)
    add("wnorm", "weight norm", [("weight norm", "weight_norm")], sc)
    g = _series("grad norm", sc, "grad_norm", smoothing, 0)
    gs: list[Series] = [g] if g is not None else []
    if g is not None and len(d.gai_spikes):
        ys = np.interp(d.gai_spikes, g.x, g.y)
        gs.append(Series("GAI spike", np.asarray(d.gai_spikes, dtype=np.float64), ys, 3, points=True))
    panels.append(Panel("gnorm", "grad norm (log), GAI spikes", tuple(gs), log=True))
    alphas = sorted(k for k in pr if k.startswith("htsr_alpha/"))
    add("alpha", "HTSR alpha per matrix", [(k.split("/", 1)[1], k) for k in alphas], pr,
        hlines=((2.0, "alpha=2"),), note="no HTSR probes")
    add("h0", "H0 persistence entropy", [("entropy", "h0_entropy")], pr, note="no H0 probes")
    add("h0n", "H0 effective features", [("effective count", "h0_effective_count")], pr, note="no H0 probes")
    total = d.row.total_steps or 0
    last = float(sc["step"][-1]) if "step" in sc and len(sc["step"]) else 1.0
    x_hi = max(last, float(total), 1.0)
    if d.row.prediction is not None:
        x_hi = max(x_hi, float(d.row.prediction.hi or d.row.prediction.step))
    return RunSeries((d.row.run_id,), tuple(panels), tuple(_markers(d)), (0.0, x_hi), (d.row,), generation)


def _overlay(runs: Sequence[RunData], smoothing: float, generation: int) -> RunSeries:
    specs = [
        ("acc", "val accuracy", "scalars", "val_acc", dict(y_range=(0.0, 1.0))),
        ("loss", "train loss (log)", "scalars", "train_loss", dict(log=True)),
        ("wnorm", "weight norm", "scalars", "weight_norm", {}),
        ("gnorm", "grad norm (log)", "scalars", "grad_norm", dict(log=True)),
        ("alpha", "HTSR alpha, min over matrices", "probes", "alpha_min", dict(hlines=((2.0, "alpha=2"),))),
        ("h0", "H0 persistence entropy", "probes", "h0_entropy", {}),
    ]
    panels = []
    for key, title, kind, name, kw in specs:
        ss = []
        for i, d in enumerate(runs):
            cols = d.scalars if kind == "scalars" else d.probes
            if name == "alpha_min":
                cols = _alpha_min(cols)
            s = _series(d.row.run_id, cols, name, smoothing, i)
            if s is not None:
                ss.append(s)
        panels.append(Panel(key, title, tuple(ss), **kw))
    markers = []
    for i, d in enumerate(runs):
        markers += [m for m in _markers(d, i) if m.kind in ("t_grok", "predicted")]
    x_hi = 1.0
    for d in runs:
        if "step" in d.scalars and len(d.scalars["step"]):
            x_hi = max(x_hi, float(d.scalars["step"][-1]))
        x_hi = max(x_hi, float(d.row.total_steps or 0))
    return RunSeries(tuple(d.row.run_id for d in runs), tuple(panels), tuple(markers), (0.0, x_hi),
                     tuple(d.row for d in runs), generation)


def _alpha_min(probes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    alphas = [np.asarray(probes[k], dtype=np.float64) for k in probes if k.startswith("htsr_alpha/")]
    if not alphas or "step" not in probes:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns between probes
        return {"step": probes["step"], "alpha_min": np.nanmin(np.vstack(alphas), axis=0)}


# --- the store adapter ---------------------------------------------------------


class _Run:
    def __init__(self, path: Path):
        self.reader = RunReader(path, kinds=("scalars",), columns=ROW_COLUMNS)
        self.row: RunRow | None = None
        self.base: RunRow | None = None  # the row as the data alone gives it (training phase)
        self.data_step = -1  # last step the row was built from


class StoreSource:
    """Polls a sweep directory through :class:`~grokwatch.store.RunReader`.

    The minimal adapter: phases from :func:`grokwatch.phases.phase_of`, no
    live scores (GAI z, alpha min and H0 entropy z show '-'), alarms from
    ``alarms.jsonl`` when an alarm engine writes one.
    """

    kind = "store"

    def __init__(self, sweep_dir: Path | str, *, stall_timeout: float = 600.0, interval: float = 1.0,
                 clock: Callable[[], float] = time.time, pause: Callable[[], object] | None = None):
        pin_mmap_threshold()  # as the watcher does (grokwatch.memory)
        self.sweep_dir = Path(sweep_dir)
        self.pause = pause  # called before each run's read (grokwatch.quiet)
        self.stall_timeout = stall_timeout
        self.interval = interval
        self.clock = clock
        self._runs: dict[str, _Run] = {}
        self._alarms = AlarmTail(self.sweep_dir / WATCHER_DIR / ALARMS_FILE)
        self._lock = threading.Lock()
        self._detail: dict[str, RunReader] = {}
        self._generation = 0
        self._updated: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_change: Callable[[], None] | None = None
        self.slurm = SlurmHook(self.sweep_dir, stall_timeout=stall_timeout)
        self.predict = PredictionHook(self.sweep_dir)
        self.error: BaseException | None = None
        self._planned: dict = {}  # the sweep manifest's runs (grokwatch.watch.snapshot.PlannedRun)
        self._submitted = False
        self._manifest_sig = None

    # lifecycle
    def start(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.slurm.start(on_change)
        self._thread = threading.Thread(target=self._loop, name="grokwatch-tui-poll", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        self.slurm.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                changed = self.refresh()
            except BaseException as exc:
                self.error = exc
                if self._on_change:
                    self._on_change()
                return
            if changed and self._on_change:
                self._on_change()
            # Sleep only when nothing new came in (toolong's poller).
            if not changed and self._stop.wait(self.interval):
                return

    # reading
    def _read_manifest(self) -> bool:
        """The planned runs of ``sweep.json``, re-read when it changed; True if they did."""
        from ..store import read_json
        from ..store.layout import MANIFEST
        from ..watch.snapshot import planned_runs

        path = self.sweep_dir / MANIFEST
        try:
            st = os.stat(path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = None
        if sig == self._manifest_sig:
            return False
        self._manifest_sig = sig
        manifest = read_json(path) if sig is not None else None
        self._planned = planned_runs(manifest)
        self._submitted = bool(manifest and (manifest.get("submissions") or manifest.get("array_job_id")))
        return True

    def refresh(self) -> bool:
        changed = self._read_manifest()
        for path in list_runs(self.sweep_dir):
            if path.name not in self._runs:
                self._runs[path.name] = _Run(path)
                changed = True
        alarms_changed = self._alarms.poll()
        if self._thread is None:
            changed |= self.slurm.refresh()  # read-once mode: no SLURM thread
        active = self._alarms.active()
        now = self.clock()
        rows_changed = False
        for run_id, run in self._runs.items():
            if self.pause is not None:
                self.pause()
            delta = run.reader.refresh()
            row = self._row(run, active.get(run_id, ()), now)
            if row != run.row:
                run.row = row
                rows_changed = True
            if delta:
                rows_changed = True
        changed = changed or alarms_changed or rows_changed
        if changed:
            with self._lock:
                self._generation += 1
                self._updated = now
        return changed

    def _row(self, run: _Run, alarms: tuple[str, ...], now: float) -> RunRow:
        r = run.reader
        sc = r.scalars
        status = r.status or {}
        seed, wd, total = run_identity(r.run_id, r.config)
        steps = sc.get("step")
        if steps is not None and len(steps):
            last = int(steps[-1])
            if run.base is not None and last == run.data_step:
                base = run.base  # no new rows: keep phases and sparkline
            else:
                info = phase_of(sc)
                base = RunRow(
                    run_id=r.run_id, step=last, phase=info.phase,
                    train_acc=last_finite(sc.get("train_acc")), val_acc=last_finite(sc.get("val_acc")),
                    val_spark=sparkline_values(steps, sc["val_acc"], SPARK_WIDTH) if "val_acc" in sc else (),
                    t_mem=info.t_mem, t_grok=info.t_grok,
                )
                run.data_step, run.base = last, base
        else:
            base = RunRow(run_id=r.run_id, step=int(status.get("last_step") or 0), phase="waiting" if not status else "learning")
        phase = base.phase
        state = status.get("state")
        if state == "diverged":
            phase = "diverged"
        elif phase != "diverged":
            if state == "failed":
                phase = "failed"
            elif state == "running" and _stalled(status, now, self.stall_timeout):
                phase = "stalled"
        return replace(
            base, seed=seed, weight_decay=wd, total_steps=total, state=state, phase=phase, alarms=alarms,
            restarts=int(status.get("restarts") or 0), restart_steps=restart_steps(status),
        )

    def model(self) -> SweepModel:
        with self._lock:
            gen, updated = self._generation, self._updated
        rows = [run.row for _, run in sorted(self._runs.items()) if run.row is not None]
        tasks = self.slurm.tasks()
        now = self.clock()
        for i, r in enumerate(rows):
            status = self._runs[r.run_id].reader.status or {}
            hb = status.get("heartbeat_unix")
            age = now - float(hb) if isinstance(hb, (int, float)) else None
            st = run_state(tasks.get(r.run_id), status.get("state"), age, stall_timeout=self.stall_timeout)
            if st != r.state:
                rows[i] = replace(r, state=st)
        rows += planned_rows(self._planned, set(self._runs), tasks, self._submitted)
        slurm = self.slurm.states()
        preds = self.predict.from_log()
        if slurm or preds:
            rows = [replace(r, slurm_state=slurm.get(r.run_id), prediction=preds.get(r.run_id)) for r in rows]
        errors = tuple(e for e in (f"source thread failed: {self.error!r}" if self.error else None,
                                   self.predict.error, self.slurm.last_error) if e)
        return SweepModel(
            sweep=self.sweep_dir.name, path=str(self.sweep_dir), rows=tuple(rows),
            alarms=newest_first(self._alarms.events), generation=gen, updated=updated, source=self.kind,
            errors=errors,
        )

    def series(self, run_ids: Sequence[str], smoothing: float = 0.0) -> RunSeries:
        model = self.model()
        data = []
        for run_id in run_ids:
            row = model.row(run_id)
            if row is None or run_id not in self._runs:
                continue  # unknown, or planned and not started: no curves yet
            reader = self._detail.get(run_id)
            if reader is None:
                reader = self._detail[run_id] = RunReader(self.sweep_dir / run_id)
            reader.refresh(status=False)
            alarms = [a for a in self._alarms.events if a.run_id == run_id]
            data.append(RunData(row, reader.scalars, reader.probes, alarms=alarms))
        return build_series(data, smoothing, model.generation)


def _stalled(status: Mapping, now: float, timeout: float) -> bool:
    hb = status.get("heartbeat_unix")
    if not isinstance(hb, (int, float)):
        return False
    return now - float(hb) > timeout
