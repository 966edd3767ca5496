"""``grokwatch silence RUN|RULE --for 2h``: mute notifications for a while."""

from __future__ import annotations

import argparse

from grokwatch.commands import SSH_SOURCE, add_trust_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "silence",
        help="mute notifications of a run or a rule for a while",
        description=(
            "Silence a run or a rule of a sweep: its alarms are still logged (alarms.jsonl, stdout) "
            "but not notified until the silence expires. A running `grokwatch alerts` picks it up "
            "within a second."
        ),
    )
    p.add_argument("target", metavar="RUN|RULE", nargs="?", help="a run id or a rule name")
    p.add_argument(
        "--for", dest="duration", default="2h", metavar="DUR", help="how long, e.g. 30m, 2h, 1d (default 2h)"
    )
    p.add_argument(
        "--source",
        default=".",
        metavar="SOURCE",
        help=f"the sweep directory (default: the current one), or {SSH_SOURCE}",
    )
    add_trust_flag(p)
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--run", dest="kind", action="store_const", const="run", help="TARGET is a run id")
    kind.add_argument("--rule", dest="kind", action="store_const", const="rule", help="TARGET is a rule name")
    p.add_argument("--rules", metavar="FILE", help="rules file, to recognise rule names (default rules otherwise)")
    p.add_argument("--comment", default="", help="why (shown by --list)")
    p.add_argument("--list", action="store_true", help="list active silences and exit")
    p.add_argument("--remove", metavar="ID", help="expire the silence with this id")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from grokwatch.alerts.rules import RuleError, load_rules, parse_duration
    from grokwatch.alerts.silences import add_silence, load_silences, remove_silence
    from grokwatch.errors import UsageError
    from grokwatch.remote.source import resolve_source
    from grokwatch.store import is_valid_run_id

    sweep = resolve_source(args.source)
    if args.list:
        for s in load_silences(sweep):
            print(json.dumps(s, sort_keys=True))
        return 0
    if args.remove:
        if not remove_silence(sweep, args.remove):
            raise UsageError(f"no active silence with id {args.remove}")
        return 0
    if not args.target:
        raise UsageError("give a run id or a rule name to silence (or --list)")
    try:
        seconds = parse_duration(args.duration)
        rules = load_rules(args.rules)
    except (ValueError, RuleError) as exc:
        raise UsageError(str(exc)) from None
    if seconds <= 0:
        raise UsageError("--for must be positive")
    kind = args.kind
    if kind is None:
        is_rule = args.target in rules
        is_run = (sweep / args.target).is_dir() if is_valid_run_id(args.target) else False
        if is_rule and is_run:
            raise UsageError(f"{args.target!r} is both a run and a rule: say --run or --rule")
        if not (is_rule or is_run):
            raise UsageError(f"{args.target!r} is neither a run of {sweep} nor a rule ({', '.join(sorted(rules))})")
        kind = "rule" if is_rule else "run"
    item = add_silence(sweep, kind, args.target, seconds, args.comment)
    print(json.dumps(item, sort_keys=True))
    return 0
