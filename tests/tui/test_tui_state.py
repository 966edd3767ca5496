"""What a researcher meets first: every run of the sweep (started or not) with
its state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tui_helpers import drive, frozen_config, screen_text

from grokwatch.cli import main
from grokwatch.store import RunWriter
from grokwatch.store.layout import MANIFEST, run_id_for
from grokwatch.tui.app import make_app
from grokwatch.tui.model import RunRow
from grokwatch.tui.watcher_source import WatcherSource


def plan(root: Path, sweep: str, seeds: int, wds: str = "0.1,0.3,1.0", steps: int = 8000) -> Path:
    assert main(["sweep", "plan", "--root", str(root), "--sweep", sweep, "--seeds", str(seeds),
                 "--weight-decays", wds, "--gpus-per-task", "0", "--steps", str(steps)]) == 0
    return root / sweep


def start_run(sweep: Path, wd: float, seed: int, steps: int = 800, total: int = 8000, close: str | None = None,
              grok: bool = True) -> str:
    """A run with ``steps`` rows written (memorized at 100, grokked at 500 when ``grok``);
    left running (fresh heartbeat) unless ``close`` names its final state."""
    rid = run_id_for(wd, seed)
    s = np.arange(1, steps + 1)
    cols = {"step": s, "train_acc": np.where(s >= 100, 1.0, 0.5), "train_loss": np.full(steps, 0.1),
            "val_acc": np.where(s >= 500, 1.0, 0.02) if grok else np.full(steps, 0.02)}
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
    queue = {running: TaskState("4242", 0, "4243", "RUNNING"), pending: TaskState("4242", 1, "4242", "PENDING"),
             requeued: TaskState("4242", 2, "4245", "PENDING", restarts=1)}
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
    from grokwatch.demo import Demo, plan_demo

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
