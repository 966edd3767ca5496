"""The dashboard's pure parts: series, canvas, filter, sort, config, alarms tail, feed, the watcher source."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from grokwatch.errors import UsageError
from grokwatch.tui.canvas import as_text, rasterize
from grokwatch.tui.columns import COLUMNS, sort_rows
from grokwatch.tui.config import DEFAULT_COLUMNS, TuiConfig, TuiConfigError, config_from_dict, load_config
from grokwatch.tui.filtering import parse_filter
from grokwatch.tui.journal import AlarmTail
from grokwatch.tui.model import Marker, ModelFeed, Panel, RunRow, Series, SweepModel
from grokwatch.tui.series import decimate, prepare, smooth, sparkline, sparkline_values
from grokwatch.tui.source import resolve_sweep

# -- series -----------------------------------------------------------------------


def test_smooth_is_a_trailing_moving_average():
    y = np.arange(10, dtype=float)
    out = smooth(y, 3)
    assert out[:3].tolist() == [0.0, 0.5, 1.0]
    assert out[3:].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert smooth(y, 1) is not None and np.array_equal(smooth(y, 1), y)
    assert len(smooth(np.array([]), 5)) == 0


def test_decimate_keeps_min_and_max_of_each_column():
    x = np.arange(1000)
    y = np.zeros(1000)
    y[505] = 7.0  # a one-sample spike survives decimation
    y[10] = -3.0
    d = decimate(x, y, 0, 999, 10)
    assert d.columns == 10
    assert d.hi[5] == 7.0 and d.lo[0] == -3.0
    assert np.all(d.lo[1:] == 0.0)
    # empty columns are NaN; samples outside the range are dropped
    d = decimate(np.array([0.0, 1.0, 50.0]), np.array([1.0, 2.0, 3.0]), 0, 10, 5)
    assert d.lo[0] == 1.0 and d.hi[0] == 2.0 and np.isnan(d.lo[1:]).all()


def test_prepare_drops_nan_then_smooths_full_resolution():
    x = np.arange(100)
    y = np.where(x % 10 == 0, x / 100, np.nan)  # val_acc: every 10 steps
    px, py = prepare(x, y, 0.2)
    assert px.tolist() == list(range(0, 100, 10))
    assert py[-1] == pytest.approx(np.mean([0.8, 0.9]))


def test_sparkline():
    vals = sparkline_values(np.arange(100), np.linspace(0, 1, 100), 8)
    assert len(vals) == 8 and vals[-1] == 1.0
    assert sparkline(vals) == "▂▃▄▄▅▆▇█"  # the last value of each column
    assert sparkline((0.0, 0.5, 1.0, 2.0, -1.0)) == "▁▅██▁"  # clipped to [0, 1]
    assert sparkline(()) == ""


def test_100k_points_draw_in_milliseconds():
    x = np.arange(1, 100_001)
    y = 1 / (1 + np.exp(-(x - 60_000) / 3000))
    t0 = time.perf_counter()
    s = Series("val", *prepare(x, y, 0.005))
    panel = Panel("acc", "accuracy", (s, Series("train", *prepare(x, np.ones_like(y)), color=1)), y_range=(0.0, 1.0))
    rows = rasterize(panel, (Marker(60_000, "t_grok"),), (0, 100_000), 160, 20)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.25, elapsed  # typically a few ms
    assert len(rows) == 20
    text = as_text(rows)
    assert "accuracy" in text.splitlines()[0] and "100k" in text.splitlines()[-1]


def test_canvas_draws_lines_markers_and_reference_lines():
    x = np.arange(0, 101, dtype=float)
    panel = Panel("a", "alpha", (Series("m", x, 4 - x / 50),), hlines=((2.0, "alpha=2"),))
    rows = rasterize(panel, (Marker(25, "alarm"),), (0, 100), 47, 10)
    text = as_text(rows)
    assert all(len(line) == 47 for line in text.splitlines())
    assert "╎" in text  # the alarm marker, where the column is empty
    # the line goes from top-left to bottom-right
    plot = [line[7:] for line in text.splitlines()[1:-1]]
    assert plot[0][0] != "⠀" and plot[-1][-1] != "⠀"
    empty = rasterize(Panel("h0", "H0", (), note="no H0 probes"), (), (0, 1), 40, 6)
    assert "no H0 probes" in as_text(empty)


def test_canvas_shades_the_predicted_interval_behind_the_curve():
    x = np.arange(0, 101, dtype=float)
    panel = Panel("a", "val acc", (Series("v", x, np.full_like(x, 0.5)),), y_range=(0.0, 1.0))
    band = Marker(40, "band", "interval", end=60)
    rows = rasterize(panel, (band, Marker(50, "predicted")), (0, 100), 47, 10)
    plot = [line[7:] for line in as_text(rows).splitlines()[1:-1]]
    cols = {c for line in plot for c, ch in enumerate(line) if ch == "░"}
    assert cols and min(cols) >= int(0.4 * 40) - 1 and max(cols) <= int(0.6 * 40) + 1  # only its columns
    assert any("┊" in line for line in plot)  # the predicted step still shows over the band
    assert all("░" not in line[: int(0.4 * 40) - 1] for line in plot)  # nothing left of it
    # the curve's own cells are not shaded
    mid = [line for line in plot if "░" in line]
    assert len(mid) < len(plot)


def test_prediction_cell_and_detail_name_the_source_and_the_odds():
    from grokwatch.tui.columns import pred_detail
    from grokwatch.watch.snapshot import OnsetPrediction

    cell = COLUMNS["pred"].cell
    p = OnsetPrediction(5200, 3100, 8000, "growth", 2600, source="prior", p_grok=0.83)
    row = RunRow("wd1.0-s00", prediction=p)
    assert cell(row) == "5.2k [3.1k,8.0k] P"
    text = pred_detail(row)
    assert "5.2k [3.1k,8.0k]" in text and "growth" in text and "from the prior" in text and "83%" in text
    own = RunRow("r", prediction=OnsetPrediction(5200, 3100, 8000, "growth", 2600, source="prior+sweep"))
    assert cell(own).endswith(" P+S") and "prior and the sweep" in pred_detail(own)
    assert cell(RunRow("r", prediction=OnsetPrediction(5200))) == "5.2k"
    assert pred_detail(RunRow("r")) == "-"


def test_log_panel_skips_non_positive_values():
    x = np.arange(1, 1001, dtype=float)
    y = np.exp(-x / 100)
    y[500] = 0.0
    rows = rasterize(Panel("l", "loss", (Series("train", x, y),), log=True), (), (0, 1000), 60, 8)
    labels = [line[:6].strip() for line in as_text(rows).splitlines()[1:-1]]
    assert labels[0] and labels[-1]  # top and bottom labels in data units


# -- filter and sort ------------------------------------------------------------------


ROWS = [
    RunRow(
        "wd0.1-s00", seed=0, weight_decay=0.1, phase="grokked", val_acc=0.99, alarms=("gai_spike",), state="running"
    ),
    RunRow("wd0.1-s01", seed=1, weight_decay=0.1, phase="memorized", val_acc=0.05),
    RunRow("wd1-s00", seed=0, weight_decay=1.0, phase="memorized", val_acc=None, state="completed"),
    RunRow("wd1-s01", seed=1, weight_decay=1.0, phase="anti-grokking", val_acc=0.3),
]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", [0, 1, 2, 3]),
        ("phase:mem", [1, 2]),
        ("phase:grokked,anti", [0, 3]),
        ("wd:1", [2, 3]),
        ("wd:0.1,1 seed:1", [1, 3]),
        ("has:alarm", [0]),
        ("state:comp", [2]),
        ("s01", [1, 3]),
        ("wd1 memorized", [2]),
    ],
)
def test_filter(text, expected):
    f = parse_filter(text)
    assert [i for i, r in enumerate(ROWS) if f.matches(r)] == expected


def test_filter_reports_bad_numbers():
    assert parse_filter("wd:x seed:1.5").errors == ("wd:x is not a number", "seed:1.5 is not an integer")


def test_sort_puts_missing_values_last_both_ways():
    ids = lambda rows: [r.run_id for r in rows]  # noqa: E731
    assert ids(sort_rows(ROWS, "val")) == ["wd0.1-s01", "wd1-s01", "wd0.1-s00", "wd1-s00"]
    assert ids(sort_rows(ROWS, "val", reverse=True)) == ["wd0.1-s00", "wd1-s01", "wd0.1-s01", "wd1-s00"]
    assert ids(sort_rows(ROWS, "phase")) == ["wd0.1-s01", "wd1-s00", "wd0.1-s00", "wd1-s01"]
    assert ids(sort_rows(ROWS, "mark")) == sorted(ids(ROWS))  # not sortable: by run id


def test_every_default_column_exists_and_formats_an_empty_row():
    for key in DEFAULT_COLUMNS:
        col = COLUMNS[key]
        assert col.cell(RunRow("r")) is not None
        assert col.description


def test_run_identity_comes_from_run_json_only():
    """Seed, weight decay and total steps are run.json's (the run contract); a run id is a name, never parsed."""
    from grokwatch.store import RunConfig

    cfg = RunConfig.from_json({"seed": 3, "optimizer": {"weight_decay": 0.5}, "total_steps": 10})
    assert (cfg.seed, cfg.weight_decay, cfg.steps) == (3, 0.5, 10)
    cfg = RunConfig.from_json({"run_id": "wd0.3-s07"})
    assert (cfg.seed, cfg.weight_decay, cfg.steps) == (None, None, None)


# -- config ---------------------------------------------------------------------------------


def test_config_defaults_when_no_file(isolated_home):
    assert load_config() == TuiConfig()


def test_config_from_the_default_place(isolated_home):
    path = isolated_home / ".config" / "grokwatch" / "tui.toml"
    path.parent.mkdir(parents=True)
    path.write_text('[table]\ncolumns = ["phase", "val"]\n[refresh]\ninterval = 2\n[ui]\ntheme = "textual-light"\n')
    cfg = load_config(known_columns=tuple(COLUMNS))
    assert cfg.columns == ("run", "phase", "val")  # run is always there
    assert cfg.interval == 2.0 and cfg.theme == "textual-light"


@pytest.mark.parametrize(
    "data,message",
    [
        ({"table": {"columns": ["nope"]}}, "unknown column(s) nope"),
        ({"table": {"colums": []}}, "unknown key table.colums"),
        ({"tabel": {}}, "unknown section [tabel]"),
        ({"refresh": {"interval": "fast"}}, "refresh.interval must be a float"),
        ({"refresh": {"interval": -1}}, "must not be negative"),
        ({"keys": {"runs.sort_next": 1}}, "[keys] maps binding ids"),
        ({"table": {"sort": "zzz"}}, "table.sort must be a column key"),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(TuiConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(data, known_columns=tuple(COLUMNS))


def test_explicit_missing_config_is_an_error(tmp_path):
    with pytest.raises(TuiConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_test_config_freezes_everything():
    cfg = TuiConfig.for_tests()
    assert not cfg.follow and not cfg.cursor_blink and not cfg.animations
    assert cfg.now() == cfg.now() == cfg.clock and cfg.hostname == "testhost"


# -- alarms.jsonl tail, the feed, the watcher source ----------------------------------------


def test_alarm_tail_reads_only_what_was_appended(tmp_path):
    path = tmp_path / "alarms.jsonl"
    tail = AlarmTail(path)
    assert not tail.poll()
    rec = {
        "run": "r1",
        "rule": "gai_spike",
        "step": 10,
        "value": 4.2,
        "threshold": 3.5,
        "state": "firing",
        "time": "2024-01-01T00:00:00.000Z",
    }
    path.write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "run": "r2"}))  # the 2nd line is not finished
    assert tail.poll() and [a.run_id for a in tail.events] == ["r1"]
    with open(path, "a") as fh:
        fh.write("\n" + json.dumps({**rec, "state": "resolved", "step": 20}) + "\nnot json\n")
    assert tail.poll() and [(a.run_id, a.state) for a in tail.events] == [
        ("r1", "firing"),
        ("r2", "firing"),
        ("r1", "resolved"),
    ]
    assert tail.active() == {"r2": ("gai_spike",)}
    path.write_text(json.dumps(rec) + "\n")  # truncated and rewritten
    assert tail.poll() and len(tail.events) == 1


def test_feed_coalesces_a_burst_into_few_models():
    built, posted = [], []
    done = threading.Event()

    def build():
        built.append(1)
        return len(built)

    def post(m):
        posted.append(m)
        done.set()

    feed = ModelFeed(build, post, min_interval=0.05).start()
    try:
        for _ in range(1000):
            feed.notify()
        assert done.wait(5)
        time.sleep(0.2)
        assert 1 <= len(built) <= 3
        assert posted == list(range(1, len(built) + 1))
    finally:
        feed.close()
    assert not feed._thread.is_alive()


def test_feed_waits_while_the_ui_is_behind():
    ready = threading.Event()
    posted = []
    feed = ModelFeed(lambda: 1, posted.append, min_interval=0.0, wait_ready=ready.is_set).start()
    try:
        feed.notify()
        time.sleep(0.2)
        assert posted == []
        ready.set()
        deadline = time.monotonic() + 5
        while not posted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert posted == [1]
    finally:
        feed.close()


def test_the_watcher_source_rows_are_what_the_store_says(sim_sweep):
    """Each row against the run's own files, read apart from the watcher: identity,
    step, t_mem / t_grok and phase (grokwatch.runs.phases), the sparkline; stalled
    exactly when a running run's heartbeat is older than the stall timeout."""
    from grokwatch.runs.phases import phase_of
    from grokwatch.store import RunReader, list_runs
    from grokwatch.tui.watcher_source import SPARK_WIDTH, WatcherSource

    watcher = WatcherSource(sim_sweep, stall_timeout=1800)
    try:
        watcher.refresh()
        model = watcher.model()
    finally:
        watcher.close()
    runs = list_runs(sim_sweep)
    assert model.run_ids == tuple(p.name for p in runs) and len(model.rows) == 12
    now = time.time()
    stalled = 0
    for path, row in zip(runs, model.rows):
        r = RunReader(path)
        r.refresh()
        sc, status = r.scalars, r.status
        info = phase_of(sc)
        seed, wd, total = r.config.seed, r.config.weight_decay, r.config.steps
        assert (row.seed, row.weight_decay, row.step, row.total_steps, row.t_mem, row.t_grok) == (
            seed,
            wd,
            int(sc["step"][-1]),
            total,
            info.t_mem,
            info.t_grok,
        ), path.name
        late = status.state == "running" and now - status.heartbeat_unix > 1800
        assert row.phase == ("stalled" if late else info.phase), path.name
        stalled += late
        assert row.val_spark == sparkline_values(sc["step"], sc["val_acc"], SPARK_WIDTH)
    assert stalled == 1  # the simulated sweep's stalled run
    assert model.alarms and any(r.alarms for r in model.rows)  # the watcher runs the alarm engine


def test_a_broken_watcher_is_an_error_not_another_data_path(sim_sweep, monkeypatch, capsys):
    """The dashboard reads the sweep only through the watcher: when grokwatch.watch
    cannot be imported (here: a bug raises at import), `grokwatch tui` says so in
    one line and exits 1."""
    import sys

    from grokwatch.commands.main import main

    class Broken:
        def find_spec(self, name, path=None, target=None):
            if name == "grokwatch.watch":
                raise RuntimeError("a bug in\nthe watcher")
            return None

    monkeypatch.delitem(sys.modules, "grokwatch.watch")
    monkeypatch.delitem(sys.modules, "grokwatch.tui.watcher_source", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    assert main(["tui", str(sim_sweep)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "grokwatch: error: the sweep watcher (grokwatch.watch) cannot be loaded: RuntimeError: a bug in the watcher"
    ]


def test_tui_modules_import_one_another_without_a_cycle():
    """Every import between modules of grokwatch.tui (function-level ones too) points one way."""
    import ast
    from pathlib import Path

    import grokwatch.tui

    root = Path(grokwatch.tui.__file__).parent
    mods = {
        ".".join(("grokwatch.tui", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in root.rglob("*.py")
    }
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" for a in node.names] + [target]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod and name != "grokwatch.tui":
                    graph[mod].add(name)
    assert "grokwatch.tui.watcher_source" in graph["grokwatch.tui.app"]  # the walk sees function-level imports
    # The source protocol and its one implementation do not import each other.
    assert "grokwatch.tui.watcher_source" not in graph["grokwatch.tui.source"]
    assert "grokwatch.tui.source" not in graph["grokwatch.tui.watcher_source"]
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*trail, m, n])
            if n not in state:
                visit(n, [*trail, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_resolve_sweep_uses_the_shared_source_resolver(sim_sweep, tmp_path):
    assert resolve_sweep(sim_sweep) == sim_sweep.resolve()
    assert resolve_sweep(sim_sweep.parent) == sim_sweep.resolve()  # a root holding one sweep
    with pytest.raises(UsageError, match="run directory"):
        resolve_sweep(sim_sweep / "wd1.0-s00")
    with pytest.raises(UsageError, match="no such sweep directory"):
        resolve_sweep(tmp_path / "nope")
    assert resolve_sweep(tmp_path) == tmp_path.resolve()  # empty: a sweep that has not started


def test_model_changed_since():
    a = SweepModel("s", "/s", rows=tuple(ROWS))
    b = SweepModel(
        "s",
        "/s",
        rows=(
            ROWS[0],
            ROWS[1].__class__(**{**{f: getattr(ROWS[1], f) for f in ROWS[1].__slots__}, "step": 5}),
            *ROWS[2:],
        ),
    )
    assert b.changed_since(a) == {"wd0.1-s01"}
    assert a.changed_since(None) == {r.run_id for r in ROWS}


@pytest.mark.parametrize(
    "module",
    [
        "grokwatch.tui.model",
        "grokwatch.tui.series",
        "grokwatch.tui.canvas",
        "grokwatch.tui.source",
        "grokwatch.tui.watcher_source",
        "grokwatch.tui.curves",
        "grokwatch.tui.journal",
        "grokwatch.tui.config",
        "grokwatch.tui.filtering",
    ],
)
def test_view_model_modules_are_headless(module):
    """The view-model and its source run without textual or rich (they are built off the UI thread)."""
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
