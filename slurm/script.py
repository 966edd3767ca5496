"""The sbatch job-array script of a sweep (bash). Pure text generation.

The script embeds its task -> runs table (a ``case`` on SLURM_ARRAY_TASK_ID),
so it needs nothing but the trainer at run time and cannot be confused by a
manifest rewritten after submission; the same table is in ``sweep.json``.

Preemption and time limits (DESIGN section 8):

- ``--requeue``: SLURM may requeue the job (node failure, preemption with
  PreemptMode=REQUEUE, ``scontrol requeue``).
- ``--signal=B:USR1@N``: N seconds before the time limit the batch shell gets
  USR1. It forwards the signal to the trainers, which flush, checkpoint, set
  status "preempted" and exit 75; the job then requeues itself with
  ``scontrol requeue ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}`` (not
  ``$SLURM_JOB_ID``: the array's last task has the array's own job id, and
  requeueing that id requeues every task), and the next attempt passes ``--resume``.
- TERM (scancel, ``scontrol requeue``, preemption) is forwarded too, but the
  job does not requeue itself after it: SLURM has already decided (a cancel
  must stay cancelled, a requeue is SLURM's own). A trainer that exits 75 on
  its own, without TERM, is requeued.
- The trainers run in the background and the shell ``wait``s, so traps run at
  once rather than after the trainer ends.
- Logs: the batch shell's output goes to ``logs/slurm-<array>_<task>.out``
  in append mode (every attempt stays in it); each trainer writes
  ``logs/<run_id>.r<SLURM_RESTART_COUNT>.log``, one file per attempt.
- Packing (``--pack K`` > 1): where the trainer has ``trainer.pack``, the
  task's unfinished runs train in ONE process, as one batched model
  (``python -m trainer --pack --runs ID:WD:SEED,...``) with all the task's
  CPUs; its log is ``logs/task<task>.r<SLURM_RESTART_COUNT>.log``. An older
  trainer without it gets one process per run, as before.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from .plan import LOG_DIR, RunSpec, SweepOptions, array_spec, format_wd

EXIT_PREEMPTED = 75
# Characters an #SBATCH line takes literally (no quoting exists there).
_SBATCH_SAFE = re.compile(r"^[A-Za-z0-9/._+,:=@-]+$")


def _q(value: object) -> str:
    return shlex.quote(str(value))


def sbatch_directives(opts: SweepOptions, runs: Sequence[RunSpec]) -> list[str]:
    lines = [
        f"--job-name=gw-{opts.sweep}",
        f"--array={array_spec(runs, opts.max_concurrent)}",
        "--ntasks=1",
    ]
    if opts.cpus:
        lines.append(f"--cpus-per-task={opts.cpus}")
    if opts.mem:
        lines.append(f"--mem={opts.mem}")
    if opts.time:
        lines.append(f"--time={opts.time}")
    if opts.partition:
        lines.append(f"--partition={opts.partition}")
    if opts.account:
        lines.append(f"--account={opts.account}")
    if opts.gpus_per_task > 0:
        lines.append(f"--gpus-per-task={opts.gpus_per_task}")
    lines += [
        "--requeue",
        "--open-mode=append",
        f"--signal=B:USR1@{opts.effective_signal_seconds}",
    ]
    log_dir = f"{opts.root.rstrip('/')}/{opts.sweep}/{LOG_DIR}"
    if _SBATCH_SAFE.match(log_dir):
        lines.append(f"--output={log_dir}/slurm-%A_%a.out")
    if opts.workdir and _SBATCH_SAFE.match(opts.workdir):
        lines.append(f"--chdir={opts.workdir}")
    return lines


def trainer_command(opts: SweepOptions, packed: bool = False) -> str:
    """The trainer's command line, with shell variables for the per-run values
    (``packed``: one trainer for the runs in ``$PACK_RUNS``, "ID:WD:SEED,...")."""
    if packed:
        parts = [
            '"$PYTHON" -m trainer --pack',
            '--root "$ROOT" --sweep "$SWEEP" --runs "$PACK_RUNS"',
            f"--preset {_q(opts.preset)}",
        ]
    else:
        parts = [
            '"$PYTHON" -m trainer',
            '--root "$ROOT" --sweep "$SWEEP" --run-id "$run_id"',
            f"--preset {_q(opts.preset)}",
            '--seed "$seed" --weight-decay "$wd"',
        ]
    if opts.steps is not None:
        parts.append(f"--steps {int(opts.steps)}")
    parts.append(f"--device {opts.device}")
    parts.append('--threads "$THREADS" --resume')
    if opts.checkpoint_every is not None:
        parts.append(f"--checkpoint-every {int(opts.checkpoint_every)}")
    if opts.flush_steps is not None:
        parts.append(f"--flush-steps {int(opts.flush_steps)}")
    if opts.flush_seconds is not None:
        parts.append(f"--flush-seconds {_q(repr(float(opts.flush_seconds)))}")
    if opts.trainer_args:
        parts.append(" ".join(_q(a) for a in opts.trainer_args))
    return " \\\n    ".join(parts)


def trainer_argv(opts: SweepOptions, run: RunSpec, *, device: str | None = None, extra: bool = True) -> list[str]:
    """The trainer flags :func:`trainer_command` gives one run, as plain values (no
    shell, no ``--resume``): for checking them with the trainer's own parser before
    a script that would fail on every node is written. ``device`` replaces the
    script's (a login node has no GPU to check); ``extra``: append --trainer-arg values."""
    argv = [
        "--root",
        opts.root,
        "--sweep",
        opts.sweep,
        "--run-id",
        run.run_id,
        "--preset",
        opts.preset,
        "--seed",
        str(run.seed),
        "--weight-decay",
        format_wd(run.weight_decay),
    ]
    if opts.steps is not None:
        argv += ["--steps", str(int(opts.steps))]
    argv += ["--device", device or opts.device, "--threads", "1"]
    if opts.checkpoint_every is not None:
        argv += ["--checkpoint-every", str(int(opts.checkpoint_every))]
    if opts.flush_steps is not None:
        argv += ["--flush-steps", str(int(opts.flush_steps))]
    if opts.flush_seconds is not None:
        argv += ["--flush-seconds", repr(float(opts.flush_seconds))]
    if extra:
        argv += list(opts.trainer_args)
    return argv


def render_script(opts: SweepOptions, runs: Sequence[RunSpec]) -> str:
    """The whole batch script for ``runs`` (from :func:`slurm.plan.plan_runs`)."""
    wds = ", ".join(format_wd(w) for w in opts.weight_decays)
    n_task = max(r.index for r in runs) + 1
    head = [
        "#!/bin/bash",
        f"# grokwatch sweep {opts.sweep}: {len(runs)} runs ({opts.seeds} seeds x weight decay {wds})",
        f"# as a job array of {n_task} tasks, {opts.pack} run(s) per task.",
        "# Generated by `grokwatch sweep plan`; the same task -> run table is in",
        f"# {opts.root.rstrip('/')}/{opts.sweep}/sweep.json.",  # validated: no newline can end the comment
    ]
    head += [f"#SBATCH {d}" for d in sbatch_directives(opts, runs)]
    cases = []
    by_task: dict[int, list[RunSpec]] = {}
    for r in runs:
        by_task.setdefault(r.index, []).append(r)
    for index in sorted(by_task):
        specs = " ".join(
            _q(f"{r.run_id} {format_wd(r.weight_decay)} {r.seed}") for r in sorted(by_task[index], key=lambda r: r.slot)
        )
        cases.append(f"  {index}) RUNS=({specs}) ;;")
    workdir = opts.workdir
    packed = opts.pack > 1
    pack_check = (
        """
# One trainer process for all of this task's runs (one batched model), where
# the trainer can (trainer.pack); else one process per run.
PACKED=0
HAS_PACK='import importlib.util as u; print(int(u.find_spec("trainer.pack") is not None))'
if [ "${#RUNS[@]}" -gt 1 ] && [ "$("$PYTHON" -c "$HAS_PACK" 2>/dev/null)" = 1 ]; then
  PACKED=1
  THREADS=${SLURM_CPUS_PER_TASK:-1}
fi
PACKED_SPECS=()
"""
        if packed
        else ""
    )
    pack_collect = (
        """  if [ "$PACKED" = 1 ]; then PACKED_SPECS+=("$run_id:$wd:$seed"); continue; fi
"""
        if packed
        else ""
    )
    pack_launch = (
        f"""if [ "${{#PACKED_SPECS[@]}}" -gt 0 ]; then
  PACK_RUNS=$(IFS=,; echo "${{PACKED_SPECS[*]}}")
  log="$LOGDIR/task$TASK.r$RESTART.log"
  echo "grokwatch: starting ${{#PACKED_SPECS[@]}} runs in one packed trainer: $PACK_RUNS (log $log)" >&2
  {trainer_command(opts, packed=True)} \\
    >>"$log" 2>&1 &
  PIDS+=("$!")
fi
"""
        if packed
        else ""
    )
    body = f"""
set -uo pipefail

PYTHON={_q(opts.python)}
ROOT={_q(opts.root.rstrip("/") or "/")}
SWEEP={_q(opts.sweep)}
WORKDIR={_q(workdir) if workdir else '"$PWD"'}
LOGDIR="$ROOT/$SWEEP/{LOG_DIR}"
MAX_RESTARTS={int(opts.max_restarts)}
TASK=${{SLURM_ARRAY_TASK_ID:?run this script as a SLURM job array: sbatch --array=...}}
RESTART=${{SLURM_RESTART_COUNT:-0}}
# This task only: the last task's SLURM_JOB_ID equals the array's job id, and
# `scontrol requeue <array id>` would requeue every task of the array.
SELF=${{SLURM_ARRAY_JOB_ID:-}}_$TASK
[ -n "${{SLURM_ARRAY_JOB_ID:-}}" ] || SELF=${{SLURM_JOB_ID:-}}

# Runs of each array task: "run_id weight_decay seed".
case "$TASK" in
{chr(10).join(cases)}
  *) echo "grokwatch: array task $TASK is not part of sweep $SWEEP" >&2; exit 2 ;;
esac

cd -- "$WORKDIR" || exit 1
mkdir -p -- "$LOGDIR" || exit 1
THREADS=$(( ${{SLURM_CPUS_PER_TASK:-1}} / ${{#RUNS[@]}} ))
[ "$THREADS" -ge 1 ] || THREADS=1
{pack_check}
PIDS=()
GOT_TERM=0
INTERRUPTED=0
# shellcheck disable=SC2317  # called from the traps below
forward() {{  # forward a signal to every trainer of this task
  local pid
  for pid in "${{PIDS[@]}}"; do kill -s "$1" "$pid" 2>/dev/null || true; done
}}
trap 'INTERRUPTED=1; echo "grokwatch: USR1 (time limit near): trainers checkpoint and stop" >&2; forward USR1' USR1
trap 'INTERRUPTED=1; GOT_TERM=1; echo "grokwatch: TERM: trainers checkpoint and stop" >&2; forward TERM' TERM

wait_for() {{  # wait_for PID: its exit status, even when a trap interrupts wait
  local rc prev=""
  while :; do
    INTERRUPTED=0
    wait "$1"; rc=$?
    if [ "$rc" = 127 ] && [ -n "$prev" ]; then rc=$prev; break; fi
    [ "$INTERRUPTED" = 1 ] || break
    prev=$rc
  done
  return "$rc"
}}

state_of() {{  # a run's state from its status.json ("" when there is none)
  "$PYTHON" -c 'import json, sys
try:
    print(json.load(open(sys.argv[1])).get("state", ""))
except Exception:
    print("")' "$ROOT/$SWEEP/$1/status.json" 2>/dev/null
}}

echo "grokwatch: sweep $SWEEP task $TASK attempt $RESTART on $(hostname) (job ${{SLURM_JOB_ID:-?}})" >&2
for spec in "${{RUNS[@]}}"; do
  read -r run_id wd seed <<<"$spec"
  case "$(state_of "$run_id")" in
    completed|diverged) echo "grokwatch: $run_id is already finished; not started again" >&2; continue ;;
  esac
{pack_collect}  log="$LOGDIR/$run_id.r$RESTART.log"
  echo "grokwatch: starting $run_id (log $log)" >&2
  {trainer_command(opts)} \\
    >>"$log" 2>&1 &
  PIDS+=("$!")
done
{pack_launch}
RC=0
PREEMPTED=0
for pid in "${{PIDS[@]}}"; do
  wait_for "$pid"; rc=$?
  case "$rc" in
    0) ;;
    {EXIT_PREEMPTED}) PREEMPTED=1 ;;
    *) [ "$RC" -ne 0 ] || RC=$rc ;;
  esac
done

if [ "$PREEMPTED" = 1 ]; then
  if [ "$GOT_TERM" = 1 ]; then
    echo "grokwatch: stopped by SLURM (cancel, requeue or preemption); SLURM decides whether it comes back" >&2
  elif [ "$RESTART" -ge "$MAX_RESTARTS" ]; then
    echo "grokwatch: already restarted $RESTART times (limit $MAX_RESTARTS); not requeueing" >&2
  elif scontrol requeue "$SELF"; then
    echo "grokwatch: requeued job $SELF; the next attempt resumes from the checkpoint" >&2
  else
    echo "grokwatch: scontrol requeue $SELF failed" >&2
  fi
  [ "$RC" -ne 0 ] || RC={EXIT_PREEMPTED}
fi
echo "grokwatch: task $TASK attempt $RESTART exits $RC" >&2
exit "$RC"
"""
    return "\n".join(head) + "\n" + body
