"""What the dashboard joins to the watcher's snapshot: SLURM's queue, onset
predictions, and the state column.

- :class:`SlurmHook`: SLURM state per run (``slurm.queue``), asked by its own
  thread, never on the feed's path.
- :class:`PredictionHook`: predicted t_grok per run (:mod:`grokwatch.predict`).
- :func:`run_state` and :func:`planned_rows`: the state column, as
  ``grokwatch sweep status`` words it.

Headless (no textual), like the rest of the view-model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from grokwatch.runs.defaults import STALL_TIMEOUT

from .model import Prediction, RunRow

log = logging.getLogger("grokwatch.tui")


class SlurmHook:
    """SLURM state per run id: the hook for ``slurm.queue`` (QueueState).

    Active only when the sweep has a manifest (``<sweep>/sweep.json``, written
    by ``grokwatch sweep submit``) that records a submission and the ``slurm``
    package imports; then a plain thread asks the queue every ``every`` seconds
    (squeue can be slow: never on the feed's path); ``states()`` returns the
    latest answer as SLURM's own state, ``tasks()`` as the raw task records
    (for :func:`run_state`). Otherwise both are {} and the column shows '-'.
    """

    def __init__(self, sweep_dir: Path, stall_timeout: float = STALL_TIMEOUT, every: float = 10.0):
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

    An in-process :class:`~grokwatch.predict.SweepPredictor` over the
    watcher's snapshot (``from_views``), resumed from the sweep's prediction
    log and not writing to it (the alert daemon owns the log), fed each run's
    newest due step. {} when the module is absent; a failure is reported once
    in ``error`` and the column shows '-'.
    """

    def __init__(self, sweep_dir: Path, every: float = 2.0):
        self.sweep_dir = Path(sweep_dir)
        self.every = every  # seconds between predictor updates (predictions move at cadence steps)
        self.error: str | None = None
        self._predictor = None
        self._last = float("-inf")
        self._latest: dict[str, Prediction] = {}
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
        return Prediction(
            step=int(round(p.t_grok_pred)), lo=as_int(p.lo), hi=as_int(p.hi), method=p.method, made_at=int(p.step)
        )

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


# --- what a run is doing: the state column ------------------------------------


def run_state(
    task=None,
    status: str | None = None,
    heartbeat_age: float | None = None,
    *,
    started: bool = True,
    submitted: bool = False,
    stall_timeout: float = STALL_TIMEOUT,
) -> str:
    """One word (:data:`~grokwatch.tui.model.STATE_ORDER`) for the state column:
    :func:`slurm.states.display_state` of the run's SLURM task (``task``, a
    ``slurm.queue.TaskState`` or None), its ``status.json`` state and heartbeat
    age -- what ``grokwatch sweep status`` shows. A run only the manifest names
    (not ``started``) is pending / requeued / ... while the queue knows its task,
    else "submitted" or "planned".
    """
    from slurm.states import display_state

    return display_state(
        getattr(task, "state", None),
        getattr(task, "exit_code", None),
        getattr(task, "restarts", 0) or 0,
        status,
        heartbeat_age,
        stall_seconds=stall_timeout,
        started=started,
        submitted=submitted,
    )


def planned_rows(planned, have: set[str], tasks: Mapping[str, object], submitted: bool) -> list[RunRow]:
    """Rows for the runs a sweep manifest plans that have no directory yet
    (``planned``: run id -> :class:`grokwatch.watch.snapshot.PlannedRun`)."""
    out = []
    for rid, p in planned.items():
        if rid in have:
            continue
        out.append(
            RunRow(
                run_id=rid,
                seed=p.seed,
                weight_decay=p.weight_decay,
                step=0,
                total_steps=p.total_steps,
                phase="waiting",
                state=run_state(tasks.get(rid), started=False, submitted=submitted),
            )
        )
    return out
