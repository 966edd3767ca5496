"""One display state per run, from what SLURM and the run itself say. Pure.

Signals alone cannot tell a preemption from a time limit or a cancel (all
arrive as TERM or USR1); SLURM's own record can. :func:`display_state` joins
the SLURM state, exit code and restart count of the array task with the run's
``status.json`` state and heartbeat age.
"""

from __future__ import annotations

DISPLAY_STATES = (
    "planned",  # in the sweep manifest, never submitted, not started
    "submitted",  # submitted, not started, and SLURM has no record of its task (any more)
    "pending",  # queued, never started
    "running",
    "stalled",  # SLURM or the status says running, but no heartbeat for the stall timeout
    "requeued",  # back in the queue after a restart; resumes from its checkpoint
    "preempted",  # stopped with a checkpoint and not (yet) requeued
    "timeout",  # killed at the time limit
    "completed",
    "diverged",  # the trainer saw a non-finite loss (exit 3)
    "failed",
    "cancelled",
    "node-fail",
    "oom",
    "suspended",
    "unknown",  # neither SLURM nor the run says anything
)

EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75

_PENDING = {"PENDING", "CONFIGURING", "RESV_DEL_HOLD"}
_RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}
_REQUEUED = {"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}
_NODE = {"NODE_FAIL", "BOOT_FAIL"}
# SLURM states of a job that is queued, running or about to run again.
ACTIVE_SLURM_STATES = frozenset(_PENDING | _RUNNING | _REQUEUED | {"SUSPENDED", "STOPPED"})


def display_state(
    slurm_state: str | None,
    exit_code: int | None = None,
    restarts: int = 0,
    run_state: str | None = None,
    heartbeat_age: float | None = None,
    *,
    stall_seconds: float,
    started: bool = True,
    submitted: bool = False,
) -> str:
    """The state a person should see for one run.

    ``slurm_state``: SLURM's state of the array task (squeue/sacct, e.g.
    ``"RUNNING"``, ``"CANCELLED by 0"``), None when SLURM has no record.
    ``exit_code``: the task's exit code when it ended. ``restarts``: SLURM's
    restart count. ``run_state``: ``status.json`` state (running, completed,
    failed, preempted, diverged) or None. ``heartbeat_age``: seconds since the
    last heartbeat in status.json, None if unknown. ``stall_seconds``: the stall
    timeout, which the caller passes (grokwatch.runs.defaults.STALL_TIMEOUT, the
    one the watcher, the alarms and the dashboard use; no default here to drift
    from it). ``started``: the run has
    its directory (False for a run only the sweep manifest names);
    ``submitted``: the manifest records a submission.
    """
    s = (slurm_state or "").strip().split()[0].rstrip("+").upper() if (slurm_state or "").strip() else ""
    stale = heartbeat_age is not None and heartbeat_age > stall_seconds

    if not s:  # SLURM has forgotten the job (or it never ran under SLURM)
        if run_state == "running":
            return "stalled" if stale else "running"
        if run_state in ("completed", "failed", "diverged", "preempted"):
            return run_state
        if not started:
            return "submitted" if submitted else "planned"
        return "unknown"
    if s in _PENDING:
        return "requeued" if restarts > 0 else "pending"
    if s in _REQUEUED:
        return "requeued"
    if s == "SUSPENDED" or s == "STOPPED":
        return "suspended"
    if s in _RUNNING:
        # A fresh attempt shows the previous attempt's status until the
        # trainer opens its writer: only a "running" status can be stale.
        return "stalled" if run_state == "running" and stale else "running"

    # The task has ended. The run's own record says more than SLURM about
    # divergence; SLURM says more about how the job was ended.
    if run_state == "diverged" or exit_code == EXIT_DIVERGED:
        return "diverged"
    if run_state == "completed" and s in ("COMPLETED", "CANCELLED", "TIMEOUT"):
        return "completed"  # ended after the run had finished
    if s == "COMPLETED":
        return "failed" if run_state == "failed" else "completed"
    if s in ("TIMEOUT", "DEADLINE"):
        return "timeout"
    if s == "PREEMPTED":
        return "preempted"
    if s == "CANCELLED":
        return "cancelled"
    if s in _NODE:
        return "node-fail"
    if s == "OUT_OF_MEMORY":
        return "oom"
    if s == "FAILED" and (exit_code == EXIT_PREEMPTED or run_state == "preempted"):
        return "preempted"  # checkpointed and stopped, but not requeued (restart limit)
    return "failed"
