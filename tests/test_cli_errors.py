"""What a researcher meets first: a mistake gives one line and a non-zero exit,
never a traceback, and never a silent success.

The commands run as a user runs them: ``python -m grokwatch ...`` in a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GROKWATCH = [sys.executable, "-m", "grokwatch"]


def gw(*args: str, timeout: float = 120, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this tree's grokwatch, whatever the cwd
    return subprocess.run(
        [*GROKWATCH, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> str:
    """A non-zero exit with one line on stderr (no traceback) holding every fragment."""
    assert out.returncode not in (0, None), f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    for f in fragments:
        assert f in out.stderr, out.stderr
    return out.stderr


# -- item 4: sweep plan refuses what the trainer would refuse on every node ----------
def test_sweep_plan_refuses_an_unknown_preset(tmp_path):
    out = gw("sweep", "plan", "--root", tmp_path, "--sweep", "sw", "--preset", "foo")
    err = one_line_error(out, "--preset", "'foo'", "tiny")
    assert err.startswith("grokwatch: error: ")
    assert out.stdout == ""  # no 90-task script
    assert not (tmp_path / "sw").exists()  # nor a manifest


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--trainer-arg=--lr=-1"], "--lr"),
        (["--trainer-arg=--bogus"], "--bogus"),
        (["--trainer-arg=--d-model=65"], "--d-model"),
        (["--trainer-arg=--probes=nope"], "--probes"),
        (["--preset", "nanda", "--trainer-arg=--train-frac=1.5"], "--train-frac"),
    ],
)
def test_sweep_plan_checks_trainer_flags_with_the_trainer(tmp_path, capsys, args, fragment):
    from grokwatch.commands.main import main

    assert main(["sweep", "plan", "--root", str(tmp_path), "--sweep", "sw", "--preset", "tiny", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and fragment in captured.err, captured.err
    assert not (tmp_path / "sw" / "sweep.json").exists()


def test_sweep_plan_checks_the_trainer_flags_without_importing_the_trainer(tmp_path):
    """The checks are grokwatch.runs.training's: they hold on a login node where the trainer cannot import."""
    code = (
        "import sys; sys.modules['trainer'] = None\n"  # any import of the trainer fails
        "from grokwatch.commands.main import main\n"
        f"rc = main(['sweep', 'plan', '--root', {str(tmp_path)!r}, '--sweep', 'sw', '--preset', 'tiny',"
        " '--trainer-arg=--lr=-1'])\n"
        "assert not any(m == 'trainer' or m.startswith('trainer.') for m in sys.modules if sys.modules[m])\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    err = one_line_error(out, "the trainer would refuse every task", "--lr")
    assert err.startswith("grokwatch: error: ")
    assert not (tmp_path / "sw" / "sweep.json").exists()


def test_sweep_plan_still_plans_a_good_sweep(tmp_path, capsys):
    from grokwatch.commands.main import main

    assert (
        main(
            [
                "sweep",
                "plan",
                "--root",
                str(tmp_path),
                "--sweep",
                "sw",
                "--preset",
                "tiny",
                "--seeds",
                "2",
                "--trainer-arg=--lr=0.002",
                "--checkpoint-every",
                "500",
            ]
        )
        == 0
    )
    assert "--preset tiny" in capsys.readouterr().out
    assert (tmp_path / "sw" / "sweep.json").exists()


# -- item 5: one line, not a traceback ------------------------------------------------
@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> Path:
    from grokwatch.sim.simulate import simulate_sweep

    return Path(simulate_sweep(tmp_path_factory.mktemp("cli-errors"), "sim", runs=6, steps=1000, seed=1))


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """Run with stdout a pipe nobody reads any more (``| head`` after head has exited)."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(
            [*GROKWATCH, *map(str, args)], stdout=w, stderr=subprocess.PIPE, text=True, timeout=120, cwd=REPO
        )
    finally:
        os.close(w)


@pytest.mark.parametrize("command", ["predict", "sweep status", "simulate"])
def test_a_closed_stdout_exits_quietly(small_sweep, tmp_path, command):
    args = {
        "predict": ["predict", small_sweep],
        "sweep status": ["sweep", "status", "--root", small_sweep.parent, "--sweep", small_sweep.name],
        "simulate": ["simulate", tmp_path, "--runs", "1", "--steps", "300"],
    }[command]
    out = _into_closed_pipe(*args)
    assert out.stderr == "", out.stderr  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert out.returncode in (0, 141), out.returncode


def test_a_closed_stdout_under_head(small_sweep):
    """The shell's own pipeline: the command's exit status (pipefail) and stderr stay clean."""
    cmd = (
        f"set -o pipefail; {' '.join(GROKWATCH)} sweep status --root {small_sweep.parent} "
        f"--sweep {small_sweep.name} | head -c 0"
    )
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.stderr == "", out.stderr
    assert out.returncode in (0, 141)


def test_simulate_into_a_file_is_one_line(tmp_path):
    f = tmp_path / "afile"
    f.write_text("not a directory")
    one_line_error(gw("simulate", f, "--runs", "2", "--steps", "300"), str(f), "not a directory")
    one_line_error(gw("simulate", f / "below", "--runs", "2", "--steps", "300"), "cannot create")
    assert f.read_text() == "not a directory"


@pytest.mark.parametrize("mode", ["--headless", "--no-tui"])
def test_demo_with_a_file_as_root_is_one_line(tmp_path, mode):
    f = tmp_path / "afile"
    f.write_text("")
    one_line_error(gw("demo", mode, "--root", f, "--seeds", "1", "--weight-decays", "1"), "--root", "not a directory")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "demo").write_text("")  # the sweep directory itself is a file
    one_line_error(gw("demo", mode, "--root", tmp_path / "root", "--seeds", "1"), "not a directory")


def test_report_skips_a_stray_directory_with_one_warning(small_sweep, tmp_path):
    import json
    import shutil

    sweep = tmp_path / "sim"
    shutil.copytree(small_sweep, sweep)
    for name, text in (("stray-empty", ""), ("stray-bad", "{not json"), ("stray-list", "[]")):
        (sweep / name).mkdir()
        (sweep / name / "run.json").write_text(text)
    # and a real run whose run.json lacks its weight decay: placed in a "?" column, not a crash
    some = sorted(p for p in sweep.iterdir() if p.name.startswith("wd"))[0]
    cfg = json.loads((some / "run.json").read_text())
    cfg.pop("weight_decay", None)
    (some / "run.json").write_text(json.dumps(cfg))
    out = gw("report", sweep, "--out", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    warnings = out.stderr.splitlines()
    assert len(warnings) == 3 and all("skipping" in w for w in warnings), out.stderr
    assert {w.split("skipping ")[1].split(":")[0].rsplit("/", 1)[1] for w in warnings} == {
        "stray-empty",
        "stray-bad",
        "stray-list",
    }
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["counts"]["runs"] == 6
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "phase_grid.png").exists()


# -- item 8: no silent or misleading answers -----------------------------------------
def test_a_mistyped_command_is_named_not_opened_as_a_sweep(tmp_path):
    out = gw("simlate", "X", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == "grokwatch: unknown command 'simlate'; did you mean 'simulate'?\n"
    # A word that is an existing path is a SOURCE (the dashboard), however close to a command.
    (tmp_path / "simlate").mkdir()
    out = gw("simlate", "--no-follow", "--interval", "-1", cwd=tmp_path)
    assert "unknown command" not in out.stderr and "--interval" in out.stderr  # reached `tui`


def test_bare_grokwatch_lists_the_commands():
    out = gw()
    assert out.returncode == 2
    assert "tui: error" not in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.startswith("usage: grokwatch")
    for command in ("demo", "sweep", "tui", "alerts", "simulate", "predict", "report"):
        assert f"\n    {command} " in out.stderr, out.stderr
    assert "SOURCE" in out.stderr  # how to open the dashboard


def test_an_unknown_flag_gets_the_sub_commands_usage(tmp_path):
    out = gw("simulate", tmp_path, "--runz", "3")
    assert out.returncode == 2
    assert out.stderr.startswith("usage: grokwatch simulate"), out.stderr
    assert "grokwatch simulate: error: unrecognized arguments: --runz 3; did you mean --runs?" in out.stderr
    out = gw("sweep", "plan", "--root", tmp_path, "--sweep", "s", "--seedz", "2")
    assert out.stderr.startswith("usage: grokwatch sweep plan"), out.stderr
    assert not (tmp_path / "s").exists()


def test_a_long_option_must_be_spelt_out(tmp_path):
    out = gw("simulate", tmp_path, "--run", "2", "--steps", "300")  # not --runs
    assert out.returncode == 2 and "unrecognized arguments: --run 2" in out.stderr, out.stderr
    assert not (tmp_path / "sim").exists()
    assert gw("--verb", "simulate", tmp_path).returncode == 2


def test_every_parser_refuses_abbreviations():
    from grokwatch.commands.main import build_parser

    seen, todo = [], [build_parser()]
    while todo:
        p = todo.pop()
        seen.append(p.prog)
        assert p.allow_abbrev is False, p.prog
        for action in p._actions:
            if action.choices and hasattr(action, "add_parser"):
                todo.extend(action.choices.values())
    assert {"grokwatch", "grokwatch sweep plan", "grokwatch alerts", "grokwatch demo"} <= set(seen)


def test_alerts_once_says_why_it_printed_nothing(small_sweep, tmp_path):
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    out = gw("alerts", empty, "--once", "--no-predict")
    assert out.returncode == 0 and out.stdout == ""
    assert out.stderr == f"grokwatch alerts: no runs under {empty} yet (no <run>/run.json); nothing to watch\n"

    sweep = tmp_path / "sim"
    shutil.copytree(small_sweep, sweep)
    first = gw("alerts", sweep, "--once", "--no-predict")
    assert first.returncode == 0 and first.stderr == "", first.stderr
    n = len(first.stdout.splitlines())
    assert n > 0  # the simulated sweep raises alarms
    again = gw("alerts", sweep, "--once", "--no-predict")
    assert again.returncode == 0 and again.stdout == ""
    assert again.stderr.startswith(f"grokwatch alerts: {n} alarms already delivered, nothing new"), again.stderr
    assert again.stderr.count("\n") == 1
