"""What a researcher meets first (issue 15): a mistake gives one line and a non-zero exit,
never a traceback, and never a silent success.

The commands run as a user runs them: ``python -m grokwatch ...`` in a real process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GROKWATCH = [sys.executable, "-m", "grokwatch"]


def gw(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*GROKWATCH, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=kw.pop("cwd", REPO), **kw)


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


@pytest.mark.parametrize("args, fragment", [
    (["--trainer-arg=--lr=-1"], "--lr"),
    (["--trainer-arg=--bogus"], "--bogus"),
    (["--trainer-arg=--d-model=65"], "--d-model"),
    (["--trainer-arg=--probes=nope"], "--probes"),
    (["--preset", "nanda", "--trainer-arg=--train-frac=1.5"], "--train-frac"),
])
def test_sweep_plan_checks_trainer_flags_with_the_trainer(tmp_path, capsys, args, fragment):
    from grokwatch.cli import main

    assert main(["sweep", "plan", "--root", str(tmp_path), "--sweep", "sw", "--preset", "tiny", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and fragment in captured.err, captured.err
    assert not (tmp_path / "sw" / "sweep.json").exists()


def test_sweep_plan_still_plans_a_good_sweep(tmp_path, capsys):
    from grokwatch.cli import main

    assert main(["sweep", "plan", "--root", str(tmp_path), "--sweep", "sw", "--preset", "tiny", "--seeds", "2",
                 "--trainer-arg=--lr=0.002", "--checkpoint-every", "500"]) == 0
    assert "--preset tiny" in capsys.readouterr().out
    assert (tmp_path / "sw" / "sweep.json").exists()
