"""A real sweep on a real single-node SLURM: submit, complete, requeue, cancel.

Runs the real trainer (tiny preset, CPU). About a minute in all on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from grokwatch.commands.main import main
from grokwatch.runs.lifecycle import restarted_from_scratch
from grokwatch.store import RunReader, read_json, read_status
from slurm.queue import QueueState

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5, on_timeout=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = on_timeout() if on_timeout else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{detail}")


def submit(root: Path, sweep: str, *extra: str) -> tuple[str, dict]:
    argv = [
        "sweep",
        "submit",
        "--root",
        str(root),
        "--sweep",
        sweep,
        "--preset",
        "tiny",
        "--gpus-per-task",
        "0",
        "--cpus",
        "1",
        "--python",
        sys.executable,
        "--workdir",
        str(REPO),
        *extra,
    ]
    assert main(argv) == 0
    manifest = read_json(root / sweep / "sweep.json")
    assert manifest and manifest["array_job_id"]
    return manifest["array_job_id"], manifest


def logs(root: Path, sweep: str) -> str:
    """Every log of the sweep, and what SLURM itself says about its jobs (for a failure's message)."""
    out = []
    for f in sorted((root / sweep / "logs").glob("*")):
        out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
    manifest = read_json(root / sweep / "sweep.json") or {}
    job = str(manifest.get("array_job_id") or "")
    if job:
        show = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30)
        out.append(f"--- scontrol show job {job}\n{show.stdout[-4000:]}{show.stderr[-500:]}")
        ctld = Path(os.environ.get("SLURM_BASE", "/tmp/slurm-ci")) / "log" / "slurmctld.log"
        if ctld.is_file():
            lines = [
                ln for ln in ctld.read_text(errors="replace").splitlines() if f"JobId={job}" in ln or f" {job}_" in ln
            ]
            out.append(f"--- {ctld} (lines about job {job})\n" + "\n".join(lines[-60:]))
    return "\n".join(out)


def attempt_ended(root: Path, sweep: str, task: int, attempt: int) -> bool:
    """The batch shell of that attempt printed its last line (it exits right after)."""
    return any(
        f"task {task} attempt {attempt} exits" in f.read_text(errors="replace")
        for f in (root / sweep / "logs").glob(f"slurm-*_{task}.out")
    )


def states(manifest: dict) -> dict:
    return QueueState(cache_seconds=0).for_manifest(manifest)


def steps_of(run_dir: Path) -> np.ndarray:
    reader = RunReader(run_dir, kinds=("scalars",))
    reader.refresh()
    assert not reader.failed_files, reader.failed_files
    return reader.scalars["step"]


@pytest.fixture(scope="module")
def four(slurm_cluster, tmp_path_factory):
    """A 4-task tiny sweep (2 seeds x 2 weight decays, 300 steps), run to the end."""
    root = tmp_path_factory.mktemp("four")
    job, manifest = submit(
        root, "four", "--seeds", "2", "--weight-decays", "0.3,1.0", "--steps", "300", "--flush-steps", "50"
    )
    final = wait_for(
        lambda: (s := states(manifest)) and len(s) == 4 and all(t.state in TERMINAL for t in s.values()) and s,
        180,
        "4 array tasks to finish",
        on_timeout=lambda: logs(root, "four"),
    )
    return root, job, manifest, final


def test_sweep_of_four_tasks_completes_and_status_reports_it(four, capsys):
    tmp_path, job, manifest, final = four
    capsys.readouterr()
    assert manifest["n_tasks"] == 4
    assert {t.state for t in final.values()} == {"COMPLETED"}, logs(tmp_path, "four")
    for t in manifest["tasks"]:
        run_dir = tmp_path / "four" / t["run_id"]
        assert np.array_equal(steps_of(run_dir), np.arange(1, 301))
        status = read_status(run_dir)
        assert status["state"] == "completed" and status["slurm"]["array_job_id"] == job
        assert (tmp_path / "four" / "logs" / f"{t['run_id']}.r0.log").exists()

    assert main(["sweep", "status", "--root", str(tmp_path), "--sweep", "four", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["array_job_id"] == job and report["counts"] == {"completed": 4}
    assert {r["run_id"] for r in report["runs"]} == {t["run_id"] for t in manifest["tasks"]}
    for r in report["runs"]:
        assert r["slurm"] == "completed" and r["step"] == 300 and r["phase"] is not None
        assert r["job"] == f"{job}_{r['task']}"
    assert main(["sweep", "status", "--root", str(tmp_path), "--sweep", "four"]) == 0
    table = capsys.readouterr().out
    assert "COMPLETED" not in table and f"4 runs (array job {job}): 4 completed" in table


def test_queue_state_and_status_over_ssh(four, sshd_server, tmp_path, monkeypatch, capsys):
    """squeue over the mirror's SSH connection sees what the local squeue sees;
    `grokwatch sweep status --root ssh://...` mirrors the sweep and reports it."""
    from grokwatch.remote import resolve_remote

    root, job, manifest, final = four
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host cluster\n  HostName 127.0.0.1\n  Port {sshd_server['SSHD_PORT']}\n  User {sshd_server['SSHD_USER']}\n"
        f"  IdentityFile {sshd_server['SSHD_CLIENT_KEY']}\n  UserKnownHostsFile {sshd_server['SSHD_KNOWN_HOSTS']}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GROKWATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    local, mirror = resolve_remote(f"ssh://cluster{root}/four", start=False)
    try:
        remote_states = QueueState(mirror.runner).for_manifest(read_json(local / "sweep.json"))
    finally:
        mirror.close()
    assert remote_states == QueueState().for_manifest(manifest) == final
    assert local == tmp_path / "cache" / "cluster" / str(root).strip("/") / "four"

    capsys.readouterr()
    assert main(["sweep", "status", "--root", f"ssh://cluster{root}", "--sweep", "four", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"completed": 4} and report["squeue_error"] is None
    assert {r["slurm"] for r in report["runs"]} == {"completed"}  # the dashboard's SLURM word
    assert {r["step"] for r in report["runs"]} == {300}


def test_requeued_tasks_resume_from_checkpoint_without_gaps_or_repeats(slurm_cluster, tmp_path, capsys):
    """Task 0: `scontrol requeue` (SLURM's own requeue, TERM). Task 1: USR1 to the
    batch shell, as `--signal=B:USR1@N` sends before the time limit: the trainer
    checkpoints, exits 75, and the job requeues itself."""
    n = 1000
    job, manifest = submit(
        tmp_path,
        "rq",
        "--seeds",
        "1",
        "--weight-decays",
        "0.3,1.0",
        "--steps",
        str(n),
        "--flush-steps",
        "25",
        "--checkpoint-every",
        "100",
    )
    capsys.readouterr()
    sweep = tmp_path / "rq"
    run0, run1 = (sweep / t["run_id"] for t in sorted(manifest["tasks"], key=lambda t: t["index"]))

    def progressed():
        sts = [read_status(r) or {} for r in (run0, run1)]
        return all(s.get("state") == "running" and s.get("last_step", 0) >= 300 for s in sts)

    wait_for(progressed, 120, "both runs to pass step 300", on_timeout=lambda: logs(tmp_path, "rq"))
    subprocess.run(["scontrol", "requeue", f"{job}_0"], check=True, capture_output=True, timeout=30)
    subprocess.run(["scancel", "--batch", "--signal=USR1", f"{job}_1"], check=True, capture_output=True, timeout=30)

    def requeued():
        s = states(manifest)
        return len(s) == 2 and all(t.state == "PENDING" and t.restarts >= 1 for t in s.values())

    wait_for(requeued, 90, "both tasks to be requeued", on_timeout=lambda: logs(tmp_path, "rq"))
    # Let each first attempt's batch shell end and SLURM settle it before the
    # next attempt is started early (StartTime=now, below): a requeued task that
    # is relaunched while its old batch step is still completing can be failed
    # by that step's late completion (seen once in CI; a real requeue waits ~2 min).
    wait_for(
        lambda: all(attempt_ended(tmp_path, "rq", task, 0) for task in (0, 1)),
        60,
        "the first attempts' batch shells to exit",
        on_timeout=lambda: logs(tmp_path, "rq"),
    )
    settled = [0]

    def still_pending():
        settled[0] = settled[0] + 1 if requeued() else 0
        return settled[0] >= 3  # pending (not completing) three polls in a row

    wait_for(still_pending, 60, "the requeued tasks to settle as pending", on_timeout=lambda: logs(tmp_path, "rq"))
    for r in (run0, run1):
        assert read_status(r)["state"] == "preempted"
    assert main(["sweep", "status", "--root", str(tmp_path), "--sweep", "rq", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"requeued": 2}

    for task in (0, 1):  # skip the ~2 min BeginTime delay of a requeued job
        subprocess.run(
            ["scontrol", "update", f"JobId={job}_{task}", "StartTime=now"], check=True, capture_output=True, timeout=30
        )
    final = wait_for(
        lambda: (s := states(manifest)) and len(s) == 2 and all(t.state in TERMINAL for t in s.values()) and s,
        120,
        "the requeued tasks to finish",
        on_timeout=lambda: logs(tmp_path, "rq"),
    )
    assert {t.state for t in final.values()} == {"COMPLETED"}, logs(tmp_path, "rq")
    assert all(t.restarts >= 1 for t in final.values())

    for r in (run0, run1):
        assert np.array_equal(steps_of(r), np.arange(1, n + 1)), logs(tmp_path, "rq")
        status = read_status(r)
        assert status["state"] == "completed" and status["restarts"] >= 1
        resumed = status["attempts"][1]
        # From the checkpoint written when the signal came (after step 300), not from step 0.
        assert 300 <= resumed["start_step"] < n
        reader = RunReader(r, kinds=("scalars",))
        reader.refresh()
        assert not restarted_from_scratch(reader.scalars, status["attempts"])
        # Every attempt's shards and logs stay.
        names = sorted(p.name for p in (r / "shards").iterdir())
        assert any(name.endswith("-a01.arrow") for name in names) and any("-a" not in name for name in names)
        assert (sweep / "logs" / f"{r.name}.r0.log").exists() and (sweep / "logs" / f"{r.name}.r1.log").exists()
    out1 = (sweep / "logs" / f"slurm-{job}_1.out").read_text()
    assert "attempt 0" in out1 and "attempt 1" in out1 and "requeued job" in out1
    out0 = (sweep / "logs" / f"slurm-{job}_0.out").read_text()
    assert "stopped by SLURM" in out0 and "attempt 1" in out0


def test_cancelled_task_stays_cancelled(slurm_cluster, tmp_path, capsys):
    """scancel sends TERM; the trainer checkpoints and exits 75, but the job
    must not requeue itself: a cancel is the user's decision."""
    job, manifest = submit(
        tmp_path, "cx", "--seeds", "1", "--weight-decays", "1.0", "--steps", "100000", "--flush-steps", "25"
    )
    run = tmp_path / "cx" / manifest["tasks"][0]["run_id"]
    wait_for(
        lambda: (read_status(run) or {}).get("last_step", 0) >= 50,
        90,
        "the run to start",
        on_timeout=lambda: logs(tmp_path, "cx"),
    )
    # A second submit of a sweep whose array is still running is refused.
    capsys.readouterr()
    assert (
        main(
            [
                "sweep",
                "submit",
                "--root",
                str(tmp_path),
                "--sweep",
                "cx",
                "--preset",
                "tiny",
                "--seeds",
                "1",
                "--weight-decays",
                "1.0",
                "--steps",
                "100000",
                "--gpus-per-task",
                "0",
                "--cpus",
                "1",
                "--flush-steps",
                "25",
                "--python",
                sys.executable,
                "--workdir",
                str(REPO),
            ]
        )
        == 2
    )
    assert "still has 1 queued or running" in capsys.readouterr().err
    subprocess.run(["scancel", job], check=True, capture_output=True, timeout=30)
    out = tmp_path / "cx" / "logs" / f"slurm-{job}_0.out"
    wait_for(
        lambda: out.exists() and "exits" in out.read_text(),
        60,
        "the batch script to end",
        on_timeout=lambda: logs(tmp_path, "cx"),
    )
    time.sleep(1.0)
    s = states(manifest)
    t = s[manifest["tasks"][0]["run_id"]]
    assert t.state == "CANCELLED" and t.restarts == 0, (t, logs(tmp_path, "cx"))
    assert read_status(run)["state"] == "preempted"
    assert main(["sweep", "status", "--root", str(tmp_path), "--sweep", "cx", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"cancelled": 1}
