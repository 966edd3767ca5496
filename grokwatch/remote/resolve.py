"""From an ``ssh://`` SOURCE to a local directory kept in sync.

:func:`resolve_remote` makes a :class:`~grokwatch.remote.mirror.Mirror`, runs
its first sync (with progress lines) and starts its thread; :func:`open_mirror`
is the resolver ``grokwatch.remote.source`` uses, which keeps the mirrors this
process opened (one per URL) until :func:`close_sources`, and
:func:`runner_for` / :func:`notice_for` find the mirror behind a local path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from .mirror import Mirror
from .progress import StderrProgress, SyncProgress
from .ssh import SSHRunner
from .url import cache_path, parse_ssh_url


def resolve_remote(
    url: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    start: bool = True,
    initial_sync: bool = True,
    newest_only: bool = False,
    progress: Callable[[SyncProgress], None] | bool | None = None,
    **kwargs,
) -> tuple[Path, Mirror]:
    """Local directory that mirrors an ``ssh://`` SOURCE, and its :class:`Mirror`.

    With ``initial_sync`` one pass runs before returning (so the directory
    holds the sweep, and a bad host key, login or path raises
    :class:`~grokwatch.remote.url.RemoteError` here, one line); with
    ``newest_only`` that pass stops once every run's newest data is local
    (the thread, with ``start``, brings the rest). ``progress``: called with
    the pass's :class:`~grokwatch.remote.progress.SyncProgress` during that
    first pass only (True: lines on stderr). With ``start`` the mirror then
    keeps syncing in its thread. The caller owns the mirror:
    ``mirror.close()`` when done. ``kwargs`` go to :class:`Mirror`
    (``trust_new_host_key``, ``interval``, ``ssh_config``, ``cache_mb``, ...).
    """
    mirror = Mirror(url, cache_dir, **kwargs)
    mirror.log_notes = not newest_only  # the dashboard's status line says it, stderr would cut into its screen
    printer = StderrProgress() if progress is True else progress or None
    try:
        if initial_sync:
            mirror.on_progress = printer
            try:
                while True:
                    result = mirror.sync_once(newest_only=newest_only)
                    if newest_only or result.complete:
                        break  # else a pass limited by max_files_per_pass: go on
            finally:
                mirror.on_progress = None
            if isinstance(printer, StderrProgress):
                printer.done(mirror.progress, _home(mirror.local_path))
        mirror.local_path.mkdir(parents=True, exist_ok=True)
    except BaseException:
        if isinstance(printer, StderrProgress):
            printer.abort()
        mirror.close()
        raise
    if start:
        mirror.start()
    return mirror.local_path, mirror


_OPEN: dict[Path, Mirror] = {}
_OPEN_LOCK = threading.Lock()


def open_mirror(url: str, **kwargs) -> Path:
    """Resolver for ``grokwatch.remote.source.RESOLVERS["ssh"]``: the local mirror of
    ``url``, synced once and then kept in sync by a thread until
    :func:`close_sources` (registered with atexit). Opening the same URL again
    reuses its mirror (waiting for its first whole sync unless
    ``newest_only``). ``kwargs`` go to :func:`resolve_remote`."""
    import atexit

    local = cache_path(parse_ssh_url(url), kwargs.get("cache_dir"))
    with _OPEN_LOCK:
        mirror = _OPEN.pop(local, None)
        if mirror is not None and mirror.running:
            _OPEN[local] = mirror
        elif mirror is not None:
            mirror.close()  # its thread stopped on an error: try afresh
            mirror = None
    if mirror is not None:
        if not kwargs.get("newest_only"):
            mirror.wait_complete()
        return local
    with _OPEN_LOCK:
        if not _OPEN:
            atexit.register(close_sources)
        local, mirror = resolve_remote(url, **kwargs)
        _OPEN[local] = mirror
        return local


def runner_for(local_path: str | os.PathLike) -> SSHRunner | None:
    """The SSH runner of the mirror serving ``local_path`` (for QueueState), or None if it is local."""
    with _OPEN_LOCK:
        mirror = _OPEN.get(Path(local_path))
    return mirror.runner if mirror is not None else None


def notice_for(local_path: str | os.PathLike) -> str | None:
    """:meth:`Mirror.notice` of the mirror serving ``local_path`` (None if none, or in sync)."""
    with _OPEN_LOCK:
        mirror = _OPEN.get(Path(local_path))
    return mirror.notice() if mirror is not None else None


def close_sources() -> None:
    """Stop and join every mirror :func:`open_mirror` started."""
    with _OPEN_LOCK:
        mirrors = list(_OPEN.values())
        _OPEN.clear()
    for m in mirrors:
        m.close()


def _home(path: Path) -> str:
    home = os.path.expanduser("~")
    s = str(path)
    return "~" + s[len(home) :] if home not in ("", "/") and (s == home or s.startswith(home + "/")) else s
