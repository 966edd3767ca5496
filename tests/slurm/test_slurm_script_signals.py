"""The batch script's signal handling and requeue decision, without SLURM.

The script runs under bash with SLURM's environment variables set, a fake
python as the trainer and a fake ``scontrol`` that records its arguments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from grokwatch.commands.main import main

FAKE_PYTHON = r"""#!/bin/bash
# state_of() asks: python -c CODE STATUS_JSON
if [ "$1" = -c ]; then
  case "$3" in *done-run*) echo completed ;; *) echo "" ;; esac
  exit 0
fi
run=""; prev=""
for a in "$@"; do [ "$prev" = --run-id ] && run=$a; prev=$a; done
echo "$*" > "$FAKE_DIR/$run.args"
case "$run" in *s01) [ "${FAKE_S01_EXIT:-}" != "" ] && exit "$FAKE_S01_EXIT" ;; esac
trap 'echo "got $SIG" >> "$FAKE_DIR/$run.sig"; exit 75' USR1 TERM
SIG=signal
for _ in $(seq 400); do sleep 0.05; done
exit 0
"""

FAKE_SCONTROL = """#!/bin/bash
echo "$*" >> "$FAKE_DIR/scontrol.calls"
exit 0
"""


@pytest.fixture
def task_script(tmp_path, capsys):
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "python").write_text(FAKE_PYTHON)
    (fake / "bin" / "scontrol").write_text(FAKE_SCONTROL)
    for p in (fake / "python", fake / "bin" / "scontrol"):
        p.chmod(0o755)
    assert (
        main(
            [
                "sweep",
                "plan",
                "--root",
                str(tmp_path / "root"),
                "--sweep",
                "sw",
                "--seeds",
                "3",
                "--weight-decays",
                "0.1",
                "--pack",
                "2",
                "--gpus-per-task",
                "0",
                "--python",
                str(fake / "python"),
                "--workdir",
                str(tmp_path),
            ]
        )
        == 0
    )
    capsys.readouterr()
    return tmp_path / "root" / "sw" / "sweep.sbatch", fake


def start(script: Path, fake: Path, task: int = 0, restart: int | None = None, **env) -> subprocess.Popen:
    e = {
        **os.environ,
        "FAKE_DIR": str(fake),
        "PATH": f"{fake / 'bin'}:{os.environ['PATH']}",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_JOB_ID": "77",
        "SLURM_JOB_ID": "78",
        "SLURM_CPUS_PER_TASK": "4",
        **env,
    }
    if restart is not None:
        e["SLURM_RESTART_COUNT"] = str(restart)
    return subprocess.Popen(["bash", str(script)], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_started(fake: Path, runs: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((fake / f"{r}.args").exists() for r in runs):
            time.sleep(0.2)  # let the fake trainers install their traps
            return
        time.sleep(0.02)
    pytest.fail(f"trainers {runs} did not start")


def calls(fake: Path) -> list[str]:
    p = fake / "scontrol.calls"
    return p.read_text().splitlines() if p.exists() else []


def test_usr1_is_forwarded_and_the_task_requeues_only_itself(task_script):
    script, fake = task_script
    proc = start(script, fake, task=0)
    wait_started(fake, ["wd0.1-s00", "wd0.1-s01"])
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err
    assert calls(fake) == ["requeue 77_0"]  # the task, never the whole array
    for run in ("wd0.1-s00", "wd0.1-s01"):
        assert (fake / f"{run}.sig").read_text().startswith("got")
        args = (fake / f"{run}.args").read_text()
        assert "--resume" in args and "--device cpu" in args and "--threads 2" in args  # 4 CPUs / 2 runs
    assert "requeued job 77_0" in err


def test_term_is_forwarded_but_slurm_decides(task_script):
    script, fake = task_script
    proc = start(script, fake, task=0)
    wait_started(fake, ["wd0.1-s00", "wd0.1-s01"])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err
    assert calls(fake) == []
    assert "SLURM decides" in err


def test_restart_limit_stops_requeueing(task_script):
    script, fake = task_script
    proc = start(script, fake, task=0, restart=50)
    wait_started(fake, ["wd0.1-s00", "wd0.1-s01"])
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 75 and calls(fake) == [] and "limit 50" in err
    assert "wd0.1-s00.r50.log" in err


def test_a_failing_run_sets_the_exit_code(task_script):
    script, fake = task_script
    proc = start(script, fake, task=0, FAKE_S01_EXIT="3")
    wait_started(fake, ["wd0.1-s00", "wd0.1-s01"])
    proc.send_signal(signal.SIGUSR1)  # the other run is preempted: still requeued, exit code is the failure's
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert calls(fake) == ["requeue 77_0"]


def test_finished_runs_are_not_started_again(task_script, tmp_path):
    script, fake = task_script
    # Task 1 holds wd0.1-s02 only (3 runs, 2 per task); pretend it is done.
    text = script.read_text().replace("wd0.1-s02 0.1 2", "done-run 0.1 2")
    script.write_text(text)
    proc = start(script, fake, task=1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "already finished" in err and not list(fake.glob("*.args"))
