"""Probes after the fact: the trainer's probes over a run's kept weight snapshots.

A run trained with ``--keep-every M`` keeps ``<run>/snapshots/weights-<step:09d>.pt``
(``{"step": s, "model": state_dict}``, the weights after s updates; see
``trainer.checkpoint.save_snapshot``). :func:`probe_snapshots` loads them in step order,
runs the named probes of ``trainer.probes`` on each selected one and writes the
values as "probes" shards through :class:`grokwatch.store.RunWriter`, so every
reader (watcher, dashboard, report) sees them like live probe rows.

Conventions:

- **Step.** A probe row describes the weights its step *starts from* (the data
  contract; a live probe at step t sees the weights after t - 1 updates), so
  the snapshot of step s gives the row of step **s + 1**, and the lr is the one
  of step s + 1. A live probe at step s + 1 and a post-hoc one on snapshot s
  see the same weights and give the same values (same seeds).
- **Never clobbering live shards.** Post-hoc shards carry an attempt number of
  their own, ``POSTHOC_ATTEMPT_BASE`` (1000) and up, one new number per
  invocation: ``shards/probes-<last_step:09d>-a1000.arrow``, then ``-a1001``...
  The trainer's attempts (0, 1, 2, ... one per resume, numbered from
  status.json) never reach them, so no file name is ever shared and nothing is
  overwritten, and status.json is never touched. Readers keep the row of the
  highest attempt at a step, so a post-hoc row wins where it shares a step
  with a live one; to lose nothing there, each post-hoc row starts from the
  row the store already holds at that step (live or from an earlier post-hoc
  pass) and overrides only the columns it computes.
- **Trajectory window.** ``pca2_variance_share`` and ``defect_transverse_frac``
  use the last ``trainer.checkpoint.SNAPSHOTS_KEPT`` kept snapshots up to this one
  (spaced keep_every), where the live probes use probe-step snapshots (spaced
  probe_every): the same definition on a different window unless the two
  cadences agree.
- ``update_cosine`` needs the optimizer state, which a weight snapshot does not
  keep: it is left out post hoc (asking for it is an error).
- Every probe runs on every selected snapshot (no sub-cadence): ``every``
  selects the snapshots whose step is a multiple of N.

Imports trainer (model, task, config, probes) and observables; never the UI.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grokwatch.store import SHARDS_DIR, SNAPSHOTS_DIR, ContractError, RunConfig, RunReader, RunWriter, ShardName

log = logging.getLogger("grokwatch.probe")

#: First attempt number of post-hoc shards (the trainer's own attempts stay far below).
POSTHOC_ATTEMPT_BASE = 1000
#: Probes that need what only the live loop has (the optimizer state).
LIVE_ONLY = ("update_cosine",)

_SNAPSHOT = re.compile(r"^weights-(\d{9,})\.pt$")


class ProbeError(ValueError):
    """A bad request (no run, no snapshots, unknown probe): one line for the user."""


@dataclass
class ProbeResult:
    run_dir: Path
    attempt: int
    probes: list[str]
    steps: list[int] = field(default_factory=list)  # probe-row steps written (snapshot step + 1)
    shards: list[Path] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "attempt": self.attempt,
            "probes": self.probes,
            "steps": self.steps,
            "shards": [p.name for p in self.shards],
            "columns": self.columns,
            "seconds": round(self.seconds, 3),
        }


def list_snapshots(run_dir: Path | str) -> list[tuple[int, Path]]:
    """(step, path) of the run's kept weight snapshots, by step."""
    folder = Path(run_dir) / SNAPSHOTS_DIR
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _SNAPSHOT.match(name)
        if m:
            out.append((int(m.group(1)), folder / name))
    return sorted(out)


def posthoc_attempt(run_dir: Path | str) -> int:
    """The attempt number for a new post-hoc pass: one above every post-hoc
    attempt already in the run's shards, POSTHOC_ATTEMPT_BASE for the first."""
    try:
        names = os.listdir(Path(run_dir) / SHARDS_DIR)
    except FileNotFoundError:
        names = []
    seen = [p.attempt for p in map(ShardName.parse, names) if p is not None and p.attempt >= POSTHOC_ATTEMPT_BASE]
    return max(seen) + 1 if seen else POSTHOC_ATTEMPT_BASE


def default_probes() -> list[str]:
    from trainer.probes import DEFAULT_PROBES

    return [p for p in DEFAULT_PROBES if p not in LIVE_ONLY]


def check_probes(names: Iterable[str]) -> list[str]:
    """Probe names (no ``@every``: post hoc, --every picks the snapshots); ProbeError for others."""
    from trainer.probes import PROBES

    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ProbeError("--probes: no probe named")
    cadenced = [n for n in names if "@" in n]
    if cadenced:
        raise ProbeError(f"--probes: {', '.join(cadenced)}: no name@N post hoc (--every N picks the snapshots)")
    bad = [n for n in names if n not in PROBES]
    if bad:
        known = ", ".join(sorted(n for n in PROBES if n not in LIVE_ONLY))
        raise ProbeError(f"--probes: unknown probe {', '.join(map(repr, bad))}; known: {known}")
    live = [n for n in names if n in LIVE_ONLY]
    if live:
        raise ProbeError(f"--probes: {', '.join(live)} needs the live optimizer state; a weight snapshot has none")
    return list(dict.fromkeys(names))


def probe_snapshots(
    run_dir: Path | str,
    probes: Iterable[str] | None = None,
    *,
    grid: int | None = None,
    every: int | None = None,
    device: str = "cpu",
    threads: int = 1,
    flush_rows: int = 10,
    flush_seconds: float = 60.0,
    progress: Callable[[int, int, int], None] | None = None,
) -> ProbeResult:
    """Run ``probes`` (default: the trainer's defaults that work post hoc) on
    the snapshots of ``run_dir`` whose step is a multiple of ``every`` (all
    when None), ``grid`` overriding the H0 slice's G. Writes a shard every
    ``flush_rows`` rows or ``flush_seconds`` seconds and at the end, so an
    interrupted pass keeps what it finished. ``progress(i, n, step)`` after
    each snapshot. Raises ProbeError for a bad request."""
    import torch

    from trainer.checkpoint import SNAPSHOTS_KEPT
    from trainer.config import TrainConfig
    from trainer.loop import lr_at
    from trainer.model import Transformer
    from trainer.probes import probe_context, run_probes
    from trainer.task import make_dataset
    from trainer.train import flatten_parameters

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    try:
        saved = RunConfig.read(run_dir)
    except ContractError as exc:
        raise ProbeError(str(exc)) from None
    if saved is None:
        raise ProbeError(f"{run_dir}: not a run directory (no readable run.json)")
    names = check_probes(probes) if probes is not None else default_probes()
    if grid is not None and grid < 2:
        raise ProbeError("--grid must be >= 2")
    if every is not None and every < 1:
        raise ProbeError("--every must be a positive number of steps")
    snaps = list_snapshots(run_dir)
    if not snaps:
        raise ProbeError(f"{run_dir}: no weight snapshots in {SNAPSHOTS_DIR}/ (train with --keep-every M to keep them)")
    chosen = {s for s, _ in snaps if every is None or s % every == 0}
    if not chosen:
        steps = [s for s, _ in snaps]
        raise ProbeError(f"--every {every}: no snapshot step is a multiple of it (snapshots at {_span(steps)})")

    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise ProbeError(f"--device {device}: no such device here (use cpu, or cuda[:N] on a GPU machine)")
    cfg = TrainConfig.from_dict({k: v for k, v in saved.to_json().items() if k != "meta"})
    cfg = cfg.replace(device=device, threads=max(1, int(threads)))
    torch.set_num_threads(cfg.threads)
    dev = torch.device(device)
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed).to(dev)
    model = Transformer(cfg.model_config()).to(dev)
    flat, slices, _ = flatten_parameters(model)
    options = {"h0": {"grid": int(grid)}} if grid is not None else {}

    existing = _existing_rows(run_dir)
    attempt = posthoc_attempt(run_dir)
    writer = RunWriter(run_dir, saved, resume=True)  # never opened: no run.json or status.json writes
    writer.attempt = attempt
    result = ProbeResult(run_dir=run_dir, attempt=attempt, probes=names)
    columns: dict[str, None] = {}
    window: deque = deque(maxlen=SNAPSHOTS_KEPT)
    pending, last_flush = 0, time.monotonic()

    def flush() -> None:
        nonlocal pending, last_flush
        if pending:
            writer.flush()  # one shard: probes-<its last step>-a<attempt>.arrow (steps only grow)
            name = ShardName(attempt=attempt, last_step=result.steps[-1], kind="probes").filename
            result.shards.append(run_dir / SHARDS_DIR / name)
            pending, last_flush = 0, time.monotonic()

    last = max(chosen)
    done = 0
    try:
        for snap_step, path in snaps:
            if snap_step > last:
                break
            try:
                state = torch.load(path, map_location=dev, weights_only=True)
                model.load_state_dict(state["model"])  # copies into the flat storage
            except Exception as exc:  # a damaged file: skip it, never the whole pass
                log.warning("%s: skipping unreadable snapshot %s (%s)", run_dir.name, path.name, _one_line(exc))
                continue
            window.append((snap_step, flat.detach().clone()))
            if snap_step not in chosen:
                continue
            step = snap_step + 1  # the weights step s + 1 starts from
            ctx = probe_context(
                step, model, flat, slices, data, cfg, lr_at(cfg, step), snapshots=window, options=options
            )
            values = run_probes(names, ctx, cadence=False)
            columns.update(dict.fromkeys(values))
            writer.log("probes", step, {**existing.get(step, {}), **values})
            result.steps.append(step)
            pending += 1
            done += 1
            if progress is not None:
                progress(done, len(chosen), snap_step)
            if pending >= flush_rows or time.monotonic() - last_flush >= flush_seconds:
                flush()
    finally:
        flush()
    result.columns = sorted(columns)
    result.seconds = time.perf_counter() - t0
    return result


def _existing_rows(run_dir: Path) -> dict[int, dict[str, float]]:
    """The store's current probe rows (newest attempt per step), finite values only."""
    reader = RunReader(run_dir, kinds=("probes",))
    reader.refresh(status=False)
    cols = reader.probes
    if not cols or not len(cols.get("step", ())):
        return {}
    names = [k for k in cols if k not in ("step", "attempt")]
    rows: dict[int, dict[str, float]] = {}
    for i, step in enumerate(cols["step"].tolist()):
        row = {}
        for k in names:
            v = float(cols[k][i])
            if math.isfinite(v):
                row[k] = v
        rows[int(step)] = row
    return rows


def _span(steps: list[int]) -> str:
    if len(steps) <= 4:
        return ", ".join(map(str, steps))
    gaps = np.unique(np.diff(steps))
    gap = f" every {int(gaps[0])}" if gaps.size == 1 else ""
    return f"{steps[0]}..{steps[-1]}{gap}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# -- the command line: ``python -m trainer.probe_offline`` ------------------------------------
# The back end of ``grokwatch probe`` (which runs it as a subprocess, so the
# grokwatch package never imports the trainer): the same options, output,
# errors (one line, ``grokwatch: error: ...``) and exit codes (0; 2 for a bad
# request).


def build_parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="grokwatch probe",
        description="Compute probes post hoc over a run's kept weight snapshots (the back end of grokwatch probe).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (<root>/<sweep>/<run_id>) with snapshots/")
    p.add_argument("--probes", metavar="LIST", help="comma-separated probe names (default: the post-hoc defaults)")
    p.add_argument("--grid", type=int, metavar="G", help="H0 loss-slice grid size G (default 15)")
    p.add_argument("--every", type=int, metavar="N", help="only snapshots whose step is a multiple of N")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    import json
    import sys

    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print("grokwatch: error: --threads must be >= 1", file=sys.stderr)
        return 2
    probes = args.probes.split(",") if args.probes is not None else None

    def progress(i: int, n: int, step: int) -> None:
        if not args.quiet:
            print(f"grokwatch probe: {i}/{n} snapshot step {step}", file=sys.stderr, flush=True)

    try:
        res = probe_snapshots(
            args.run_dir,
            probes,
            grid=args.grid,
            every=args.every,
            device=args.device,
            threads=args.threads,
            progress=progress,
        )
    except ProbeError as exc:
        print(f"grokwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(res.as_dict(), sort_keys=True))
    else:
        first, last = (res.steps[0], res.steps[-1]) if res.steps else (None, None)
        print(
            f"{res.run_dir}: {len(res.steps)} snapshots probed (rows at steps {first}..{last}), "
            f"{len(res.columns)} columns, {len(res.shards)} shards of attempt {res.attempt} "
            f"in {res.seconds:.1f} s"
        )
        for path in res.shards:
            print(f"  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
