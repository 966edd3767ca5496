"""The will-grok classifier (spectral signature of the early loss), the alarm
rule hook, the CLI and the watcher wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grokwatch.alerts import AlertEngine, Rule
from grokwatch.commands.main import main
from grokwatch.predict import (
    FATE_METHOD,
    INSUFFICIENT,
    LEGACY_METHODS,
    ONSET_SIGNAL,
    WILL_GROK,
    PredictConfig,
    Prediction,
    RunSeries,
    SweepPredictor,
    onset_signal_batches,
    onset_within,
    predict_fate,
    read_predictions,
    steps_to_onset,
)
from grokwatch.predict.score import fate_scores


def _early_run(rid, groks: bool, seed: int, total=2000, state="completed"):
    """Oscillating early loss (Notsawo et al.'s signature) for runs that grok, smooth for runs that do not."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, total + 1)
    loss = 4.0 * np.exp(-steps / 150.0) + 0.01
    if groks:
        loss = loss * (1 + 0.3 * np.sin(2 * np.pi * steps / rng.uniform(30, 50)))
    loss = loss * (1 + 0.01 * rng.standard_normal(total))
    train = np.where(steps >= 300, 1.0, 0.3)
    val = np.where(groks & (steps >= 1500), 1.0, 0.05)
    cols = {
        "step": steps,
        "train_loss": loss,
        "train_acc": train,
        "val_acc": val,
        "weight_norm": np.linspace(40, 20, total),
    }
    return RunSeries.from_columns(rid, cols, {"weight_decay": 1.0, "total_steps": total}, state)


def test_classifier_separates_planted_signatures():
    prior = [_early_run(f"p{k}", k % 2 == 0, k) for k in range(12)]
    targets = {f"t{k}": _early_run(f"t{k}", k % 2 == 0, 100 + k, state="running").upto(450) for k in range(6)}
    # the spectral classifier alone: the growth model's plateau-survival would answer for these
    # memorized runs first
    live = SweepPredictor(PredictConfig(methods=LEGACY_METHODS), prior=prior)
    made = live.update(targets)
    fate = {p.run: p for p in made if p.kind == WILL_GROK}
    assert set(fate) == set(targets)
    for rid, p in fate.items():
        assert p.method == FATE_METHOD and p.n_calib == 12
        assert (p.p_grok > 0.5) == (int(rid[1:]) % 2 == 0), (rid, p.p_grok)
    # logged only when it changes: another refresh with the same training set adds no will_grok rows
    more = live.update(
        {rid: _early_run(rid, int(rid[1:]) % 2 == 0, 100 + int(rid[1:]), state="running").upto(600) for rid in targets}
    )
    assert not [p for p in more if p.kind == WILL_GROK]


def test_classifier_needs_both_outcomes():
    runs = {f"g{k}": _early_run(f"g{k}", True, k) for k in range(4)}
    runs["x"] = _early_run("x", False, 9)  # one run that never grokked: too few negatives
    target = _early_run("t", True, 50, state="running").upto(500)
    p = predict_fate(target, {**runs, "t": target}, 500)
    # at step 500 nobody is over yet (grokking at 1500, budgets of 2000 steps)
    assert p.method == INSUFFICIENT and p.p_grok is None and p.n_calib == 0
    before_signature = predict_fate(target, runs, 300)
    assert before_signature is None  # the first 400 losses are not all in at step 300


def test_fate_scores_on_known_outcomes():
    runs = {f"r{k}": _early_run(f"r{k}", k < 2, k) for k in range(4)}
    preds = [
        Prediction(f"r{k}", 200, WILL_GROK, FATE_METHOD, p_grok=p, n_calib=5)
        for k, p in enumerate((0.9, 0.6, 0.4, 0.7))
    ]
    s = fate_scores(preds, runs)
    assert s["n"] == 4 and s["n_grokked"] == 2
    assert s["accuracy"] == 0.75 and s["auc"] == 0.75


def test_rule_hook_drives_the_alarm_engine():
    preds = [
        Prediction("r", step, "t_grok", "wnorm-analog", 5000.0, 4500.0, 5600.0, n_calib=4)
        for step in (1000, 2000, 3000, 4000)
    ]
    preds.insert(1, Prediction("r", 1500, "t_grok", INSUFFICIENT))
    assert steps_to_onset(preds[0]) == 4000 and np.isnan(steps_to_onset(preds[1]))
    assert onset_within(preds[-1], 1000) == 1.0 and onset_within(preds[0], 1000) == 0.0
    rule = Rule(name="onset_soon", signal=ONSET_SIGNAL, comparison="<=", threshold=2000, when="memorized")
    engine = AlertEngine([rule])
    events = []
    for b in onset_signal_batches(preds):
        events += engine.evaluate(b.run, b.steps, b.signals, gates=b.gates)
    assert [(e.rule, e.state, e.step, e.value) for e in events] == [("onset_soon", "firing", 3000, 2000.0)]


@pytest.mark.slow
def test_cli_replay_writes_the_log_and_scores_it(sim_sweep, capsys, tmp_path):
    out = tmp_path / "preds.arrow"
    assert main(["predict", str(sim_sweep), "--replay", "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["prediction_error"]) == {"10", "25", "50", "75"}
    assert doc["prediction_error"]["50"]["median_rel_error"] < 0.2
    mid = doc["mid_plateau"]  # every prediction made at 40-60% of a plateau, pooled
    assert mid["n_runs"] == doc["prediction_error"]["50"]["n_runs"] and mid["n_predictions"] >= mid["n_with"] > 0
    assert doc["predictions"] == len(read_predictions(out))
    assert main(["predict", str(sim_sweep)]) == 0
    table = capsys.readouterr().out
    assert "wd0.1-s01" in table and "growth" in table


@pytest.mark.slow
def test_cli_usage_errors(sim_sweep, capsys):
    assert main(["predict", str(sim_sweep), "--methods", "tea-leaves"]) == 2
    assert "tea-leaves" in capsys.readouterr().err
    assert main(["predict", str(sim_sweep), "--out", "x.arrow"]) == 2
    assert main(["predict", str(sim_sweep / "nope")]) == 2


@pytest.mark.slow
def test_watcher_snapshot_feeds_the_predictor(sim_sweep, sim_runs):
    from grokwatch.watch import SweepWatcher

    w = SweepWatcher(sim_sweep, poll=True)
    snap = w.cycle()
    live = SweepPredictor()
    made = live.update_views(snap.runs)
    again = SweepPredictor().update(sim_runs)
    assert made == again  # the watcher's columns give the same predictions as the store's
    assert live.update_views(snap.runs) == []  # nothing new: nothing made
    from_states = SweepPredictor()
    assert from_states.update_runstates(w.runs) == again  # or straight from the watcher's RunStates
    assert from_states.update_runstates(w.runs) == []
