"""The alarm daemon's journal, for a dashboard that must not raise alarms of its own.

While ``grokwatch alerts`` runs on a sweep it holds
``<sweep>/.grokwatch/lock.json`` (:mod:`grokwatch.alerts.lock`) and appends
every alarm event to ``<sweep>/.grokwatch/alarms.jsonl``
(:mod:`grokwatch.alerts.journal`). A dashboard opened on that sweep shows
that journal -- the alarms that were notified -- instead of running an
engine of its own, which could disagree with it (other rules, another start).

- :func:`alarm_daemon`: the live daemon's lock record, or None (judged as the
  daemon judges it: :meth:`~grokwatch.alerts.lock.InstanceLock.is_stale`).
- :class:`AlarmTail`: follows alarms.jsonl, reading only what was appended.
- :class:`DaemonJournal`: whether a daemon runs, and once one does, its
  journal; polled by its own thread, which calls back when either changed.

Headless (no textual), like the rest of the view-model.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..alerts.journal import ALARMS, state_dir
from ..alerts.lock import LOCK, InstanceLock
from ..store import read_json
from .model import AlarmRow, fin, newest_first

log = logging.getLogger("grokwatch.tui")


def alarm_daemon(sweep_dir: Path | str) -> dict | None:
    """The lock record (host, pid, heartbeat ...) of the ``grokwatch alerts`` that
    watches this sweep now, or None when none does (no lock, or a stale one)."""
    path = state_dir(sweep_dir) / LOCK
    owner = read_json(path)
    if owner is None and not path.exists():
        return None
    if InstanceLock(path).is_stale(owner):
        return None
    return owner or {}


def describe_daemon(owner: dict | None) -> str:
    """``grokwatch alerts (pid 4242 on login1)``: which daemon, as its lock names it."""
    owner = owner or {}
    who = " ".join(
        x
        for x in (
            f"pid {owner['pid']}" if owner.get("pid") is not None else "",
            f"on {owner['host']}" if owner.get("host") else "",
        )
        if x
    )
    return f"grokwatch alerts ({who})" if who else "grokwatch alerts"


def _identity(owner: dict | None) -> tuple | None:
    return None if owner is None else (owner.get("host"), owner.get("pid"), owner.get("token"))


class AlarmTail:
    """Follows ``<sweep>/.grokwatch/alarms.jsonl``: reads only what was appended."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.inode: int | None = None
        self.events: list[AlarmRow] = []
        self._partial = b""

    def poll(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            self.offset, self.events, self._partial = 0, [], b""  # rotated or truncated
        self.inode = st.st_ino
        if st.st_size <= self.offset:
            return False
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unterminated last line waits for its end
        added = False
        for line in lines:
            row = parse_alarm(line, len(self.events))
            if row is not None:
                self.events.append(row)
                added = True
        return added

    def active(self) -> dict[str, tuple[str, ...]]:
        """Rules whose latest event per (run, rule) is firing, per run id."""
        return active_alarms(self.events)


def parse_alarm(line: bytes | str, seq: int) -> AlarmRow | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    run = rec.get("run") or rec.get("run_id")
    rule = rec.get("rule") or rec.get("name")
    if not run or not rule:
        return None
    step = rec.get("step")
    return AlarmRow(
        run_id=str(run),
        rule=str(rule),
        step=int(step) if isinstance(step, (int, float)) and np.isfinite(step) else None,
        value=fin(rec.get("value")),
        threshold=fin(rec.get("threshold")),
        severity=rec.get("severity"),
        state=str(rec.get("state") or rec.get("status") or "firing"),
        time=rec.get("time") or rec.get("ts"),
        seq=seq,
    )


def active_alarms(events: Sequence[AlarmRow]) -> dict[str, tuple[str, ...]]:
    latest: dict[tuple[str, str], str] = {}
    for e in events:
        latest[(e.run_id, e.rule)] = e.state
    out: dict[str, list[str]] = {}
    for (run, rule), state in latest.items():
        if state == "firing":
            out.setdefault(run, []).append(rule)
    return {k: tuple(sorted(v)) for k, v in out.items()}


class DaemonJournal:
    """Whether an alarm daemon watches the sweep and, once one does, its journal.

    Looked at once when built (``following``: a daemon runs, so the dashboard
    shows its journal and runs no engine); then ``poll()`` re-reads the lock
    at most every ``lock_every`` seconds and, while following, whatever the
    journal gained. A daemon that starts later is followed from then on; one
    that stops is reported (``error``), and its journal stays on screen.
    ``start(on_change)`` polls every ``every`` seconds in a plain thread.
    """

    def __init__(self, sweep_dir: Path | str, every: float = 1.0, lock_every: float = 5.0):
        self.sweep_dir = Path(sweep_dir)
        self.every = every
        self.lock_every = lock_every
        self.tail = AlarmTail(state_dir(self.sweep_dir) / ALARMS)
        self.owner = alarm_daemon(self.sweep_dir)
        self.followed = self.owner  # the daemon whose journal is shown (the last one seen)
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._alarms: tuple[AlarmRow, ...] = ()
        self._active: dict[str, tuple[str, ...]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.following:
            self._read()  # the first model already shows the daemon's alarms

    @property
    def following(self) -> bool:
        return self.followed is not None

    def poll(self) -> bool:
        """One pass; True when what the dashboard shows changed."""
        changed = False
        now = time.monotonic()
        if now - self._checked >= self.lock_every:
            self._checked = now
            owner = alarm_daemon(self.sweep_dir)
            if _identity(owner) != _identity(self.owner):
                changed = True
                if owner is not None:
                    self.followed = owner
            self.owner = owner
        if self.following and self._read():
            changed = True
        return changed

    def _read(self) -> bool:
        if not self.tail.poll():
            return False
        alarms, active = newest_first(self.tail.events), self.tail.active()
        with self._lock:
            self._alarms, self._active = alarms, active
        return True

    def alarms(self) -> tuple[AlarmRow, ...]:
        """The journal's events, newest first."""
        with self._lock:
            return self._alarms

    def active(self) -> dict[str, tuple[str, ...]]:
        """Rules firing per run id, as the journal's latest events say."""
        with self._lock:
            return self._active

    def events_of(self, run_id: str) -> list[AlarmRow]:
        return [a for a in self.alarms() if a.run_id == run_id]

    @property
    def note(self) -> str | None:
        """Where the alarms come from, for the header; None with no daemon followed."""
        return f"alarms: {describe_daemon(self.followed)}" if self.following else None

    @property
    def error(self) -> str | None:
        """Set when the followed daemon no longer runs."""
        if self.following and self.owner is None:
            return f"{describe_daemon(self.followed)} stopped: its alarms up to then are shown"
        return None

    # -- the thread ---------------------------------------------------------------------
    def start(self, on_change: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=self._loop, args=(on_change,), name="grokwatch-tui-journal", daemon=True)
        self._thread.start()

    def _loop(self, on_change: Callable[[], None]) -> None:
        while not self._stop.wait(self.every):
            try:
                changed = self.poll()
            except OSError as exc:  # an unreadable journal: say so, keep trying
                log.warning("cannot read the alarm journal: %s", exc)
                continue
            if changed:
                on_change()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
