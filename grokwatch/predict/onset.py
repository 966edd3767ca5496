"""Predict t_grok of a run on its plateau from runs of the sweep that grokked.

Pure functions. Everything is evaluated *at a step t*: the target's rows up
to t, and as calibrators only runs whose t_grok <= t (their rows up to their
own t_grok, all <= t). Nothing after t is read.

Methods, tried in this order (``PredictConfig.methods``); the first that can
answer does, and when none can the prediction says ``insufficient-data``:

``wnorm-analog``
    Weight norm as a clock. On the plateau the weight norm decays under
    weight decay, and grokking comes when it has fallen far enough (Liu et
    al., "Omnigrok", 2023; Nanda et al. 2023), so runs of one weight decay
    follow one decay curve up to a time scale (seeds differ in speed). Over
    the trailing ``analog_window`` share of the target's plateau its weight
    norm fell from w_then to w_now in ``span`` steps; a calibrator c fell
    through the same two levels (its running minimum) in ``d_c`` steps and
    grokked ``r_c`` steps after reaching w_now. The estimate from c is
    t + r_c x span / d_c; the prediction is the median over calibrators, the
    interval their q_lo..q_hi quantiles. Needs a decaying weight norm; a
    calibrator counts only if its plateau started above w_then, it passed
    w_now before its t_grok (else the target is already below where c
    grokked), and the two time scales are within 20x. Calibrators of the
    target's weight decay only (``analog_same_wd``): on real runs (the tiny
    preset, 9 runs, 3 weight decays) curves of different weight decays were
    not one shape (a run's weight norm can rise again after memorizing) and
    cross-decay analogs missed by up to 3x; on simulated sweeps, whose curves
    share one shape by construction, cross-decay analogs were better early
    (median error 6% against 16% at a quarter of the plateau, 90 runs).
``wnorm-extrapolation``
    The critical weight norm: each calibrator's weight norm at its t_grok,
    against the target's log weight norm extrapolated forward linearly in
    step (least squares over the trailing ``trend_window`` share of its
    plateau). A calibrator whose critical norm the target has already passed
    says "now" (t). Works across weight decays (on the real tiny-preset runs
    the weight norm at t_grok was 26.5-28.7 for weight decays 1 and 3); a
    log-linear fit of a decay that flattens predicts somewhat early.
``plateau-ratio``
    The plateau lengths t_grok - t_mem of calibrators, scaled by weight
    decay (plateau x wd, as grokking time scales like 1/(lr wd)), keeping
    only those longer than the target's plateau so far (it has not grokked
    yet). Biased early (runs that grokked first had short plateaus); last
    resort.

Each method first tries calibrators of the target's weight decay (when
``same_wd_first`` and at least ``min_calibrators`` of them answer), then all
(except wnorm-analog, see above).

The interval is widened to at least +-``min_rel_width`` of the predicted time
left: calibrators share the target's level and trend, so their spread alone
understates the error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import INSUFFICIENT, T_GROK, PredictConfig, Prediction
from .growth import GrowthCache, extrapolations, growth_at, rate_of
from .priors import SIM_PRESET
from .series import PriorRun, RunSeries


@dataclass(frozen=True)
class Calibrator:
    """What a grokked run lends the others: its plateau and weight-norm decay."""

    run_id: str
    weight_decay: float | None
    t_mem: int
    t_grok: int
    steps: np.ndarray  # plateau rows t_mem .. t_grok
    wmin: np.ndarray  # running minimum of weight_norm over those rows (NaN -> +inf)
    neg_wmin: np.ndarray  # -wmin, non-decreasing: for searchsorted
    w_crit: float  # weight norm at t_grok (mean of the last 3 finite rows), NaN if none
    prior: bool = False  # from an earlier sweep: known at every step of this one
    twin: tuple | None = None  # (preset, seed, weight decay): runs with the same key train identically on a CPU

    @property
    def plateau(self) -> int:
        return self.t_grok - self.t_mem


def calibrator(run: RunSeries, t: int) -> Calibrator | None:
    """The run as a calibrator at step t: only if it grokked by t."""
    e = run.events_at(t)
    if e.t_grok is None or e.t_mem is None:
        return None
    a = int(np.searchsorted(run.steps, e.t_mem, side="left"))
    b = int(np.searchsorted(run.steps, e.t_grok, side="right"))
    w = np.asarray(run.cols["weight_norm"][a:b], dtype=np.float64)
    finite = np.isfinite(w) & (w > 0)
    wmin = np.minimum.accumulate(np.where(finite, w, np.inf)) if len(w) else np.zeros(0)
    tail = w[finite][-3:]
    return Calibrator(
        run.run_id,
        run.weight_decay,
        e.t_mem,
        e.t_grok,
        run.steps[a:b],
        wmin,
        -wmin,
        float(np.mean(tail)) if len(tail) else float("nan"),
        isinstance(run, PriorRun),
        twin_key(run),
    )


def twin_key(run: RunSeries) -> tuple | None:
    """(preset, seed, weight decay) when all are known: a trainer run with the
    same key follows the same trajectory (bit for bit on a CPU), so a prior
    run that is the target's twin would hand it its own answer."""
    if run.preset is None or run.seed is None or run.weight_decay is None:
        return None
    if run.preset == SIM_PRESET:
        return None  # simulated: the sweep seed sets the trajectory too, and the sim prior's (1) is not the tests'
    return (run.preset, int(run.seed), round(float(run.weight_decay), 12))


class CalibratorCache:
    """Calibrators by run: a grokked run's rows up to its t_grok never change, so
    each is built once (rebuilt if its events or row count up to t_grok change)."""

    def __init__(self) -> None:
        self._c: dict[str, tuple[tuple, Calibrator]] = {}

    def get(self, run: RunSeries, t: int) -> Calibrator | None:
        e = run.events_at(t)
        if e.t_grok is None or e.t_mem is None:
            return None
        key = (e.t_mem, e.t_grok, run.rows_upto(e.t_grok))
        hit = self._c.get(run.run_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        c = calibrator(run, t)
        if c is not None:
            self._c[run.run_id] = (key, c)
        return c


TREND_POINTS = 512  # the trend fit thins its window to about this many rows
MIN_SCALE = 0.05  # wnorm-analog ignores a calibrator more than 20x faster or slower than the target


@dataclass(frozen=True)
class Plateau:
    """The target at step t: its plateau so far and its weight-norm level and trend."""

    t: int
    t_mem: int
    elapsed: int
    n_points: int
    w_now: float  # NaN when too few points
    t_level: float  # the mean step of the rows w_now averages
    t_then: float  # start of the analog window
    w_then: float  # the weight-norm level there
    slope: float  # d ln(weight_norm) / d step over the trailing window (NaN when unknown)
    log_w_fit: float  # the fitted ln weight_norm at t

    @property
    def decaying(self) -> bool:
        return bool(np.isfinite(self.slope) and self.slope < 0)


def plateau_at(run: RunSeries, t: int, cfg: PredictConfig) -> Plateau | None:
    """None unless the run is on its plateau at t (memorized, not grokked, not diverged)."""
    if not run.on_plateau_at(t):
        return None
    t_mem = run.events_at(t).t_mem
    if t_mem is None:  # cannot be: on the plateau means memorized
        return None
    fs, fw = run.weight_rows()
    a = int(np.searchsorted(fs, t_mem, side="left"))
    b = int(np.searchsorted(fs, t, side="right"))
    s, w = fs[a:b], fw[a:b]  # views: the plateau's rows with a weight norm, up to t
    n = len(w)
    nan = float("nan")
    if n < cfg.min_points:
        return Plateau(t, t_mem, t - t_mem, n, nan, nan, nan, nan, nan, nan)
    k_level = max(5, int(round(cfg.level_window * n)))
    w_now = float(np.mean(w[-k_level:]))
    # The analog window: the trailing analog_window share of the plateau so far.
    # Levels are means over k_level rows, dated at their rows' mean step.
    j = max(k_level - 1, n - 1 - max(k_level, int(round(cfg.analog_window * n))))
    t_level = float(np.mean(s[-k_level:]))
    t_then = float(np.mean(s[j - k_level + 1 : j + 1]))
    w_then = float(np.mean(w[j - k_level + 1 : j + 1]))
    k_trend = min(n, max(10, int(round(cfg.trend_window * n))))
    stride = max(1, k_trend // TREND_POINTS)  # thin long windows, counting back from the newest row
    x = s[n - k_trend :][::-1][::stride][::-1].astype(np.float64)
    y = np.log(w[n - k_trend :][::-1][::stride][::-1])
    x0 = x - x[-1]
    xc = x0 - x0.mean()
    sxx = float(xc @ xc)
    if sxx > 0:  # least squares line ln w = icpt + slope x0
        slope = float(xc @ (y - y.mean())) / sxx
        icpt = float(y.mean() - slope * x0.mean())
    else:
        slope, icpt = nan, nan
    # The fit's value at t (x0 = t - last plateau step with data, normally 0).
    log_w_fit = float(icpt + slope * (t - x[-1])) if np.isfinite(slope) else nan
    return Plateau(t, t_mem, t - t_mem, n, w_now, t_level, t_then, w_then, float(slope), log_w_fit)


# -- the methods: each returns per-calibrator estimates of t_grok (or None) ---------------


def _crossing(c: Calibrator, level: float) -> int | None:
    """First plateau step at which c's running-minimum weight norm fell to ``level``."""
    i = int(np.searchsorted(c.neg_wmin, -level, side="left"))  # wmin is non-increasing
    return int(c.steps[i]) if i < len(c.wmin) else None


def _analog(p: Plateau, calibs: list[Calibrator]) -> np.ndarray | None:
    if not (p.decaying and np.isfinite(p.w_now) and np.isfinite(p.w_then)) or p.w_then <= p.w_now:
        return None
    span = p.t_level - p.t_then  # the target took this long from w_then down to w_now
    out = []
    for c in calibs:
        if not len(c.wmin) or c.wmin[0] < p.w_then:
            continue  # c started its plateau below w_then: not comparable
        s_then, s_now = _crossing(c, p.w_then), _crossing(c, p.w_now)
        if s_then is None or s_now is None:
            continue  # the target is already below where c grokked: c has nothing to say
        if s_now - s_then <= 0:
            continue
        scale = span / (s_now - s_then)  # the target's time scale over c's
        if not MIN_SCALE <= scale <= 1 / MIN_SCALE:
            continue  # runs this far apart are not one curve at two speeds
        out.append(p.t_level + (c.t_grok - s_now) * scale)
    return np.asarray(out) if out else None


def _extrapolation(p: Plateau, calibs: list[Calibrator]) -> np.ndarray | None:
    if not (p.decaying and np.isfinite(p.log_w_fit)):
        return None
    out = []
    for c in calibs:
        if not np.isfinite(c.w_crit) or c.w_crit <= 0:
            continue
        gap = np.log(c.w_crit) - p.log_w_fit  # < 0 while the target is above c's critical norm
        out.append(p.t + (gap / p.slope if gap < 0 else 0.0))
    return np.asarray(out) if out else None


def _plateau_ratio(p: Plateau, calibs: list[Calibrator], wd: float | None) -> np.ndarray | None:
    out = []
    for c in calibs:
        plateau = float(c.plateau)
        if wd and c.weight_decay and wd > 0 and c.weight_decay > 0:
            plateau *= c.weight_decay / wd
        elif not _same_wd(c.weight_decay, wd):
            continue  # no weight decay to scale by: only like with like
        if plateau > p.elapsed:
            out.append(p.t_mem + plateau)
    return np.asarray(out) if out else None


def _same_wd(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b))


def calibrators_at(runs, t: int, cache: CalibratorCache | None = None) -> list[Calibrator]:
    """The runs (a mapping or a list) grokked by step t, as calibrators, sorted by run id."""
    pool = runs.values() if isinstance(runs, dict) else runs
    out = []
    for r in pool:
        if isinstance(r, Calibrator):
            if r.prior or r.t_grok <= t:
                out.append(r)
            continue
        c = cache.get(r, t) if cache is not None else calibrator(r, t)
        if c is not None:
            out.append(c)
    out.sort(key=lambda c: c.run_id)  # the estimates' order must not depend on dict order
    return out


def predict_onset(
    target: RunSeries,
    runs,
    t: int,
    cfg: PredictConfig = PredictConfig(),
    cache: CalibratorCache | None = None,
    pool=None,
    growth: GrowthCache | None = None,
) -> Prediction | None:
    """The t_grok prediction for ``target`` made at step ``t``, or None when the
    target is not on its plateau at t. ``runs``: the sweep (a mapping or list of
    :class:`RunSeries`, the target among them or not), or a list of
    :class:`Calibrator` already built for step t; only runs grokked by t
    calibrate, through their rows <= t. The growth method reads the runs
    themselves: ``pool`` (the sweep's runs and prior runs) when ``runs`` are
    calibrators; ``growth`` caches its calibration (one per sweep)."""
    p = plateau_at(target, t, cfg)
    if p is None:
        return None
    if "growth" in cfg.methods:
        if pool is None:
            pool = [r for r in (runs.values() if isinstance(runs, dict) else runs) if isinstance(r, RunSeries)]
        g = _growth(target, pool, t, cfg, growth or GrowthCache(cfg.growth))
        if g is not None:
            return g
    twin = twin_key(target)
    # never the target itself, nor a prior run that is its twin (no peeking at its own future)
    calibs = [
        c
        for c in calibrators_at(runs, t, cache)
        if c.run_id != target.run_id and not (c.prior and twin is not None and c.twin == twin)
    ]
    same = [c for c in calibs if _same_wd(c.weight_decay, target.weight_decay)]
    for method in cfg.methods:
        groups = [same, calibs] if cfg.same_wd_first and len(same) < len(calibs) else [calibs]
        if method == "wnorm-analog" and cfg.analog_same_wd:
            groups = [same]
        if method == "growth":
            continue  # answered above, or could not (too few calibrators)
        for group in groups:
            if len(group) < cfg.min_calibrators:
                continue
            if method == "wnorm-analog":
                est = _analog(p, group)
            elif method == "wnorm-extrapolation":
                est = _extrapolation(p, group)
            else:
                est = _plateau_ratio(p, group, target.weight_decay)
            if est is None or len(est) < cfg.min_calibrators:
                continue
            est = np.maximum(est, float(t))  # it has not grokked by t
            mid, lo, hi = np.quantile(est, [0.5, cfg.q_lo, cfg.q_hi])
            # Calibrators share the target's level and trend, so their spread
            # understates the uncertainty: at least +-min_rel_width of the time left.
            lo = max(float(t), min(lo, mid - cfg.min_rel_width * (mid - t)))
            hi = max(hi, mid + cfg.min_rel_width * (mid - t))
            n_prior = sum(c.prior for c in group)
            source = "prior" if n_prior == len(group) else "sweep" if n_prior == 0 else "prior+sweep"
            return Prediction(
                target.run_id, t, T_GROK, method, float(mid), float(lo), float(hi), None, len(est), source
            )
    return Prediction(target.run_id, t, T_GROK, INSUFFICIENT, n_calib=len(calibs))


def _growth(target: RunSeries, pool, t: int, cfg: PredictConfig, cache: GrowthCache) -> Prediction | None:
    """The growth model's prediction (:mod:`grokwatch.predict.growth`), or None without a model."""
    model = growth_at(target, pool, t, cache, cfg.min_calibrators, twin_key)
    if model is None:
        return None
    t_mem = target.events_at(t).t_mem
    if t_mem is None:  # cannot be: called for a run on its plateau, so memorized
        return None
    x = extrapolations(target, t, cache.cfg)
    method, mid, lo, hi = model.predict(x, t, t_mem, rate_of(target))
    return Prediction(target.run_id, t, T_GROK, method, mid, lo, hi, None, model.n_runs, model.source)
