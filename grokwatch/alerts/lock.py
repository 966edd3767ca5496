"""One alarm daemon per sweep: a lock file that works on NFS.

The lock is ``<sweep>/.grokwatch/lock.json``, created with O_CREAT|O_EXCL
(atomic on local filesystems and on NFSv3+), holding host, pid, a random
token and a heartbeat the owner refreshes. It is stale when its heartbeat is
older than ``stale_after`` seconds, or at once when its owner ran on this
host and that pid is gone (a SIGKILLed daemon restarts without waiting).

Taking over a stale lock renames it aside first (only one contender's rename
succeeds), checks that what it moved is the stale lock it judged, and only
then creates its own with O_EXCL.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from pathlib import Path

from grokwatch.store import atomic_write_json, read_json
from grokwatch.store.writer import utcnow

LOCK = "lock.json"


class LockHeld(RuntimeError):
    """Another live daemon holds the lock."""

    def __init__(self, owner: dict | None, path: Path):
        self.owner = owner or {}
        age = time.time() - float(self.owner.get("heartbeat_unix", 0) or 0)
        who = (
            f"pid {self.owner.get('pid')} on {self.owner.get('host')}, heartbeat {age:.0f} s ago"
            if owner
            else "an unreadable owner"
        )
        super().__init__(f"another grokwatch alerts holds {path} ({who})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class InstanceLock:
    def __init__(self, path: Path | str, stale_after: float = 120.0):
        self.path = Path(path)
        self.stale_after = stale_after
        self.host = socket.gethostname()
        self.token: str | None = None
        self.started = utcnow()

    def _content(self) -> dict:
        now = time.time()
        return {
            "host": self.host,
            "pid": os.getpid(),
            "token": self.token,
            "started": self.started,
            "heartbeat": utcnow(),
            "heartbeat_unix": now,
        }

    def is_stale(self, owner: dict | None) -> bool:
        if not owner:
            try:
                age = time.time() - os.stat(self.path).st_mtime
            except OSError:
                return True
            return age > self.stale_after  # unreadable: give its writer time to finish
        if owner.get("host") == self.host and isinstance(owner.get("pid"), int) and not _pid_alive(owner["pid"]):
            return True
        hb = owner.get("heartbeat_unix")
        return not isinstance(hb, (int, float)) or time.time() - hb > self.stale_after

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            self.token = secrets.token_hex(8)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_json(self.path)
                if not self.is_stale(owner):
                    raise LockHeld(owner, self.path) from None
                self._break(owner)
                continue
            try:
                os.write(fd, (json.dumps(self._content(), sort_keys=True) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            return
        raise LockHeld(read_json(self.path), self.path)

    def _break(self, judged: dict | None) -> None:
        aside = self.path.with_name(f"{self.path.name}.stale-{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # someone else broke it first
        moved = read_json(aside)
        if judged is not None and moved != judged:
            # We moved a lock someone created after our check: put it back.
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.unlink(aside)
            raise LockHeld(moved, self.path)
        os.unlink(aside)

    def refresh(self) -> bool:
        """Renew the heartbeat; False when the lock is no longer ours."""
        owner = read_json(self.path)
        if not owner or owner.get("token") != self.token:
            return False
        atomic_write_json(self.path, self._content())
        return True

    def release(self) -> None:
        owner = read_json(self.path)
        if owner and owner.get("token") == self.token:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.token = None
