"""Where the dashboard's data comes from: the sweep watcher, and nothing else.

The dashboard talks to a :class:`SweepSource`:

- ``start(on_change)``: begin following the sweep; ``on_change()`` is called
  from the source's own thread whenever something changed.
- ``refresh()``: one synchronous pass (tests, the frozen test config).
- ``model()``: the current :class:`~grokwatch.tui.model.SweepModel`.
- ``series(run_ids, smoothing)``: full-resolution curves for the detail view.
- ``close()``: stop and join every thread.

``model()`` and ``series()`` are called off the UI thread (the feed thread and
workers). No textual here: this module is headless and testable alone.

:func:`open_source` builds the one source there is,
:class:`~grokwatch.tui.watcher_source.WatcherSource`, which maps the
watcher's snapshots (:mod:`grokwatch.watch`) to the view-model. A watcher that
cannot be loaded is an error (:class:`WatcherUnavailable`), never a quiet
switch to another way of reading the sweep.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from grokwatch.runs.defaults import STALL_TIMEOUT

from .model import RunSeries, SweepModel

log = logging.getLogger("grokwatch.tui")


class SweepSource(Protocol):
    sweep_dir: Path

    def start(self, on_change: Callable[[], None]) -> None: ...
    def refresh(self) -> bool: ...
    def model(self) -> SweepModel: ...
    def series(self, run_ids: Sequence[str], smoothing: float = 0.0) -> RunSeries: ...
    def close(self) -> None: ...


class WatcherUnavailable(RuntimeError):
    """The sweep watcher (:mod:`grokwatch.watch`) cannot be loaded: the dashboard
    has no other way to read a sweep, so it does not start. One line, for the user."""


def resolve_sweep(source: str | os.PathLike) -> Path:
    """The local sweep directory SOURCE names (:func:`grokwatch.remote.source.resolve_source`:
    a path, ``file://``, and remote schemes as they are registered)."""
    from grokwatch.remote.source import resolve_source

    return resolve_source(str(source), early=True)  # a remote sweep shows once every run's newest data is here


def open_source(
    source: str | os.PathLike,
    *,
    stall_timeout: float = STALL_TIMEOUT,
    interval: float = 1.0,
    clock: Callable[[], float] = time.time,
    pause: Callable[[], object] | None = None,
    rules: str | os.PathLike | None = None,
) -> SweepSource:
    """The watcher's view of SOURCE. ``pause``: called by the watcher's thread
    between runs (the dashboard's :class:`grokwatch.watch.quiet.QuietWindow`), so key
    presses repaint first. ``rules``: a rules file merged over the defaults
    (as ``grokwatch alerts --rules``). Raises :class:`WatcherUnavailable` when
    the watcher does not import (with the reason)."""
    sweep = resolve_sweep(source)
    try:
        from .watcher_source import WatcherSource
    except Exception as exc:  # a broken install or a bug in the watcher: say which, stop
        log.debug("importing the watcher failed", exc_info=True)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise WatcherUnavailable(f"the sweep watcher (grokwatch.watch) cannot be loaded: {reason}") from exc
    return WatcherSource(sweep, stall_timeout=stall_timeout, interval=interval, clock=clock, pause=pause, rules=rules)
