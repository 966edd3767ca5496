"""``grokwatch alerts`` end to end: a simulated sweep, real sinks, real processes."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from alert_helpers import ID, flat_run, wait_for

from grokwatch.alerts.journal import read_jsonl
from grokwatch.sim.simulate import simulate_sweep

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE = {"memorized", "grokked", "anti_grokking", "diverged", "stalled"}
RULE_ALARMS = {"weight_norm_near_critical", "persistence_entropy_shift", "htsr_alpha_below_2", "correlation_trap"}
FAST = ["--backoff", "0.05s", "--max-tries", "1000", "--rate", "6000", "--heartbeat-every", "0.5s"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grokwatch", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "grokwatch", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> tuple[str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return out, err


def journal(sweep: Path) -> list[dict]:
    return read_jsonl(sweep / ".grokwatch" / "alarms.jsonl")


def owed(sweep: Path) -> set[str]:
    return {r["id"] for r in journal(sweep) if r["notify"]}


def all_delivered(sweep: Path, n_channels: int = 1) -> bool:
    done = collections.Counter(d["id"] for d in read_jsonl(sweep / ".grokwatch" / "deliveries.jsonl") if d["ok"])
    return all(done[i] >= n_channels for i in owed(sweep))


@pytest.fixture
def sweep(tmp_path):
    return simulate_sweep(tmp_path, "s", runs=6, steps=4000, seed=1)


@pytest.mark.slow
def test_once_delivers_every_event_exactly_once(sweep, webhook, smtp):
    out = cli("alerts", str(sweep), "--once", "--notify", webhook.url, "--notify", smtp.url, *FAST)
    assert out.returncode == 0, out.stderr
    printed = [json.loads(line) for line in out.stdout.splitlines()]
    recs = journal(sweep)
    assert printed == recs and recs
    for r in printed:
        assert {"run", "rule", "state", "step", "value", "threshold", "severity", "time"} <= set(r)
        assert r["state"] in ("firing", "resolved")
    rules = {r["rule"] for r in recs if r["state"] == "firing"}
    assert LIFECYCLE | RULE_ALARMS <= rules
    firing = [r["id"] for r in recs if r["state"] == "firing"]
    assert len(set(r["id"] for r in recs)) == len(recs)
    assert collections.Counter(webhook.ids()) == collections.Counter(firing)
    assert collections.Counter(smtp.ids()) == collections.Counter(firing)
    # Run again: nothing new is printed, journaled or sent.
    again = cli("alerts", str(sweep), "--once", "--notify", webhook.url, "--notify", smtp.url, *FAST)
    assert again.returncode == 0 and again.stdout == "" and journal(sweep) == recs
    assert collections.Counter(webhook.ids()) == collections.Counter(firing)
    hb = json.loads((sweep / ".grokwatch" / "heartbeat.json").read_text())
    assert hb["runs"] == 6 and hb["state"] == "stopped"


def _live_sim(root: Path, speed: float, steps: int = 4000) -> tuple[threading.Thread, threading.Event]:
    stop_ev = threading.Event()
    t = threading.Thread(
        target=simulate_sweep,
        args=(root, "live"),
        kwargs=dict(runs=6, steps=steps, seed=2, speed=speed, flush_seconds=0.2, stop=stop_ev),
    )
    t.start()
    return t, stop_ev


@pytest.mark.slow
def test_notifier_down_then_up_delivers_everything_once(tmp_path, webhook):
    webhook.status = 500
    sim, stop_sim = _live_sim(tmp_path, speed=2000)
    sweep = tmp_path / "live"
    assert wait_for(lambda: sweep.is_dir(), 10)
    proc = start("alerts", str(sweep), "--notify", webhook.url, "--stall-timeout", "3s", *FAST)
    try:
        assert wait_for(lambda: len(webhook.requests) >= 3, 15)  # failing for a while
        webhook.down()  # now refusing connections
        time.sleep(0.5)
        webhook.up()
        webhook.status = 200
        sim.join(60)
        assert wait_for(lambda: "stalled" in {r["rule"] for r in journal(sweep)} and all_delivered(sweep), 30)
    finally:
        stop_sim.set()
        out, err = stop(proc)
    assert proc.returncode == 0, err
    recs = journal(sweep)
    firing = [r["id"] for r in recs if r["state"] == "firing"]
    assert collections.Counter(webhook.ids()) == collections.Counter(firing)
    assert LIFECYCLE <= {r["rule"] for r in recs}
    assert [json.loads(x)["id"] for x in out.splitlines()] == [r["id"] for r in recs]


@pytest.mark.slow
def test_sigkill_and_restart_neither_repeats_nor_loses(tmp_path, webhook):
    sim, stop_sim = _live_sim(tmp_path, speed=600, steps=6000)  # ~10 s: the kill lands mid-sweep
    sweep = tmp_path / "live"
    assert wait_for(lambda: sweep.is_dir(), 10)
    args = ("alerts", str(sweep), "--notify", webhook.url, "--stall-timeout", "3s", *FAST)
    proc = start(*args)
    try:
        # Mid-sweep, between two sends (a kill *during* a send is the next test).
        assert wait_for(lambda: len(journal(sweep)) >= 4 and all_delivered(sweep), 30)
        assert sim.is_alive()
        proc.kill()  # SIGKILL: no cleanup, the lock stays behind
        proc.wait(10)
        before = len(journal(sweep))
        proc = start(*args)
        sim.join(60)
        assert wait_for(lambda: "stalled" in {r["rule"] for r in journal(sweep)} and all_delivered(sweep), 30)
    finally:
        stop_sim.set()
        out, err = stop(proc)
    assert proc.returncode == 0, err
    recs = journal(sweep)
    assert len(recs) > before
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids))  # nothing journaled twice
    firing = [r["id"] for r in recs if r["state"] == "firing"]
    assert collections.Counter(webhook.ids()) == collections.Counter(firing)  # delivered exactly once
    # A third start finds nothing new to say ...
    ref = cli("alerts", str(sweep), "--once", "--stall-timeout", "3s")
    assert ref.returncode == 0 and ref.stdout == "", ref.stderr
    # ... and nothing was lost: a fresh evaluation of the finished sweep finds the same alarms.
    fresh = _fresh_copy(sweep, tmp_path / "copy")
    again = cli("alerts", str(fresh), "--once", "--stall-timeout", "3s")
    key = lambda r: (r["run"], r["rule"], r["state"], r["step"])  # noqa: E731
    expected = {key(json.loads(x)) for x in again.stdout.splitlines()}
    got = {key(r) for r in recs}
    assert {k for k in expected if k[1] != "stalled"} == {k for k in got if k[1] != "stalled"}


@pytest.mark.slow
def test_kill_during_a_send_resends_at_most_that_message(sweep, webhook):
    """At-least-once at the edge: the receiver got a message but the daemon died
    before journaling the delivery. That one message is sent again; nothing else."""
    webhook.delay = 3.0  # the receiver records the POST, then takes 3 s to answer
    args = ("alerts", str(sweep), "--notify", webhook.url, "--rate", "6000")
    proc = start(*args)
    try:
        assert wait_for(lambda: len(webhook.requests) == 1, 30)  # the first send is in flight
        proc.kill()
        proc.wait(10)
        webhook.delay = 0.0
        proc = start(*args)
        assert wait_for(lambda: all_delivered(sweep), 60)
    finally:
        out, err = stop(proc)
    in_flight = set(ID.findall(webhook.requests[0]["json"]["message"]))
    firing = [r["id"] for r in journal(sweep) if r["state"] == "firing"]
    assert in_flight and set(webhook.ids()) == set(firing)  # nothing lost
    assert collections.Counter(webhook.ids()) == collections.Counter(firing + sorted(in_flight))  # only those twice


def _fresh_copy(sweep: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(sweep, dest, ignore=shutil.ignore_patterns(".grokwatch"))
    return dest


def test_test_flag_checks_every_channel(sweep, webhook, smtp, refused_url):
    ok = cli("alerts", str(sweep), "--test", "--notify", webhook.url, "--notify", smtp.url)
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(x)["ok"] for x in ok.stdout.splitlines()] == [True, True]
    assert len(webhook.delivered()) == 1 and len(smtp.messages) == 1
    bad = cli("alerts", str(sweep), "--test", "--notify", webhook.url, "--fallback", refused_url)
    assert bad.returncode == 1
    assert [json.loads(x)["ok"] for x in bad.stdout.splitlines()] == [True, False]


def test_silenced_alarms_are_logged_not_sent(sweep, webhook):
    out = cli("silence", "--source", str(sweep), "wd1.0-s01", "--for", "1h", "--comment", "known bad")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["run"] == "wd1.0-s01"
    assert cli("silence", "--source", str(sweep), "grokked", "--for", "30m").returncode == 0
    listed = cli("silence", "--list", "--source", str(sweep))
    assert len(listed.stdout.splitlines()) == 2
    assert cli("silence", "--source", str(sweep), "nosuch").returncode == 2
    run = cli("alerts", str(sweep), "--once", "--notify", webhook.url, *FAST)
    assert run.returncode == 0, run.stderr
    recs = journal(sweep)
    muted = [r for r in recs if r["run"] == "wd1.0-s01" or r["rule"] == "grokked"]
    assert muted and all(r["silenced"] and not r["notify"] for r in muted)
    sent = set(webhook.ids())
    assert sent == {r["id"] for r in recs if r["state"] == "firing" and r not in muted}


def test_one_daemon_per_sweep(sweep):
    proc = start("alerts", str(sweep), "--heartbeat-every", "0.5s")
    try:
        assert wait_for(lambda: (sweep / ".grokwatch" / "lock.json").exists(), 15)
        second = cli("alerts", str(sweep), "--once")
        assert second.returncode == 2 and "holds" in second.stderr
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert not (sweep / ".grokwatch" / "lock.json").exists()


@pytest.mark.slow
def test_rules_reload_and_watchdog(tmp_path, webhook):
    sweep = tmp_path / "sw"
    flat_run(sweep, "a")
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'include_defaults = false\n[rules.never]\nsignal = "grad_norm"\ncomparison = ">"\nthreshold = 1e9\n'
    )
    proc = start("alerts", str(sweep), "--notify", webhook.url, "--rules", str(rules), "--watchdog-every", "1s", *FAST)
    try:
        assert wait_for(lambda: any("alive" in (r["json"] or {}).get("title", "") for r in webhook.delivered()), 15)
        assert journal(sweep) == []
        rules.write_text(
            'include_defaults = false\n[rules.mem]\nsignal = "memorized"\n'
            'comparison = ">="\nthreshold = 1\nonce = true\n'
        )
        time.sleep(3.0)  # the daemon checks the file every second
        flat_run(sweep, "b")
        assert wait_for(lambda: [r["rule"] for r in journal(sweep)] == ["mem"], 15)
        assert wait_for(lambda: "b/mem/1/firing" in webhook.ids(), 10)
    finally:
        out, err = stop(proc)
    assert "reloaded 1 rule" in err
    assert journal(sweep)[0]["run"] == "b"


def test_bad_arguments_are_one_line_usage_errors(tmp_path, sweep):
    for args in (
        ["alerts", str(tmp_path / "nope")],
        ["alerts", str(sweep), "--notify", "bogus://x", "--once"],
        ["alerts", str(sweep / "wd1.0-s01")],
        ["simulate", str(tmp_path), "--runs", "0"],
    ):
        out = cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith("grokwatch: error:") and len(out.stderr.strip().splitlines()) == 1
    bad_rules = tmp_path / "bad.toml"
    bad_rules.write_text("[rules.x]\nsignal = 1\n")
    out = cli("alerts", str(sweep), "--rules", str(bad_rules), "--once")
    assert out.returncode == 2 and "rule 'x'" in out.stderr
    assert os.environ.get("GROKWATCH_NOTIFY") is None
