"""What the watcher publishes to, and what is plugged into it.

The watcher reads shards, scores them and publishes snapshots; it knows
nothing of alarms or predictions. Whatever acts on the new points --
the alarm engine (:class:`grokwatch.alerts.AlarmSubscriber`), the onset
predictor (:class:`grokwatch.predict.subscriber.PredictorSubscriber`) -- subscribes:
``SweepWatcher(..., subscribers=[...])``. The places that assemble a watcher
(the alarm daemon, the dashboard, tests, bench scripts) do the wiring.

A cycle, in the watcher thread, for each subscriber in list order:

1. ``on_batch(run_id, batch, now)`` for every :class:`~grokwatch.watch.Batch`
   of new points a run's refresh produced (scalars, probes, lifecycle
   indicators), then the watcher's own ``stalled`` indicator (a one-point
   batch, ``repeat_last``) for runs that are running or whose stall flipped;
2. ``on_cycle(runs, changed, now)`` once, after every batch: ``runs`` is the
   watcher's :class:`~grokwatch.watch.RunState` by run id (read-only; do not
   keep it past the call), ``changed`` the run ids whose data or status
   changed. It returns the run ids whose :meth:`view_fields` may have changed
   (or nothing). A subscriber may pass batches on to another one's
   ``on_batch`` here (the predictor feeds its ``predicted_onset_in`` signal to
   the alarm engine): put the producer first in the list;
3. ``view_fields(run_id)``: the :class:`~grokwatch.watch.RunView` fields this
   subscriber fills (``alarms``: a tuple of
   :class:`~grokwatch.watch.ActiveAlarm`; ``prediction``: an
   :class:`~grokwatch.watch.OnsetPrediction` or None), asked for runs that
   changed or were fed; a view is rebuilt when they differ from its own.

A subscriber's exception in ``on_batch`` is a warning about that run's
refresh; in ``on_cycle`` a warning named by its ``name`` attribute ("<name>
failed: ..."). Either way the watcher carries on and publishes.

A queue poller (:class:`QueuePoller`; :class:`grokwatch.watch.queue.SlurmQueue`
for SLURM) is the other plug: it asks a batch scheduler for the state of the
sweep's jobs in its own thread, and the watcher joins its answer into the
snapshot (``RunView.slurm_state`` and ``state``, ``PlannedRun.state``), so
every reader shows the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from .runstate import Batch, RunState

#: The RunView fields subscribers may fill.
VIEW_FIELDS = ("alarms", "prediction")


@runtime_checkable
class Subscriber(Protocol):
    def on_batch(self, run_id: str, batch: Batch, now: float) -> None: ...

    def on_cycle(self, runs: Mapping[str, RunState], changed: frozenset[str], now: float) -> Iterable[str] | None: ...

    def view_fields(self, run_id: str) -> Mapping[str, Any]: ...


@runtime_checkable
class QueuePoller(Protocol):
    """A batch scheduler's view of the sweep's jobs, asked off the watcher's path."""

    def start(self, on_change: Callable[[], None]) -> None:
        """Begin polling in a thread of its own; ``on_change()`` after each answer that changed."""

    def refresh(self) -> bool:
        """Ask once, in the caller's thread; True when the answer changed."""

    def tasks(self) -> Mapping[str, Any]:
        """run id -> the scheduler's task record (``slurm.queue.TaskState``), latest answer."""

    def close(self) -> None: ...

    @property
    def last_error(self) -> str | None: ...
