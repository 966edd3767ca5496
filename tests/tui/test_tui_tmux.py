"""The dashboard in a real terminal (tmux): keys in, the screen read back, the exit code checked.

Skipped with a printed reason when tmux is missing, unless
GROKWATCH_REQUIRE_INFRA=1 (CI), where that is a failure.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tui_helpers import Tmux

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmux(request):
    t = Tmux(f"gw-{request.node.name[:20]}", cols=80, rows=24)
    yield t
    t.stop()


def _env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "TERM": "xterm-256color",
        "PYTHONPATH": str(REPO),
        "LC_ALL": "C.UTF-8",
    }


@pytest.mark.slow
def test_dashboard_in_a_real_terminal(tmux, sim_sweep, isolated_home):
    # `grokwatch SOURCE` (no sub-command) opens the dashboard, following the sweep live
    tmux.start(
        f"cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} -m grokwatch {shlex.quote(str(sim_sweep))}",
        env=_env(isolated_home),
    )
    screen = tmux.wait("wd1.0-s03", timeout=60)
    assert "12 runs" in screen and "grokked" in screen and "Quit" in screen.splitlines()[-1]
    tmux.keys("g")
    tmux.wait("wd \\ seed")
    tmux.keys("a")
    tmux.wait("htsr_alpha_below_2")
    tmux.keys("r", "/")
    tmux.type("phase:anti")
    tmux.keys("Enter")
    screen = tmux.wait("1/12 runs")
    assert "wd1.0-s01" in screen and "wd0.1-s00" not in screen
    tmux.keys("Enter")
    screen = tmux.wait("accuracy")
    assert "wd1.0-s01" in screen.splitlines()[0] and "anti-grokking" in screen
    tmux.keys("Escape")  # an Escape and a key at once read as Alt+key: wait in between
    tmux.wait("filter: phase:anti")
    tmux.keys("?")
    tmux.wait("grokwatch dashboard")
    tmux.keys("Escape")
    tmux.wait_gone("grokwatch dashboard")
    tmux.keys("q")
    screen = tmux.wait("[exited rc=", timeout=30)
    assert "[exited rc=0]" in screen


@pytest.mark.slow
def test_a_crash_restores_the_terminal_and_exits_non_zero(tmux, sim_sweep, isolated_home, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        from grokwatch.commands.main import main
        from grokwatch.tui.app import GrokwatchApp

        def boom(self, msg):
            raise RuntimeError("deliberate crash in the dashboard")

        GrokwatchApp.on_model_ready = boom
        sys.exit(main(["tui", {str(sim_sweep)!r}]))
    """)
    )
    tmux.start(
        f"cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} {shlex.quote(str(script))}",
        env=_env(isolated_home),
    )
    screen = tmux.wait("[exited rc=", timeout=60)
    assert "[exited rc=1]" in screen
    assert "deliberate crash in the dashboard" in screen  # the error is printed after the terminal is restored


@pytest.mark.slow
def test_demo_opens_the_dashboard_and_quitting_stops_the_trainers(tmux, isolated_home, tmp_path):
    root = tmp_path / "demo-root"
    tmux.start(
        f"cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} -m grokwatch demo --tui"
        f" --root {shlex.quote(str(root))} --weight-decays 1 --seeds 1 --steps 100000 --jobs 1",
        env=_env(isolated_home),
    )
    screen = tmux.wait("wd1.0-s00", timeout=120)  # planned: in the table before its trainer starts
    assert "grokwatch" in screen.splitlines()[0] and "demo" in screen.splitlines()[0]
    deadline = time.monotonic() + 120
    while not re.search(r"\b[1-9][0-9.]*k?/100k", screen):  # the trainer is writing shards: step / total
        assert time.monotonic() < deadline, f"no step written after 120 s; screen is:\n{screen}"
        time.sleep(0.2)
        screen = tmux.screen()
    assert "running" in screen
    tmux.keys("q")
    screen = tmux.wait("[exited rc=", timeout=120)
    assert "[exited rc=130]" in screen  # the sweep was cut short: not a success
    assert "interrupted" in screen  # the plain summary after the dashboard closes
    status = json.loads((root / "demo" / "wd1.0-s00" / "status.json").read_text())
    assert status["state"] == "preempted"  # stopped with SIGTERM: checkpointed and flushed


@pytest.mark.slow
def test_a_90_run_sweep_still_being_written(isolated_home, tmp_path, request):
    """The dashboard at scale: a 90-run sweep written live (grokwatch simulate --speed, another
    process), the dashboard at 160x48 in tmux: every run reachable, a run's curves and
    markers shown, and the phase counts change while the runs go on."""
    from grokwatch.sim.simulate import live_simulation

    t = Tmux(f"gw-live-{request.node.name[:12]}", cols=160, rows=48)
    with live_simulation(tmp_path / "root", runs=90, steps=20000, speed=250) as sweep:
        try:
            t.start(
                f"cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} -m grokwatch {shlex.quote(str(sweep))}",
                env=_env(isolated_home),
            )
            first = t.wait("90 runs", timeout=90).splitlines()[0]

            # runs per phase in the status line: "7 grokked" when it has room, else "G7"
            def counts(line: str) -> list:
                return re.findall(
                    r"\b(\d+) (waiting|learning|memorized|grokking|grokked|anti-grokking|"
                    r"diverged|stalled|failed|preempted)\b",
                    line,
                ) or re.findall(r"\b([.lMgGADSFP])(\d+)\b", line)

            t.keys("End")  # the last run of the sorted table is reachable
            t.wait("wd1.0-s29", timeout=30)
            t.keys("Home")  # and the first
            t.wait("wd0.1-s00", timeout=30)
            t.keys("End", "Enter")
            screen = t.wait("accuracy", timeout=30)
            assert "wd1.0-s29" in screen.splitlines()[0]
            assert "t_mem" in screen and "t_grok" in screen  # the marker legend; curves drawn in braille
            assert any("\u2800" <= ch <= "\u28ff" for ch in screen), "no curve drawn"
            t.keys("Escape")
            t.wait("run▲", timeout=30)  # back on the runs table
            deadline = time.monotonic() + 90
            later = first
            while time.monotonic() < deadline:
                later = t.screen().splitlines()[0]
                if counts(later) and counts(later) != counts(first):
                    break
                time.sleep(1)
            assert counts(later) != counts(first), f"phase counts never changed: {first!r} -> {later!r}"
            t.keys("q")
            assert "[exited rc=0]" in t.wait("[exited rc=", timeout=60)
        finally:
            t.stop()
