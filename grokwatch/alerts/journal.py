"""What the alarm daemon persists under ``<sweep>/.grokwatch/`` (no SQLite).

``alarms.jsonl``      every alarm event, appended (and fsynced) *before* any
                      notification is sent; each record names the channels
                      it is owed to (``notify``).
``deliveries.jsonl``  one line per delivery to a channel, or per hand-over
                      to the fallback (``ok: false``), appended right after
                      the send returns.
``state.json``        the engine's pending/firing state and last evaluated
                      step per run and rule (atomic replace).

The outbox is ``alarms.jsonl`` minus ``deliveries.jsonl``: on a restart,
whatever was owed and not delivered is sent again. Event ids are
deterministic, so a watcher killed between appending an event and saving its
state regenerates the same ids on replay, and they are dropped here.
A torn last line (a crash mid-append) is cut off when the file is loaded.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grokwatch.store import atomic_write_json, read_json
from grokwatch.store.layout import WATCHER_DIR

log = logging.getLogger("grokwatch.alerts")

ALARMS = "alarms.jsonl"
DELIVERIES = "deliveries.jsonl"
STATE = "state.json"


def state_dir(sweep_dir: Path | str) -> Path:
    return Path(sweep_dir) / WATCHER_DIR


def read_jsonl(path: Path, repair: bool = False) -> list[dict]:
    """Records of a JSON-lines file; a torn last line is skipped (and cut off with ``repair``)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n") + 1
    if end < len(data):
        log.warning("%s: dropping a torn last line (%d bytes)", path, len(data) - end)
        if repair:
            with open(path, "r+b") as fh:
                fh.truncate(end)
    out = []
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            log.warning("%s: skipping an unreadable line", path)
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _append_lines(path: Path, records: Iterable[dict], fsync: bool = True) -> None:
    data = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records).encode()
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)  # one write: a SIGKILL cannot leave half of a record behind
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """alarms.jsonl + deliveries.jsonl + state.json of one sweep; thread-safe."""

    def __init__(self, sweep_dir: Path | str):
        self.dir = state_dir(sweep_dir)
        self.alarms_path = self.dir / ALARMS
        self.deliveries_path = self.dir / DELIVERIES
        self.state_path = self.dir / STATE
        self._lock = threading.Lock()
        self.ids: set[str] = set()
        self._owed: dict[str, dict] = {}  # id -> record, for records still owed somewhere
        self._done: set[tuple[str, str]] = set()  # (id, channel) delivered or given up
        self._gave_up: dict[tuple[str, str], dict] = {}  # (id, channel) -> give-up record

    def load(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for rec in read_jsonl(self.alarms_path, repair=True):
                rid = rec.get("id")
                if not isinstance(rid, str):
                    continue
                self.ids.add(rid)
                if rec.get("notify"):
                    self._owed[rid] = rec
            for d in read_jsonl(self.deliveries_path, repair=True):
                rid, channel = d.get("id"), d.get("channel")
                if not isinstance(rid, str) or not isinstance(channel, str):
                    continue
                key = (rid, channel)
                self._done.add(key)
                if not d.get("ok"):
                    self._gave_up[key] = d

    # -- events ----------------------------------------------------------------------
    def append_events(self, records: list[dict]) -> list[dict]:
        """Append records whose id is new; returns those appended (durable on return)."""
        with self._lock:
            fresh = []
            for r in records:
                if r["id"] not in self.ids:
                    self.ids.add(r["id"])
                    fresh.append(r)
            _append_lines(self.alarms_path, fresh)
            for r in fresh:
                if r.get("notify"):
                    self._owed[r["id"]] = r
            return fresh

    def record_delivery(self, records: list[dict], channel: str, ok: bool, **extra: Any) -> None:
        lines = [{"id": r["id"], "channel": channel, "ok": ok, **extra} for r in records]
        with self._lock:
            _append_lines(self.deliveries_path, lines)
            for line in lines:
                key = (line["id"], channel)
                self._done.add(key)
                if not ok:
                    self._gave_up[key] = line

    def outbox(self, channels: Iterable[str], fallback: str | None = None) -> dict[str, list[dict]]:
        """Records still owed, per channel key (events in journal order).

        A record given up by a primary channel is owed to the fallback.
        Channels no longer configured are skipped (logged once).
        """
        channels = set(channels)
        out: dict[str, list[dict]] = {c: [] for c in channels | ({fallback} if fallback else set())}
        orphans = 0
        with self._lock:
            for rid, rec in self._owed.items():
                for ch in rec.get("notify", []):
                    if (rid, ch) in self._done:
                        if fallback and (rid, ch) in self._gave_up and (rid, fallback) not in self._done:
                            out[fallback].append(rec)
                        continue
                    if ch in channels:
                        out[ch].append(rec)
                    else:
                        orphans += 1
        if orphans:
            log.warning("%d undelivered notification(s) are for channels not configured now; not sent", orphans)
        for recs in out.values():  # a record owed via two primaries to one fallback: once
            seen: set[str] = set()
            unique = []
            for r in recs:
                if r["id"] not in seen:
                    seen.add(r["id"])
                    unique.append(r)
            recs[:] = unique
        return out

    # -- engine state -------------------------------------------------------------------
    def load_state(self) -> dict:
        return read_json(self.state_path) or {}

    def save_state(self, state: dict) -> None:
        atomic_write_json(self.state_path, state)
