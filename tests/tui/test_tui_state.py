"""What a researcher meets first: every run of the sweep (started or not) with
its state, cells that are never cut, explained letters, the alarm feed's clock,
and Esc that goes back where it came from."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from tui_helpers import drive, frozen_config, screen_text, settle

from grokwatch.commands.main import main
from grokwatch.store import RunWriter
from grokwatch.store.layout import MANIFEST, run_id_for
from grokwatch.tui.app import make_app
from grokwatch.tui.model import PHASE_LETTER, PHASE_ORDER, AlarmRow, DetailPlot, RunRow, SweepModel
from grokwatch.tui.watcher_source import WatcherSource
from grokwatch.watch.snapshot import OnsetPrediction


def plan(root: Path, sweep: str, seeds: int, wds: str = "0.1,0.3,1.0", steps: int = 8000) -> Path:
    assert (
        main(
            [
                "sweep",
                "plan",
                "--root",
                str(root),
                "--sweep",
                sweep,
                "--seeds",
                str(seeds),
                "--weight-decays",
                wds,
                "--gpus-per-task",
                "0",
                "--steps",
                str(steps),
            ]
        )
        == 0
    )
    return root / sweep


def start_run(
    sweep: Path, wd: float, seed: int, steps: int = 800, total: int = 8000, close: str | None = None, grok: bool = True
) -> str:
    """A run with ``steps`` rows written (memorized at 100, grokked at 500 when ``grok``);
    left running (fresh heartbeat) unless ``close`` names its final state."""
    rid = run_id_for(wd, seed)
    s = np.arange(1, steps + 1)
    cols = {
        "step": s,
        "train_acc": np.where(s >= 100, 1.0, 0.5),
        "train_loss": np.full(steps, 0.1),
        "val_acc": np.where(s >= 500, 1.0, 0.02) if grok else np.full(steps, 0.02),
    }
    w = RunWriter(sweep / rid, {"seed": seed, "weight_decay": wd, "total_steps": total}).open()
    w.write_shard("scalars", cols)
    if close:
        w.close(close)
    else:
        w.write_status(force=True)
    return rid


def rows_of(app) -> dict[str, RunRow]:
    return {r.run_id: r for r in app.model.rows}


# -- item 2: runs that have not started are in the table -------------------------------------


def test_a_planned_sweep_shows_all_its_runs_before_any_starts(tmp_path, capsys):
    sweep = plan(tmp_path, "s90", seeds=30)
    capsys.readouterr()

    async def script(app, pilot):
        rows = rows_of(app)
        assert len(rows) == 90 and app.dashboard.table.row_count == 90
        assert {r.state for r in rows.values()} == {"planned"}
        assert {r.phase for r in rows.values()} == {"waiting"}
        r = rows[run_id_for(0.3, 7)]
        assert (r.weight_decay, r.seed, r.total_steps) == (0.3, 7, 8000)
        header = screen_text(app).splitlines()[0]
        assert "90 runs" in header
        assert app.dashboard.table.get_cell(r.run_id, "state").plain == "planned"

    drive(make_app(sweep, frozen_config()), script, size=(160, 30))


def test_a_submitted_array_shows_pending_requeued_and_running_tasks(tmp_path, capsys, monkeypatch):
    """3 array tasks: one running, one pending in the queue, one requeued after a
    preemption; the table, its header and `grokwatch sweep status` agree."""
    from grokwatch.commands.sweep import sweep_rows
    from slurm.plan import record_submission
    from slurm.queue import QueueState, TaskState

    sweep = plan(tmp_path, "arr", seeds=3, wds="0.1")
    capsys.readouterr()
    manifest = record_submission(json.loads((sweep / MANIFEST).read_text()), "4242")
    (sweep / MANIFEST).write_text(json.dumps(manifest))
    running = start_run(sweep, 0.1, 0)
    pending = run_id_for(0.1, 1)
    requeued = start_run(sweep, 0.1, 2, close="preempted")
    queue = {
        running: TaskState("4242", 0, "4243", "RUNNING"),
        pending: TaskState("4242", 1, "4242", "PENDING"),
        requeued: TaskState("4242", 2, "4245", "PENDING", restarts=1),
    }
    monkeypatch.setattr(QueueState, "for_manifest", lambda self, manifest, raw_hints=None: dict(queue))
    want = {running: "running", pending: "pending", requeued: "requeued"}

    async def script(app, pilot):
        rows = rows_of(app)
        assert {rid: r.state for rid, r in rows.items()} == want
        assert rows[pending].phase == "waiting" and rows[running].phase == "grokked"
        assert "3 runs" in screen_text(app).splitlines()[0]
        assert rows[pending].slurm_state == "pending"

    drive(make_app(sweep, frozen_config()), script, size=(160, 30))
    status = {r["run_id"]: r["state"] for r in sweep_rows(sweep, manifest, QueueState())}
    assert status == want


def test_sweep_status_shows_the_dashboards_state_slurm_and_phase_for_every_run(tmp_path, capsys, monkeypatch):
    """`grokwatch sweep status --json` takes each run's state, SLURM state, phase and
    step from one watcher cycle: for every run (started or not, known to SLURM or
    not, stalled, failed) they are what the watcher's snapshot and the dashboard show."""
    from grokwatch.store.atomic import atomic_write_json, read_json
    from grokwatch.watch import SweepWatcher
    from grokwatch.watch.queue import SlurmQueue
    from slurm.plan import record_submission
    from slurm.queue import QueueState, TaskState

    sweep = plan(tmp_path, "agree", seeds=8, wds="0.1")
    capsys.readouterr()
    manifest = record_submission(json.loads((sweep / MANIFEST).read_text()), "4242")
    (sweep / MANIFEST).write_text(json.dumps(manifest))
    running = start_run(sweep, 0.1, 0)
    stalled = start_run(sweep, 0.1, 1, grok=False)
    status = read_json(sweep / stalled / "status.json")
    status["heartbeat_unix"] = time.time() - 3600.0
    atomic_write_json(sweep / stalled / "status.json", status)
    done = start_run(sweep, 0.1, 2, close="completed")
    failed = start_run(sweep, 0.1, 3, steps=300, close="failed")
    requeued = start_run(sweep, 0.1, 4, close="preempted")
    forgotten = start_run(sweep, 0.1, 5, close="completed")  # SLURM no longer knows its task
    pending, cancelled = run_id_for(0.1, 6), run_id_for(0.1, 7)  # never started
    queue = {
        running: TaskState("4242", 0, "4243", "RUNNING"),
        stalled: TaskState("4242", 1, "4244", "RUNNING"),
        done: TaskState("4242", 2, "4245", "COMPLETED", exit_code=0),
        failed: TaskState("4242", 3, "4246", "FAILED", exit_code=1),
        requeued: TaskState("4242", 4, "4247", "PENDING", restarts=1),
        pending: TaskState("4242", 6, "4242", "PENDING"),
        cancelled: TaskState("4242", 7, "4249", "CANCELLED"),
    }
    monkeypatch.setattr(QueueState, "for_manifest", lambda self, manifest, raw_hints=None: dict(queue))

    assert main(["sweep", "status", "--root", str(tmp_path), "--sweep", "agree", "--json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert len(rows) == 8

    snap = SweepWatcher(sweep, queue=SlurmQueue(sweep), poll=True).cycle()
    source = WatcherSource(sweep, poll=True)
    try:
        source.refresh()
        model = {r.run_id: r for r in source.model().rows}
    finally:
        source.close()
    assert set(model) == set(rows)
    for rid, r in rows.items():
        m = model[rid]
        assert (r["state"], r["slurm"]) == (m.state, m.slurm_state), rid
        if rid in snap.runs:
            v = snap.runs[rid]
            assert (r["state"], r["slurm"], r["step"]) == (v.state, v.slurm_state, v.step), rid
            assert (r["phase"], r["step"]) == (m.phase, m.step), rid
        else:
            p = snap.planned[rid]
            assert (r["state"], r["slurm"], r["phase"]) == (p.state, p.slurm_state, None), rid
            assert m.phase == "waiting"  # the dashboard's word for a run with no rows yet
    assert {rid: rows[rid]["state"] for rid in (running, stalled, done, failed, requeued, forgotten)} == {
        running: "running",
        stalled: "stalled",
        done: "completed",
        failed: "failed",
        requeued: "requeued",
        forgotten: "completed",
    }
    assert rows[stalled]["phase"] == "stalled" and rows[failed]["phase"] == "failed"
    assert (rows[pending]["state"], rows[cancelled]["state"]) == ("pending", "cancelled")
    assert rows[failed]["job"] == "4242_3" and rows[failed]["exit_code"] == 1 and rows[forgotten]["job"] is None


def test_the_watcher_snapshot_carries_the_planned_runs(tmp_path, capsys):
    from grokwatch.watch import SweepWatcher

    sweep = plan(tmp_path, "w", seeds=2, wds="1")
    capsys.readouterr()
    started = start_run(sweep, 1.0, 0, close="completed")
    w = SweepWatcher(sweep, poll=True)
    snap = w.cycle()
    assert list(snap.planned) == [run_id_for(1.0, 0), run_id_for(1.0, 1)]
    assert [p.run_id for p in snap.not_started] == [run_id_for(1.0, 1)]
    assert len(snap.runs) == 1 and snap.total == 2 and not snap.submitted
    assert started in snap.runs
    # a new plan is picked up (the manifest's signature changed)
    plan(tmp_path, "w", seeds=3, wds="1")
    capsys.readouterr()
    snap = w.cycle()
    assert snap.total == 3 and len(snap.not_started) == 2


def test_the_demo_declares_its_nine_runs_at_once(tmp_path):
    from grokwatch.commands.sweep import sweep_rows
    from grokwatch.sim.demo import Demo, plan_demo

    demo_plan = plan_demo(tmp_path)
    Demo(demo_plan)  # writes the sweep directory and its manifest; starts nothing yet
    sweep = tmp_path / "demo"
    manifest = json.loads((sweep / MANIFEST).read_text())
    assert [t["run_id"] for t in manifest["tasks"]] == [r.run_id for r in demo_plan.runs]
    assert manifest["options"]["steps"] == 8000 and not manifest["submissions"]
    source = WatcherSource(sweep, poll=True)
    try:
        source.refresh()
        model = source.model()
    finally:
        source.close()
    assert len(model.rows) == 9 and {r.state for r in model.rows} == {"planned"}
    assert {r["state"] for r in sweep_rows(sweep, manifest, queue=None)} == {"planned"}


# -- item 7a: a state column --------------------------------------------------------------------


def test_state_tells_a_stopped_run_from_one_that_runs_on(tmp_path):
    sweep = tmp_path / "st"
    stopped = start_run(sweep, 1.0, 0, close="completed")  # 800/8.0k, grokked, stopped after grokking
    live = start_run(sweep, 1.0, 1)  # 800/8.0k, grokked, still training

    async def script(app, pilot):
        table = app.dashboard.table
        assert "state" in table.column_keys
        for rid in (stopped, live):
            assert table.get_cell(rid, "step") == "800/8.0k" and app.model.row(rid).phase == "grokked"
        assert table.get_cell(stopped, "state").plain == "completed"
        assert table.get_cell(live, "state").plain == "running"
        lines = {rid: next(line for line in screen_text(app).splitlines() if rid in line) for rid in (stopped, live)}
        assert lines[stopped].replace(stopped, "") != lines[live].replace(live, "")
        await pilot.press("slash", *"state:run", "enter")
        assert table.visible_ids == [live]

    drive(make_app(sweep, frozen_config()), script, size=(160, 30))


# -- item 7b: cells are never cut ---------------------------------------------------------------


class FixedSource:
    """A source that serves one fixed model (the app reads it once)."""

    def __init__(self, model: SweepModel):
        self.sweep_dir = Path(model.path)
        self._model = model

    def start(self, on_change):
        pass

    def refresh(self) -> bool:
        return True

    def model(self) -> SweepModel:
        return self._model

    def series(self, run_ids, smoothing=0.0) -> DetailPlot:
        return DetailPlot(tuple(run_ids), ())

    def close(self) -> None:
        pass


LONG_RULE = "a_custom_rule_with_a_very_long_name_indeed_it_is"


def wide_model() -> SweepModel:
    rows = (
        RunRow(
            "wd0.3-s22",
            seed=22,
            weight_decay=0.3,
            step=8000,
            total_steps=8000,
            phase="anti-grokking",
            state="completed",
            alarms=("persistence_entropy_shift", "gai_spike"),
            prediction=OnsetPrediction(step=8200, lo=7900, hi=9700, method="wnorm-analog"),
        ),
        RunRow(
            "wd0.0001-s123",
            seed=123,
            weight_decay=1e-4,
            step=120_000,
            total_steps=1_000_000,
            phase="memorized",
            state="running",
            alarms=("htsr_alpha_below_2",),
            prediction=OnsetPrediction(step=523_000, lo=488_000, hi=999_000),
        ),
        RunRow(
            "wd1.0-s00",
            seed=0,
            weight_decay=1.0,
            step=10,
            total_steps=100_000,
            phase="learning",
            state="running",
            alarms=(LONG_RULE,),
        ),
    )
    alarms = (
        AlarmRow(
            "wd0.0001-s123",
            "persistence_entropy_shift",
            118_000,
            4.2,
            3.5,
            "warning",
            "firing",
            "2024-01-02T03:04:05.000Z",
            1,
        ),
        AlarmRow("wd0.3-s22", "gai_spike", 7000, 5.0, 3.5, "info", "firing", "2024-01-02T02:00:00.000Z", 0),
    )
    return SweepModel("wide", "/nonexistent/wide", rows=rows, alarms=alarms, generation=1, updated=0.0)


def test_cells_show_whole_intervals_and_rule_names():
    async def script(app, pilot):
        table = app.dashboard.table
        text = screen_text(app)
        assert "8.2k [7.9k,9.7k]" in text and "523k [488k,999k]" in text
        assert "persistence_entropy_shift +1" in text and "anti-grokking" in text and "wd0.0001-s123" in text
        for rid in table.visible_ids:
            for col in table.column_keys:
                cell = table.get_cell(rid, col)
                plain = cell.plain if hasattr(cell, "plain") else str(cell)
                if LONG_RULE not in plain:
                    assert len(plain) <= table.width(col), (rid, col, plain)
        # a name longer than the column's maximum is shortened visibly, never silently
        line = next(x for x in text.splitlines() if "wd1.0-s00" in x)
        assert LONG_RULE[: table.width("alarms") - 1] + "…" in line
        # the alarm feed: run ids and rule names whole too
        await pilot.press("a")
        text = screen_text(app)
        assert "persistence_entropy_shift" in text and "wd0.0001-s123" in text

    drive(make_app(FixedSource(wide_model()), frozen_config()), script, size=(240, 20))


def test_line_table_grows_columns_to_fit_and_only_up_to_their_maximum():
    from grokwatch.tui.widgets.line_table import LineTable

    t = LineTable()
    t.set_columns([("a", "a", 4, 10), ("b", "b", 3)])
    t.set_rows(["x"], lambda k: ["123456", "12345"])
    assert (t.width("a"), t.width("b")) == (6, 3)  # a grew to fit; b is fixed
    t.set_rows(["x", "y"], lambda k: ["1234567890123", "1"] if k == "y" else ["123456", "12345"])
    assert t.width("a") == 10  # capped
    t.set_rows(["x"], lambda k: ["1", "1"], changed=["x"])
    assert t.width("a") == 10  # never shrinks: no jitter as values change
    strip = t._render_cells(["1234567890123", "12345"], t._base)
    text = "".join(seg.text for seg in strip)
    assert "123456789…" in text and "123" in text and "1234567890" not in text


# -- item 7c: the letters are explained -----------------------------------------------------


def test_header_spells_phases_out_when_it_has_room_and_help_explains_the_letters(app_factory):
    async def wide(app, pilot):
        header = screen_text(app).splitlines()[0]
        assert "7 grokked" in header and "1 anti-grokking" in header and "G7" not in header
        assert not app.dashboard.query_one("StatusBar").letters

    drive(app_factory(), wide, size=(180, 30))

    async def narrow(app, pilot):
        lines = screen_text(app).splitlines()
        assert "G7" in lines[0] and "M1" in lines[0]
        assert "Help, legend" in lines[-1]  # the key bar says where the letters are explained
        await pilot.press("question_mark")
        await settle(app, pilot)
        md = app.screen.markdown
        for phase in PHASE_ORDER:
            assert f"`{PHASE_LETTER[phase]}` **{phase}**" in md
        assert "## The state column" in md and "`requeued`" in md and "`planned`" in md

    drive(app_factory(), narrow, size=(80, 24))


# -- item 7d: the alarm feed has a clock --------------------------------------------------------


@pytest.mark.parametrize(
    "tz, want", [("UTC", "03:04:05"), ("Asia/Kolkata", "08:34:05"), ("America/New_York", "22:04:05")]
)
def test_alarm_times_are_local_clock_times(monkeypatch, tz, want):
    from grokwatch.tui.widgets.alarm_feed import clock_time

    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        assert clock_time("2024-01-02T03:04:05.123Z") == want
        assert clock_time(None) == "-" and clock_time("garbage") == "-"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_alarm_feed_shows_when_each_alarm_was_recorded():
    async def script(app, pilot):
        await pilot.press("a")
        feed = app.dashboard.feed
        assert feed.column_keys[0] == "time"
        text = screen_text(app)
        line = next(x for x in text.splitlines() if "persistence_entropy_shift" in x)
        assert line.split()[0] == "03:04:05"  # TZ=UTC in these tests
        assert "02:00:00" in text

    drive(make_app(FixedSource(wide_model()), frozen_config()), script, size=(160, 20))


# -- item 7e: Esc goes back where it came from ----------------------------------------------------


def test_escape_from_a_run_opened_from_the_alarms_returns_to_the_alarms(app_factory):
    from grokwatch.tui.screens.detail import DetailScreen

    async def script(app, pilot):
        await pilot.press("a", "j")
        feed = app.dashboard.feed
        target = feed.selected
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, DetailScreen) and app.screen.run_ids == (target.run_id,)
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is app.dashboard and app.dashboard.view == "alarms"
        assert feed.selected == target and app.focused is feed
        assert "rule" in screen_text(app).splitlines()[1]  # the feed's header, not the table's
        # and from the runs table, Esc still returns to the runs table
        await pilot.press("r", "enter")
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.dashboard.view == "runs" and app.focused is app.dashboard.table

    drive(app_factory(), script)
