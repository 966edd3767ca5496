"""The ``grokwatch`` command.

Each sub-command lives in ``grokwatch/commands/<name>.py`` with a light
``register(subparsers)``; heavy imports (torch, textual) happen inside the
handler, so ``grokwatch alerts`` never loads the UI and ``--help`` is instant.
``grokwatch SOURCE`` with no sub-command opens the dashboard on SOURCE.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Module names under grokwatch.commands, in the order --help lists them.
COMMANDS = ["demo", "sweep", "tui", "alerts", "silence", "simulate", "predict", "report", "probe", "import_"]


class UsageError(ValueError):
    """Bad input from the user: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grokwatch", description="Watch a sweep of grokking runs and warn early.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"grokwatch.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code. A closed stdout (``grokwatch predict
    SWEEP | head``) ends it quietly with 141 (128 + SIGPIPE, what a shell shows for
    a command whose reader went away), never with a traceback."""
    try:
        rc = _main(argv)
        sys.stdout.flush()  # inside the try: the last lines may only now meet the closed pipe
    except BrokenPipeError:
        if not _stdout_closed():  # another pipe (a socket, a child's stdin): a real error
            raise
        _stdout_to_devnull()
        return 141
    return rc


def _stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _stdout_to_devnull() -> None:
    """After EPIPE, point stdout at /dev/null so Python's own flush at exit finds
    nothing to complain about (the recipe of the Python docs, signal module, "Note
    on SIGPIPE")."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (captured, closed)
        pass


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices) if parser._subparsers else set()  # type: ignore[union-attr]
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in known and "tui" in known:
        argv.insert(argv.index(first), "tui")  # `grokwatch SOURCE` opens the dashboard
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="grokwatch: %(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        if "tui" in known:
            args = parser.parse_args(["tui", *argv])
        else:
            parser.print_help()
            return 0
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"grokwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
