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
    import json
    import sys

    from grokwatch.errors import UsageError
    from grokwatch.integrations.extras import training_extra_error

    if err := training_extra_error("grokwatch probe"):
        raise UsageError(err)
    from trainer.probe_offline import ProbeError, probe_run

    if args.threads < 1:
        raise UsageError("--threads must be >= 1")
    probes = args.probes.split(",") if args.probes is not None else None

    def progress(i: int, n: int, step: int) -> None:
        if not args.quiet:
            print(f"grokwatch probe: {i}/{n} snapshot step {step}", file=sys.stderr, flush=True)

    try:
        res = probe_run(
            args.run_dir,
            probes,
            grid=args.grid,
            every=args.every,
            device=args.device,
            threads=args.threads,
            progress=progress,
        )
    except ProbeError as exc:
        raise UsageError(str(exc)) from None
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
