"""SLURM's state of a sweep's jobs, plugged into the watcher.

- :class:`SlurmQueue`: a :class:`~grokwatch.watch.subscribe.QueuePoller` over
  ``slurm.queue.QueueState``: asks the queue in its own thread (squeue can be
  slow: never on the watcher's path), only while the sweep manifest records a
  submission.
- :func:`run_state`: the one word for what a run is doing, joining its SLURM
  task with its ``status.json`` state and heartbeat age -- what
  ``grokwatch sweep status``, the dashboard's state column and the snapshot
  (``RunView.state``) show.
- :func:`slurm_word`: SLURM's own state of a task, as the dashboard's SLURM
  column shows it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grokwatch.runs.defaults import STALL_TIMEOUT
from grokwatch.store.atomic import read_json
from grokwatch.store.layout import MANIFEST

if TYPE_CHECKING:
    from slurm.queue import QueueState

log = logging.getLogger("grokwatch.watch")


def run_state(
    task=None,
    status: str | None = None,
    heartbeat_age: float | None = None,
    *,
    started: bool = True,
    submitted: bool = False,
    stall_timeout: float = STALL_TIMEOUT,
) -> str:
    """One word for what a run is doing: :func:`slurm.states.display_state` of
    the run's SLURM task (``task``, a ``slurm.queue.TaskState`` or None), its
    ``status.json`` state and heartbeat age. A run only the manifest names (not
    ``started``) is pending / requeued / ... while the queue knows its task,
    else "submitted" or "planned"."""
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


def slurm_word(task) -> str | None:
    """SLURM's own state of a task (None when the queue does not know it)."""
    if task is None:
        return None
    from slurm.states import display_state

    return display_state(task.state, task.exit_code, task.restarts, stall_seconds=STALL_TIMEOUT)


class SlurmQueue:
    """SLURM's tasks of a sweep by run id (``slurm.queue.QueueState``).

    Active only when the sweep has a manifest (``<sweep>/sweep.json``, written
    by ``grokwatch sweep submit``) that records a submission; then a plain
    thread asks the queue every ``every`` seconds. ``tasks()`` is the latest
    answer ({} before the first, or without a submission). ``runner``: how to
    run squeue/sacct (``grokwatch.remote``'s over SSH; None: locally).
    ``state``: the ``QueueState`` to ask (default: one of its own, over
    ``runner``). ``raw_hints``: raw job id -> (array job id, task id), e.g. from
    the runs' status.json, for sacct's completion records when sacct itself
    cannot answer (``grokwatch sweep status`` passes them).
    """

    def __init__(
        self,
        sweep_dir: Path | str,
        every: float = 10.0,
        runner=None,
        *,
        state: QueueState | None = None,
        raw_hints: Mapping[str, tuple[str, int]] | None = None,
    ):
        self.sweep_dir = Path(sweep_dir)
        self.every = every
        self.runner = runner
        self.raw_hints = raw_hints
        self._tasks: dict[str, Any] = {}
        self._queue: QueueState | None = state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def _manifest(self) -> dict | None:
        path = self.sweep_dir / MANIFEST
        if not path.exists():
            return None
        return read_json(path)

    def refresh(self) -> bool:
        manifest = self._manifest()
        if manifest is None or not manifest.get("submissions"):
            return False  # planned, not submitted (or the demo's plan): nothing to ask the queue
        try:
            from slurm.queue import QueueState

            if self._queue is None:
                self._queue = QueueState(self.runner)
            tasks = self._queue.for_manifest(manifest, raw_hints=self.raw_hints)
            self.last_error = getattr(self._queue, "last_error", None)
        except Exception as exc:  # the queue being unreachable must not stop the watcher
            self.last_error = f"slurm queue: {exc}"
            log.warning("%s", self.last_error)
            return False
        changed = tasks != self._tasks
        self._tasks = dict(tasks)
        return changed

    def start(self, on_change: Callable[[], None]) -> None:
        if self._manifest() is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, args=(on_change,), name="grokwatch-slurm", daemon=True)
        self._thread.start()

    def _loop(self, on_change: Callable[[], None]) -> None:
        while not self._stop.is_set():
            if self.refresh():
                on_change()
            self._stop.wait(self.every)

    def tasks(self) -> Mapping[str, Any]:
        return dict(self._tasks)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(35)
