"""Predictions for a whole sweep, live or replayed -- the same code for both.

:class:`SweepPredictor` keeps, per run, the last step it predicted at. Each
:meth:`~SweepPredictor.update` makes the predictions that came due since: at
every multiple of the run's cadence (``PredictConfig.cadence``) that its data
has reached, in step order across the sweep. A prediction at step t reads
rows <= t of every run and only runs grokked by t calibrate it, so

    replay(full data) == the concatenation of live updates

as long as, live, every run had reached step t when predictions at t were
made (runs that advance together, as in a job array). A run that lags
behind lends less live than in a replay (never more): no prediction ever
uses data past its own step.

Logged rows: every t_grok prediction (``insufficient-data`` included), and a
will_grok prediction whenever it changes (method, training-set size or
p_grok to 1e-6), so the log stays small.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .config import T_GROK, WILL_GROK, PredictConfig, Prediction
from .fate import FateModel, FeatureCache, fit_fate, predict_fate
from .growth import GrowthCache, growth_at, rate_of
from .log import PredictionLog
from .onset import CalibratorCache, calibrators_at, predict_onset, twin_key
from .series import PriorRun, RunSeries

if TYPE_CHECKING:
    from grokwatch.watch.runstate import RunState

ONSET_SIGNAL = "predicted_onset_in"
GROWTH_METHODS = ("growth", "plateau-prior")
SURVIVAL_METHOD = "plateau-survival"


class SweepPredictor:
    """Live onset and fate predictions for one sweep; thread-safe.

    ``log``: a :class:`PredictionLog` every new prediction is appended to.
    ``resume``: predictions logged earlier (:func:`read_predictions`); the
    predictor carries on after the last step each run was predicted at
    instead of making them again (a restarted watcher).
    ``prior``: finished runs of earlier sweeps (:func:`load_sweep` of them);
    they calibrate from the first step on and train the will-grok classifier
    (:class:`PriorRun`), never predicted for.
    ``auto_prior``: also use the priors of the runs' preset (:mod:`.priors`:
    the one shipped with grokwatch, and what ``sweep_dir``'s root has learned
    from finished sweeps), loaded at the first update that names a preset.
    """

    def __init__(
        self,
        config: PredictConfig | None = None,
        log: PredictionLog | None = None,
        resume: Iterable[Prediction] = (),
        prior: Iterable[RunSeries] = (),
        sweep_dir=None,
        auto_prior: bool = True,
    ):
        self.cfg = config or PredictConfig()
        self.prior = [p if isinstance(p, PriorRun) else PriorRun.of(p) for p in prior]
        self.sweep_dir = sweep_dir
        self._auto_prior = auto_prior
        self.prior_sources: list[str] = ["--prior"] if self.prior else []
        self.log = log
        self._lock = threading.Lock()
        self._done: dict[str, int] = {}
        self._latest: dict[tuple[str, str], Prediction] = {}
        self._calib = CalibratorCache()
        self._growth = GrowthCache(self.cfg.growth)
        self._feat = FeatureCache()
        self._model: FateModel | None = None
        self._series: dict[str, tuple[object, RunSeries]] = {}
        self._remembered = False
        for p in resume:
            self._done[p.run] = max(self._done.get(p.run, 0), p.step)
            self._latest[(p.run, p.kind)] = p

    # -- feeding ----------------------------------------------------------------
    def due(self, run: RunSeries) -> list[int]:
        """Cadence steps of ``run`` its data has reached that were not predicted at yet."""
        last = run.last_step
        if last is None:
            return []
        c = self.cfg.cadence(run.total_steps)
        first = (self._done.get(run.run_id, 0) // c + 1) * c
        return list(range(first, last + 1, c))

    def update(
        self, runs: Mapping[str, RunSeries], backfill: bool = True, pause: Callable[[], object] | None = None
    ) -> list[Prediction]:
        """Make (and log) the predictions due; return them, in step order.

        ``backfill=False``: only each run's newest due step (a watcher that
        starts on a sweep far along and wants an answer now; its log then
        skips the steps in between, unlike a replay's). ``pause`` (optional)
        is called before each run's prediction: a dashboard in the same
        process lets its key presses go first (:mod:`grokwatch.watch.quiet`)."""
        with self._lock:
            if self._auto_prior:
                self._load_auto_prior(runs)
            todo: dict[int, list[RunSeries]] = {}
            for rid in sorted(runs):
                run = runs[rid]
                steps = self.due(run)
                if steps and not backfill:
                    steps = steps[-1:]
                for t in steps:
                    todo.setdefault(t, []).append(run)
            new: list[Prediction] = []
            pool = [*runs.values(), *self.prior]
            for t in sorted(todo):
                calibs = calibrators_at(pool, t, self._calib)
                model = None
                for run in todo[t]:
                    if pause is not None:
                        pause()
                    p = predict_onset(run, calibs, t, self.cfg, pool=pool, growth=self._growth)
                    if p is not None:
                        new.append(p)
                        self._latest[(run.run_id, T_GROK)] = p
                    f = self._survival(run, p, pool, t)
                    if f is not None:
                        if _changed(self._latest.get((run.run_id, WILL_GROK)), f, tol=0.005):
                            new.append(f)
                            self._latest[(run.run_id, WILL_GROK)] = f
                    elif run.outcome_at(t) is None and run.rows_upto(t) >= self.cfg.signature_steps:
                        if model is None:
                            model = self._model = fit_fate(pool, t, self.cfg, self._feat, self._model)
                        f = predict_fate(run, pool, t, self.cfg, self._feat, model)
                        if f is not None and _changed(self._latest.get((run.run_id, WILL_GROK)), f):
                            new.append(f)
                            self._latest[(run.run_id, WILL_GROK)] = f
                    self._done[run.run_id] = t
            if new and self.log is not None:
                self.log.append(new)
            return new

    def remember_if_over(self) -> object | None:
        """Once every run of the sweep is over (grokked, diverged, out of steps or in
        a final state), add its runs to its root's priors file (:func:`.priors.remember_sweep`)
        so the next sweep of the preset under the same root starts from them; once per
        predictor. Returns the file written, or None. For the live watchers (the
        alert daemon, the dashboard); a replay does not write."""
        with self._lock:
            if self._remembered or self.sweep_dir is None or not self._series:
                return None
            runs = {rid: hit[1] for rid, hit in self._series.items()}
            if not all(r.is_over() for r in runs.values()):
                return None
            self._remembered = True
        from .priors import remember_sweep

        return remember_sweep(self.sweep_dir, runs, {rid: {"preset": r.preset} for rid, r in runs.items()})

    def _survival(self, run: RunSeries, p: Prediction | None, pool, t: int) -> Prediction | None:
        """P(groks within budget) for a run on its plateau, from the growth model's
        prediction: its log-normal read at the run's budget (``plateau-survival``)."""
        if p is None or p.t_grok_pred is None or p.method not in GROWTH_METHODS or not run.total_steps:
            return None
        model = growth_at(run, pool, t, self._growth, self.cfg.min_calibrators, twin_key)
        if model is None:
            return None
        t_mem = run.events_at(t).t_mem or 0
        pg = model.p_within(p.method, p.t_grok_pred, t, t_mem, rate_of(run), float(run.total_steps))
        return Prediction(
            run.run_id, t, WILL_GROK, SURVIVAL_METHOD, p_grok=pg, n_calib=model.n_runs, source=model.source
        )

    def _load_auto_prior(self, runs: Mapping[str, RunSeries]) -> None:
        from .priors import SMALL_PRIOR, auto_prior, generic_prior

        if not runs:
            return
        presets = {r.preset for r in runs.values()} - {None}
        if len(presets) > 1:
            self._auto_prior = False  # a sweep of several presets: no one prior fits
            return
        self._auto_prior = False  # once: a sweep keeps its preset
        preset = presets.pop() if presets else None
        got = auto_prior(preset, self.sweep_dir) if preset else []
        scaled = all(r.lr and r.weight_decay for r in runs.values())
        if got:
            self.prior += got
            self.prior_sources.append(f"preset prior {got[0].preset!r} ({len(got)} runs)")
            if sum(r.events().t_grok is not None for r in got) < SMALL_PRIOR and scaled:
                # A few runs of one setting make a narrow prior that no extrapolation beats on
                # its own calibrators, so none is kept. The other presets' runs join it on the
                # lr x wd scale (held-out canonical runs at 40-60% of the plateau: 0.18 -> 0.11).
                more = [r for r in generic_prior() if r.preset != preset]
                if more:
                    self.prior += more
                    self.prior_sources.append(f"other presets' priors, scaled by lr x weight decay ({len(more)} runs)")
        elif scaled:
            # No prior of its own: every preset's, on the lr x weight decay scale.
            got = generic_prior()
            if got:
                self.prior += got
                self.prior_sources.append(f"all presets' priors, scaled by lr x weight decay ({len(got)} runs)")

    def update_views(
        self, views: Mapping[str, object], backfill: bool = True, pause: Callable[[], object] | None = None
    ) -> list[Prediction]:
        """:meth:`update` from a watcher snapshot's ``runs`` (RunView by run id);
        a view seen before (the same object) is not converted again."""
        runs = {}
        for rid, v in views.items():
            hit = self._series.get(rid)
            if hit is None or hit[0] is not v:
                if pause is not None:
                    pause()
                hit = (v, RunSeries.from_view(v, self.cfg.thresholds))
                self._series[rid] = hit
            runs[rid] = hit[1]
        for rid in set(self._series) - set(views):
            del self._series[rid]
        return self.update(runs, backfill, pause)

    def update_runstates(self, states: Mapping[str, RunState], backfill: bool = True) -> list[Prediction]:
        """:meth:`update` from the watcher's own per-run state (``SweepWatcher.runs``:
        :class:`grokwatch.watch.RunState` by run id), in its thread, right after a
        refresh cycle; a run whose ``version`` did not change is not converted again."""
        runs = {}
        for rid, rs in states.items():
            key = (id(rs), getattr(rs, "version", None))
            hit = self._series.get(rid)
            if hit is None or hit[0] != key:
                series = RunSeries.from_columns(rid, rs.scalars.scalars, rs.config, rs.state, self.cfg.thresholds)
                hit = (key, series)
                self._series[rid] = hit
            runs[rid] = hit[1]
        for rid in set(self._series) - set(states):
            del self._series[rid]
        return self.update(runs, backfill)

    # -- reading ------------------------------------------------------------------
    def latest(self, run_id: str, kind: str = T_GROK) -> Prediction | None:
        """The newest prediction of ``kind`` for a run (None before the first)."""
        with self._lock:
            return self._latest.get((run_id, kind))

    def latest_all(self, kind: str = T_GROK) -> dict[str, Prediction]:
        with self._lock:
            return {r: p for (r, k), p in self._latest.items() if k == kind}


def _changed(old: Prediction | None, new: Prediction, tol: float = 1e-6) -> bool:
    if old is None:
        return True
    if (old.method, old.n_calib) != (new.method, new.n_calib):
        return True
    a, b = old.p_grok, new.p_grok
    if a is None or b is None:
        return (a is None) != (b is None)
    return abs(a - b) > tol


def replay(
    runs: Mapping[str, RunSeries],
    config: PredictConfig | None = None,
    prior: Iterable[RunSeries] = (),
    sweep_dir=None,
    auto_prior: bool = True,
) -> list[Prediction]:
    """Every prediction a live watcher would have made over the sweep, in step order."""
    return SweepPredictor(config, prior=prior, sweep_dir=sweep_dir, auto_prior=auto_prior).update(runs, backfill=True)


# -- the rule hook -------------------------------------------------------------------------


def steps_to_onset(pred: Prediction | None, step: int | None = None) -> float:
    """Steps from ``step`` (default: the step the prediction was made at) to the
    predicted t_grok; NaN when there is no numeric t_grok prediction. An alarm
    rule on signal ``predicted_onset_in`` thresholds this value."""
    if pred is None or pred.kind != T_GROK or pred.t_grok_pred is None or not np.isfinite(pred.t_grok_pred):
        return float("nan")
    return float(pred.t_grok_pred - (pred.step if step is None else step))


def onset_within(pred: Prediction | None, n: int, step: int | None = None) -> float:
    """1.0 if the predicted onset is within ``n`` steps of ``step``, 0.0 if not, NaN if unknown."""
    v = steps_to_onset(pred, step)
    return float("nan") if not np.isfinite(v) else float(v <= n)


@dataclass(frozen=True)
class SignalBatch:
    """New points of the ``predicted_onset_in`` signal of one run, for
    ``AlertEngine.evaluate(run, steps, signals, gates=gates)``."""

    run: str
    steps: np.ndarray
    signals: Mapping[str, np.ndarray]
    gates: Mapping[str, np.ndarray] = field(default_factory=dict)


def onset_signal_batches(preds: Iterable[Prediction]) -> list[SignalBatch]:
    """Group new t_grok predictions by run as alarm-engine input. Every point is
    on the plateau, so the ``memorized`` gate is 1 (rules may say
    ``when = "memorized"``)."""
    by_run: dict[str, list[Prediction]] = {}
    for p in preds:
        if p.kind == T_GROK:
            by_run.setdefault(p.run, []).append(p)
    out = []
    for run in sorted(by_run):
        ps = sorted(by_run[run], key=lambda p: p.step)
        steps = np.array([p.step for p in ps], dtype=np.int64)
        vals = np.array([steps_to_onset(p) for p in ps])
        out.append(SignalBatch(run, steps, {ONSET_SIGNAL: vals}, {"memorized": np.ones(len(ps))}))
    return out
