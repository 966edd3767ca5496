"""One source of alarms: the dashboard raises what `grokwatch alerts --rules FILE`
raises, and while an alarm daemon runs on the sweep it shows the daemon's journal."""

from __future__ import annotations

import json
import os
import socket

import pytest
from tui_helpers import drive, frozen_config, screen_text, settle

from grokwatch.alerts import AlarmSubscriber, load_rules
from grokwatch.alerts.lock import InstanceLock
from grokwatch.commands.main import main
from grokwatch.sim.simulate import simulate_sweep
from grokwatch.store import list_runs
from grokwatch.store.layout import WATCHER_DIR
from grokwatch.tui.app import GrokwatchApp, make_app
from grokwatch.tui.journal import DaemonJournal

MY_RULE = """
[rules.my_only_rule]
signal = "train_loss"
comparison = "<"
threshold = 1e9
severity = "warning"
"""


@pytest.fixture
def small_sweep(tmp_path):
    return simulate_sweep(tmp_path / "root", "s", runs=3, steps=2000)


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(MY_RULE)
    return path


def run_cli_headless(monkeypatch, argv, script):
    """``grokwatch ARGV`` as a user runs it, with the app driven headless by ``script``."""
    run = GrokwatchApp.run
    seen: dict = {}

    def headless(self, **_kw):
        async def pilot(p):
            await settle(self, p)
            await script(self, p, seen)
            self.exit(0)

        return run(self, headless=True, size=(200, 30), auto_pilot=pilot)

    monkeypatch.setattr(GrokwatchApp, "run", headless)
    rc = main(argv)
    return rc, seen


@pytest.mark.parametrize("form", ["tui", "bare"])
def test_rules_file_rule_fires_in_the_dashboard(small_sweep, rules_file, monkeypatch, form):
    """`grokwatch tui SWEEP --rules FILE` (and `grokwatch SWEEP --rules FILE`) raise the
    rule that only FILE has, on every run, in the alarm feed and the table."""

    async def script(app, pilot, seen):
        await pilot.press("a")
        await settle(app, pilot)
        seen["feed"] = screen_text(app)
        seen["model"] = app.model
        seen["engine"] = app.source.engine

    argv = ["tui"] if form == "tui" else []
    rc, seen = run_cli_headless(
        monkeypatch, [*argv, str(small_sweep), "--rules", str(rules_file), "--no-follow"], script
    )
    assert rc == 0
    assert "my_only_rule" not in load_rules()  # only FILE has it
    model = seen["model"]
    assert (
        "my_only_rule" in seen["engine"].rules and "weight_norm_near_critical" in seen["engine"].rules
    )  # merged over the defaults
    fired = {a.run_id for a in model.alarms if a.rule == "my_only_rule" and a.state == "firing"}
    assert fired == set(model.run_ids) and len(fired) == 3
    # still firing wherever the loss is a number; the diverged run's NaN loss resolved it
    assert {r.run_id: "my_only_rule" in r.alarms for r in model.rows} == {
        r.run_id: r.phase != "diverged" for r in model.rows
    }
    assert [r.phase for r in model.rows].count("diverged") == 1
    feed = seen["feed"]
    assert feed.count("my_only_rule") >= 3  # one line per run in the alarm feed
    assert "rules: mine.toml" in feed.splitlines()[0]  # the header names the rules file


def test_without_rules_the_rule_is_not_raised(small_sweep):
    async def script(app, pilot):
        assert app.model.alarms and not any(a.rule == "my_only_rule" for a in app.model.alarms)
        assert "rules:" not in screen_text(app).splitlines()[0]

    drive(make_app(small_sweep, frozen_config()), script, size=(200, 30))


@pytest.mark.parametrize("form", ["tui", "bare"])
@pytest.mark.parametrize(
    "content, says",
    [
        ("[rules.x]\nsignal = 'train_loss'\ncomparison = '<'\n", "missing threshold"),
        ("[rules.x\n", "invalid TOML"),
        (None, "cannot read rules file"),
    ],
)
def test_a_bad_rules_file_is_one_line_and_exit_2(small_sweep, tmp_path, capsys, form, content, says):
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content)
    argv = ["tui"] if form == "tui" else []
    assert main([*argv, str(small_sweep), "--rules", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grokwatch: error: ") and says in err[0], err
    assert str(path) in err[0]


# -- a daemon on the sweep: its journal, not an engine of the dashboard's own ----------------


def journal_record(run: str, rule: str, step: int, state: str = "firing", seq: int = 0) -> dict:
    return {
        "id": f"{run}-{rule}-{seq}",
        "run": run,
        "rule": rule,
        "state": state,
        "step": step,
        "value": 1.0,
        "threshold": 0.5,
        "comparison": ">",
        "severity": "critical",
        "signal": "x",
        "episode": 1,
        "time": f"2024-01-02T03:0{seq}:00.000Z",
        "time_unix": 1704164400.0 + 60 * seq,
        "description": "",
        "sweep": "s",
        "silenced": None,
        "notify": [],
    }


def test_with_a_daemon_running_the_dashboard_shows_its_journal(small_sweep, rules_file):
    """A live lock (this process, as `grokwatch alerts` holds it) and a journal: the
    dashboard runs no engine, its feed and alarm column are the journal's, its header
    names the daemon -- even with --rules, whose rule the daemon never raised."""
    runs = [p.name for p in list_runs(small_sweep)]
    assert len(runs) == 3
    journal = small_sweep / WATCHER_DIR / "alarms.jsonl"
    journal.parent.mkdir(exist_ok=True)
    recs = [
        journal_record(runs[0], "daemon_rule", 100, seq=0),
        journal_record(runs[1], "daemon_rule", 120, seq=1),
        journal_record(runs[1], "daemon_rule", 400, "resolved", seq=2),
    ]
    journal.write_text("".join(json.dumps(r) + "\n" for r in recs))
    lock = InstanceLock(small_sweep / WATCHER_DIR / "lock.json")
    lock.acquire()
    try:

        async def script(app, pilot):
            assert app.source.engine is None
            assert not any(isinstance(s, AlarmSubscriber) for s in app.source.watcher.subscribers)
            model = app.model
            assert [(a.run_id, a.rule, a.state) for a in model.alarms] == [
                (runs[1], "daemon_rule", "resolved"),
                (runs[1], "daemon_rule", "firing"),
                (runs[0], "daemon_rule", "firing"),
            ]
            assert {r.run_id: r.alarms for r in model.rows} == {runs[0]: ("daemon_rule",), runs[1]: (), runs[2]: ()}
            header = screen_text(app).splitlines()[0]
            assert f"alarms: grokwatch alerts (pid {os.getpid()} on {socket.gethostname()})" in header
            await pilot.press("a")
            await settle(app, pilot)
            feed = screen_text(app)
            assert feed.count("daemon_rule") == 3 and "my_only_rule" not in feed and "memorized" not in feed

        drive(make_app(small_sweep, frozen_config(), rules=rules_file), script, size=(200, 30))
    finally:
        lock.release()


def test_the_daemon_journal_follows_a_daemon_that_starts_late_and_reports_it_stopping(small_sweep):
    path = small_sweep / WATCHER_DIR / "lock.json"
    j = DaemonJournal(small_sweep, lock_every=0.0)
    assert not j.following and j.note is None and j.error is None and not j.poll()
    lock = InstanceLock(path)
    lock.acquire()
    try:
        assert j.poll() and j.following and j.error is None
        assert j.note == f"alarms: grokwatch alerts (pid {os.getpid()} on {socket.gethostname()})"
        journal = small_sweep / WATCHER_DIR / "alarms.jsonl"
        journal.write_text(json.dumps(journal_record("r", "late_rule", 5)) + "\n")
        assert j.poll() and [a.rule for a in j.alarms()] == ["late_rule"] and j.active() == {"r": ("late_rule",)}
        assert not j.poll()  # nothing new
    finally:
        lock.release()
    assert j.poll() and j.following  # its journal stays on screen ...
    assert (
        j.error
        == f"grokwatch alerts (pid {os.getpid()} on {socket.gethostname()}) stopped: its alarms up to then are shown"
    )
    # ... and a stale lock (a daemon SIGKILLed on this host: its pid is gone) is no daemon
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345, "token": "t", "heartbeat_unix": 0}))
    assert DaemonJournal(small_sweep).following is False


def test_the_dashboard_and_a_running_alert_daemon_show_the_same_alarms(small_sweep, rules_file, capsys):
    """`grokwatch alerts --rules FILE` runs on the sweep; a plain `grokwatch tui` (no
    --rules) shows exactly what the daemon journaled, FILE's rule included."""
    from grokwatch.alerts.daemon import AlertDaemon, DaemonOptions
    from grokwatch.alerts.journal import read_jsonl

    daemon = AlertDaemon(small_sweep, DaemonOptions(rules=rules_file, poll=True, predict=False))
    daemon.open()
    try:
        assert daemon.run_once() == 0
        journaled = read_jsonl(daemon.journal.alarms_path)
        assert any(r["rule"] == "my_only_rule" for r in journaled)

        async def script(app, pilot):
            assert app.source.engine is None
            shown = sorted((a.run_id, a.rule, a.step, a.state) for a in app.model.alarms)
            assert shown == sorted((r["run"], r["rule"], r["step"], r["state"]) for r in journaled)
            assert "alarms: grokwatch alerts (pid" in screen_text(app).splitlines()[0]

        drive(make_app(small_sweep, frozen_config()), script, size=(200, 30))
    finally:
        daemon.close()
    capsys.readouterr()  # the daemon's JSON lines on stdout


# -- the table's red is the rules' thresholds ---------------------------------------------------


def _rows_and_series(sweep, rules=None):
    from grokwatch.tui.watcher_source import WatcherSource

    source = WatcherSource(sweep, poll=True, rules=rules)
    try:
        source.refresh()
        model = source.model()
        series = {rid: source.series([rid]) for rid in model.run_ids}
    finally:
        source.close()
    return model, series


def _spikes(series):
    panel = series.panel("gnorm")
    return next((s for s in panel.series if s.label == "GAI spike"), None)


def test_table_highlights_come_from_the_loaded_rules(sim_sweep, tmp_path):
    from grokwatch.alerts import load_rules
    from grokwatch.tui.columns import COLUMNS

    # the table's three highlighted signals, each with a rule on it (the defaults chosen on real
    # runs put no rule on gai_z, h0_entropy_z or htsr_alpha_min: then nothing there is red)
    base = tmp_path / "on.toml"
    base.write_text(
        "[rules.gai_spike]\nenabled = true\n"
        '[rules.persistence_entropy_shift]\nsignal = "h0_entropy_z"\nabsolute = true\nthreshold = 5.0\n'
        '[rules.htsr_alpha_below_2]\nsignal = "htsr_alpha_min"\nwhen = ""\n'
    )
    rules = load_rules(base)
    gai, h0, alpha = rules["gai_spike"], rules["persistence_entropy_shift"], rules["htsr_alpha_below_2"]
    model, series = _rows_and_series(sim_sweep, base)
    default_model, _ = _rows_and_series(sim_sweep)
    assert not any(r.over for r in default_model.rows)
    for r in model.rows:  # the rule's own comparison and threshold, nothing else
        assert ("gai_z" in r.over) == (r.gai_z is not None and r.gai_z > gai.threshold), r.run_id
        assert ("h0_entropy_z" in r.over) == (r.h0_entropy_z is not None and abs(r.h0_entropy_z) > h0.threshold)
        assert ("alpha_min" in r.over) == (r.alpha_min is not None and r.alpha_min < alpha.threshold)
        for col, field in (("gai_z", "gai_z"), ("h0_z", "h0_entropy_z"), ("alpha_min", "alpha_min")):
            cell = COLUMNS[col].cell(r)
            assert (getattr(cell, "style", "") == "bold #d62728") == (field in r.over), (r.run_id, col)
    assert any("alpha_min" in r.over for r in model.rows)  # the anti-grokking run
    # no red between 3.5 and the rule's 5 any more: an H0 z of 4 is not past persistence_entropy_shift
    assert not any("h0_entropy_z" in r.over for r in model.rows if abs(r.h0_entropy_z or 0) <= h0.threshold)
    spiky = {rid: s for rid, s in series.items() if _spikes(s) is not None and len(_spikes(s).x)}
    assert spiky  # GAI spikes: where the gai_spike rule's condition holds
    assert all(s.panel("alpha").hlines == ((alpha.threshold, "alpha=2"),) for s in series.values())

    # Another rules file moves every highlight (and the detail view's spikes and alpha line) with it.
    path = tmp_path / "moved.toml"
    path.write_text(
        "[rules.gai_spike]\nenabled = true\nthreshold = 1e9\n"
        '[rules.persistence_entropy_shift]\nsignal = "h0_entropy_z"\nabsolute = true\nthreshold = 0.0\n'
        '[rules.htsr_alpha_below_2]\nsignal = "htsr_alpha_min"\nwhen = ""\nthreshold = 100.0\n'
    )
    moved, moved_series = _rows_and_series(sim_sweep, path)
    assert not any("gai_z" in r.over for r in moved.rows)
    assert all(("h0_entropy_z" in r.over) == (r.h0_entropy_z not in (None, 0.0)) for r in moved.rows)
    assert all(("alpha_min" in r.over) == (r.alpha_min is not None) for r in moved.rows)
    assert any("h0_entropy_z" in r.over for r in moved.rows)
    assert all(_spikes(s) is None or not len(_spikes(s).x) for s in moved_series.values())
    assert all(s.panel("alpha").hlines == ((100.0, "alpha=100"),) for s in moved_series.values())
