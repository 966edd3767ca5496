"""The onset predictor as a subscriber of the sweep watcher.

After every watcher cycle in which a run changed, :class:`PredictorSubscriber`
makes the predictions that came due (:meth:`SweepPredictor.update_runstates`,
in the watcher thread, on the watcher's own per-run state), passes them on as
the ``predicted_onset_in`` signal to ``feed`` (the alarm engine's subscriber,
:class:`grokwatch.alerts.AlarmSubscriber`), and each run's view carries its
newest t_grok prediction (:class:`grokwatch.watch.OnsetPrediction`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from grokwatch.watch.runstate import Batch
from grokwatch.watch.snapshot import OnsetPrediction

from .config import WILL_GROK, Prediction
from .sweep import SweepPredictor, onset_signal_batches


def onset_of(p: Prediction | None, fate: Prediction | None = None) -> OnsetPrediction | None:
    """A t_grok prediction as a run's view carries it (None without a number), with
    the newest P(groks within budget) ``fate`` when there is one."""
    if p is None or p.t_grok_pred is None or not np.isfinite(p.t_grok_pred):
        return None

    def as_int(v):
        return None if v is None or not np.isfinite(v) else int(round(v))

    return OnsetPrediction(
        step=int(round(p.t_grok_pred)),
        lo=as_int(p.lo),
        hi=as_int(p.hi),
        method=p.method,
        made_at=int(p.step),
        source=p.source or None,
        p_grok=None if fate is None or fate.p_grok is None else float(fate.p_grok),
    )


class PredictorSubscriber:
    """``predictor``: a :class:`SweepPredictor` (it logs, when given a log).
    ``feed``: a subscriber given the new predictions as signal batches (or None).
    ``backfill``: False to predict only each run's newest due step (a
    dashboard that opens on a sweep far along wants an answer now)."""

    name = "prediction"

    def __init__(self, predictor: SweepPredictor, feed=None, backfill: bool = True):
        self.predictor = predictor
        self.feed = feed
        self.backfill = backfill

    def on_batch(self, run_id: str, batch: Batch, now: float) -> None:
        pass  # it reads the runs' columns once per cycle instead

    def on_cycle(self, runs: Mapping, changed: frozenset[str], now: float) -> set[str]:
        if not changed:
            return set()
        new = self.predictor.update_runstates(runs, backfill=self.backfill)
        if self.feed is not None:
            for b in onset_signal_batches(new):
                self.feed.on_batch(b.run, Batch(b.steps, b.signals, b.gates), now)
        # a sweep that has just finished teaches its root's priors (the next sweep starts from it)
        self.predictor.remember_if_over()
        return {p.run for p in new}

    def view_fields(self, run_id: str) -> dict:
        return {"prediction": onset_of(self.predictor.latest(run_id), self.predictor.latest(run_id, WILL_GROK))}
