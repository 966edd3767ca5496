"""``grokwatch tui SOURCE`` (and plain ``grokwatch SOURCE``): the dashboard."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from grokwatch.commands import SSH_SOURCE, add_trust_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="open the dashboard on a sweep directory")
    p.add_argument(
        "source",
        metavar="SOURCE",
        help=f"a sweep directory (<root>/<sweep>), a root holding one sweep, or {SSH_SOURCE}",
    )
    add_trust_flag(p)
    p.add_argument(
        "--rules",
        metavar="FILE",
        type=Path,
        help="alarm rules (TOML) merged over the defaults, as `grokwatch alerts --rules` reads them; "
        "while a `grokwatch alerts` runs on the sweep, the dashboard shows its alarms instead",
    )
    p.add_argument("--config", type=Path, help="dashboard config (TOML; default ~/.config/grokwatch/tui.toml)")
    p.add_argument("--interval", type=float, help="seconds between polls of the sweep (overrides the config)")
    p.add_argument("--no-follow", action="store_true", help="read the sweep once; do not follow it")
    p.set_defaults(func=run)


def load_tui_config(path: Path | None, **overrides):
    """The config file (or defaults) with command-line overrides; errors are usage errors."""
    from dataclasses import replace

    from grokwatch.errors import UsageError

    from ..tui.columns import COLUMNS
    from ..tui.config import TuiConfigError, load_config

    try:
        cfg = load_config(path, known_columns=tuple(COLUMNS))
    except TuiConfigError as exc:
        raise UsageError(str(exc)) from None
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def load_rules_file(path: Path | None) -> None:
    """Check a ``--rules`` file the way ``grokwatch alerts`` reads it; a bad one is a usage error."""
    if path is None:
        return
    from grokwatch.errors import UsageError

    from ..alerts import RuleError, load_rules

    try:
        load_rules(path)
    except RuleError as exc:
        raise UsageError(" ".join(str(exc).split())) from None


def run_dashboard(
    source,
    config,
    before_exit: Callable[[], None] | None = None,
    on_app: Callable[[object], None] | None = None,
    rules: Path | None = None,
) -> int:
    """Run the app; a crash restores the terminal, prints the error and exits non-zero.
    ``on_app`` gets the app before it runs (the demo closes it on SIGTERM).
    A watcher that cannot be loaded is one line on stderr and exit 1."""
    from ..tui.app import make_app
    from ..tui.source import WatcherUnavailable

    try:
        app = make_app(source, config, rules=rules)  # a bad SOURCE raises UsageError: one line, exit 2
    except WatcherUnavailable as exc:
        print(f"grokwatch: error: {exc}", file=sys.stderr)
        return 1
    if on_app is not None:
        on_app(app)
    try:
        app.run()
    finally:
        app.close_source()  # idempotent: threads are joined even when the app crashed
        if before_exit is not None:
            before_exit()
    rc = app.return_code
    if rc is None:  # never started (e.g. no terminal)
        print("grokwatch: the dashboard did not start", file=sys.stderr)
        return 1
    return rc


def run(args: argparse.Namespace) -> int:
    if args.interval is not None and args.interval <= 0:
        from grokwatch.errors import UsageError

        raise UsageError("--interval must be positive")
    cfg = load_tui_config(args.config, interval=args.interval, follow=False if args.no_follow else None)
    load_rules_file(args.rules)  # before the terminal is taken over
    return run_dashboard(args.source, cfg, rules=args.rules)
