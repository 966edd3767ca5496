"""``grokwatch simulate ROOT``: write a synthetic sweep through the real writer."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a realistic synthetic sweep (at once, or live with --speed)",
        description=(
            "Write a synthetic grokking sweep to ROOT/SWEEP: weight decays x seeds, plateaus that "
            "depend on both, runs that never grok, one that anti-groks, one that diverges, one that "
            "stalls, one preempted and resumed. Each run's ground truth is in its run.json under "
            "'simulated'. Without --speed everything is written at once; with it, in real time."
        ),
    )
    p.add_argument("root", metavar="ROOT", help="directory to create the sweep in")
    p.add_argument("--runs", type=int, default=90, help="number of runs (default 90 = 3 weight decays x 30 seeds)")
    p.add_argument("--steps", type=int, default=100_000, help="training steps per run (default 100000)")
    p.add_argument("--speed", type=float, metavar="X", help="simulated steps per second per run (live mode)")
    p.add_argument("--seed", type=int, default=0, help="sweep seed (same seed, same sweep)")
    p.add_argument("--sweep", default="sim", metavar="NAME", help="sweep name (default sim)")
    p.add_argument("--shard-steps", type=int, default=1000, metavar="N", help="steps per shard (default 1000)")
    p.add_argument(
        "--flush-seconds",
        type=float,
        default=1.0,
        metavar="S",
        help="live mode: a shard per run this often (default 1)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    import threading
    import time

    from grokwatch.errors import UsageError
    from grokwatch.sim.simulate import simulate_sweep
    from grokwatch.store import is_valid_run_id

    if args.runs < 1 or args.steps < 200:
        raise UsageError("--runs must be >= 1 and --steps >= 200")
    if args.speed is not None and args.speed <= 0:
        raise UsageError("--speed must be positive")
    if args.shard_steps < 1 or args.flush_seconds <= 0:
        raise UsageError("--shard-steps and --flush-seconds must be positive")
    if not is_valid_run_id(args.sweep):
        raise UsageError(f"bad sweep name {args.sweep!r}: use letters, digits, '.', '_' and '-'")
    from pathlib import Path

    target = Path(args.root) / args.sweep
    for path in (Path(args.root), target):
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path} is not a directory; give a directory to create the sweep in")
    if target.exists() and any(p.name != ".grokwatch" for p in target.iterdir()):
        raise UsageError(f"{target} already holds runs; pick another --sweep or ROOT")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {target}: {exc.strerror or exc}") from None
    print(str(target), flush=True)
    t0 = time.monotonic()

    def progress(done: int, total: int) -> None:
        print(f"\rgrokwatch simulate: {done}/{total} runs done", end="", file=sys.stderr, flush=True)

    stop = threading.Event()
    try:
        simulate_sweep(
            args.root,
            args.sweep,
            runs=args.runs,
            steps=args.steps,
            seed=args.seed,
            speed=args.speed,
            shard_steps=args.shard_steps,
            flush_seconds=args.flush_seconds,
            stop=stop,
            on_progress=progress if sys.stderr.isatty() else None,
        )
    except KeyboardInterrupt:
        stop.set()
        print("\ngrokwatch simulate: interrupted", file=sys.stderr)
        return 130
    if sys.stderr.isatty():
        print(f"\ngrokwatch simulate: done in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0
