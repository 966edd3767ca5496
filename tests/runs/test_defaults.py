"""Shared defaults have one home (grokwatch.runs.defaults) and every part of the project
uses it: the stall timeout, and the t_mem / t_grok thresholds."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from grokwatch.runs import defaults
from grokwatch.runs.defaults import GROK_VAL_ACC, MEM_TRAIN_ACC, STALL_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_import_nothing_heavy():
    """The trainer and the light install read it: no numpy, torch or pyarrow behind it."""
    code = (
        "import sys, grokwatch.runs.defaults as d; "
        "print(sorted(m for m in ('numpy', 'torch', 'pyarrow') if m in sys.modules), d.STALL_TIMEOUT)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", str(STALL_TIMEOUT)]


def _default(func, name):
    return inspect.signature(func).parameters[name].default


# what each sub-command needs besides its options, so that parsing it succeeds
_REQUIRED = {("alerts",): ["SWEEP"], ("sweep", "status"): ["--root", "ROOT", "--sweep", "S"]}


def _option_default(argv_prefix: list[str], dest: str):
    """The default of an option of a sub-command, as argparse would give it."""
    from grokwatch.commands.main import build_parser

    # parse_known_args fills in every default of the sub-command named, as the command line would
    args, _ = build_parser().parse_known_args([*argv_prefix, *_REQUIRED.get(tuple(argv_prefix), [])])
    return getattr(args, dest)


def test_every_stall_timeout_is_the_shared_one():
    from grokwatch.alerts.daemon import DaemonOptions
    from grokwatch.commands.sweep import sweep_rows
    from grokwatch.tui.app import open_source
    from grokwatch.tui.config import TuiConfig
    from grokwatch.tui.watcher_source import WatcherSource
    from grokwatch.watch import ScoreConfig
    from grokwatch.watch.queue import run_state

    found = {
        "watcher (ScoreConfig)": ScoreConfig().stall_timeout,
        "alert daemon (DaemonOptions)": DaemonOptions().stall_timeout,
        "grokwatch alerts --stall-timeout": _option_default(["alerts"], "stall_timeout"),
        "grokwatch sweep status --stall-seconds": _option_default(["sweep", "status"], "stall_seconds"),
        "sweep_rows": _default(sweep_rows, "stall_seconds"),
        "dashboard config": TuiConfig().stall_timeout,
        "dashboard source": _default(open_source, "stall_timeout"),
        "WatcherSource": _default(WatcherSource, "stall_timeout"),
        "state column": _default(run_state, "stall_timeout"),
    }
    assert found == dict.fromkeys(found, STALL_TIMEOUT)


def _run(sweep: Path, rid: str, heartbeat_age: float) -> None:
    from grokwatch.store import RunWriter
    from grokwatch.store.atomic import atomic_write_json, read_json

    s = np.arange(1, 201)
    w = RunWriter(sweep / rid, {"seed": 0, "weight_decay": 1.0, "total_steps": 1000}).open()
    w.write_shard(
        "scalars",
        {"step": s, "train_acc": np.full(200, 0.5), "val_acc": np.full(200, 0.1), "train_loss": np.full(200, 1.0)},
    )
    w.write_status(force=True)  # running
    status = read_json(sweep / rid / "status.json")
    status["heartbeat_unix"] = time.time() - heartbeat_age
    atomic_write_json(sweep / rid / "status.json", status)


def test_sweep_status_and_the_watcher_agree_on_the_stall_timeout(tmp_path, capsys):
    """Runs whose heartbeats are 10 s, 450 s and 900 s old: stalled past the one
    timeout in `grokwatch sweep status`, the watcher, its alarm and the dashboard
    alike (450 s: stalled under the old 300 s of `sweep status`, not under 600 s)."""
    from grokwatch.alerts import AlarmSubscriber, AlertEngine, load_rules
    from grokwatch.commands.main import main
    from grokwatch.tui.watcher_source import WatcherSource
    from grokwatch.watch import SweepWatcher

    assert 300 < 450 < STALL_TIMEOUT < 900
    sweep = tmp_path / "sw"
    ages = {"wd1.0-s00": 10.0, "wd1.0-s01": 450.0, "wd1.0-s02": 900.0}
    for rid, age in ages.items():
        _run(sweep, rid, age)
    want = {rid: age > STALL_TIMEOUT for rid, age in ages.items()}

    assert main(["sweep", "status", "--root", str(tmp_path), "--sweep", "sw", "--json"]) == 0
    status = {r["run_id"]: r["state"] == "stalled" for r in json.loads(capsys.readouterr().out)["runs"]}

    events: list = []
    snap = SweepWatcher(
        sweep, poll=True, subscribers=[AlarmSubscriber(AlertEngine(load_rules()), on_events=events.extend)]
    ).cycle()
    watcher = {rid: v.stalled for rid, v in snap.runs.items()}
    alarm = {rid: any(e.run == rid and e.rule == "stalled" and e.state == "firing" for e in events) for rid in ages}

    source = WatcherSource(sweep, poll=True)
    try:
        source.refresh()
        dashboard = {r.run_id: r.state == "stalled" for r in source.model().rows}
    finally:
        source.close()
    assert status == watcher == alarm == dashboard == want


def test_phase_thresholds_come_from_the_defaults():
    from grokwatch.runs.phases import Thresholds, phase_of

    th = Thresholds()
    assert (th.mem_train_acc, th.grok_val_acc, th.grokking_val_acc, th.anti_val_acc) == (
        defaults.MEM_TRAIN_ACC,
        defaults.GROK_VAL_ACC,
        defaults.GROKKING_VAL_ACC,
        defaults.ANTI_VAL_ACC,
    )
    steps = np.arange(1, 5)
    at = {
        "step": steps,
        "train_acc": np.array([0.5, MEM_TRAIN_ACC, 1.0, 1.0]),
        "val_acc": np.array([0.0, 0.0, np.nextafter(GROK_VAL_ACC, 0), GROK_VAL_ACC]),
        "train_loss": np.ones(4),
    }
    info = phase_of(at)
    assert (info.t_mem, info.t_grok, info.phase) == (2, 4, "grokked")


@pytest.mark.slow
def test_the_trainer_uses_the_same_phase_thresholds():
    """trainer.train imports torch (seconds), hence slow."""
    pytest.importorskip("torch")
    import trainer.train as train

    assert (train.MEM_ACC, train.GROK_ACC) == (MEM_TRAIN_ACC, GROK_VAL_ACC)
