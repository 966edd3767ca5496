"""``grokwatch report SOURCE --out DIR``: Markdown + PNG figures (or JSON
numbers) on the sweep's early-warning signals and onset predictions.

Per signal: lead time before t_grok, precision and recall against grokking
and anti-grokking, with sample sizes and bootstrap CIs; redundancy with
weight norm; t_grok prediction error at 25/50/75% of the plateau; the phase
picture and every run's curves with its alarms. ``--format json`` writes
DIR/report.json and prints it.
"""

from __future__ import annotations

import argparse

from grokwatch.commands import SSH_SOURCE, add_trust_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a Markdown/PNG (or JSON) report on a sweep's signals and predictions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help=f"a sweep directory, or {SSH_SOURCE}")
    add_trust_flag(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory for report.md, the figures and report.json")
    p.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json (numbers alone)")
    p.add_argument(
        "--onsets",
        choices=("auto", "alarms", "computed"),
        default="auto",
        help="signal onsets from alarms.jsonl, computed with the alarm rules, or auto (alarms.jsonl when present)",
    )
    p.add_argument(
        "--predictions",
        choices=("auto", "log", "replay"),
        default="auto",
        help="score the sweep's predictions.arrow (log), a fresh replay, or auto (the log when present)",
    )
    p.add_argument("--rules", metavar="FILE", help="alarm rules file for computed onsets (default: built-in rules)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from grokwatch.errors import UsageError
    from grokwatch.remote.source import resolve_source

    sweep = resolve_source(args.source)
    from grokwatch.alerts import RuleError
    from grokwatch.report import make_report

    try:
        doc = make_report(
            sweep, Path(args.out), fmt=args.format, onsets=args.onsets, rules=args.rules, predictions=args.predictions
        )
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except RuleError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write the report to {args.out}: {exc.strerror or exc}") from None
    if args.format == "json":
        json.dump(doc, sys.stdout, indent=1)
        print()
    else:
        c = doc["counts"]
        print(
            f"report on {c['runs']} runs written to {Path(args.out) / 'report.md'} "
            f"({len(doc.get('figures', []))} figures)"
        )
    return 0
