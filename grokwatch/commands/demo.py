"""``grokwatch demo``: a small local sweep on the CPU, shown live."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a small sweep on the CPU and watch it live")
    p.add_argument("--root", type=Path, help="sweep root (default: a new temporary directory)")
    p.add_argument("--headless", action="store_true", help="print plain lines; exit 0 when every run has finished")
    p.add_argument("--weight-decays", default="0.3,1,3", help="comma-separated weight decays (default 0.3,1,3)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per weight decay (default 3)")
    p.add_argument("--steps", type=int, default=6000, help="step budget per run (default 6000)")
    p.add_argument("--jobs", type=int, help="trainers at once (default: the number of cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import UsageError
    from ..demo import run_demo

    try:
        wds = tuple(float(x) for x in args.weight_decays.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--weight-decays must be numbers separated by commas, not {args.weight_decays!r}")
    if not wds or any(w < 0 for w in wds):
        raise UsageError("--weight-decays needs at least one non-negative value")
    if args.seeds < 1 or args.steps < 1 or (args.jobs is not None and args.jobs < 1):
        raise UsageError("--seeds, --steps and --jobs must be positive")
    return run_demo(
        root=args.root, headless=args.headless, weight_decays=wds, seeds=args.seeds, steps=args.steps, jobs=args.jobs
    )
