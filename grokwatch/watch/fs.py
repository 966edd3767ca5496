"""Which filesystem holds a path, and whether inotify can be trusted there.

inotify only reports changes made through the local kernel: a shard written
on a GPU node to NFS, Lustre, GPFS, BeeGFS, CIFS/SMB or an sshfs mount never
wakes a watcher on the login node. On those the watcher polls instead.
"""

from __future__ import annotations

import os
from pathlib import Path

NETWORK_FS = frozenset(
    {"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "fuse.sshfs", "ceph", "fuse.ceph", "9p"}
)


def _unescape(field: str) -> str:
    # /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_of(path: Path | str, mounts_file: str = "/proc/self/mounts") -> tuple[str, str] | None:
    """(mount point, filesystem type) of the mount holding ``path``; None if unknown."""
    try:
        real = os.path.realpath(path)
        with open(mounts_file, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    best: tuple[str, str] | None = None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point, fstype = _unescape(parts[1]), parts[2]
        inside = real == point or real.startswith(point.rstrip("/") + "/") or point == "/"
        # Later lines win on ties: a mount stacked on the same point hides the earlier one.
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, fstype)
    return best


def is_network_fs(path: Path | str, mounts_file: str = "/proc/self/mounts") -> bool:
    """True when ``path`` lives on a filesystem where inotify misses remote writes."""
    found = mount_of(path, mounts_file)
    return found is not None and found[1] in NETWORK_FS
