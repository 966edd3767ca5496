"""The ``grokwatch`` command.

Each sub-command lives in ``grokwatch/commands/<name>.py`` with a light
``register(subparsers)``; heavy imports (torch, textual) happen inside the
handler, so ``grokwatch alerts`` never loads the UI and ``--help`` is instant.
``grokwatch SOURCE`` with no sub-command opens the dashboard on SOURCE.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys

from grokwatch.errors import UsageError

# Module names under grokwatch.commands, in the order --help lists them.
COMMANDS = ["demo", "sweep", "tui", "alerts", "silence", "simulate", "predict", "report", "probe", "import_"]


class _Parser(argparse.ArgumentParser):
    """Every parser of the command: a long option must be spelt out (no prefix
    matching: ``--run`` is not taken for ``--runs``)."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self.command_names: frozenset[str] = frozenset()  # the top level's sub-commands (build_parser)


class _SubParser(_Parser):
    """A sub-command's parser (and its sub-commands'): an argument it does not know
    is an error with *its* usage, not the top level's, with a suggestion for a
    mistyped option."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            options = [o for o in self._option_string_actions if o.startswith("--")]
            hint = ""
            for x in extras:
                if not x.startswith("--"):
                    continue
                word = x.split("=", 1)[0]
                close = [o for o in options if o.startswith(word)] or difflib.get_close_matches(word, options, n=1)
                if close:
                    hint = f"; did you mean {' or '.join(sorted(close)[:3])}?"
                    break
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return namespace, extras


def build_parser() -> _Parser:
    parser = _Parser(
        prog="grokwatch",
        description="Watch a sweep of grokking runs and warn early.",
        epilog="grokwatch SOURCE (no command) opens the dashboard on a sweep directory, like grokwatch tui "
        "SOURCE. grokwatch COMMAND --help lists a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_SubParser)
    for name in COMMANDS:
        importlib.import_module(f"grokwatch.commands.{name}").register(sub)
    parser.command_names = frozenset(sub.choices)
    return parser


def _mistyped_command(word: str, known: set[str]) -> str | None:
    """The command ``word`` was probably meant to be, when it is not a path (a
    SOURCE for the dashboard) and is close to one."""
    import os

    if "/" in word or "://" in word or os.path.exists(word):
        return None
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return close[0] if close else None


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
    known = set(parser.command_names)
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None and not {"-h", "--help"} & set(argv):
        parser.print_help(sys.stderr)  # bare `grokwatch`: what it can do, not "tui: error"
        return 2
    if first is not None and first not in known and "tui" in known:
        meant = _mistyped_command(first, known)
        if meant is not None:
            print(f"grokwatch: unknown command {first!r}; did you mean {meant!r}?", file=sys.stderr)
            return 2
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
