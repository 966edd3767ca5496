"""Process-wide memory setting for the long-lived readers (watcher, dashboard).

A watcher holds every run's columns as numpy buffers that grow (and are
replaced) as shards come in. glibc serves large blocks with ``mmap`` and
returns them to the system when freed, but after the first such free it
raises its mmap threshold to that block's size (up to 32 MiB), so later
buffers of a few MB come from the heap arenas of whichever thread grew them
and stay resident after they are freed: measured with the dashboard on a
live 90 x 100K sweep (bench/tui_refresh.py), 1.03-1.05 GB resident with the
dynamic threshold against 0.87 GB with it pinned at 256 KiB.
``mallopt(M_MMAP_THRESHOLD, ...)`` pins it (and turns the adjustment off).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("grokwatch.watch.memory")

M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
MMAP_THRESHOLD_BYTES = 256 * 1024
_done: bool | None = None


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold (once per process); False where there is no glibc."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(int(nbytes))))
    except (OSError, AttributeError) as exc:  # musl and others: no mallopt; nothing to pin
        log.debug("mallopt unavailable: %s", exc)
    return _done
