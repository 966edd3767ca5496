"""``grokwatch demo``: a small local sweep on the CPU, shown live."""

from __future__ import annotations

import argparse
import os
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
    p.add_argument(
        "--tui",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the dashboard (default: when stdout is a terminal and not --headless)",
    )
    p.add_argument("--config", type=Path, help="dashboard config (TOML), with --tui")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grokwatch.errors import UsageError
    from grokwatch.integrations.extras import training_extra_error

    if err := training_extra_error("grokwatch demo"):
        raise UsageError(err)
    from grokwatch.sim.demo import run_demo

    try:
        wds = tuple(float(x) for x in args.weight_decays.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--weight-decays must be numbers separated by commas, not {args.weight_decays!r}") from None
    if not wds or any(w < 0 for w in wds):
        raise UsageError("--weight-decays needs at least one non-negative value")
    if args.seeds < 1 or args.steps < 1 or (args.jobs is not None and args.jobs < 1):
        raise UsageError("--seeds, --steps and --jobs must be positive")
    if args.headless and args.tui:
        raise UsageError("--headless and --tui exclude each other")
    _check_root(args.root)
    tui = args.tui if args.tui is not None else (not args.headless and sys.stdout.isatty())
    if tui:
        return run_tui(args, wds)
    return run_demo(
        root=args.root, headless=args.headless, weight_decays=wds, seeds=args.seeds, steps=args.steps, jobs=args.jobs
    )


def run_tui(args: argparse.Namespace, wds: tuple[float, ...]) -> int:
    """The demo's trainers driven by a thread (grokwatch.sim.demo.Demo), the dashboard on their sweep.

    Quitting the dashboard (q, Ctrl-C) or a SIGTERM/SIGHUP/SIGINT stops the
    trainers the same way Ctrl-C does in the plain mode (SIGTERM: they
    checkpoint and flush; queued runs never start), then prints the table. The
    exit code is 0 only when every run finished; 130 (128 + the signal) when
    the sweep was cut short.
    """
    import signal

    from grokwatch.sim.demo import Demo, plan_demo

    from .tui import load_tui_config, run_dashboard

    cfg = load_tui_config(args.config)
    root = args.root if args.root is not None else Path(tempfile.mkdtemp(prefix="grokwatch-demo-"))
    plan = plan_demo(Path(root), weight_decays=wds, seeds=args.seeds, steps=args.steps, jobs=args.jobs)
    demo = Demo(plan)  # creates the sweep directory
    stop = threading.Event()
    failure: list[BaseException] = []
    signalled: list[int] = []
    apps: list = []
    exit_sent: list[bool] = []

    def close_app() -> None:
        """Ask the dashboard to exit (from the signal handler or the driver thread)."""
        loop = getattr(apps[0], "_loop", None) if apps else None
        if loop is None or exit_sent:
            return
        try:
            loop.call_soon_threadsafe(lambda: apps[0].exit(return_code=128 + signalled[0]))
            exit_sent.append(True)
        except RuntimeError:  # the loop is closed: the dashboard is gone already
            pass

    def on_signal(signum, frame) -> None:
        signalled.append(signum)
        close_app()

    def drive() -> None:
        try:
            while not stop.is_set():
                if signalled:  # start nothing more; close the dashboard (once it runs)
                    close_app()
                elif not demo.done:
                    demo.poll()
                stop.wait(1.0)
        except BaseException as exc:  # reported after the dashboard closes
            failure.append(exc)

    driver = threading.Thread(target=drive, name="grokwatch-demo", daemon=True)

    def finish() -> None:
        stop.set()
        if driver.is_alive():
            driver.join(60)
        if not demo.done and not demo.stopped:
            if any(r.proc is not None and r.proc.poll() is None for r in plan.runs):
                print(
                    "grokwatch demo: stopping the trainers (they checkpoint and flush)...", file=sys.stderr, flush=True
                )
            demo.stop()
        demo.poll()  # the last shards; a stopped demo starts nothing

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        driver.start()
        rc = run_dashboard(plan.root / plan.sweep, cfg, before_exit=finish, on_app=apps.append)
    finally:
        finish()  # also when the dashboard never ran; a second call does nothing more
        for s, h in old.items():
            signal.signal(s, h)
    print(demo.table())
    sweep_dir = plan.root / plan.sweep
    if failure:
        print(f"grokwatch demo: the trainer driver failed: {failure[0]!r}", file=sys.stderr)
        return rc or 1
    if not demo.done:
        code = 128 + signalled[0] if signalled else 130
        finished = sum(r.returncode == 0 for r in plan.runs)
        print(
            f"grokwatch demo: interrupted; {finished}/{len(plan.runs)} runs finished, "
            f"{len(plan.runs) - len(demo.not_started)} started; shards kept under {sweep_dir}"
        )
        return rc if rc not in (0, code) else code  # a crashed dashboard keeps its own code
    grokked = sum(1 for r in plan.runs if r.t_grok is not None)
    print(f"grokwatch demo: {grokked}/{len(plan.runs)} runs grokked in {demo.elapsed():.0f}s; data under {sweep_dir}")
    failed = [r for r in plan.runs if r.returncode != 0]
    for r in failed:
        print(
            f"grokwatch demo: {r.run_id} exited {r.returncode}; see {sweep_dir / '.demo-logs' / (r.run_id + '.log')}",
            file=sys.stderr,
        )
    return rc or (1 if failed else 0)


def _check_root(root: Path | None) -> None:
    """A --root that cannot hold the sweep is a one-line error, before anything starts."""
    from grokwatch.errors import UsageError

    if root is None:
        return
    for path in (root, root / "demo"):
        if path.exists() and not path.is_dir():
            raise UsageError(f"--root {root}: {path} is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--root {root}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UsageError(f"--root {root}: not writable")
