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
