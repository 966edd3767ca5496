"""``grokwatch demo``: a small local sweep on the CPU, shown live."""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a small sweep on the CPU and watch it live")
    p.add_argument("--root", type=Path, help="sweep root (default: a new temporary directory)")
    p.add_argument("--headless", action="store_true", help="print plain lines; exit 0 when every run has finished")
    p.add_argument("--weight-decays", default="0.3,1,3", help="comma-separated weight decays (default 0.3,1,3)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per weight decay (default 3)")
    p.add_argument("--steps", type=int, default=8000, help="step budget per run (default 8000)")
    p.add_argument("--jobs", type=int, help="trainers at once (default: the number of cores)")
    p.add_argument("--tui", action=argparse.BooleanOptionalAction, default=None,
                   help="show the dashboard (default: when stdout is a terminal and not --headless)")
    p.add_argument("--config", type=Path, help="dashboard config (TOML), with --tui")
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
    if args.headless and args.tui:
        raise UsageError("--headless and --tui exclude each other")
    tui = args.tui if args.tui is not None else (not args.headless and sys.stdout.isatty())
    if tui:
        return run_tui(args, wds)
    return run_demo(
        root=args.root, headless=args.headless, weight_decays=wds, seeds=args.seeds, steps=args.steps, jobs=args.jobs
    )


def run_tui(args: argparse.Namespace, wds: tuple[float, ...]) -> int:
    """The demo's trainers driven by a thread (grokwatch.demo.Demo), the dashboard on their sweep.

    Quitting the dashboard stops the trainers the same way Ctrl-C does in the
    plain mode (SIGTERM: they checkpoint and flush), then prints the table.
    """
    from ..demo import Demo, plan_demo
    from .tui import load_tui_config, run_dashboard

    cfg = load_tui_config(args.config)
    root = args.root if args.root is not None else Path(tempfile.mkdtemp(prefix="grokwatch-demo-"))
    plan = plan_demo(Path(root), weight_decays=wds, seeds=args.seeds, steps=args.steps, jobs=args.jobs)
    demo = Demo(plan)  # creates the sweep directory
    stop = threading.Event()
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            while not stop.is_set():
                demo.poll()
                if demo.done:
                    return
                stop.wait(1.0)
        except BaseException as exc:  # reported after the dashboard closes
            failure.append(exc)

    driver = threading.Thread(target=drive, name="grokwatch-demo", daemon=True)
    driver.start()

    def finish() -> None:
        stop.set()
        driver.join(60)
        if not demo.done:
            demo.stop()
            demo.poll()

    rc = run_dashboard(plan.root / plan.sweep, cfg, before_exit=finish)
    print(demo.table())
    grokked = sum(1 for r in plan.runs if r.t_grok is not None)
    print(f"grokwatch demo: {grokked}/{len(plan.runs)} runs grokked in {demo.elapsed():.0f}s; data under {plan.root / plan.sweep}")
    if failure:
        print(f"grokwatch demo: the trainer driver failed: {failure[0]!r}", file=sys.stderr)
        return rc or 1
    return rc
