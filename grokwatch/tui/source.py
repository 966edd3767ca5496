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

:func:`grokwatch.tui.app.open_source` builds the one source there is,
:class:`~grokwatch.tui.watcher_source.WatcherSource`, which maps the
watcher's snapshots (:mod:`grokwatch.watch`) to the view-model. A watcher that
cannot be loaded is an error (:class:`WatcherUnavailable`), never a quiet
switch to another way of reading the sweep. This module and
``watcher_source`` do not import each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from .model import DetailPlot, SweepModel


class SweepSource(Protocol):
    sweep_dir: Path

    def start(self, on_change: Callable[[], None]) -> None: ...
    def refresh(self) -> bool: ...
    def model(self) -> SweepModel: ...
    def series(self, run_ids: Sequence[str], smoothing: float = 0.0) -> DetailPlot: ...
    def close(self) -> None: ...


class WatcherUnavailable(RuntimeError):
    """The sweep watcher (:mod:`grokwatch.watch`) cannot be loaded: the dashboard
    has no other way to read a sweep, so it does not start. One line, for the user."""


def resolve_sweep(source: str | os.PathLike) -> Path:
    """The local sweep directory SOURCE names (:func:`grokwatch.remote.source.resolve_source`:
    a path, ``file://``, and remote schemes as they are registered)."""
    from grokwatch.remote.source import resolve_source

    return resolve_source(str(source), early=True)  # a remote sweep shows once every run's newest data is here
