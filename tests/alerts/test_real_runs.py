"""The default alarm rules on real training runs (a committed fixture).

``tests/fixtures/real_tiny/`` holds runs of the evidence sweep (tiny preset,
real CPU training; ``bench/evidence_fixture.py`` cut them, docs/evidence/ has
the whole sweep): their scalars, HTSR probes, and H0 summaries of the Rips
construction (post hoc, every 200 steps up to step 3,000, then every 1,000).
These are the real-data counterparts of the simulated-sweep alarm tests: the
defaults were chosen on this evidence, and these tests keep them honest.

Runs are scored as the evidence report scores them with the demo's budget of
8,000 steps: a run that groks by then is a positive (warned if an
early-warning rule fired in [t_mem, t_grok)); a run that has not grokked by
then is a negative (a false alarm if one fired in [t_mem, 8,000]).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grokwatch.alerts import AlertEngine, load_rules
from grokwatch.report.data import load_runs

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "real_tiny"
BUDGET = 8000
LIFECYCLE = {"memorized", "grokked", "anti_grokking", "diverged", "stalled", "restarted_from_scratch"}


@pytest.fixture(scope="module")
def runs():
    if not FIXTURE.is_dir():
        pytest.fail(f"the real-run fixture {FIXTURE} is missing (bench/evidence_fixture.py writes it)")
    got = load_runs(FIXTURE)
    assert len(got) >= 6
    return got


def _early_firings(run, rules) -> list[int]:
    engine = AlertEngine(rules)
    out = []
    for b in run.batches:
        for e in engine.evaluate(run.run_id, b.steps, b.signals, now=0.0, gates=b.gates):
            if e.state == "firing" and e.rule not in LIFECYCLE:
                out.append(int(e.step))
    return sorted(out)


def _split(runs):
    pos, neg = {}, {}
    for rid, r in runs.items():
        i = r.info
        if i.t_mem is None:
            continue
        if i.t_grok is not None and i.t_grok <= BUDGET:
            pos[rid] = r
        else:
            neg[rid] = r
    return pos, neg


def test_the_fixture_is_real_and_mixed(runs):
    pos, neg = _split(runs)
    assert len(pos) >= 3 and len(neg) >= 2
    for r in runs.values():
        cfg = r.config
        assert cfg.preset == "tiny" and "simulated" not in cfg.extra  # trained, not simulated
        assert len(r.scalars["step"]) >= 1000  # every step, as the trainer logs


def test_default_rules_warn_before_most_groks_and_rarely_on_runs_that_do_not(runs):
    rules = [r for n, r in load_rules().items() if n not in LIFECYCLE]
    pos, neg = _split(runs)
    warned = {rid for rid, r in pos.items() if any(r.info.t_mem <= s < r.info.t_grok for s in _early_firings(r, rules))}
    false = {rid for rid, r in neg.items() if any(r.info.t_mem <= s <= BUDGET for s in _early_firings(r, rules))}
    assert len(warned) > len(pos) / 2, f"warned before t_grok on {sorted(warned)} of {sorted(pos)}"
    assert len(false) < len(neg) / 2, f"false alarms on {sorted(false)} of {sorted(neg)}"


def test_h0_of_the_default_construction_is_alive_on_real_plateaus(runs):
    alive = total = 0
    for r in runs.values():
        pr = r.probes
        steps = np.asarray(pr["step"])
        ent = np.asarray(pr["h0_entropy"], dtype=float)
        end = r.info.t_grok if r.info.t_grok is not None else steps[-1] + 1
        on = (steps >= r.info.t_mem) & (steps < end) & np.isfinite(ent)
        alive += int(np.sum(ent[on] > 0))
        total += int(on.sum())
    assert total >= 20 and alive / total >= 0.9


def test_htsr_rule_keeps_quiet_on_runs_that_never_anti_grok(runs):
    """Small matrices fit alpha < 2 from the first probe; the crossing rule must not fire."""
    rules = {n: r for n, r in load_rules().items() if n == "htsr_alpha_below_2"}
    assert rules, "the htsr_alpha_below_2 rule is a default"
    for r in runs.values():
        assert r.info.t_anti is None
        assert _early_firings(r, list(rules.values())) == [], r.run_id


@pytest.mark.slow
def test_alerts_once_on_the_real_runs(tmp_path):
    """The daemon, as a user runs it, on a copy of the real runs."""
    sweep = tmp_path / "real"
    shutil.copytree(FIXTURE, sweep)
    out = subprocess.run(
        [sys.executable, "-m", "grokwatch", "alerts", str(sweep), "--once"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    early = {e["run"] for e in events if e.get("state") == "firing" and e.get("rule") not in LIFECYCLE}
    assert early, "no early-warning alarm on real runs"
