"""The dashboard's pure parts: series, canvas, filter, sort, config, alarms tail, feed, adapters."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from grokwatch.cli import UsageError
from grokwatch.tui.canvas import as_text, rasterize
from grokwatch.tui.columns import COLUMNS, sort_rows
from grokwatch.tui.config import DEFAULT_COLUMNS, ConfigError, TuiConfig, config_from_dict, load_config
from grokwatch.tui.filtering import parse_filter
from grokwatch.tui.model import Marker, ModelFeed, Panel, RunRow, Series, SweepModel, run_identity
from grokwatch.tui.series import decimate, prepare, smooth, sparkline, sparkline_values
from grokwatch.tui.source import AlarmTail, StoreSource, resolve_sweep

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


def test_log_panel_skips_non_positive_values():
    x = np.arange(1, 1001, dtype=float)
    y = np.exp(-x / 100)
    y[500] = 0.0
    rows = rasterize(Panel("l", "loss", (Series("train", x, y),), log=True), (), (0, 1000), 60, 8)
    labels = [line[:6].strip() for line in as_text(rows).splitlines()[1:-1]]
    assert labels[0] and labels[-1]  # top and bottom labels in data units


# -- filter and sort ------------------------------------------------------------------


ROWS = [
    RunRow("wd0.1-s00", seed=0, weight_decay=0.1, phase="grokked", val_acc=0.99, alarms=("gai_spike",), state="running"),
    RunRow("wd0.1-s01", seed=1, weight_decay=0.1, phase="memorized", val_acc=0.05),
    RunRow("wd1-s00", seed=0, weight_decay=1.0, phase="memorized", val_acc=None, state="completed"),
    RunRow("wd1-s01", seed=1, weight_decay=1.0, phase="anti-grokking", val_acc=0.3),
]


@pytest.mark.parametrize("text,expected", [
    ("", [0, 1, 2, 3]),
    ("phase:mem", [1, 2]),
    ("phase:grokked,anti", [0, 3]),
    ("wd:1", [2, 3]),
    ("wd:0.1,1 seed:1", [1, 3]),
    ("has:alarm", [0]),
    ("state:comp", [2]),
    ("s01", [1, 3]),
    ("wd1 memorized", [2]),
])
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


def test_run_identity_from_config_or_run_id():
    assert run_identity("x", {"seed": 3, "optimizer": {"weight_decay": 0.5}, "total_steps": 10}) == (3, 0.5, 10)
    assert run_identity("wd0.3-s07", {}) == (7, 0.3, None)
    assert run_identity("other", None) == (None, None, None)


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


@pytest.mark.parametrize("data,message", [
    ({"table": {"columns": ["nope"]}}, "unknown column(s) nope"),
    ({"table": {"colums": []}}, "unknown key table.colums"),
    ({"tabel": {}}, "unknown section [tabel]"),
    ({"refresh": {"interval": "fast"}}, "refresh.interval must be a float"),
    ({"refresh": {"interval": -1}}, "must not be negative"),
    ({"keys": {"runs.sort_next": 1}}, "[keys] maps binding ids"),
    ({"table": {"sort": "zzz"}}, "table.sort must be a column key"),
])
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(data, known_columns=tuple(COLUMNS))


def test_explicit_missing_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_test_config_freezes_everything():
    cfg = TuiConfig.for_tests()
    assert not cfg.follow and not cfg.cursor_blink and not cfg.animations
    assert cfg.now() == cfg.now() == cfg.clock and cfg.hostname == "testhost"


# -- alarms.jsonl tail, the feed, the store adapter --------------------------------------------


def test_alarm_tail_reads_only_what_was_appended(tmp_path):
    path = tmp_path / "alarms.jsonl"
    tail = AlarmTail(path)
    assert not tail.poll()
    rec = {"run": "r1", "rule": "gai_spike", "step": 10, "value": 4.2, "threshold": 3.5, "state": "firing",
           "time": "2024-01-01T00:00:00.000Z"}
    path.write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "run": "r2"}))  # the 2nd line is not finished
    assert tail.poll() and [a.run_id for a in tail.events] == ["r1"]
    with open(path, "a") as fh:
        fh.write("\n" + json.dumps({**rec, "state": "resolved", "step": 20}) + "\nnot json\n")
    assert tail.poll() and [(a.run_id, a.state) for a in tail.events] == [("r1", "firing"), ("r2", "firing"),
                                                                          ("r1", "resolved")]
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


def test_store_and_watcher_adapters_agree(sim_sweep):
    from grokwatch.tui.watcher_source import WatcherSource

    store = StoreSource(sim_sweep, stall_timeout=1800)
    store.refresh()
    watcher = WatcherSource(sim_sweep, stall_timeout=1800)
    try:
        watcher.refresh()
        a, b = store.model(), watcher.model()
    finally:
        watcher.close()
        store.close()
    assert a.run_ids == b.run_ids and len(a.rows) == 12
    for ra, rb in zip(a.rows, b.rows):
        assert (ra.seed, ra.weight_decay, ra.step, ra.total_steps, ra.t_mem, ra.t_grok) == \
               (rb.seed, rb.weight_decay, rb.step, rb.total_steps, rb.t_mem, rb.t_grok)
        assert ra.phase == rb.phase or rb.phase == "stalled"
        assert ra.val_spark == rb.val_spark
    assert b.alarms and not a.alarms  # only the watcher runs an alarm engine


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
    b = SweepModel("s", "/s", rows=(ROWS[0], ROWS[1].__class__(**{**{f: getattr(ROWS[1], f) for f in ROWS[1].__slots__}, "step": 5}), *ROWS[2:]))
    assert b.changed_since(a) == {"wd0.1-s01"}
    assert a.changed_since(None) == {r.run_id for r in ROWS}


@pytest.mark.parametrize("module", ["grokwatch.tui.model", "grokwatch.tui.series", "grokwatch.tui.canvas",
                                    "grokwatch.tui.source", "grokwatch.tui.watcher_source", "grokwatch.tui.config",
                                    "grokwatch.tui.filtering"])
def test_view_model_modules_are_headless(module):
    """The view-model and its adapters run without textual or rich (they are built off the UI thread)."""
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
