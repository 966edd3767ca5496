"""Atomic file writes: write ``name.tmp``, fsync, ``os.replace``.

A reader on the same or another host never sees a half-written file under the
final name; it either sees the old file or the new one (DESIGN section 2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename in it survives a crash (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some network filesystems refuse fsync on directories; the rename
        # itself is still atomic there.
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    # numpy scalars and paths end up in configs and status records.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def read_json_any(path: Path | str) -> Any:
    """Read a JSON document; OSError (FileNotFoundError when missing) or ValueError when it cannot."""
    with open(path, "rb") as fh:
        return json.loads(fh.read())


def read_json(path: Path | str) -> dict | None:
    """Read a JSON object; None when missing, unreadable or not an object."""
    try:
        obj = read_json_any(path)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None
