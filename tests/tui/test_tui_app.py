"""The dashboard driven with Pilot on a fixed simulated sweep: every view, every key path."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import RUNS
from textual.worker import WorkerFailed
from tui_helpers import drive, screen_text, settle

from grokwatch.tui.columns import COLUMNS
from grokwatch.tui.messages import ModelReady
from grokwatch.tui.screens.dashboard import DashboardScreen
from grokwatch.tui.screens.detail import DetailScreen
from grokwatch.tui.screens.help import HelpScreen
from grokwatch.tui.widgets.plot import Plot


def test_table_lists_every_run_with_phases_and_signals(app_factory):
    async def script(app, pilot):
        table = app.dashboard.table
        assert table.row_count == RUNS
        assert table.visible_ids == sorted(table.visible_ids)  # default sort: run id
        rows = {r.run_id: r for r in app.model.rows}
        assert {r.phase for r in rows.values()} >= {"grokked", "memorized", "anti-grokking", "diverged", "stalled"}
        anti = next(r for r in rows.values() if r.phase == "anti-grokking")
        assert anti.alpha_min is not None and anti.alpha_min < 2  # from the watcher's scores
        assert "htsr_alpha_below_2" in anti.alarms
        assert all(r.gai_z is not None for r in rows.values())
        text = screen_text(app)
        assert "wd0.1-s00" in text and "grokked" in text
        assert table.get_cell(anti.run_id, "phase").plain.startswith("anti-grok")
        # predicted t_grok with its interval for runs on their plateau (grokwatch.predict)
        plateau = [r for r in rows.values() if r.phase in ("memorized", "stalled")]
        assert plateau and all(r.prediction is not None for r in plateau)
        p = plateau[0].prediction
        assert p.lo <= p.step <= p.hi and p.method
        assert "[" in table.get_cell(plateau[0].run_id, "pred")
        # the simulator's runs are preset "sim": its shipped prior answers from the first plateau step,
        # and the cell says whose runs made the number
        assert {r.prediction.source for r in plateau} <= {"prior", "prior+sweep"}
        assert table.get_cell(plateau[0].run_id, "pred").endswith((" P", " P+S"))
        # no SLURM manifest (sweep.json) in a simulated sweep: '-'
        assert all(table.get_cell(r, "slurm") == "-" for r in rows)

    drive(app_factory(), script, size=(200, 30))


def test_sort_cycles_columns_and_reverses(app_factory):
    async def script(app, pilot):
        table = app.dashboard.table
        assert table.sort_key == "run"
        await pilot.press("s")
        assert table.sort_key == "wd"
        wds = [app.model.row(r).weight_decay for r in table.visible_ids]
        assert wds == sorted(wds)
        await pilot.press("S")
        wds = [app.model.row(r).weight_decay for r in table.visible_ids]
        assert wds == sorted(wds, reverse=True)
        assert table.label("wd").endswith("▼")
        # cycle on to the val accuracy column
        while table.sort_key != "val":
            await pilot.press("s")
        vals = [app.model.row(r).val_acc for r in table.visible_ids]
        assert vals == sorted(vals, reverse=True)  # still reversed

    drive(app_factory(), script)


def test_filter_by_phase_weight_decay_and_text(app_factory):
    async def script(app, pilot):
        table = app.dashboard.table
        await pilot.press("slash")
        await pilot.press(*"phase:grokked")
        ids = table.visible_ids
        assert ids and all(app.model.row(r).phase == "grokked" for r in ids)
        await pilot.press("escape")  # closes the line, keeps the filter
        assert table.has_focus and table.visible_ids == ids
        await pilot.press("escape")  # clears it
        assert len(table.visible_ids) == RUNS
        await pilot.press("w")  # first weight decay
        assert {app.model.row(r).weight_decay for r in table.visible_ids} == {0.1}
        await pilot.press("w")
        assert {app.model.row(r).weight_decay for r in table.visible_ids} == {0.3}
        await pilot.press("escape", "p")  # first phase present
        phases = {app.model.row(r).phase for r in table.visible_ids}
        assert len(phases) == 1
        await pilot.press("escape", "slash", *"s03", "enter")
        assert table.visible_ids == ["wd0.1-s03", "wd0.3-s03", "wd1.0-s03"]
        assert "filter: s03" in screen_text(app)

    drive(app_factory(), script)


def test_selection_follows_the_run_across_refreshes(app_factory):
    async def script(app, pilot):
        table = app.dashboard.table
        await pilot.press("j", "j", "j", "j", "j")
        chosen = table.selected_run_id
        assert chosen == table.visible_ids[5]
        table.set_sort("val")
        assert table.selected_run_id == chosen
        # a refresh in which the sort order changes: the cursor stays on the run
        rows = tuple(replace(r, val_acc=1.0 - (r.val_acc or 0.0)) for r in app.model.rows)
        app.post_message(ModelReady(replace(app.model, rows=rows, generation=app.model.generation + 1, _by_id={})))
        await settle(app, pilot)
        assert table.selected_run_id == chosen
        assert table.cursor_row == table.visible_ids.index(chosen)
        # a refresh that changes values only: cells update in place, no rebuild
        rebuilds = table.rebuilds
        rows = tuple(replace(r, step=r.step + 1) for r in app.model.rows)
        app.post_message(ModelReady(replace(app.model, rows=rows, generation=app.model.generation + 1, _by_id={})))
        await settle(app, pilot)
        assert table.rebuilds == rebuilds and table.selected_run_id == chosen

    drive(app_factory(), script)


def test_enter_opens_the_detail_of_the_selected_run(app_factory):
    async def script(app, pilot):
        await pilot.press("j", "j", "enter")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        assert screen.run_ids == (app.dashboard.table.visible_ids[2],)
        acc = screen.series.panel("acc")
        assert [s.label for s in acc.series] == ["train", "val"]
        assert len(acc.series[0].x) == app.model.row(screen.run_ids[0]).step  # full resolution: a row per step
        assert screen.query_one("#plot-acc", Plot).panel is acc
        assert "accuracy" in screen_text(app)
        kinds = {m.kind for m in screen.series.markers}
        assert "t_mem" in kinds
        await pilot.press("n")
        await settle(app, pilot)
        assert app.screen.run_ids == (app.dashboard.table.visible_ids[3],)
        assert app.dashboard.table.selected_run_id == app.screen.run_ids[0]
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)

    drive(app_factory(), script)


def test_detail_marks_restarts_alarms_and_alpha_line(app_factory, sim_sweep):
    async def script(app, pilot):
        rows = app.model.rows
        restarted = next(r for r in rows if r.restarts)
        anti = next(r for r in rows if r.phase == "anti-grokking")
        app.dashboard.table.select_run(restarted.run_id)
        await pilot.press("enter")
        await settle(app, pilot)
        markers = app.screen.series.markers
        assert [m.step for m in markers if m.kind == "restart"] == list(restarted.restart_steps)
        await pilot.press("escape")
        app.dashboard.table.select_run(anti.run_id)
        await pilot.press("enter")
        await settle(app, pilot)
        s = app.screen.series
        assert any(m.kind == "alarm" and "htsr_alpha_below_2" in m.label for m in s.markers)
        assert s.panel("alpha").hlines == ((2.0, "alpha=2"),)
        assert len(s.panel("alpha").series) == 6  # one per matrix

    drive(app_factory(), script, size=(160, 48))


def test_grid_shows_seed_by_weight_decay_and_opens_runs(app_factory):
    async def script(app, pilot):
        await pilot.press("j", "j", "j")  # wd0.1-s03
        await pilot.press("g")
        grid = app.dashboard.grid
        assert app.dashboard.view == "grid" and grid.has_focus
        assert grid.wds == [0.1, 0.3, 1.0] and grid.seeds == [0, 1, 2, 3]
        assert len(grid.cells) == RUNS
        assert grid.selected_run_id == "wd0.1-s03"
        await pilot.press("down", "left")
        assert grid.selected_run_id == "wd0.3-s02"
        text = screen_text(app)
        assert "wd \\ seed" in text and "anti-grokking" in text  # legend
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen.run_ids == ("wd0.3-s02",)
        await pilot.press("escape", "tab")  # grid -> alarms
        assert app.dashboard.view == "alarms"
        await pilot.press("tab")
        assert app.dashboard.view == "runs"
        assert app.dashboard.table.selected_run_id == "wd0.3-s02"

    drive(app_factory(), script)


def test_alarm_feed_is_newest_first_and_jumps_to_the_run(app_factory):
    async def script(app, pilot):
        await pilot.press("a")
        feed = app.dashboard.feed
        alarms = app.model.alarms
        assert feed.row_count == len(alarms) > 5
        keys = [(a.time, a.step) for a in alarms]
        assert keys == sorted(keys, reverse=True)
        assert {a.rule for a in alarms} >= {"memorized", "grokked", "htsr_alpha_below_2", "stalled"}
        await pilot.press("j", "j")
        target = feed.selected
        assert target == alarms[2]
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, DetailScreen) and app.screen.run_ids == (target.run_id,)
        await pilot.press("escape")  # back where it came from: the alarms, on the same alarm
        assert app.dashboard.view == "alarms" and feed.selected == target and app.focused is feed
        assert app.dashboard.table.selected_run_id == target.run_id  # the table followed the run

    drive(app_factory(), script)


def test_overlay_of_marked_runs(app_factory):
    async def script(app, pilot):
        table = app.dashboard.table
        await pilot.press("o")  # nothing marked: the selected run alone
        await settle(app, pilot)
        assert app.screen.run_ids == (table.visible_ids[0],)
        await pilot.press("escape", "space", "j", "space")
        marked = [table.visible_ids[0], table.visible_ids[2]]
        assert table.marked == set(marked)
        assert str(table.get_cell(marked[0], "mark")) == "●"
        await pilot.press("o")
        await settle(app, pilot)
        screen = app.screen
        assert screen.overlay and screen.run_ids == tuple(marked)
        acc = screen.series.panel("acc")
        assert [s.label for s in acc.series] == marked
        assert "overlay" in screen_text(app)
        await pilot.press("escape", "M")
        assert not table.marked

    drive(app_factory(), script, size=(120, 40))


def test_help_is_built_from_the_bindings(app_factory):
    async def script(app, pilot):
        await pilot.press("question_mark")
        await settle(app, pilot)
        assert isinstance(app.screen, HelpScreen)
        md = app.screen.markdown
        for id_ in (
            "runs.sort_next",
            "dashboard.filter",
            "dashboard.grid",
            "dashboard.alarms",
            "detail.back",
            "alarms.jump",
            "app.quit",
            "runs.overlay",
            "table.page_down",
        ):
            assert f"`{id_}`" in md
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)

    drive(app_factory(), script)


def test_every_binding_has_a_description_and_a_stable_id():
    from grokwatch.tui.app import GrokwatchApp
    from grokwatch.tui.widgets.alarm_feed import AlarmFeed
    from grokwatch.tui.widgets.line_table import LineTable
    from grokwatch.tui.widgets.runs_table import RunsTable
    from grokwatch.tui.widgets.sweep_grid import SweepGrid

    ids = []
    for cls in (GrokwatchApp, DashboardScreen, LineTable, RunsTable, SweepGrid, AlarmFeed, DetailScreen, HelpScreen):
        for b in cls.__dict__["BINDINGS"]:
            assert b.description, f"{cls.__name__} {b.key}"
            assert b.id and b.id.split(".")[0] in (
                "app",
                "dashboard",
                "table",
                "runs",
                "grid",
                "alarms",
                "detail",
                "help",
            ), b
            ids.append(b.id)
    assert len(ids) == len(set(ids))


def test_config_file_picks_columns_sort_and_keys(app_factory, tmp_path):
    from grokwatch.tui.config import load_config

    cfg_file = tmp_path / "tui.toml"
    cfg_file.write_text(
        '[table]\ncolumns = ["run", "phase", "val"]\nsort = "val"\nreverse = true\n[keys]\n"runs.sort_next" = "x"\n'
    )
    cfg = load_config(cfg_file, known_columns=tuple(COLUMNS))

    async def script(app, pilot):
        table = app.dashboard.table
        assert table.column_keys == ["run", "phase", "val"]
        vals = [app.model.row(r).val_acc for r in table.visible_ids]
        assert vals == sorted(vals, reverse=True)
        await pilot.press("x")
        assert table.sort_key == "run"
        await pilot.press("s")  # no longer bound
        assert table.sort_key == "run"

    drive(app_factory(columns=cfg.columns, sort=cfg.sort, reverse=cfg.reverse, keys=cfg.keys), script)


def test_a_crash_exits_non_zero_and_is_not_swallowed(app_factory):
    class Boom(RuntimeError):
        pass

    app = app_factory()

    def broken_series(run_ids, smoothing=0.0):
        raise Boom("cannot read curves")

    app.source.series = broken_series

    async def script(app, pilot):
        await pilot.press("enter")
        await settle(app, pilot)

    with pytest.raises(WorkerFailed) as info:
        drive(app, script)
    assert isinstance(info.value.error, Boom)
    assert app.return_code == 1


def test_small_terminal_shows_the_essentials(app_factory):
    async def script(app, pilot):
        text = screen_text(app)
        lines = text.splitlines()
        assert len(lines) == 24
        assert "grokwatch" in lines[0] and "12 runs" in lines[0]
        assert "run" in lines[1] and "phase" in lines[1]
        assert "Quit" in lines[-1]
        await pilot.press("g")
        assert "wd \\ seed" in screen_text(app)

    drive(app_factory(), script, size=(80, 24))


def test_keys_typed_in_a_burst_after_slash_all_reach_the_filter(app_factory):
    """A terminal delivers pasted or fast-typed keys at once: none may leak into bindings."""
    from textual import events
    from textual.app import _character_to_key

    async def script(app, pilot):
        await pilot.press("a")  # from another view: "/" goes back to the runs
        for ch in ["/", *"phase:anti q", "enter"]:
            key = ch if ch == "enter" or ch.isalnum() else _character_to_key(ch)
            event = events.Key(key, "\r" if ch == "enter" else ch)
            event.set_sender(app)
            app._driver.send_message(event)  # all queued before any is handled
        await settle(app, pilot)
        assert app.is_running and app.dashboard.view == "runs"  # "q" and "a" were typed, not obeyed
        assert app.dashboard.table.filter.text == "phase:anti q"
        assert not app.dashboard.filtering
        await pilot.press("slash", "backspace", "backspace", "enter")
        assert app.dashboard.table.visible_ids == ["wd1.0-s01"]

    drive(app_factory(), script)


def test_key_presses_open_the_quiet_window_for_background_threads(app_factory):
    async def script(app, pilot):
        before = app.quiet.holds
        await pilot.press("g", "r", "enter")
        await settle(app, pilot)
        assert app.quiet.holds >= before + 3  # every key; the watcher and the feed pause on it
        assert isinstance(app.screen, DetailScreen)
        # the curves are read after the detail screen's first paint, and do arrive
        for _ in range(200):
            if app.screen.series is not None:
                break
            await pilot.pause(0.02)
        assert app.screen.series is not None and app.screen.loads >= 1

    drive(app_factory(), script)
