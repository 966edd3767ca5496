"""Onset predictions wired into the watcher and the alarm daemon: logged to
``.grokwatch/predictions.arrow`` and fed to rules on ``predicted_onset_in``."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest

from grokwatch.alerts import AlarmSubscriber
from grokwatch.alerts.daemon import AlertDaemon, DaemonOptions
from grokwatch.alerts.engine import AlertEngine
from grokwatch.alerts.rules import load_rules
from grokwatch.predict import PredictionLog, SweepPredictor, predictions_path, read_predictions
from grokwatch.predict.subscriber import PredictorSubscriber
from grokwatch.sim.simulate import simulate_sweep
from grokwatch.watch import SweepWatcher

RULE = "predicted_onset_soon"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return simulate_sweep(tmp_path_factory.mktemp("pw"), "s", runs=12, steps=6000, seed=3)


@pytest.fixture
def rules(tmp_path):
    p = tmp_path / "rules.toml"
    p.write_text(f"[rules.{RULE}]\nenabled = true\n")
    return p


def copy_sweep(sweep, dest):
    import shutil

    return shutil.copytree(sweep, dest / sweep.name, ignore=shutil.ignore_patterns(".grokwatch"))


def run_daemon(sweep, **opts) -> list[dict]:
    out = io.StringIO()
    d = AlertDaemon(sweep, DaemonOptions(poll=True, **opts), out=out)
    d.open()
    try:
        assert d.run_once() == 0
    finally:
        d.close()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_default_rules_hold_the_prediction_rule_disabled():
    assert RULE not in load_rules()


def test_daemon_logs_predictions_and_alarms(sweep, rules, tmp_path):
    sweep = copy_sweep(sweep, tmp_path)
    recs = run_daemon(sweep, rules=rules)
    assert predictions_path(sweep).exists()  # compacted on close
    preds = read_predictions(predictions_path(sweep))
    assert preds and {p.run for p in preds} <= {p.name for p in sweep.iterdir() if not p.name.startswith(".")}
    soon = [r for r in recs if r["rule"] == RULE and r["state"] == "firing"]
    assert soon, "no predicted_onset_soon alarm on a sweep with plateau runs"
    assert all(r["value"] <= 2000 and r["severity"] == "info" for r in soon)
    per_episode = Counter((r["run"], r["episode"]) for r in soon)
    assert max(per_episode.values()) == 1
    # A restarted daemon resumes the log and the engine state: nothing again.
    before = len(read_predictions(sweep))
    again = run_daemon(sweep, rules=rules)
    assert [r for r in again if r["rule"] == RULE] == []
    assert len(read_predictions(sweep)) == before


def test_no_predict(sweep, rules, tmp_path):
    sweep = copy_sweep(sweep, tmp_path)
    recs = run_daemon(sweep, rules=rules, predict=False)
    assert not predictions_path(sweep).exists() and read_predictions(sweep) == []
    assert [r for r in recs if r["rule"] == RULE] == []


def test_watcher_feeds_predictions_once(sweep, rules, tmp_path):
    sweep = copy_sweep(sweep, tmp_path)
    events: list = []
    pred = SweepPredictor(log=PredictionLog(sweep))
    alarms = AlarmSubscriber(AlertEngine(load_rules(rules)), on_events=events.extend)
    w = SweepWatcher(sweep, poll=True, subscribers=[PredictorSubscriber(pred, feed=alarms), alarms])
    w.cycle()
    first = [e for e in events if e.rule == RULE]
    assert first and pred.latest_all()
    w.cycle()  # nothing changed: no new predictions, no new alarms
    assert [e for e in events if e.rule == RULE] == first


def test_predictor_failure_is_a_warning(sweep, tmp_path):
    class Broken:
        def update_runstates(self, states, backfill=True):
            raise RuntimeError("boom")

    warnings = []
    w = SweepWatcher(
        copy_sweep(sweep, tmp_path),
        subscribers=[PredictorSubscriber(Broken()), AlarmSubscriber(AlertEngine(load_rules()))],
        poll=True,
        on_error=lambda m, e: warnings.append(m),
    )
    snap = w.cycle()
    assert len(snap.runs) == 12
    assert any("prediction failed" in m and "boom" in m for m in warnings)


def test_a_finished_sweep_teaches_its_roots_priors_once_the_watcher_sees_it_over(sweep, tmp_path):
    """The live watchers (daemon, dashboard) add a finished sweep to
    <root>/.grokwatch/priors/<preset>.arrow: the next sweep under the root starts from it."""
    from grokwatch.predict.priors import ROOT_DIR, auto_prior, read_prior

    root = tmp_path / "root"
    root.mkdir()
    done = copy_sweep(sweep, root)
    path = root / ROOT_DIR / "sim.arrow"
    pred = SweepPredictor(sweep_dir=done)
    w = SweepWatcher(done, poll=True, subscribers=[PredictorSubscriber(pred)])
    try:
        w.cycle()
    finally:
        w.close()
    assert path.is_file()
    stored = read_prior(path)[0]
    assert {s for s, _ in stored} == {done.name} and len(stored) == 12
    # the next sweep under the root gets them (not the finished sweep itself: no peeking)
    assert len(auto_prior("sim", root / "next")) > len(auto_prior("sim", done))
    # once per predictor: a second look writes nothing
    path.unlink()
    assert pred.remember_if_over() is None and not path.exists()


def test_a_sweep_still_running_teaches_nothing(sweep, tmp_path):
    import json as _json

    from grokwatch.predict.priors import ROOT_DIR

    root = tmp_path / "root"
    root.mkdir()
    live = copy_sweep(sweep, root)
    # a run that never grokked, its budget raised and its status back to running: it is open
    run = next(
        p
        for p in sorted(live.iterdir())
        if (p / "run.json").exists()
        and _json.loads((p / "run.json").read_text())["simulated"].get("t_grok") is None
        and _json.loads((p / "status.json").read_text())["state"] == "completed"  # not the diverged one
    )
    cfg = _json.loads((run / "run.json").read_text())
    cfg["steps"] = 10 * int(cfg["steps"])
    (run / "run.json").write_text(_json.dumps(cfg))
    st = _json.loads((run / "status.json").read_text())
    st["state"] = "running"
    (run / "status.json").write_text(_json.dumps(st))
    pred = SweepPredictor(sweep_dir=live)
    w = SweepWatcher(live, poll=True, subscribers=[PredictorSubscriber(pred)])
    try:
        w.cycle()
    finally:
        w.close()
    over = [r for r in pred._series.values() if r[1].is_over()]
    assert len(over) < 12  # the run set running (and not grokked, diverged or out of steps) is open
    assert not (root / ROOT_DIR / "sim.arrow").exists()
