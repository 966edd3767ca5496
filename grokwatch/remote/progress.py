"""Where a mirror's pass stands, in words: the stderr lines of a first sync and
the dashboard's status line. Pure (no paramiko)."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO


@dataclass
class SyncProgress:
    """One pass of a :class:`~grokwatch.remote.mirror.Mirror`, updated while it runs.

    ``stage``: "connecting", "listing" (every run's run.json, status.json and
    newest shards are fetched as its directory is listed), "backfill" (older
    shards, newest first), "done" (everything wanted is local) or "newest"
    (a pass that stopped once every run's newest data was local).
    """

    url: str = ""
    host: str = ""
    stage: str = "connecting"
    started: float = field(default_factory=time.monotonic)
    runs_total: int = 0  # run directories in the sweep listing
    runs_listed: int = 0
    files: int = 0  # fetched in this pass
    bytes: int = 0
    files_todo: int = 0  # fetched + still to fetch (known from the backfill on)
    bytes_todo: int = 0
    backfill_started: float | None = None  # when the backfill began, and how many files were in by then
    backfill_files: int = 0
    kept_shards: int = 0  # under a cache cap: shards kept locally, and left out
    dropped_shards: int = 0
    note: str | None = None  # a one-off line (the cache cap was reached)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def mb(n: float) -> str:
    """Bytes as MB, one decimal under 10 MB: '0.4 MB', '45 MB', '2,048 MB'."""
    v = n / 1e6
    return f"{v:.1f} MB" if v < 10 else f"{v:,.0f} MB"


def _of_mb(done: int, total: int) -> str:
    if total <= 0:
        return mb(done)
    return f"{mb(done)[:-3]} of {mb(total)}"


def _left(p: SyncProgress) -> str:
    """', about 40 s left' once the backfill has run a few seconds."""
    if p.backfill_started is None:
        return ""
    spent = time.monotonic() - p.backfill_started
    done, todo = p.files - p.backfill_files, p.files_todo - p.backfill_files
    if spent < 3 or done <= 0 or todo <= done:
        return ""
    left = spent * (todo - done) / done
    return f", about {left:.0f} s left" if left < 90 else f", about {left / 60:.0f} min left"


def describe(p: SyncProgress) -> str:
    """One short line for the stage ``p`` is in (no 'grokwatch:' prefix)."""
    if p.stage == "connecting":
        return f"connecting to {p.host} ..."
    if p.stage == "listing":
        runs = f"{p.runs_listed:,} of {p.runs_total:,} runs" if p.runs_total else "the sweep"
        return f"listing {runs}, newest data first ({p.files:,} files, {mb(p.bytes)})"
    if p.stage == "backfill":
        return f"syncing {p.files:,} of {p.files_todo:,} files ({_of_mb(p.bytes, p.bytes_todo)}){_left(p)}"
    if p.stage == "newest":
        return (
            f"newest data of all {p.runs_total:,} runs in {p.seconds:.1f} s ({p.files:,} files, {mb(p.bytes)}); "
            "older rows follow in the background"
        )
    if not p.files:
        return f"up to date in {p.seconds:.1f} s"
    return f"synced {p.files:,} files ({mb(p.bytes)}) in {p.seconds:.1f} s"


class StderrProgress:
    """Progress lines of a first sync on stderr (``on_progress`` of a mirror).

    On a terminal the line is redrawn in place (at most every ``every``
    seconds, 0.2 by default); otherwise a line is printed when the stage
    changes and at most every ``every`` seconds (2 by default). "connecting
    to ..." shows only when connecting takes longer than ``connect_delay``
    seconds (a refused host key stays a one-line error). A note (the cache
    cap) is its own line. ``done(p, where)`` ends with where the cache is;
    ``abort()`` clears a half line before an error is printed.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        every: float | None = None,
        prefix: str = "grokwatch: ",
        connect_delay: float = 2.0,
    ):
        self.stream = stream if stream is not None else sys.stderr
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.every = every if every is not None else (0.2 if self.tty else 2.0)
        self.prefix = prefix
        self.connect_delay = connect_delay
        self.lines = 0
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._last = float("-inf")
        self._stage: str | None = None
        self._notes: set[str] = set()
        self._open = False  # a redrawn line without its newline yet

    def _write(self, text: str, final: bool) -> None:
        with self._lock:
            self._write_locked(text, final)

    def _write_locked(self, text: str, final: bool) -> None:
        try:
            if self.tty:  # one screen line, redrawn in place (a wrapped line could not be)
                text = text[: max(20, shutil.get_terminal_size((100, 24)).columns - len(self.prefix) - 1)]
                self.stream.write(f"\r{self.prefix}{text}\x1b[K" + ("\n" if final else ""))
                self._open = not final
            else:
                self.stream.write(f"{self.prefix}{text}\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: progress is not worth an error
            return
        self.lines += 1

    def _connecting(self, p: SyncProgress) -> None:
        with self._lock:
            if self._stage == "connecting":
                self._write(describe(p), False)

    def _cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def __call__(self, p: SyncProgress) -> None:
        with self._lock:
            self._call(p)

    def _call(self, p: SyncProgress) -> None:
        if p.stage == "connecting":
            self._stage = p.stage
            if self.connect_delay <= 0:
                self._write(describe(p), False)
            elif self._timer is None:
                self._timer = threading.Timer(self.connect_delay, self._connecting, args=(p,))
                self._timer.daemon = True
                self._timer.start()
            return
        self._cancel()
        now = time.monotonic()
        if p.stage != "listing" and self._stage in ("connecting", "listing", None):
            # Every run's latest state is here: worth its own line (unless nothing came).
            if p.files and p.runs_total:
                self._write(
                    f"newest data of all {p.runs_total:,} runs in {p.seconds:.1f} s ({p.files:,} files, {mb(p.bytes)})",
                    True,
                )
            self._stage = "newest"
        if p.note and p.note not in self._notes:
            self._notes.add(p.note)
            if self._open:
                self._write(describe(p), True)
            self._write(p.note, True)
        if p.stage == "listing":
            if self._stage != "listing":
                self._stage, self._last = "listing", now  # a line only if listing takes a while
            elif now - self._last >= self.every:
                self._last = now
                self._write(describe(p), False)
            return
        if p.stage != "backfill" or p.files_todo <= p.files:
            return  # done() has the last word; a backfill with nothing to fetch says nothing
        if self._stage != "backfill" or now - self._last >= self.every:
            self._stage, self._last = "backfill", now
            self._write(describe(p), False)

    def done(self, p: SyncProgress, where: str | None = None) -> None:
        """The last line of the sync: what came, and (``where``) the cache directory."""
        with self._lock:
            self._cancel()
            self._stage = "finished"
            self._write(describe(p) + (f"; cache {where}" if where else ""), True)

    def abort(self) -> None:
        """The sync failed: no more lines, and a half-drawn one is cleared for the error."""
        with self._lock:
            self._cancel()
            self._stage = "finished"
            if self._open:
                try:
                    self.stream.write("\r\x1b[K")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
                self._open = False
