"""``grokwatch import tensorboard LOGDIR --root R --sweep S``: TensorBoard logs as grokwatch runs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import runs logged elsewhere (TensorBoard event files)",
        description="Import runs logged by another tool as grokwatch runs.",
    )
    kinds = p.add_subparsers(dest="import_kind", metavar="KIND", required=True)
    tb = kinds.add_parser(
        "tensorboard",
        help="event files written by torch.utils.tensorboard.SummaryWriter",
        description=(
            "Read TensorBoard event files (one run per subdirectory of LOGDIR, or LOGDIR itself when it "
            "holds event files) and write them as runs of ROOT/SWEEP. Tags map to grokwatch columns by "
            "name (train/loss -> train_loss, val/acc or Accuracy/test -> val_acc, grad_norm, weight_norm, "
            "lr); other tags keep their names. Needs the tensorboard package: pip install 'grokwatch[tensorboard]'."
        ),
    )
    tb.add_argument("logdir", metavar="LOGDIR", help="the SummaryWriter log directory")
    tb.add_argument("--root", required=True, help="root of the sweeps to write into")
    tb.add_argument("--sweep", required=True, help="sweep name (a directory under --root)")
    tb.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="TAG=COLUMN",
        help="map a tag to a column (repeatable); TAG=- drops the tag",
    )
    tb.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add KEY to every run's run.json (VALUE read as JSON when it parses, e.g. weight_decay=1.0)",
    )
    tb.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from grokwatch.errors import UsageError
    from grokwatch.integrations.tensorboard import ImportProblem, import_tensorboard, parse_map

    config = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set needs KEY=VALUE, not {item!r}")
        try:
            config[key] = json.loads(value)
        except ValueError:
            config[key] = value

    def report(r, path, n_steps) -> None:
        cols = sorted(set(r.columns.values()))
        print(f"{path}: {n_steps} steps, columns {', '.join(cols)}", flush=True)

    try:
        written = import_tensorboard(args.logdir, args.root, args.sweep, parse_map(args.map), config, on_run=report)
    except ImportProblem as exc:
        raise UsageError(str(exc)) from None
    print(f"grokwatch import: {len(written)} runs written to {args.root}/{args.sweep}")
    return 0
