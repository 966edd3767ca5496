"""The alarm engine as a subscriber of the sweep watcher.

The watcher publishes new points (:mod:`grokwatch.watch.subscribe`); this
feeds them to an :class:`~grokwatch.alerts.engine.AlertEngine` and, once per
cycle that fed it, hands the cycle's events to ``on_events`` -- in the
watcher thread, before the snapshot is published (the alarm daemon journals
and persists there). Each run's view carries the engine's active alarms.

Wiring (the daemon, the dashboard)::

    alarms = AlarmSubscriber(AlertEngine(load_rules()), on_events=journal)
    watcher = SweepWatcher(sweep, subscribers=[PredictorSubscriber(predictor, feed=alarms), alarms])

The predictor goes first: it feeds its ``predicted_onset_in`` signal to the
engine in the same cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .engine import AlarmEvent, AlertEngine

if TYPE_CHECKING:
    from grokwatch.watch.runstate import Batch


class AlarmSubscriber:
    name = "alarms"

    def __init__(self, engine: AlertEngine, on_events: Callable[[list[AlarmEvent]], None] | None = None):
        self.engine = engine
        self.on_events = on_events
        self._events: list[AlarmEvent] = []
        self._fed = False

    def on_batch(self, run_id: str, batch: Batch, now: float) -> None:
        self._fed = True
        self._events += self.engine.evaluate(
            run_id,
            batch.steps,
            batch.signals,
            now=now,
            gates=batch.gates or None,
            repeat_last=batch.repeat_last,
            rewound=batch.rewound,
        )

    def on_cycle(self, runs: Mapping, changed: frozenset[str], now: float) -> None:
        if not self._fed:
            return
        events, self._events, self._fed = self._events, [], False
        if self.on_events is not None:
            self.on_events(events)  # events may be empty: a cycle fed the engine

    def view_fields(self, run_id: str) -> dict:
        return {"alarms": self.engine.active(run_id)}
