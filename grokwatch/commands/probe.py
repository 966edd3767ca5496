"""``grokwatch probe RUN_DIR``: the trainer's probes after the fact, over the
weight snapshots a run kept (``--keep-every M``), written as probe shards.

Each snapshot of step s gives the probe row of step s + 1 (the weights that
step starts from, as live probes see them). The shards carry a post-hoc
attempt number, ``probes-<last_step:09d>-a1000.arrow`` for the first pass,
a1001 for the next ...: the trainer's own shards and status.json are never
touched, and readers see the post-hoc rows like live ones (a post-hoc row
keeps the live columns it does not recompute). update_cosine needs the live
optimizer and is left out.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="compute probes post hoc over a run's kept weight snapshots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (<root>/<sweep>/<run_id>) with snapshots/")
    p.add_argument(
        "--probes",
        metavar="LIST",
        help="comma-separated probe names (default: the trainer's default probes but update_cosine)",
    )
    p.add_argument("--grid", type=int, metavar="G", help="H0 loss-slice grid size G (G x G forwards; default 15)")
    p.add_argument("--every", type=int, metavar="N", help="only snapshots whose step is a multiple of N (default: all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the trainer's offline probe (``python -m trainer.probe_offline``) as a
    subprocess: the grokwatch package never imports the trainer. Its stdout (the
    summary) and stderr (progress, the one-line error) come through as they are
    written; its exit code is this command's."""
    import subprocess
    import sys
    import threading

    from grokwatch.errors import UsageError
    from grokwatch.integrations.extras import training_extra_error

    if err := training_extra_error("grokwatch probe"):
        raise UsageError(err)
    if args.threads < 1:
        raise UsageError("--threads must be >= 1")
    argv = [args.run_dir, "--device", args.device, "--threads", str(args.threads)]
    for flag, value in (("--probes", args.probes), ("--grid", args.grid), ("--every", args.every)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--json"] * args.json + ["-q"] * args.quiet
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer.probe_offline", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )

    def relay(src, dst) -> None:
        for line in src:
            dst.write(line)
            dst.flush()

    err_thread = threading.Thread(target=relay, args=(proc.stderr, sys.stderr), daemon=True)
    err_thread.start()
    try:
        relay(proc.stdout, sys.stdout)
        rc = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: the child goes too
            proc.kill()
            proc.wait()
        err_thread.join(5)
    return rc


def _child_env() -> dict[str, str]:
    """This environment, with the directory this process imports ``trainer``
    from first on the child's PYTHONPATH (a source checkout, a test run)."""
    import importlib.util
    import os
    from pathlib import Path

    env = dict(os.environ)
    spec = importlib.util.find_spec("trainer")  # finds, does not import
    if spec is not None and spec.submodule_search_locations:
        root = str(Path(next(iter(spec.submodule_search_locations))).parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
