"""t_grok predictions on a simulated sweep whose onsets are known."""

from __future__ import annotations

import numpy as np
import pytest

from grokwatch.predict import (
    INSUFFICIENT,
    LEGACY_METHODS,
    T_GROK,
    PredictConfig,
    RunSeries,
    predict_onset,
    replay,
)
from grokwatch.predict.score import plateau_errors
from grokwatch.store import list_runs, read_run_config


@pytest.fixture(scope="module")
def sim_preds(sim_runs):
    return replay(sim_runs)


@pytest.mark.slow  # the simulated sweep: ~3 s to write
def test_events_match_the_simulation_truth(sim_sweep, sim_runs):
    for d in list_runs(sim_sweep):
        truth = read_run_config(d)["simulated"]
        e = sim_runs[d.name].events()
        assert e.t_mem == truth["t_mem"]
        assert e.t_grok == truth["t_grok"]


@pytest.mark.slow  # the simulated sweep: ~3 s to write
def test_predictions_at_half_plateau_land_within_20_percent(sim_runs, sim_preds):
    err = plateau_errors(sim_preds, sim_runs)
    half = err["50"]
    grokked = half["n_runs"]
    assert grokked >= 25
    within = sum(1 for v in half["errors"].values() if v <= 0.2)
    # most runs that grokked: more than half of them, counting runs without a number as misses
    assert within > grokked / 2, half
    assert half["median_rel_error"] < 0.1
    # later predictions have a number more often and are no worse
    assert err["75"]["n_predicted"] >= half["n_predicted"] >= err["25"]["n_predicted"]
    assert err["75"]["median_rel_error"] <= 0.1


@pytest.mark.slow  # the simulated sweep: ~3 s to write
def test_every_number_has_an_interval_and_a_method(sim_preds):
    onset = [p for p in sim_preds if p.kind == T_GROK]
    assert onset
    for p in onset:
        if p.method == INSUFFICIENT:
            assert p.t_grok_pred is None and p.lo is None and p.hi is None
        else:
            assert p.lo <= p.t_grok_pred <= p.hi
            assert p.lo >= p.step  # not grokked by the step it was made at
            assert p.n_calib >= 3


@pytest.mark.slow  # the simulated sweep: ~3 s to write
def test_predictions_only_on_the_plateau(sim_runs, sim_preds):
    for p in sim_preds:
        if p.kind != T_GROK:
            continue
        e = sim_runs[p.run].events()
        assert e.t_mem is not None and e.t_mem <= p.step
        assert e.t_grok is None or p.step < e.t_grok
        assert e.t_diverged is None or p.step < e.t_diverged


@pytest.mark.slow  # the simulated sweep: ~3 s to write
def test_calibrators_are_runs_grokked_by_then(sim_runs, sim_preds):
    # n_calib never exceeds the number of other runs that had grokked by the step, plus the
    # prior's grokked runs (the simulator's shipped prior, grokwatch/priors/sim.arrow)
    from grokwatch.predict.priors import auto_prior

    n_prior = sum(1 for r in auto_prior("sim", None) if r.events().t_grok is not None)
    assert n_prior >= 20
    t_groks = {rid: r.events().t_grok for rid, r in sim_runs.items()}
    for p in sim_preds:
        if p.kind == T_GROK:
            known = sum(1 for rid, tg in t_groks.items() if rid != p.run and tg is not None and tg <= p.step)
            assert p.n_calib <= known + n_prior
    # and without the prior, only the sweep's own runs grokked by then
    for p in replay(sim_runs, auto_prior=False):
        if p.kind == T_GROK:
            known = sum(1 for rid, tg in t_groks.items() if rid != p.run and tg is not None and tg <= p.step)
            assert p.n_calib <= known


def _run(rid, wd, t_mem, t_grok, total=10_000, decay=2e-4, w0=40.0):
    """A hand-made run: memorizes at t_mem, weight norm decays exponentially, groks at t_grok (or never)."""
    steps = np.arange(1, total + 1)
    train = np.where(steps >= t_mem, 1.0, 0.5)
    val = np.where((t_grok is not None) & (steps >= (t_grok or 0)), 1.0, 0.1)
    w = np.where(steps < t_mem, w0, w0 * np.exp(-decay * (steps - t_mem)))
    cols = {"step": steps, "train_acc": train, "val_acc": val, "train_loss": np.full(total, 0.01), "weight_norm": w}
    return RunSeries.from_columns(rid, cols, {"weight_decay": wd, "total_steps": total}, "completed")


def test_insufficient_data_without_enough_grokked_runs():
    target = _run("t", 1.0, 100, None, decay=1e-4)
    others = {"a": _run("a", 1.0, 100, 3000), "b": _run("b", 1.0, 100, 3500)}
    runs = {"t": target, **others}
    for cfg in (PredictConfig(), PredictConfig(methods=LEGACY_METHODS)):
        p = predict_onset(target, runs, 5000, cfg)
        assert p.method == INSUFFICIENT and p.t_grok_pred is None and p.n_calib == 2
        # before anyone grokked, there is nothing at all to go on
        p = predict_onset(target, runs, 2000, cfg)
        assert p.method == INSUFFICIENT and p.n_calib == 0
    # with a third grokked run the growth model answers (these hand-made runs have no validation
    # curve: the plateau prior, with the target still on its plateau at 3,900 steps censored in
    # it, and the weight norm's decay to the critical norm, which beats that prior on the
    # three), and without it the analog
    runs["c"] = _run("c", 1.0, 100, 4000)
    p = predict_onset(target, runs, 5000)
    assert p.method == "growth" and p.n_calib == 3 and p.source == "sweep"
    assert p.lo <= p.t_grok_pred <= p.hi and p.lo >= 5000
    p = predict_onset(target, runs, 5000, PredictConfig(methods=LEGACY_METHODS))
    assert p.method == "wnorm-analog" and p.n_calib == 3


def test_not_on_plateau_gives_no_prediction():
    r = _run("r", 1.0, 500, 3000)
    assert predict_onset(r, {"r": r}, 400) is None  # still learning
    assert predict_onset(r, {"r": r}, 3000) is None  # grokked
    assert predict_onset(r, {"r": r}, 20_000) is None  # no data that far


def test_analog_recovers_a_time_scaled_decay():
    # Runs that differ only by their time scale: t_grok - t_mem proportional to 1 / decay rate.
    runs = {
        f"c{k}": _run(f"c{k}", 1.0, 100, 100 + int(3000 * f), decay=2e-4 / f) for k, f in enumerate((0.8, 1.0, 1.2))
    }
    target = _run("t", 1.0, 100, None, total=20_000, decay=2e-4 / 2.0)  # would grok at 100 + 6000
    runs["t"] = target
    p = predict_onset(target, runs, 100 + 4000, PredictConfig(methods=LEGACY_METHODS))
    assert p.method == "wnorm-analog"
    assert abs(p.t_grok_pred - 6100) / 6100 < 0.02
    assert p.lo <= 6100 <= p.hi


def test_fallback_order_and_method_choice():
    runs = {f"c{k}": _run(f"c{k}", 1.0, 100, 1000 + 100 * k) for k in range(3)}  # plateaus 900, 1000, 1100
    target = _run("t", 1.0, 1000, None)  # memorized later; same decay: groks at 2000
    runs["t"] = target
    only_ratio = PredictConfig(methods=("plateau-ratio",))
    p = predict_onset(target, runs, 2500, only_ratio)
    assert p.method == INSUFFICIENT  # every calibrator's plateau is shorter than the target's so far
    p = predict_onset(target, runs, 1500, only_ratio)
    assert p.method == "plateau-ratio" and p.t_grok_pred == pytest.approx(2000, rel=0.01)
    extrap = predict_onset(target, runs, 1500, PredictConfig(methods=("wnorm-extrapolation",)))
    assert extrap.method == "wnorm-extrapolation"
    assert extrap.t_grok_pred == pytest.approx(2000, rel=0.02)
    # the default order: the growth model answers first; without it, the analog
    assert predict_onset(target, runs, 1500).method in ("growth", "plateau-prior")
    assert predict_onset(target, runs, 1500, PredictConfig(methods=LEGACY_METHODS)).method == "wnorm-analog"
    # a weight decay with no calibrators of its own: plateau-ratio scales by wd (plateau x wd / wd_target)
    half = _run("h", 0.5, 1000, None, decay=1e-4)
    p = predict_onset(half, {**runs, "h": half}, 1500, only_ratio)
    assert p.method == "plateau-ratio" and p.t_grok_pred == pytest.approx(3000, rel=0.01)
    with pytest.raises(ValueError):
        PredictConfig(methods=("crystal-ball",))


@pytest.mark.slow
def test_a_prior_sweep_calibrates_from_the_first_step(sim_runs, tmp_path):
    from grokwatch.predict import load_sweep
    from grokwatch.sim.simulate import simulate_sweep

    prior = load_sweep(simulate_sweep(tmp_path, "earlier", runs=12, steps=20_000, seed=5)).values()
    preds = replay(sim_runs, prior=prior)
    err = plateau_errors(preds, sim_runs)
    for k in ("25", "50", "75"):
        assert err[k]["coverage"] >= 0.9, (k, err[k])
        assert err[k]["median_rel_error"] < 0.1
    # prior runs lend themselves but are never predicted for
    assert not [p for p in preds if p.run.startswith("prior:")]
    assert max(p.n_calib for p in preds if p.kind == T_GROK) > 12
