"""``grokwatch alerts SOURCE``: the headless alarm daemon (DESIGN section 5)."""

from __future__ import annotations

import argparse
import os

from grokwatch.commands import SSH_SOURCE, add_trust_flag
from grokwatch.runs.defaults import STALL_TIMEOUT


def _seconds(text: str) -> float:
    from grokwatch.alerts.rules import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alerts",
        help="watch a sweep headless: alarms to stdout (JSON lines), alarms.jsonl and notifications",
        description=(
            "Watch a sweep and raise alarms without the dashboard. Every alarm event is one JSON "
            "object on stdout and a line in <sweep>/.grokwatch/alarms.jsonl; with --notify it is "
            "also sent through apprise (Slack, e-mail, ntfy, a JSON webhook, ...). URLs may also "
            "come from $GROKWATCH_NOTIFY (space separated), which keeps secrets out of `ps`."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help=f"a sweep directory (<root>/<sweep>), or {SSH_SOURCE}")
    add_trust_flag(p)
    p.add_argument("--notify", metavar="URL", action="append", default=[], help="apprise URL to notify (repeatable)")
    p.add_argument("--fallback", metavar="URL", help="apprise URL that gets what a --notify channel could not deliver")
    p.add_argument("--rules", metavar="FILE", help="rules TOML merged over the defaults; reloaded when it changes")
    p.add_argument("--once", action="store_true", help="evaluate what is on disk, deliver, exit (for cron)")
    p.add_argument("--poll", action="store_true", help="poll instead of inotify (automatic on NFS, Lustre, GPFS, ...)")
    p.add_argument("--interval", type=float, default=5.0, metavar="S", help="seconds between polls (default 5)")
    p.add_argument(
        "--test", action="store_true", help="send a test notification through every channel; exit 1 if one fails"
    )
    p.add_argument(
        "--stall-timeout",
        type=_seconds,
        default=STALL_TIMEOUT,
        metavar="DUR",
        help=f"a running run without heartbeat this long is stalled (default {STALL_TIMEOUT:g}s)",
    )
    p.add_argument(
        "--watchdog-every", type=_seconds, metavar="DUR", help="also notify 'watcher alive' this often (e.g. 6h)"
    )
    p.add_argument(
        "--heartbeat-every",
        type=_seconds,
        default=10.0,
        metavar="DUR",
        help="refresh .grokwatch/heartbeat.json this often (default 10s)",
    )
    p.add_argument(
        "--max-tries",
        type=int,
        default=8,
        metavar="N",
        help="attempts before a notification goes to --fallback (default 8); without one, retries go on every 5 min",
    )
    p.add_argument(
        "--backoff",
        type=_seconds,
        default=2.0,
        metavar="DUR",
        help="first retry delay, doubled per failure (default 2s)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=30.0,
        metavar="N",
        help="messages per minute per channel; more alarms are batched (default 30)",
    )
    p.add_argument(
        "--no-predict",
        action="store_true",
        help="no onset predictions (by default logged to .grokwatch/predictions.arrow "
        "and fed to rules on predicted_onset_in)",
    )
    p.add_argument(
        "--deliver-timeout",
        type=_seconds,
        default=60.0,
        metavar="DUR",
        help="--once: how long to keep trying to deliver (default 60s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import signal
    import sys
    import threading
    from pathlib import Path

    from grokwatch.alerts.daemon import AlertDaemon, DaemonOptions, send_test
    from grokwatch.alerts.lock import LockHeld
    from grokwatch.alerts.notify import ChannelPolicy
    from grokwatch.alerts.rules import RuleError
    from grokwatch.errors import UsageError
    from grokwatch.remote.source import resolve_source

    sweep = resolve_source(args.source)
    urls = list(args.notify) + os.environ.get("GROKWATCH_NOTIFY", "").split()
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    if args.max_tries < 1 or args.rate <= 0:
        raise UsageError("--max-tries must be >= 1 and --rate positive")
    if args.test:
        if not urls and not args.fallback:
            raise UsageError("--test needs at least one --notify URL")
        try:
            results = send_test(urls, args.fallback, sweep.name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        for r in results:
            print(json.dumps(r, sort_keys=True), flush=True)
        return 0 if all(r["ok"] for r in results) else 1
    opts = DaemonOptions(
        notify=urls,
        fallback=args.fallback,
        rules=Path(args.rules) if args.rules else None,
        poll=True if args.poll else None,
        interval=args.interval,
        stall_timeout=args.stall_timeout,
        heartbeat_every=args.heartbeat_every,
        watchdog_every=args.watchdog_every,
        deliver_timeout=args.deliver_timeout,
        predict=not args.no_predict,
        policy=ChannelPolicy(max_tries=args.max_tries, backoff=args.backoff, rate_per_min=args.rate),
    )
    try:
        daemon = AlertDaemon(sweep, opts)
    except (RuleError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        daemon.open()
    except LockHeld as exc:
        raise UsageError(str(exc)) from None
    stop = threading.Event()
    old = {}
    if not args.once:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    known = len(daemon.journal.ids)  # alarms an earlier run already raised (alarms.jsonl)
    try:
        rc = daemon.run_once() if args.once else daemon.run(stop)
    finally:
        daemon.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if daemon.error:
        print(f"grokwatch: error: {daemon.error}", file=sys.stderr)
    elif args.once:
        _say_why_nothing(sweep, known, len(daemon.journal.ids) - known, daemon.journal.alarms_path)
    return rc


def _say_why_nothing(sweep, known: int, fresh: int, journal) -> None:
    """--once printed no alarm: say whether there was nothing to watch, nothing fired,
    or everything had been delivered before (stderr; stdout stays JSON lines only)."""
    import sys

    from grokwatch.store import list_runs

    if fresh:
        return
    n_runs = len(list_runs(sweep))
    if n_runs == 0:
        msg = f"no runs under {sweep} yet (no <run>/run.json); nothing to watch"
    elif known:
        msg = (
            f"{known} alarm{'s' if known != 1 else ''} already delivered, nothing new "
            f"({n_runs} run{'s' if n_runs != 1 else ''} checked; the earlier ones are in {journal})"
        )
    else:
        msg = f"no alarms: {n_runs} run{'s' if n_runs != 1 else ''} checked, no rule fired"
    print(f"grokwatch alerts: {msg}", file=sys.stderr)
