"""The growth model (grokwatch.predict.growth) on real runs and on planted curves.

The real runs are tests/fixtures/real_tiny: nine runs of the evidence sweep
(tiny preset). The shipped tiny prior holds their twins (same preset, seed,
weight decay), which the predictor must leave out: what it predicts here it
predicts from the *other* evidence runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from grokwatch.predict import PredictConfig, RunSeries, load_sweep, replay
from grokwatch.predict.config import Prediction
from grokwatch.predict.growth import (
    AnalogPool,
    CalibrationRun,
    Censored,
    GrowthCache,
    GrowthConfig,
    GrowthModel,
    _censored_plateau_fit,
    _plateau_fit,
    analog_state,
    calibration_run,
    censored_runs,
    extrapolations,
    fit_growth,
)
from grokwatch.predict.onset import twin_key
from grokwatch.predict.priors import auto_prior
from grokwatch.predict.score import fate_at_share, plateau_errors, window_errors

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "real_tiny"


@pytest.fixture(scope="module")
def real():
    runs = load_sweep(FIXTURE)
    return runs, replay(runs, sweep_dir=FIXTURE)


def test_every_real_run_gets_a_number_from_a_tenth_of_its_plateau(real):
    runs, preds = real
    err = plateau_errors(preds, runs)
    grokked = [r for r in runs.values() if r.events().t_grok is not None]
    assert len(grokked) == 8
    for k in ("10", "25", "50", "75"):
        assert err[k]["n_predicted"] == err[k]["n_runs"] == 8, (k, err[k])
    # the first run to grok has no grokked run of its own sweep to lean on: the prior answers
    first = min(grokked, key=lambda r: r.events().t_grok)
    e = first.events()
    early = [
        p
        for p in preds
        if p.run == first.run_id and p.kind == "t_grok" and p.step <= e.t_mem + 0.25 * (e.t_grok - e.t_mem)
    ]
    assert early and all(p.ok and p.source == "prior" for p in early)
    # measured on these runs (guards, not targets; 0.32 / 0.24 / 0.11 / 0.05 with the analog):
    # later predictions are better
    assert err["25"]["median_rel_error"] <= 0.3
    assert err["50"]["median_rel_error"] <= 0.15
    assert err["75"]["median_rel_error"] <= 0.12
    assert err["75"]["median_rel_error"] < err["25"]["median_rel_error"]
    for p in preds:
        if p.kind == "t_grok" and p.ok:
            assert p.step <= p.lo <= p.t_grok_pred <= p.hi


def test_p_groks_within_budget_ranks_the_real_runs(real):
    runs, preds = real
    f = fate_at_share(preds, runs, 0.1)
    assert f["n"] >= 5 and 0 < f["n_grokked"] < f["n"]
    assert f["auc"] >= 0.8
    fates = [p for p in preds if p.kind == "will_grok" and p.method == "plateau-survival"]
    assert fates and all(0.0 <= p.p_grok <= 1.0 for p in fates)


@pytest.mark.parametrize("rid", ["wd1.0-s02", "wd3.0-s00"])
def test_a_run_never_sees_its_twin_in_the_prior(rid):
    """Predicting a run with the shipped prior gives exactly what the prior without
    its twin gives: the twin (same trajectory, bit for bit) is never used."""
    run = load_sweep(FIXTURE)[rid]
    prior = auto_prior("tiny", None)
    twin = twin_key(run)
    assert any(twin_key(p) == twin for p in prior)  # the shipped prior does hold it
    without = [p for p in prior if twin_key(p) != twin]
    cfg = PredictConfig()
    a = replay({rid: run}, cfg, prior=prior, auto_prior=False)
    b = replay({rid: run}, cfg, prior=without, auto_prior=False)
    assert a == b and any(p.ok for p in a)


def _planted(t_grok: int, total: int = 6000, t_mem: int = 100, rate: float = 1e-3) -> RunSeries:
    """Val loss whose gap below its peak (20 at t_mem) grows exactly as exp(rate (t - t_grok)) x 19.6."""
    steps = np.arange(0, total + 1)
    peak = 20.0
    gap = 0.98 * peak * np.exp(rate * (steps - t_grok))
    val_loss = np.where(steps < t_mem, peak, np.maximum(peak - gap, 0.01))
    val_acc = np.where(steps >= t_grok, 0.99, 0.05)
    cols = {
        "step": steps,
        "train_acc": np.where(steps >= t_mem, 1.0, 0.5),
        "train_loss": np.full(len(steps), 0.01),
        "val_loss": val_loss,
        "val_acc": val_acc,
        "weight_norm": np.full(len(steps), 30.0),
    }
    return RunSeries.from_columns("r", cols, {"weight_decay": 1.0, "lr": 1e-3, "total_steps": total}, "running")


def test_the_val_loss_extrapolation_finds_a_planted_exponential():
    run = _planted(t_grok=4000)
    for t in (1500, 2500, 3500):
        x = extrapolations(run, t)
        assert x["val_loss"] == pytest.approx(4000 - t, rel=0.02)
    # a flat plateau says nothing (no growth yet), and nothing before memorization
    flat = _planted(t_grok=10**9)
    assert "val_loss" not in extrapolations(flat, 2000)
    assert extrapolations(run, 50) == {}


def test_the_plateau_prior_conditions_on_not_having_grokked():
    m = GrowthModel(a=math.log(1000), b=-1.0, sd=0.5)
    rate = 0.0  # ln(lr x wd) = 0: median plateau exp(a) = 1000
    assert m.predict({}, 101, 100, rate)[1] == pytest.approx(100 + 1000, rel=0.01)
    mids = [m.predict({}, 100 + e, 100, rate)[1] for e in (100, 1000, 3000)]
    assert mids == sorted(mids) and mids[-1] > 100 + 3000  # not grokked by then: later still
    method, mid, lo, hi = m.predict({}, 1100, 100, rate)
    assert method == "plateau-prior" and 1100 <= lo <= mid <= hi
    # P(groks within budget): grows with the budget, 0 at or before now
    ps = [m.p_within(method, mid, 1100, 100, rate, b) for b in (1100, 1500, 3000, 30_000)]
    assert ps[0] == 0.0 and ps == sorted(ps) and ps[-1] > 0.99
    # a faster rate (larger lr x wd) shortens the plateau: 1 / (lr x wd)
    assert m.predict({}, 101, 100, math.log(10))[1] == pytest.approx(100 + 100, rel=0.02)


def test_a_run_that_outlives_its_prior_is_read_off_its_own_columns():
    """Past the prior's median plateau the prior no longer votes beside the extrapolations:
    its conditional median there is "any step now", which pulled slow runs early."""
    m = GrowthModel(a=math.log(1000), b=-1.0, sd=0.5, k={"val_loss": 1.0, "val_acc": 1.0})
    x = {"val_loss": 2000.0, "val_acc": 3000.0}
    rate = 0.0  # median plateau 1000
    # inside the prior's bulk: the median of the prior and both extrapolations
    _, mid_in, _, _ = m.predict(x, 100 + 900, 100, rate)
    prior_in = m.estimates(x, 1000, 100, rate)[0]
    assert mid_in == pytest.approx(float(np.median([prior_in, 1000 + 2000, 1000 + 3000])))
    # outlived (elapsed 1500 > 1000): the extrapolations alone, however the prior reads
    method, mid_out, lo, hi = m.predict(x, 100 + 1500, 100, rate)
    assert method == "growth" and mid_out == pytest.approx(1600 + 2500) and lo <= mid_out <= hi
    assert m.estimates(x, 1600, 100, rate)[0] < 1600 + 2000  # the prior alone would say sooner
    assert bool(m.outlived(1500.0, rate)) and not bool(m.outlived(900.0, rate))
    # vectorized as the interval's residuals use it; a faster rate shortens the median plateau
    assert m.outlived(np.array([500.0, 1500.0]), np.array([0.0, 0.0])).tolist() == [False, True]
    assert bool(m.outlived(500.0, math.log(10)))


def test_the_band_is_widened_for_a_few_calibrator_runs(monkeypatch):
    """The runs, not their samples, are the draws: with 8 calibrators the band's quantiles go
    WIDEN / 8 further out than the residuals' own 10% and 90%, at every stage."""
    from grokwatch.predict import growth

    runs = load_sweep(FIXTURE)
    calibs = [c for r in runs.values() if (c := calibration_run(r, r.last_step, True, None, GrowthConfig()))]
    assert len(calibs) == 8
    wide = fit_growth(calibs)
    monkeypatch.setattr(growth, "WIDEN", 0.0)
    plain = fit_growth(calibs)
    assert wide is not None and plain is not None and set(wide.q) == set(plain.q)
    for g, (lo, hi) in plain.q.items():
        assert wide.q[g][0] <= lo <= hi <= wide.q[g][1]
    assert sum(wide.q[g][1] - wide.q[g][0] > hi - lo + 1e-9 for g, (lo, hi) in plain.q.items()) >= 2


def test_the_val_loss_steps_left_are_calibrated_as_a_power_law_where_that_earns_its_place(monkeypatch):
    from grokwatch.predict import growth
    from grokwatch.predict.growth import _calibrated

    # k x left^beta x elapsed^(1 - beta): beta 1 is the plain scale; a long reach is shortened
    assert _calibrated(2.0, 1.0, np.array([300.0]), np.array([100.0]))[0] == pytest.approx(600.0)
    assert _calibrated(1.0, 0.5, np.array([400.0]), np.array([100.0]))[0] == pytest.approx(200.0)
    assert _calibrated(1.0, 0.5, np.array([25.0]), np.array([100.0]))[0] == pytest.approx(50.0)
    assert np.isnan(_calibrated(1.0, 0.7, np.array([np.nan]), np.array([100.0]))[0])
    runs = load_sweep(FIXTURE)
    calibs = [c for r in runs.values() if (c := calibration_run(r, r.last_step, True, None, GrowthConfig()))]
    m = fit_growth(calibs)
    assert m is not None and set(m.beta) == {"val_loss"} == set(growth.POWER_ESTIMATORS)
    assert all(b != 1.0 for b in m.beta.values())  # a power of 1 is no power: not stored
    x = {"val_loss": 1500.0}
    want = 1000 + m.k["val_loss"] * 1500.0 ** m.beta["val_loss"] * 900.0 ** (1 - m.beta["val_loss"])
    assert m.estimates(x, 1000, 100, None)[1] == [pytest.approx(want)]
    monkeypatch.setattr(growth, "POWER_ESTIMATORS", ())
    assert fit_growth(calibs).beta == {}


def test_the_censored_fit_undoes_the_fastest_runs_bias():
    """Mid-sweep, the sweep's grokked runs are its fastest: fitted alone they put the plateau
    short. With the runs still on their plateau censored in, the fit finds the true one."""
    rng = np.random.default_rng(0)
    mu, sd, n = math.log(3000), 0.4, 400
    logP = rng.normal(mu, sd, n)
    now = math.log(3000)  # every run memorized at once; the sweep is 3,000 steps past that
    done = logP <= now
    rates = np.zeros(n)
    a0, _, sd0 = _plateau_fit(logP[done], rates[done], np.ones(done.sum()))
    assert a0 < mu - 0.25 and sd0 < 0.8 * sd  # the grokked half alone: short and narrow
    a, b, s = _censored_plateau_fit(
        logP[done], rates[done], np.ones(done.sum()), np.full((~done).sum(), now), rates[~done], np.ones((~done).sum())
    )
    assert a == pytest.approx(mu, abs=0.08) and s == pytest.approx(sd, rel=0.15) and b == -1.0
    # nothing censored: the plain fit
    assert _censored_plateau_fit(logP, rates, np.ones(n), np.zeros(0), np.zeros(0), np.zeros(0)) == _plateau_fit(
        logP, rates, np.ones(n)
    )


def _calib(rid, t_mem, t_grok, prior=False):
    z = np.zeros(0)
    return CalibrationRun(rid, prior, None, t_mem, t_grok, 0.0, 30.0, z.astype(np.int64), {})


def test_censored_runs_are_the_sweeps_own_on_their_plateau_when_the_newest_calibrator_grokked():
    from grokwatch.predict.series import PriorRun

    runs = {
        "fast": _run_cols("fast", 100, 1000),
        "slow": _run_cols("slow", 100, 6000),
        "waiting": _run_cols("waiting", 200, None),
        "early": _run_cols("early", None, None),  # never memorized: no plateau to censor
    }
    prior = PriorRun.of(_run_cols("p", 100, 500))
    pool = [*runs.values(), prior]
    # only prior calibrators: nothing is censored
    assert censored_runs(pool, [_calib("p", 100, 500, prior=True)]) == []
    # the sweep's "fast" grokked at 1,000: "slow" and "waiting" were on their plateau then
    got = censored_runs(pool, [_calib("p", 100, 500, prior=True), _calib("fast", 100, 1000)])
    assert sorted(c.elapsed for c in got) == [800.0, 900.0]
    assert all(isinstance(c, Censored) and c.rate is not None for c in got)
    # the same calibrators give the same censored runs whatever the step asked at (replay = live)
    assert censored_runs(pool, [_calib("fast", 100, 1000)]) == got


def _run_cols(rid, t_mem, t_grok, total=8000):
    steps = np.arange(1, total + 1)
    train = np.where(steps >= (t_mem if t_mem is not None else total + 1), 1.0, 0.3)
    val = np.where(steps >= (t_grok if t_grok is not None else total + 1), 1.0, 0.05)
    cols = {"step": steps, "train_acc": train, "val_acc": val, "train_loss": np.full(total, 0.01)}
    return RunSeries.from_columns(rid, cols, {"weight_decay": 1.0, "lr": 1e-3, "total_steps": total}, "running")


def test_the_shipped_tiny_prior_fits_a_physical_model():
    cache = GrowthCache()
    calibs = cache.calibrations(auto_prior("tiny", None), 0, twin_key)
    assert len(calibs) == 23
    m = fit_growth(calibs)
    assert m is not None and m.n_prior == 23 and m.source == "prior"
    assert -1.3 <= m.b <= -0.8  # plateau ~ 1 / (lr x wd)
    assert 0.2 <= m.sd <= 0.8
    assert "val_loss" in m.k  # the extrapolations that beat the prior on these runs
    assert "analog" in m.k and m.analog is not None and len(m.analog.y) >= 20 * 25
    assert 25 <= m.w_crit <= 30
    q10, q90 = m.q["all"]
    assert q10 < 0 < q90  # a band on both sides of the prediction


def _progress_run(plateau: int, t_mem: int = 100, lr: float = 1e-3, wd: float = 1.0) -> RunSeries:
    """A run whose columns depend only on the plateau share f = (t - t_mem) / plateau:
    val loss falls as 20 (1 - 0.9 f^2), the weight norm as 40 exp(-0.3 f); it groks at f = 1."""
    steps = np.arange(0, t_mem + plateau + 300)
    f = np.clip((steps - t_mem) / plateau, 0.0, None)
    cols = {
        "step": steps,
        "train_acc": np.where(steps >= t_mem, 1.0, 0.5),
        "train_loss": np.full(len(steps), 0.01),
        "val_loss": np.where(f < 1, 20 * (1 - 0.9 * np.minimum(f, 1) ** 2), 0.05),
        "val_acc": np.where(f >= 1, 0.99, 0.05),
        "weight_norm": 40 * np.exp(-0.3 * np.minimum(f, 1)),
    }
    cfg = {"weight_decay": wd, "lr": lr, "total_steps": int(steps[-1])}
    return RunSeries.from_columns(f"p{plateau}", cols, cfg, "running")


def test_analog_state_reads_where_a_planted_run_stands():
    run = _progress_run(2000)
    t_mem = run.events().t_mem
    assert t_mem == 100 and run.events().t_grok == 2100
    x = analog_state(run, 1100, t_mem)  # half way
    assert x is not None
    assert x[0] == pytest.approx(math.log(1000 * 1e-3 * 1.0))  # elapsed x lr x wd
    assert math.exp(x[1]) - 1e-3 == pytest.approx(0.9 * 0.25, rel=0.05)  # val loss fell 22.5% below its peak
    assert x[2] == pytest.approx(-0.3 * 0.5, rel=0.01)  # ln w / w(t_mem)
    assert x[3] == pytest.approx(-0.3 * 0.5, rel=0.01)  # d ln w / d step x elapsed
    assert analog_state(run, 105, t_mem) is None  # too few evaluations yet


def test_the_analog_reads_a_plateaus_progress_not_its_length():
    """Calibrators whose columns say how far along their plateaus are (and differ in
    length): a run of a length none of them had is read off their samples at the same
    progress, so its predicted t_grok is right from early on."""
    cfg = GrowthConfig()
    calibs = [calibration_run(_progress_run(p), 10**6, True, None, cfg) for p in (800, 1000, 1400, 2000, 2600, 3200)]
    assert all(c is not None for c in calibs)
    pool = AnalogPool.of(calibs)
    assert pool is not None and pool.k >= 5
    target = _progress_run(1700)
    for share in (0.25, 0.5, 0.75):
        t = 100 + int(share * 1700)
        x = analog_state(target, t, 100)
        plateau = pool.plateau(x[None, :], np.array([float(t - 100)]), math.log(1e-3))[0]
        assert plateau == pytest.approx(1700, rel=0.12), share
    # a calibrator read with its own samples excluded still lands near its own plateau,
    # from its neighbours' (the k-fit and the keep test use only these)
    i = 3
    own = pool.lefts(calibs[i], exclude=i) + (calibs[i].t - calibs[i].t_mem)
    mid = len(own) // 2
    assert own[mid] == pytest.approx(2000, rel=0.2)
    assert not np.allclose(own, pool.lefts(calibs[i]) + (calibs[i].t - calibs[i].t_mem))
    # no answer, never a guess: a state with NaN (a column missing), a run of unknown lr x wd,
    # or one whose lr x wd no two calibrators share (within a factor 1.5)
    e = np.array([850.0])
    assert np.isnan(pool.plateau(np.full((1, 4), np.nan), e, math.log(1e-3))[0])
    x = analog_state(target, 950, 100)[None, :]
    assert np.isnan(pool.plateau(x, e, None)[0])
    assert np.isnan(pool.plateau(x, e, math.log(3e-3))[0])
    assert np.isfinite(pool.plateau(x, e, math.log(1.4e-3))[0])


def test_mid_plateau_errors_pool_every_prediction_made_in_the_window():
    runs = {"a": _progress_run(1000), "b": _progress_run(2000)}
    runs["a"].run_id, runs["b"].run_id = "a", "b"
    assert runs["a"].events().t_grok == 1100  # window 40-60%: steps 500..700
    preds = [
        Prediction("a", 450, "t_grok", "growth", 5000.0, 400.0, 6000.0),  # before the window
        Prediction("a", 500, "t_grok", "growth", 1000.0, 900.0, 1050.0),  # 100 / 1100 off, band misses
        Prediction("a", 600, "t_grok", "growth", 1100.0, 1000.0, 1200.0),  # exact
        Prediction("a", 700, "t_grok", "growth", 1320.0, 1000.0, 1400.0),  # 0.2 off
        Prediction("a", 800, "t_grok", "growth", 9000.0, 8000.0, 9900.0),  # after it
        Prediction("b", 300, "t_grok", "growth", 2100.0, 2000.0, 2200.0),  # b: none in its window
    ]
    w = window_errors(preds, runs, 0.4, 0.6)
    assert (w["n_runs"], w["n_with"], w["n_predictions"]) == (2, 1, 3)
    assert w["median_rel_error"] == pytest.approx(100 / 1100)
    assert w["within_20"] == pytest.approx(1.0)
    assert w["interval_coverage"] == pytest.approx(2 / 3)
