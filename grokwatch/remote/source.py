"""Where a sweep lives: ``resolve_source(str) -> Path``, the one place that
turns a SOURCE argument into a local sweep directory.

Today SOURCE is a sweep directory path (``<root>/<sweep>``; ``file://`` and
``~`` accepted). Remote schemes (``ssh://host/path``) plug in here: a resolver
for a scheme returns a local path (e.g. a synced mirror) or raises
:class:`grokwatch.errors.UsageError` with one line for the user; it reports
its progress on stderr, and :func:`source_notice` says in one line how it is
doing afterwards (for the dashboard's status line).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from grokwatch.errors import UsageError
from grokwatch.store import list_runs
from grokwatch.store.layout import RUN_JSON


def _ssh(url: str, early: bool = False) -> Path:
    # paramiko loads only when an ssh:// source is actually used. A host not yet
    # in known_hosts is refused unless the user opts in explicitly. The first
    # sync reports on stderr; with ``early`` it returns once every run's newest
    # data is local and the mirror's thread brings the older rows.
    from grokwatch.remote import open_mirror

    trust = os.environ.get("GROKWATCH_TRUST_NEW_HOST_KEY", "") not in ("", "0")
    return open_mirror(url, trust_new_host_key=trust, progress=True, newest_only=early)


#: scheme -> resolver(source string[, early=True]) -> local sweep directory. Extend, don't edit callers.
RESOLVERS: dict[str, Callable[..., Path]] = {"ssh": _ssh}


def source_notice(path: str | os.PathLike) -> str | None:
    """One line on how the remote source behind local sweep directory ``path``
    is doing (an ssh:// mirror's first sync, a lost link, its cache cap), or
    None (a local sweep, or a mirror simply in sync). Cheap: a status bar's tick."""
    resolve = sys.modules.get("grokwatch.remote.resolve")  # never imports paramiko for a local sweep
    return resolve.notice_for(path) if resolve is not None else None


def resolve_source(source: str, *, early: bool = False) -> Path:
    """The local sweep directory for ``source``; UsageError (one line) when there is none.

    ``early`` (the dashboard): a remote source may return once every run's
    newest data is there and fill in the older rows in the background;
    otherwise (headless commands) its first sync is whole before this returns."""
    text = str(source).strip()
    if not text:
        raise UsageError("SOURCE is empty: give a sweep directory")
    scheme, sep, rest = text.partition("://")
    if sep and scheme != "file":
        resolver = RESOLVERS.get(scheme.lower())
        if resolver is None:
            raise UsageError(f"{scheme}:// sources are not supported (yet); give a local sweep directory")
        return resolver(text, early=True) if early else resolver(text)
    path = Path(os.path.expanduser(rest if sep else text))
    if not path.exists():
        raise UsageError(f"no such sweep directory: {path}")
    if not path.is_dir():
        raise UsageError(f"not a directory: {path}")
    if (path / RUN_JSON).exists():
        raise UsageError(f"{path} is a run directory; give its sweep directory {path.parent}")
    if not list_runs(path):
        # A root holding sweeps (<root>/<sweep>/<run>) is a common slip.
        sweeps = [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".") and list_runs(p)]
        if len(sweeps) == 1:
            return sweeps[0].resolve()
        if sweeps:
            names = ", ".join(p.name for p in sweeps[:5])
            raise UsageError(f"{path} holds several sweeps ({names}); pick one")
    return path.resolve()
