"""Silences: mute notifications for a run or a rule for a while.

Persisted in ``<sweep>/.grokwatch/silences.json`` (atomic replace), written by
``grokwatch silence`` and re-read by a running daemon when it changes.
A silenced alarm is still journaled and printed, with ``silenced`` set; it
is just not notified.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from grokwatch.store import atomic_write_json, read_json

from .engine import iso_utc
from .journal import state_dir

SILENCES = "silences.json"


def silences_path(sweep_dir: Path | str) -> Path:
    return state_dir(sweep_dir) / SILENCES


def load_silences(sweep_dir: Path | str, now: float | None = None, include_expired: bool = False) -> list[dict]:
    now = time.time() if now is None else now
    doc = read_json(silences_path(sweep_dir)) or {}
    items = [s for s in doc.get("silences", []) if isinstance(s, dict)]
    return items if include_expired else [s for s in items if float(s.get("until_unix", 0)) > now]


def add_silence(sweep_dir: Path | str, kind: str, target: str, seconds: float, comment: str = "") -> dict:
    if kind not in ("run", "rule"):
        raise ValueError("a silence matches a run or a rule")
    now = time.time()
    try:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # no passwd entry in some containers
        who = socket.gethostname()
    item = {
        "id": secrets.token_hex(3),
        kind: target,
        "created": iso_utc(now),
        "until_unix": round(now + seconds, 3),
        "until": iso_utc(now + seconds),
        "by": who,
        "comment": comment,
    }
    items = load_silences(sweep_dir, now) + [item]
    path = silences_path(sweep_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"silences": items})
    return item


def remove_silence(sweep_dir: Path | str, silence_id: str) -> bool:
    items = load_silences(sweep_dir)
    keep = [s for s in items if s.get("id") != silence_id]
    if len(keep) == len(items):
        return False
    atomic_write_json(silences_path(sweep_dir), {"silences": keep})
    return True


def matching(silences: list[dict], run: str, rule: str, now: float) -> dict | None:
    for s in silences:
        if float(s.get("until_unix", 0)) <= now:
            continue
        if s.get("run") == run or s.get("rule") == rule:
            return s
    return None


class SilenceWatch:
    """The current silences, re-read at most every ``every`` seconds when the file changed."""

    def __init__(self, sweep_dir: Path | str, every: float = 1.0):
        self.sweep_dir = Path(sweep_dir)
        self.path = silences_path(sweep_dir)
        self.every = every
        self._lock = threading.Lock()
        self._sig: tuple | None = None
        self._checked = 0.0
        self._items: list[dict] = []

    def current(self) -> list[dict]:
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.every:
                self._checked = now
                try:
                    st = os.stat(self.path)
                    sig = (st.st_mtime_ns, st.st_size, st.st_ino)
                except OSError:
                    sig = None
                if sig != self._sig:
                    self._sig = sig
                    self._items = load_silences(self.sweep_dir, include_expired=True)
            return self._items

    def match(self, run: str, rule: str, now: float | None = None) -> dict | None:
        return matching(self.current(), run, rule, time.time() if now is None else now)
