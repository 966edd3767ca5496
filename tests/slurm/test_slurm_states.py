"""display_state, squeue/sacct parsing and QueueState with a scripted runner."""

from __future__ import annotations

import pytest

from slurm.queue import (
    CommandResult,
    QueueState,
    manifest_job_ids,
    normalize_state,
    parse_sacct,
    parse_sacct_c,
    parse_squeue,
    parse_task_ids,
)
from slurm.states import DISPLAY_STATES, display_state

# (slurm state, exit code, restarts, status.json state, heartbeat age) -> display state
CASES = [
    # queued
    ("PENDING", None, 0, None, None, "pending"),
    ("PENDING", None, 1, "preempted", 400.0, "requeued"),  # requeued, waiting to resume
    ("REQUEUED", None, 1, "preempted", None, "requeued"),
    ("REQUEUE_HOLD", None, 2, "preempted", None, "requeued"),
    # running
    ("RUNNING", None, 0, "running", 3.0, "running"),
    ("RUNNING", None, 0, "running", 900.0, "stalled"),  # job alive, trainer silent
    ("RUNNING", None, 1, "preempted", 900.0, "running"),  # new attempt, writer not open yet
    ("RUNNING", None, 0, None, None, "running"),
    ("COMPLETING", 0, 0, "running", 1.0, "running"),
    # ended
    ("COMPLETED", 0, 0, "completed", 5.0, "completed"),
    ("COMPLETED", 0, 2, "completed", 5.0, "completed"),
    ("FAILED", 3, 0, "diverged", 5.0, "diverged"),
    ("FAILED", 3, 0, None, None, "diverged"),
    ("FAILED", 1, 0, "failed", 5.0, "failed"),
    ("FAILED", 1, 0, "running", 9999.0, "failed"),  # crashed without a final status
    ("FAILED", 75, 50, "preempted", 100.0, "preempted"),  # restart limit reached
    ("TIMEOUT", 0, 0, "running", 100.0, "timeout"),
    ("TIMEOUT", 0, 0, "completed", 100.0, "completed"),
    ("PREEMPTED", 0, 0, "preempted", 10.0, "preempted"),
    ("CANCELLED by 0", 0, 0, "preempted", 10.0, "cancelled"),
    ("CANCELLED", 0, 0, "completed", 10.0, "completed"),
    ("NODE_FAIL", 0, 0, "running", 600.0, "node-fail"),
    ("OUT_OF_MEMORY", 0, 0, "running", 600.0, "oom"),
    ("SUSPENDED", None, 0, "running", 600.0, "suspended"),
    # SLURM has forgotten the job: the run's own record decides
    (None, None, 0, "running", 10.0, "running"),
    (None, None, 0, "running", 1000.0, "stalled"),
    (None, None, 0, "completed", 1000.0, "completed"),
    (None, None, 0, "preempted", 1000.0, "preempted"),
    (None, None, 0, "diverged", 1000.0, "diverged"),
    (None, None, 0, None, None, "unknown"),
]


@pytest.mark.parametrize("slurm, code, restarts, run, age, want", CASES)
def test_display_state(slurm, code, restarts, run, age, want):
    got = display_state(slurm, code, restarts, run, age, stall_seconds=300)
    assert got == want
    assert got in DISPLAY_STATES


def test_stall_timeout_is_a_parameter():
    assert display_state("RUNNING", None, 0, "running", 100.0, stall_seconds=60) == "stalled"
    assert display_state("RUNNING", None, 0, "running", 100.0, stall_seconds=600) == "running"


def test_parse_helpers():
    assert normalize_state("CANCELLED by 0") == "CANCELLED"
    assert normalize_state("completed+") == "COMPLETED"
    assert normalize_state("") is None
    assert parse_task_ids("3") == [3]
    assert parse_task_ids("[1,3-5%2]") == [1, 3, 4, 5]
    assert parse_task_ids("0-6:3") == [0, 3, 6]
    assert parse_task_ids("N/A") == []
    assert manifest_job_ids({"submissions": [{"array_job_id": "7"}, {"array_job_id": "12"}], "array_job_id": "12"}) == [
        "7",
        "12",
    ]
    assert manifest_job_ids({"array_job_id": "x;rm"}) == []


SQUEUE = (
    "11|10|0|COMPLETED|None|0|0|0:05|vm|\n"
    "10|10|3|RUNNING|None|1|0|0:02|vm|\n"
    "12|10|1|FAILED|NonZeroExitCode|0|768|0:03|vm|\n"
    "10|10|4-5|PENDING|Resources|0|0|0:00||\n"  # an unexpanded pending record, parsed defensively
    "garbage line\n"
)


def test_parse_squeue():
    got = {t.task_id: t for t in parse_squeue(SQUEUE)}
    assert sorted(got) == [0, 1, 3, 4, 5]
    assert got[1].state == "FAILED" and got[1].exit_code == 3 and got[1].signal == 0
    assert got[3].restarts == 1 and got[3].job_id == "10" and got[3].node == "vm"
    assert got[4].state == "PENDING" and got[4].reason == "Resources" and got[4].node is None


def test_parse_sacct_counts_requeues():
    text = (
        "20_0|21|REQUEUED|0:0|00:00:10|vm\n"
        "20_0|21|COMPLETED|0:0|00:00:30|vm\n"
        "20_1|20|CANCELLED by 0|0:15|00:00:04|vm\n"
        "20_[2-3]|20|PENDING|0:0|00:00:00|None assigned\n"
    )
    got = {t.task_id: t for t in parse_sacct(text)}
    assert got[0].state == "COMPLETED" and got[0].restarts == 1 and got[0].job_id == "21"
    assert got[1].state == "CANCELLED" and got[1].signal == 15
    assert got[2].state == got[3].state == "PENDING"


def test_parse_sacct_c_maps_raw_ids():
    text = "21|COMPLETED|0:0|00:00:03|vm\n22|TIMEOUT|0:0|00:01:00|vm\n99|FAILED|1:0|00:00:01|vm\n"
    got = {t.task_id: t for t in parse_sacct_c(text, {"21": ("20", 0), "22": ("20", 1)})}
    assert got[0].state == "COMPLETED" and got[1].state == "TIMEOUT" and len(got) == 2


class ScriptedRunner:
    """Answers commands from a table; records what was asked."""

    def __init__(self, answers):
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv, timeout):
        self.calls.append(list(argv))
        for prefix, result in self.answers:
            if argv[: len(prefix)] == prefix:
                return result
        return CommandResult(127, "", "not scripted")


def test_queue_state_batches_caches_and_falls_back_to_sacct_c():
    now = [100.0]
    runner = ScriptedRunner(
        [
            (["squeue"], CommandResult(0, "11|10|0|RUNNING|None|0|0|0:05|vm|\n", "")),
            (["sacct", "--completion"], CommandResult(0, "12|TIMEOUT|0:0|00:01:00|vm\n", "")),
            (["sacct"], CommandResult(1, "", "Slurm accounting storage is disabled")),
        ]
    )
    q = QueueState(runner, cache_seconds=5, clock=lambda: now[0])
    manifest = {
        "submissions": [{"array_job_id": "10"}],
        "tasks": [{"index": 0, "run_id": "a"}, {"index": 1, "run_id": "b"}],
    }
    got = q.for_manifest(manifest, raw_hints={"12": ("10", 1)})
    assert got["a"].state == "RUNNING" and got["a"].source == "squeue"
    assert got["b"].state == "TIMEOUT" and got["b"].source == "sacct -c"
    squeue = [c for c in runner.calls if c[0] == "squeue"]
    assert len(squeue) == 1
    assert "--me" in squeue[0] and "--array" in squeue[0] and "--states=all" in squeue[0] and "--jobs=10" in squeue[0]
    # Within cache_seconds: no new commands. After: one new squeue call.
    n = len(runner.calls)
    q.for_manifest(manifest)
    assert len(runner.calls) == n
    now[0] += 6
    q.for_manifest(manifest, raw_hints={"12": ("10", 1)})
    assert [c[0] for c in runner.calls[n:]].count("squeue") == 1
    assert not any(c[0] == "sacct" and "--completion" not in c for c in runner.calls[n:])  # sacct known off


def test_queue_state_reports_squeue_failure_and_aged_out_ids():
    q = QueueState(
        ScriptedRunner(
            [(["squeue"], CommandResult(1, "", "slurm_load_jobs error: Unable to contact slurm controller"))]
        )
    )
    assert q.tasks(["5"]) == {}
    assert "Unable to contact" in q.last_error
    q = QueueState(
        ScriptedRunner([(["squeue"], CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified"))])
    )
    assert q.tasks(["5"]) == {} and q.last_error is None
    assert QueueState(ScriptedRunner([])).tasks(["x; rm -rf /"]) == {}
