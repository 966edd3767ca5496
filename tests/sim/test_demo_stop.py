"""Stopping the demo early.

`q` or Ctrl-C in the dashboard, Ctrl-C or SIGTERM in the plain mode: no trainer
outlives the demo (real trainer processes, found by their command line, orphans
included), queued runs never start once it stops, a trainer stopped while it
was still starting says "stopped" (not "failed (exit -15)"), and the exit code
says the sweep was cut short (128 + the signal; 130 for a quit dashboard).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grokwatch.sim.demo import Demo, plan_demo

psutil = pytest.importorskip("psutil", reason="psutil finds the trainer processes (pip install psutil)")

REPO = Path(__file__).resolve().parents[2]
GROKWATCH = [sys.executable, "-m", "grokwatch"]
# One trainer at a time and two runs: the second is queued when the demo stops.
# wd 0.1 does not grok for many thousand steps: the first is still training.
DEMO_ARGS = ["--weight-decays", "0.1", "--seeds", "2", "--jobs", "1", "--steps", "100000"]


def _trainers(root: Path) -> list:
    """Live trainer processes writing under ``root``, whoever their parent (orphans too)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "trainer" in cmd and str(root) in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def _wait_for(what, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(message)


@pytest.fixture
def no_leftovers(tmp_path):
    """Whatever the test says, kill the trainers it leaves behind (and fail if any)."""
    yield tmp_path
    left = _trainers(tmp_path)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    assert not left, f"trainers left running: {[p.pid for p in left]}"


def test_a_stopped_demo_never_starts_queued_runs(no_leftovers):
    root = no_leftovers
    plan = plan_demo(root, weight_decays=(1.0,), seeds=3, jobs=1)
    for run in plan.runs:  # a stand-in for a trainer still importing torch: no SIGTERM handler yet
        run.args = [sys.executable, "-c", "import time, sys; time.sleep(60)", "trainer", str(root)]
    demo = Demo(plan)
    demo.poll()
    assert [r.proc is not None for r in plan.runs] == [True, False, False]
    demo.stop(timeout=10)
    for _ in range(3):
        demo.poll()  # what run_demo and the dashboard's finish() do after stop()
    assert [r.proc is not None for r in plan.runs] == [True, False, False], "a queued run started after stop()"
    first = plan.runs[0]
    assert first.returncode == -signal.SIGTERM
    assert first.phase == "stopped before its first step", first.phase
    assert "failed" not in demo.table()
    assert [r.phase for r in plan.runs[1:]] == ["not started", "not started"]
    assert not demo.done  # a stopped sweep is not a finished one


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_plain_demo_stopped_by_a_signal_leaves_no_trainer(no_leftovers, sig, code):
    root = no_leftovers
    proc = subprocess.Popen(
        [*GROKWATCH, "demo", "--no-tui", "--root", str(root), *DEMO_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: _trainers(root), 60, "the demo started no trainer within 60 s")
        time.sleep(1.0)  # the trainer is importing torch or training: either way it must stop
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, out + err
    assert not _trainers(root), f"trainers outlived the demo:\n{out}\n{err}"
    assert "Traceback" not in err, err
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("wd0.1-s0")}
    assert "stopped" in lines["wd0.1-s00"] and "failed" not in out, out
    assert lines["wd0.1-s01"].endswith("not started"), out
    assert not (root / "demo" / "wd0.1-s01").exists()
    assert not (root / "demo" / ".demo-logs" / "wd0.1-s01.log").exists()
    assert "interrupted" in out


def _tmux(name: str):
    sys.path.insert(0, str(REPO / "tests" / "tui"))
    from tui_helpers import Tmux  # skips (or fails under CI) when tmux is missing

    return Tmux(name, cols=100, rows=30)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["q", "ctrl-c", "sigterm"])
def test_dashboard_demo_stopped_leaves_no_trainer(no_leftovers, how):
    root = no_leftovers / "root"
    home = no_leftovers / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "TERM": "xterm-256color",
        "PYTHONPATH": str(REPO),
        "LC_ALL": "C.UTF-8",
    }
    tmux = _tmux(f"gw-demo-stop-{how}-{os.getpid()}")
    try:
        tmux.start(
            f"cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} -m grokwatch demo --tui "
            f"--root {shlex.quote(str(root))} {' '.join(DEMO_ARGS)}",
            env=env,
        )
        tmux.wait("Quit", timeout=60)  # the dashboard's footer
        _wait_for(lambda: _trainers(root), 60, "the demo started no trainer within 60 s")
        time.sleep(1.0)
        if how == "sigterm":
            demo = [
                p
                for p in psutil.process_iter(["cmdline"])
                if "grokwatch" in (p.info["cmdline"] or []) and str(root) in (p.info["cmdline"] or [])
            ]
            assert len(demo) == 1, demo
            demo[0].send_signal(signal.SIGTERM)
        else:
            tmux.keys("q" if how == "q" else "C-c")
        screen = tmux.wait("[exited rc=", timeout=60)
        assert not _trainers(root), f"trainers outlived the demo:\n{screen}"
        assert f"[exited rc={143 if how == 'sigterm' else 130}]" in screen, screen
        assert "not started" in screen and "interrupted" in screen and "failed" not in screen, screen
        assert "Traceback" not in screen, screen
        assert not (root / "demo" / "wd0.1-s01").exists()
    finally:
        tmux.stop()
