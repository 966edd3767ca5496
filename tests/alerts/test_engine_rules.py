"""Rules as TOML and the pending -> firing -> resolved state machine."""

from __future__ import annotations

import numpy as np
import pytest

from grokwatch.alerts import AlertEngine, Rule, RuleError, load_rules, parse_duration
from grokwatch.alerts.journal import Journal, read_jsonl
from grokwatch.alerts.lock import InstanceLock, LockHeld


def test_default_rules_cover_design_section_5():
    rules = load_rules()
    assert set(rules) == {
        "weight_norm_near_critical",
        "persistence_entropy_shift",
        "htsr_alpha_below_2",
        "correlation_trap",
        "memorized",
        "grokked",
        "anti_grokking",
        "diverged",
        "stalled",
        "restarted_from_scratch",
    }  # gai_spike, commutator_defect_rise and predicted_onset_soon are there too, disabled (docs/evidence)
    assert rules["htsr_alpha_below_2"].comparison == "<" and rules["htsr_alpha_below_2"].signal == "htsr_alpha_cross"
    assert rules["htsr_alpha_below_2"].when == "grokked"  # a herald of anti-grokking, after t_grok only
    assert rules["weight_norm_near_critical"].signal == "weight_norm_ratio"
    assert all(rules[n].once for n in ("memorized", "grokked", "diverged", "restarted_from_scratch"))


def test_gai_spike_ships_as_its_paper_defines_it_but_disabled(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text("[rules.gai_spike]\nenabled = true\n")
    gai = load_rules(f)["gai_spike"]
    assert (gai.signal, gai.comparison, gai.threshold, gai.for_steps) == ("gai_z", ">", 3.5, 0)
    assert "gai_spike" not in load_rules()


def test_user_rules_merge_disable_and_validate(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(
        "[rules.gai_spike]\nthreshold = 5.0\nenabled = true\n"
        "[rules.stalled]\nenabled = false\n"
        '[rules.loss_up]\nsignal = "train_loss"\ncomparison = ">"\nthreshold = 1\ncooldown = "30m"\n'
    )
    rules = load_rules(f)
    assert rules["gai_spike"].threshold == 5.0 and rules["gai_spike"].for_steps == 0
    assert "stalled" not in rules and rules["loss_up"].cooldown == 1800.0
    f.write_text('include_defaults = false\n[rules.x]\nsignal = "a"\ncomparison = ">"\nthreshold = 1\n')
    assert set(load_rules(f)) == {"x"}
    for bad in (
        '[rules.x]\nsignal = "a"\ncomparison = "~"\nthreshold = 1\n',
        '[rules.x]\nsignal = "a"\nthreshold = 1\n',
        '[rules.x]\nsignal = "a"\ncomparison = ">"\nthreshold = 1\nseverity = "meh"\n',
        '[rules.x]\nsignal = "a"\ncomparison = ">"\nthreshold = 1\nfor_step = 3\n',
        "rules = [1",
    ):
        f.write_text(bad)
        with pytest.raises(RuleError):
            load_rules(f)


def test_parse_duration():
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90 and parse_duration(5) == 5
    with pytest.raises(ValueError):
        parse_duration("soon")


def _feed(engine, run, steps, values, signal="x", **kw):
    return engine.evaluate(run, np.asarray(steps), {signal: np.asarray(values, dtype=float)}, now=1000.0, **kw)


def test_pending_firing_resolved_once_per_episode():
    e = AlertEngine([Rule("hot", "x", ">", 1.0, for_steps=3)])
    steps = np.arange(1, 21)
    v = np.zeros(20)
    v[4:6] = 2  # steps 5-6: too short, stays pending
    v[9:15] = 2  # steps 10-15: fires at 13, resolves at 16
    ev = _feed(e, "r", steps, v)
    assert [(x.state, x.step) for x in ev] == [("firing", 13), ("resolved", 16)]
    assert ev[0].id == "r/hot/1/firing" and ev[1].id == "r/hot/1/resolved"
    # The same points again (a restarted watcher re-reading shards): nothing.
    assert _feed(e, "r", steps, v) == []
    # Pending across two batches.
    ev = _feed(e, "r", [21, 22], [2, 2]) + _feed(e, "r", [23, 24], [2, 2])
    assert [(x.state, x.step, x.episode) for x in ev] == [("firing", 24, 2)]
    assert e.active("r")[0].state == "firing" and e.active("r")[0].since_step == 21


def test_nan_never_holds_and_inf_does():
    e = AlertEngine([Rule("hot", "x", ">", 1.0)])
    ev = _feed(e, "r", [1, 2, 3], [np.nan, np.inf, np.nan])
    assert [(x.state, x.step, x.value) for x in ev] == [("firing", 2, None), ("resolved", 3, None)]


def test_once_cooldown_and_when_gate():
    e = AlertEngine(
        [
            Rule("mem", "m", ">=", 1, once=True),
            Rule("spike", "z", ">", 3, cooldown_steps=100),
            Rule("gated", "z", ">", 3, when="m"),
        ]
    )
    steps = np.arange(1, 301)
    m = (steps >= 50).astype(float)
    z = np.zeros(300)
    z[np.isin(steps, [10, 60, 120, 200])] = 5
    ev = e.evaluate("r", steps, {"m": m, "z": z}, now=0.0)
    fired = [(x.rule, x.step) for x in ev if x.state == "firing"]
    # spike: 60 is within 100 steps of 10 (suppressed, no events), 120 is not, 200 is within 100 of 120.
    # gated: only from step 50 on (m >= 1).
    assert fired == [("spike", 10), ("mem", 50), ("gated", 60), ("gated", 120), ("spike", 120), ("gated", 200)]
    assert not any(x.rule == "spike" and x.step in (60, 200) for x in ev)
    # mem fired once and is not "active" afterwards; it never resolves.
    assert [a.rule for a in e.active("r")] == []
    assert all(x.rule != "mem" or x.state == "firing" for x in ev)


def test_state_round_trip_and_repeat_last():
    e = AlertEngine([Rule("stalled", "stalled", ">=", 1, notify_resolved=True)])
    assert [x.state for x in _feed(e, "r", [500], [1], "stalled", repeat_last=True)] == ["firing"]
    e2 = AlertEngine(e.rules)
    e2.load_dict(e.to_dict())
    assert _feed(e2, "r", [500], [1], "stalled", repeat_last=True) == []
    assert [x.state for x in _feed(e2, "r", [500], [0], "stalled", repeat_last=True)] == ["resolved"]


def test_lock_is_exclusive_and_stale_locks_are_taken(tmp_path):
    path = tmp_path / ".grokwatch" / "lock.json"
    a = InstanceLock(path)
    a.acquire()
    with pytest.raises(LockHeld):
        InstanceLock(path).acquire()
    assert a.refresh()
    # A lock left by a dead process on this host is stale at once.
    import json
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = json.loads(path.read_text())
    owner["pid"] = int(dead.stdout)
    path.write_text(json.dumps(owner))
    b = InstanceLock(path)
    b.acquire()
    assert not a.refresh()  # a lost it
    # Another host's lock is stale only when its heartbeat is old.
    owner = json.loads(path.read_text())
    owner.update(host="elsewhere", pid=1)
    path.write_text(json.dumps(owner))
    with pytest.raises(LockHeld):
        InstanceLock(path, stale_after=60).acquire()
    owner["heartbeat_unix"] -= 120
    path.write_text(json.dumps(owner))
    InstanceLock(path, stale_after=60).acquire()


def test_journal_drops_torn_lines_and_computes_the_outbox(tmp_path):
    j = Journal(tmp_path)
    j.load()
    recs = [{"id": f"e{i}", "run": "r", "notify": ["A", "B"]} for i in range(3)]
    assert len(j.append_events(recs)) == 3
    assert j.append_events(recs) == []  # ids are kept: a replay is dropped
    j.record_delivery(recs[:2], "A", True)
    j.record_delivery(recs[:1], "B", False, error="down")
    with open(j.alarms_path, "ab") as fh:
        fh.write(b'{"id": "torn", "ru')  # a crash mid-append
    j2 = Journal(tmp_path)
    j2.load()
    assert "torn" not in j2.ids and j2.alarms_path.read_bytes().endswith(b"\n")
    out = j2.outbox(["A", "B"], fallback="F")
    assert [r["id"] for r in out["A"]] == ["e2"]
    assert [r["id"] for r in out["B"]] == ["e1", "e2"]
    assert [r["id"] for r in out["F"]] == ["e0"]  # B gave e0 up: the fallback owes it
    assert len(read_jsonl(j2.alarms_path)) == 3


def test_a_rewound_batch_emits_only_the_older_history_once():
    e = AlertEngine([Rule("hot", "x", ">", 1.0)])
    steps = np.arange(1, 101)
    v = np.zeros(100)
    v[[9, 79]] = 2  # steps 10 and 80
    # the newest rows first (steps 51-100): the episode at 80
    ev = e.evaluate("r", steps[50:], {"x": v[50:]}, now=0.0)
    assert [(x.state, x.step, x.id) for x in ev] == [
        ("firing", 80, "r/hot/1/firing"),
        ("resolved", 81, "r/hot/1/resolved"),
    ]
    # then all of it, older rows included: only the episode at 10 is new
    ev = e.evaluate("r", steps, {"x": v}, now=0.0, rewound=True)
    assert [(x.state, x.step, x.id) for x in ev] == [
        ("firing", 10, "r/hot/1/firing@10"),
        ("resolved", 11, "r/hot/1/resolved@11"),
    ]
    assert e.evaluate("r", steps, {"x": v}, now=0.0, rewound=True) == []  # again: nothing
    # later episodes number on past every id already given
    ev = e.evaluate("r", [101, 102], {"x": np.array([2.0, 0.0])}, now=0.0)
    assert [x.id for x in ev] == ["r/hot/3/firing", "r/hot/3/resolved"]
    # a state persisted before `first` existed counts all it saw as seen: no duplicates
    d = e.to_dict()
    for st in d["runs"]["r"].values():
        st.pop("first")
    e2 = AlertEngine(e.rules)
    e2.load_dict(d)
    assert e2.evaluate("r", np.arange(1, 103), {"x": np.r_[v, 2.0, 0.0]}, now=0.0, rewound=True) == []
