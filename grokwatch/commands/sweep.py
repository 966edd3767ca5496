"""``grokwatch sweep plan|submit|status``: a sweep as a SLURM job array.

One module: its three actions share their options, the manifest they read and
write, and the trainer check.

- ``plan`` prints the sbatch script for seeds x weight decays and writes the
  sweep manifest ``<root>/<sweep>/sweep.json`` (and the script next to it as
  ``sweep.sbatch``).
- ``submit`` does the same, runs ``sbatch --parsable`` and records the array
  job id in the manifest.
- ``status`` reads the sweep through one cycle of the dashboard's watcher
  (:class:`grokwatch.watch.SweepWatcher` with SLURM's answer joined in: squeue,
  then sacct), so each run's state, SLURM state and phase are the dashboard's:
  a table, or ``--json``. ROOT may be ``ssh://[user@]host[:port]/path``.
"""

from __future__ import annotations

import argparse
import os
import sys

from grokwatch.commands import add_trust_flag
from grokwatch.errors import UsageError
from grokwatch.runs.defaults import STALL_TIMEOUT


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="plan, submit and follow a sweep as a SLURM job array",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="sweep_command", metavar="ACTION")
    sub.required = True
    plan = sub.add_parser("plan", help="print the sbatch array script and write the sweep manifest")
    _plan_options(plan)
    plan.set_defaults(func=run_plan)
    submit = sub.add_parser("submit", help="plan, then sbatch the array and record its job id")
    _plan_options(submit)
    submit.set_defaults(func=run_submit)
    status = sub.add_parser("status", help="SLURM state and phase of every task of a sweep")
    status.add_argument("--root", required=True, help="store root (a path, or ssh://[user@]host[:port]/path)")
    status.add_argument("--sweep", required=True, help="sweep name (a directory under ROOT)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--stall-seconds",
        type=float,
        default=STALL_TIMEOUT,
        metavar="T",
        help=f"a running run without a heartbeat for T seconds is stalled (default {STALL_TIMEOUT:g}, "
        "as the dashboard and grokwatch alerts)",
    )
    add_trust_flag(status)
    status.set_defaults(func=run_status)


def _plan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="store root on the cluster's shared filesystem")
    p.add_argument("--sweep", required=True, help="sweep name: letters, digits, '.', '_', '-'")
    p.add_argument("--seeds", type=int, default=30, metavar="N", help="seeds 0..N-1 per weight decay (default 30)")
    p.add_argument(
        "--weight-decays",
        default="0.1,0.3,1.0",
        metavar="LIST",
        help="comma-separated weight decays (default 0.1,0.3,1.0)",
    )
    p.add_argument("--preset", default="canonical", help="trainer preset (default canonical)")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="training steps (default: the preset's)")
    p.add_argument(
        "--gpus-per-task",
        type=int,
        default=1,
        metavar="G",
        help="GPUs per array task; 0 gives a CPU-only script (default 1)",
    )
    p.add_argument("--partition", help="SLURM partition(s), comma-separated")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--cpus", type=int, metavar="N", help="CPUs per task (--cpus-per-task)")
    p.add_argument("--mem", help="memory per node, e.g. 8G")
    p.add_argument("--time", help="time limit per attempt, e.g. 4:00:00 or 1-00:00:00")
    p.add_argument("--max-concurrent", type=int, metavar="K", help="run at most K array tasks at once (--array=...%%K)")
    p.add_argument(
        "--python",
        default=sys.executable,
        metavar="PATH",
        help="python that runs the trainer on the nodes (default: this one)",
    )
    p.add_argument("--pack", type=int, default=1, metavar="K", help="runs per array task (default 1)")
    p.add_argument(
        "--signal-seconds",
        type=int,
        default=300,
        metavar="S",
        help="USR1 this long before the time limit: checkpoint and requeue (default 300)",
    )
    p.add_argument(
        "--max-restarts", type=int, default=50, metavar="N", help="stop requeueing a task after N restarts (default 50)"
    )
    p.add_argument("--checkpoint-every", type=int, metavar="K", help="passed to the trainer")
    p.add_argument("--flush-steps", type=int, metavar="N", help="passed to the trainer")
    p.add_argument("--flush-seconds", type=float, metavar="T", help="passed to the trainer")
    p.add_argument(
        "--workdir", default=None, metavar="DIR", help="directory the jobs run in (default: the current one)"
    )
    p.add_argument(
        "--trainer-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the trainer (repeatable; quoted as given)",
    )


# -- plan / submit -------------------------------------------------------------
def _plan(args):
    """Validate and plan (no writes): (options, manifest, sweep dir, previous manifest, script)."""
    from pathlib import Path

    from grokwatch.store import read_json
    from grokwatch.store.layout import run_id_for
    from slurm.plan import MANIFEST, PlanError, SweepOptions, make_manifest, parse_weight_decays, plan_runs, validate
    from slurm.script import render_script

    if args.root.startswith("ssh://"):
        raise UsageError("--root: plan and submit run on the cluster; give a path there, not an ssh:// URL")
    try:
        opts = validate(
            SweepOptions(
                root=os.path.abspath(args.root),
                sweep=args.sweep,
                seeds=args.seeds,
                weight_decays=parse_weight_decays(args.weight_decays),
                preset=args.preset,
                steps=args.steps,
                gpus_per_task=args.gpus_per_task,
                partition=args.partition,
                account=args.account,
                cpus=args.cpus,
                mem=args.mem,
                time=args.time,
                max_concurrent=args.max_concurrent,
                python=args.python,
                pack=args.pack,
                signal_seconds=args.signal_seconds,
                max_restarts=args.max_restarts,
                checkpoint_every=args.checkpoint_every,
                flush_steps=args.flush_steps,
                flush_seconds=args.flush_seconds,
                workdir=os.path.abspath(args.workdir or os.getcwd()),
                trainer_args=tuple(args.trainer_arg),
            )
        )
        runs = plan_runs(opts, run_id_for)
        _check_trainer(opts, runs)
        sweep_dir = Path(opts.root) / opts.sweep
        previous = read_json(sweep_dir / MANIFEST)
        manifest = make_manifest(opts, runs, previous=previous)
    except PlanError as exc:
        raise UsageError(str(exc)) from None
    return opts, manifest, sweep_dir, previous, render_script(opts, runs)


def _check_trainer(opts, runs) -> None:
    """The trainer's own checks (preset, flags, resolved config) on what the nodes would
    run, so a plan they would all refuse is a one-line error here, not 90 failed tasks.

    The checks are the trainer's configuration (grokwatch.runs.training: its flags,
    presets and checks, without torch). The --trainer-arg values are checked too when
    the nodes run this very python (the default --python); another python may have
    another trainer. The device is not (a login node has no GPU): cpu stands in for cuda.
    """
    from grokwatch.runs.training import PRESETS, ConfigError, TrainingConfig, build_parser, resolve
    from slurm.script import trainer_argv

    if opts.preset not in PRESETS:
        raise UsageError(f"--preset {opts.preset!r}: no such trainer preset; choose from {', '.join(PRESETS)}")
    if not runs:
        return
    parser = build_parser()

    def refuse(message: str):
        raise ConfigError(" ".join(message.split()))

    parser.error = refuse  # type: ignore[method-assign]  # the trainer's parser would print and exit
    same_python = os.path.abspath(opts.python) == os.path.abspath(sys.executable)
    try:
        cfg = resolve(parser.parse_args(trainer_argv(opts, runs[0], device="cpu", extra=same_python)), TrainingConfig)
        if str(cfg.device).startswith("cuda"):
            cfg = cfg.replace(device="cpu")
        cfg.validate(check_root=False)
    except ConfigError as exc:
        raise UsageError(f"the trainer would refuse every task: {exc}") from None


def _write(sweep_dir, manifest: dict, script: str | None = None) -> None:
    from grokwatch.store import atomic_write_bytes, atomic_write_json
    from slurm.plan import LOG_DIR, MANIFEST

    try:
        (sweep_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)  # sbatch --output needs it before a job starts
        if script is not None:
            atomic_write_bytes(sweep_dir / SCRIPT, script.encode())
        atomic_write_json(sweep_dir / MANIFEST, manifest)
    except OSError as exc:
        raise UsageError(f"cannot write the sweep under {sweep_dir}: {exc.strerror or exc}") from None


SCRIPT = "sweep.sbatch"


def run_plan(args) -> int:
    opts, manifest, sweep_dir, _, script = _plan(args)
    _write(sweep_dir, manifest, script)
    sys.stdout.write(script)
    print(
        f"grokwatch: planned {len(manifest['tasks'])} runs as array {manifest['array']}; "
        f"manifest {sweep_dir / 'sweep.json'}",
        file=sys.stderr,
    )
    return 0


def run_submit(args) -> int:
    from slurm.plan import record_submission
    from slurm.queue import QueueState
    from slurm.states import ACTIVE_SLURM_STATES
    from slurm.submit import SubmitError, sbatch

    opts, manifest, sweep_dir, previous, script = _plan(args)
    if previous and previous.get("submissions"):
        live = [
            ts for ts in QueueState(cache_seconds=0).for_manifest(previous).values() if ts.state in ACTIVE_SLURM_STATES
        ]
        if live:
            raise UsageError(
                f"sweep {opts.sweep!r} still has {len(live)} queued or running task(s) in array job "
                f"{live[0].array_job_id}; wait for them or scancel {live[0].array_job_id} first"
            )
    _write(sweep_dir, manifest, script)
    try:
        job_id = sbatch(sweep_dir / SCRIPT)
    except SubmitError as exc:
        raise UsageError(str(exc)) from None
    manifest = record_submission(manifest, job_id)
    _write(sweep_dir, manifest)
    print(job_id)
    print(
        f"grokwatch: submitted {len(manifest['tasks'])} runs of sweep {opts.sweep} as array job {job_id}",
        file=sys.stderr,
    )
    return 0


# -- status --------------------------------------------------------------------
COLUMNS = ("task", "run_id", "wd", "seed", "slurm", "job", "restarts", "state", "phase", "step", "beat")


def sweep_rows(sweep_dir, manifest: dict | None, queue, *, stall_seconds: float = STALL_TIMEOUT) -> list[dict]:
    """One dict per run: its manifest entry, and one watcher cycle's snapshot of it.

    The state, SLURM state, phase and step are the snapshot's
    (:class:`grokwatch.watch.SweepWatcher`, one synchronous cycle): what the
    dashboard shows. The other columns come from the same SLURM answer the
    snapshot joined (job, exit code, restarts, reason) and from status.json.
    ``queue``: a :class:`grokwatch.watch.queue.SlurmQueue`, a
    ``slurm.queue.QueueState`` to ask (wrapped in one), or None (SLURM not asked).
    ``stall_seconds``: the watcher's stall timeout.
    """
    import logging
    from pathlib import Path

    from grokwatch.runs.lifecycle import attempt_reach_from_shards, restarted_from_scratch
    from grokwatch.store import SHARDS_DIR, ContractError, RunStatus, is_valid_run_id, list_runs
    from grokwatch.watch import ScoreConfig, SweepWatcher
    from grokwatch.watch.queue import SlurmQueue
    from grokwatch.watch.snapshot import shown_phase

    sweep_dir = Path(sweep_dir)
    entries = [t for t in (manifest or {}).get("tasks") or [] if is_valid_run_id(str(t.get("run_id", "")))]

    def read_status(run_dir) -> RunStatus:
        try:
            return RunStatus.read(run_dir) or RunStatus()
        except ContractError as exc:
            logging.getLogger("grokwatch").warning("%s", exc)
            return RunStatus()

    # status.json first: its SLURM ids are hints for sacct's completion records.
    run_ids = {str(t["run_id"]) for t in entries} | {p.name for p in list_runs(sweep_dir)}
    statuses = {rid: read_status(sweep_dir / rid) for rid in run_ids}
    hints = {}
    for st in statuses.values():
        slurm_ids = st.slurm
        try:
            hints[str(slurm_ids["job_id"])] = (str(slurm_ids["array_job_id"]), int(slurm_ids["array_task_id"]))
        except (KeyError, TypeError, ValueError):
            continue
    poller = queue if queue is None or isinstance(queue, SlurmQueue) else SlurmQueue(sweep_dir, state=queue)
    if poller is not None:
        poller.raw_hints = hints
    watcher = SweepWatcher(sweep_dir, queue=poller, config=ScoreConfig(stall_timeout=stall_seconds), poll=True)
    try:
        snap = watcher.cycle()
    finally:
        watcher.close()
    tasks = dict(poller.tasks()) if poller is not None else {}  # the answer the snapshot joined
    now = snap.time

    known = {str(t["run_id"]) for t in entries}
    entries += [{"run_id": rid} for rid in snap.runs if rid not in known]
    rows = []
    for t in entries:
        run_id = str(t["run_id"])
        status = statuses.get(run_id) or read_status(sweep_dir / run_id)
        view = snap.runs.get(run_id)
        planned = snap.planned.get(run_id)
        ts = tasks.get(run_id)
        phase = step = age = None
        scratch = False
        if view is not None:
            state, slurm, age = view.state, view.slurm_state, view.heartbeat_age
            phase, step = shown_phase(view), view.step
            if step is not None:
                try:
                    reach = attempt_reach_from_shards(os.listdir(sweep_dir / run_id / SHARDS_DIR))
                except OSError:
                    reach = {}
                every = view.config.checkpoint_every if view.config else None
                scratch = restarted_from_scratch(
                    view.scalars,
                    status.attempts,
                    attempt_reach=reach,
                    checkpoint_every=every if isinstance(every, int) and every > 0 else None,
                )
        else:
            state = planned.state if planned is not None else None
            slurm = planned.slurm_state if planned is not None else None
            if status.heartbeat_unix is not None:
                age = now - status.heartbeat_unix
        rows.append(
            {
                "task": t.get("index"),
                "run_id": run_id,
                "wd": t.get("weight_decay"),
                "seed": t.get("seed"),
                "slurm": slurm,
                "job": f"{ts.array_job_id}_{ts.task_id}" if ts else None,
                "exit_code": ts.exit_code if ts else None,
                "restarts": ts.restarts if ts else status.restarts,
                "reason": ts.reason if ts else None,
                "run_state": view.status if view is not None else status.state,
                "state": state or "unknown",
                "phase": phase,
                "step": step if step is not None else status.last_step,
                "heartbeat_age": round(age, 1) if age is not None else None,
                "restarted_from_scratch": scratch,
            }
        )
    return rows


def run_status(args) -> int:
    import json
    from pathlib import Path

    from grokwatch.store import read_json
    from grokwatch.watch.queue import SlurmQueue
    from slurm.plan import MANIFEST

    mirror = None
    runner = None
    if args.root.startswith("ssh://"):
        from grokwatch.remote import resolve_remote

        sweep_dir, mirror = resolve_remote(
            f"{args.root.rstrip('/')}/{args.sweep}", start=False, trust_new_host_key=args.trust_new_host_key
        )
        runner = mirror.runner
    else:
        sweep_dir = Path(args.root) / args.sweep
    try:
        if not sweep_dir.is_dir():
            raise UsageError(f"no sweep at {sweep_dir}")
        manifest = read_json(sweep_dir / MANIFEST)
        queue = SlurmQueue(sweep_dir, runner=runner)
        rows = sweep_rows(sweep_dir, manifest, queue, stall_seconds=args.stall_seconds)
    finally:
        if mirror is not None:
            mirror.close()
    if not rows:
        raise UsageError(f"sweep {sweep_dir} has no manifest (grokwatch sweep plan) and no runs")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if args.json:
        json.dump(
            {
                "sweep": args.sweep,
                "array_job_id": (manifest or {}).get("array_job_id"),
                "squeue_error": queue.last_error,
                "counts": counts,
                "runs": rows,
            },
            sys.stdout,
            indent=1,
        )
        sys.stdout.write("\n")
        return 0
    print(format_table(rows))
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    job = (manifest or {}).get("array_job_id")
    print(f"{len(rows)} runs{f' (array job {job})' if job else ''}: {summary}")
    if queue.last_error:
        print(f"grokwatch: {queue.last_error}", file=sys.stderr)
    return 0


def format_table(rows: list[dict]) -> str:
    def cell(r, c):
        v = r.get(c)
        if c == "beat":
            v = r.get("heartbeat_age")
            return "-" if v is None else _age(v)
        if c == "state" and r.get("restarted_from_scratch"):
            return f"{v}!"
        return "-" if v is None else str(v)

    header = [c.upper() for c in COLUMNS]
    body = [[cell(r, c) for c in COLUMNS] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *body])


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
