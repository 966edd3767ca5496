"""Sweep planning: options -> runs -> array tasks -> manifest. Pure, no I/O.

A sweep is seeds x weight decays (DESIGN: 30 seeds x {0.1, 0.3, 1.0} = 90
runs). Runs are numbered weight-decay-major (all seeds of the first weight
decay, then the next) and ``pack`` consecutive runs share one array task, so
array task ``i`` runs ``runs[i*pack : (i+1)*pack]``.

Every value that reaches the batch script is validated here; anything a shell
or ``#SBATCH`` line could misread is refused with :class:`PlanError`.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

MANIFEST = "sweep.json"  # grokwatch.store.layout.MANIFEST (slurm must not import grokwatch)
MANIFEST_VERSION = 1
LOG_DIR = "logs"
DEFAULT_WEIGHT_DECAYS = (0.1, 0.3, 1.0)

# Same rule as grokwatch.store.layout (slurm must not import grokwatch).
_COMPONENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_PARTITION = re.compile(r"^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9_.-]+$")
_MEM = re.compile(r"^[0-9]+[KMGT]?$")
# minutes | minutes:seconds | hours:minutes:seconds | days-hours[:minutes[:seconds]]
_TIME = re.compile(
    r"^(?:(?P<d>[0-9]+)-(?P<dh>[0-9]+)(?::(?P<dm>[0-9]+)(?::(?P<ds>[0-9]+))?)?"
    r"|(?P<a>[0-9]+)(?::(?P<b>[0-9]+)(?::(?P<c>[0-9]+))?)?)$"
)


class PlanError(ValueError):
    """An option the plan cannot use; its message is one line for the user."""


@dataclass(frozen=True)
class RunSpec:
    """One training run of the sweep and the array task that runs it."""

    index: int  # SLURM_ARRAY_TASK_ID
    slot: int  # position among the ``pack`` runs of that task
    run_id: str
    weight_decay: float
    seed: int


@dataclass
class SweepOptions:
    root: str  # absolute path of the store root on the cluster
    sweep: str
    seeds: int = 30
    weight_decays: tuple[float, ...] = DEFAULT_WEIGHT_DECAYS
    preset: str = "canonical"
    steps: int | None = None  # None: the preset's own number of steps
    gpus_per_task: int = 1
    partition: str | None = None
    account: str | None = None
    cpus: int | None = None
    mem: str | None = None
    time: str | None = None
    max_concurrent: int | None = None
    python: str = sys.executable
    pack: int = 1
    signal_seconds: int = 300  # USR1 this long before the time limit
    max_restarts: int = 50  # the job stops requeueing itself after this many restarts
    checkpoint_every: int | None = None
    flush_steps: int | None = None
    flush_seconds: float | None = None
    workdir: str | None = None  # where the batch script cd's (python -m trainer must import)
    trainer_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def time_seconds(self) -> int | None:
        return parse_time(self.time) if self.time else None

    @property
    def effective_signal_seconds(self) -> int:
        """Lead of the USR1 warning: never more than half the time limit, so a
        short limit cannot make every attempt preempt itself at once."""
        limit = self.time_seconds
        if limit is None:
            return self.signal_seconds
        return max(1, min(self.signal_seconds, limit // 2))

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_task > 0 else "cpu"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["weight_decays"] = list(self.weight_decays)
        d["trainer_args"] = list(self.trainer_args)
        return d


def format_wd(wd: float) -> str:
    """Shortest text that reads back as the same float: 0.1, 1.0, 1e-05."""
    return repr(float(wd))


def parse_weight_decays(text: str) -> tuple[float, ...]:
    """``"0.1,0.3,1.0"`` -> (0.1, 0.3, 1.0); finite, >= 0, no repeats."""
    out: list[float] = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise PlanError(f"--weight-decays: {part!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise PlanError(f"--weight-decays: {part!r} must be a finite number >= 0")
        if value in out:
            raise PlanError(f"--weight-decays: {part!r} is listed twice")
        out.append(value)
    if not out:
        raise PlanError("--weight-decays: give at least one value")
    return tuple(out)


def parse_time(text: str) -> int:
    """A SLURM time limit (``--time``) in seconds."""
    m = _TIME.match(text)
    if not m:
        raise PlanError(f"--time {text!r}: use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
    if m["d"] is not None:
        secs = int(m["d"]) * 86400 + int(m["dh"]) * 3600 + int(m["dm"] or 0) * 60 + int(m["ds"] or 0)
    elif m["c"] is not None:
        secs = int(m["a"]) * 3600 + int(m["b"]) * 60 + int(m["c"])
    elif m["b"] is not None:
        secs = int(m["a"]) * 60 + int(m["b"])
    else:
        secs = int(m["a"]) * 60
    if secs <= 0:
        raise PlanError(f"--time {text!r}: the time limit must be positive")
    return secs


def _positive(name: str, value: int | float | None, *, zero: bool = False, top: int | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PlanError(f"{name}: {value!r} is not a number")
    if value < 0 or (value == 0 and not zero):
        raise PlanError(f"{name}: {value!r} must be {'>= 0' if zero else 'positive'}")
    if top is not None and value > top:
        raise PlanError(f"{name}: {value!r} is more than {top}")


def _plain_text(name: str, value: str) -> None:
    # Quoting makes any text safe in the script body; control characters still
    # make no sense in a path or command and would garble logs and #SBATCH lines.
    if not value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise PlanError(f"{name}: {value!r} is empty or holds control characters")


def validate(opts: SweepOptions) -> SweepOptions:
    """Check every option; raise :class:`PlanError` with a one-line message."""
    if not _COMPONENT.match(opts.sweep) or opts.sweep in (".", ".."):
        raise PlanError(f"--sweep {opts.sweep!r}: use only letters, digits, '.', '_' and '-'")
    if not _COMPONENT.match(opts.preset) or opts.preset in (".", ".."):
        raise PlanError(f"--preset {opts.preset!r}: use only letters, digits, '.', '_' and '-'")
    _plain_text("--root", opts.root)
    if not opts.root.startswith("/"):
        raise PlanError(f"--root {opts.root!r}: must be an absolute path")
    _plain_text("--python", opts.python)
    if opts.workdir is not None:
        _plain_text("--workdir", opts.workdir)
    _positive("--seeds", opts.seeds, top=100_000)
    if not isinstance(opts.seeds, int):
        raise PlanError(f"--seeds: {opts.seeds!r} is not a whole number")
    if not opts.weight_decays:
        raise PlanError("--weight-decays: give at least one value")
    for wd in opts.weight_decays:
        _positive("--weight-decays", wd, zero=True)
    if len(set(opts.weight_decays)) != len(opts.weight_decays):
        raise PlanError("--weight-decays: a value is listed twice")
    _positive("--steps", opts.steps)
    _positive("--gpus-per-task", opts.gpus_per_task, zero=True, top=64)
    _positive("--cpus", opts.cpus, top=4096)
    _positive("--max-concurrent", opts.max_concurrent)
    _positive("--pack", opts.pack, top=64)
    _positive("--signal-seconds", opts.signal_seconds, top=65535)
    _positive("--max-restarts", opts.max_restarts, zero=True, top=10_000)
    _positive("--checkpoint-every", opts.checkpoint_every)
    _positive("--flush-steps", opts.flush_steps)
    _positive("--flush-seconds", opts.flush_seconds)
    for name in (
        "steps",
        "gpus_per_task",
        "cpus",
        "max_concurrent",
        "pack",
        "signal_seconds",
        "max_restarts",
        "checkpoint_every",
        "flush_steps",
    ):
        value = getattr(opts, name)
        if value is not None and not isinstance(value, int):
            raise PlanError(f"--{name.replace('_', '-')}: {value!r} is not a whole number")
    if opts.partition is not None and not _PARTITION.match(opts.partition):
        raise PlanError(f"--partition {opts.partition!r}: use letters, digits, '.', '_', '-' (comma-separated)")
    if opts.account is not None and not _ACCOUNT.match(opts.account):
        raise PlanError(f"--account {opts.account!r}: use only letters, digits, '.', '_' and '-'")
    if opts.mem is not None and not _MEM.match(opts.mem):
        raise PlanError(f"--mem {opts.mem!r}: a size like 4000, 4000M or 4G")
    if opts.time is not None:
        parse_time(opts.time)
    for arg in opts.trainer_args:
        _plain_text("--trainer-arg", arg)
    n_runs = opts.seeds * len(opts.weight_decays)
    if opts.pack > n_runs:
        raise PlanError(f"--pack {opts.pack}: the sweep has only {n_runs} runs")
    return opts


def plan_runs(opts: SweepOptions, run_id_for: Callable[[float, int], str]) -> list[RunSpec]:
    """Every run of the sweep with its array task, weight-decay-major.

    ``run_id_for(weight_decay, seed)`` names the runs: the caller passes
    :func:`grokwatch.store.layout.run_id_for`, the one naming rule every view
    shares (slurm must not import grokwatch, and the trainer must not import slurm).
    """
    runs = []
    k = 0
    for wd in opts.weight_decays:
        for seed in range(opts.seeds):
            runs.append(
                RunSpec(
                    index=k // opts.pack,
                    slot=k % opts.pack,
                    run_id=run_id_for(wd, seed),
                    weight_decay=float(wd),
                    seed=seed,
                )
            )
            k += 1
    return runs


def n_tasks(runs: Sequence[RunSpec]) -> int:
    return (max(r.index for r in runs) + 1) if runs else 0


def array_spec(runs: Sequence[RunSpec], max_concurrent: int | None) -> str:
    spec = f"0-{n_tasks(runs) - 1}"
    return f"{spec}%{max_concurrent}" if max_concurrent else spec


def make_manifest(opts: SweepOptions, runs: Sequence[RunSpec], previous: dict | None = None) -> dict[str, Any]:
    """The sweep manifest (``<root>/<sweep>/sweep.json``).

    ``tasks`` has one entry per run: ``index`` (its SLURM_ARRAY_TASK_ID),
    ``slot`` (its place among the task's ``pack`` runs), ``run_id``,
    ``weight_decay``, ``seed``. ``submissions`` lists the array jobs submitted
    for it, newest last; ``array_job_id`` is the newest. A previous manifest's
    submissions are kept when its runs are the same; planning different runs
    over a submitted sweep is refused.
    """
    tasks = [asdict(r) for r in runs]
    submissions: list[dict[str, Any]] = []
    if previous:
        old_tasks = previous.get("tasks")
        old_subs = list(previous.get("submissions") or [])
        if old_subs and old_tasks != tasks:
            raise PlanError(
                f"sweep {opts.sweep!r} was already submitted (job {old_subs[-1].get('array_job_id')}) with "
                "other runs; plan the new runs under another --sweep name"
            )
        submissions = old_subs
    return {
        "version": MANIFEST_VERSION,
        "sweep": opts.sweep,
        "root": opts.root,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "options": opts.to_json(),
        "array": array_spec(runs, opts.max_concurrent),
        "n_tasks": n_tasks(runs),
        "pack": opts.pack,
        "tasks": tasks,
        "submissions": submissions,
        "array_job_id": submissions[-1]["array_job_id"] if submissions else None,
    }


def record_submission(manifest: dict[str, Any], array_job_id: str) -> dict[str, Any]:
    subs = list(manifest.get("submissions") or [])
    subs.append(
        {
            "array_job_id": str(array_job_id),
            "submitted": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
    )
    return {**manifest, "submissions": subs, "array_job_id": str(array_job_id)}


def runs_of_manifest(manifest: dict[str, Any]) -> list[RunSpec]:
    """The runs listed in a manifest (entries it cannot read are skipped)."""
    out = []
    for t in manifest.get("tasks") or []:
        try:
            out.append(
                RunSpec(
                    index=int(t["index"]),
                    slot=int(t.get("slot", 0)),
                    run_id=str(t["run_id"]),
                    weight_decay=float(t["weight_decay"]),
                    seed=int(t["seed"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out
