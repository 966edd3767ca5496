"""The local cache of ``ssh://`` mirrors: its cap, its index, and which shards it keeps.

Every mirror lives under the cache root (``$GROKWATCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/grokwatch``, else ``~/.cache/grokwatch``) at
``<root>/<host>[_<port>]/<remote path>``. The whole root is capped at
``$GROKWATCH_SSH_CACHE_MB`` megabytes (default 2048; 0 turns the cap off):

- each mirror keeps ``<root>/.index/<key>.json`` (its URL, local path and
  size), touched while it runs, so the least recently used mirror is known;
- when a sweep needs more room, caches of other sweeps go first, least
  recently used first (never one touched in the last :data:`IN_USE_SECONDS`,
  another grokwatch may be reading it);
- if the sweep alone is over the cap, every run keeps its newest shards and
  the oldest are left out (or deleted locally): :func:`plan_shards`.

Pure file-system code; no paramiko.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .url import RemoteError

log = logging.getLogger("grokwatch.remote")

CACHE_MB_ENV = "GROKWATCH_SSH_CACHE_MB"
DEFAULT_CACHE_MB = 2048
INDEX_DIR = ".index"
IN_USE_SECONDS = 300.0  # an index entry touched this recently belongs to a running mirror
TOUCH_SECONDS = 60.0  # how often a running mirror touches its entry


def cache_cap_bytes(cache_mb: float | None = None) -> int | None:
    """The cap in bytes: ``cache_mb``, else ``$GROKWATCH_SSH_CACHE_MB``, else 2048 MB; None when 0 (no cap)."""
    if cache_mb is None:
        text = os.environ.get(CACHE_MB_ENV, "").strip()
        if text:
            try:
                cache_mb = float(text)
            except ValueError:
                raise RemoteError(f"{CACHE_MB_ENV}={text!r}: give a number of megabytes (0: no cap)") from None
        else:
            cache_mb = DEFAULT_CACHE_MB
    if cache_mb < 0:
        raise RemoteError(f"the ssh:// cache cap must be >= 0 MB (0: no cap), not {cache_mb:g}")
    return None if cache_mb == 0 else int(cache_mb * 1e6)


# --- the index: one entry per mirror, its mtime is its last use ---------------


def _key(local: Path) -> str:
    return hashlib.sha1(str(local).encode()).hexdigest()[:20]


def touch_index(root: Path, local: Path, url: str, size: int | None = None) -> None:
    """Record (or refresh) that the mirror of ``url`` at ``local`` is in use now (``size``: its bytes)."""
    d = root / INDEX_DIR
    try:
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{_key(local)}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"url": url, "path": str(local), "size": size}) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("cannot write the cache index under %s: %s", d, exc)


@dataclass
class CachedSweep:
    url: str
    path: Path
    index: Path
    last_used: float  # epoch seconds
    size: int


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def other_sweeps(root: Path, local: Path) -> list[CachedSweep]:
    """The cached sweeps under ``root`` other than ``local`` (nor inside or around it), least recently used first."""
    out: list[CachedSweep] = []
    try:
        entries = list(os.scandir(root / INDEX_DIR))
    except OSError:
        return out
    local = Path(local)
    for e in entries:
        if not e.name.endswith(".json"):
            continue
        try:
            rec = json.loads(Path(e.path).read_text())
            path = Path(rec["path"])
            used = e.stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if path == local or local in path.parents or path in local.parents:
            continue
        try:
            path.resolve().relative_to(Path(root).resolve())
        except (OSError, ValueError):
            continue  # never touch anything outside the cache root
        if not path.is_dir():
            _unlink(Path(e.path))  # its cache is gone already
            continue
        size = rec.get("size")
        size = size if isinstance(size, int) and size >= 0 else dir_size(path)
        out.append(CachedSweep(str(rec.get("url") or path), path, Path(e.path), used, size))
    out.sort(key=lambda c: c.last_used)
    return out


def evict(others: list[CachedSweep], need: int, now: float | None = None) -> list[CachedSweep]:
    """Remove least recently used caches in ``others`` (not in use) until ``need`` bytes are freed; the removed ones."""
    now = time.time() if now is None else now
    removed = []
    freed = 0
    for c in list(others):
        if freed >= need:
            break
        if now - c.last_used < IN_USE_SECONDS:
            continue
        shutil.rmtree(c.path, ignore_errors=True)
        _unlink(c.index)
        others.remove(c)
        removed.append(c)
        freed += c.size
        log.warning(
            "removed the cached copy of %s (%s, last used %s ago) to keep the ssh:// cache under its cap",
            c.url,
            _mb(c.size),
            _ago(now - c.last_used),
        )
    return removed


# --- which shards a sweep keeps ----------------------------------------------


@dataclass(frozen=True)
class ShardRef:
    run: str  # the run's prefix in the mirror ("<run id>/", or "" for a single-run mirror)
    name: str  # file name in shards/
    kind: str
    order: tuple[int, int]  # (attempt, last step): higher is newer
    size: int
    rank: int = 0  # 0: the newest of its run and kind


def rank_shards(runs: Mapping[str, Iterable[tuple[str, str, tuple[int, int], int]]]) -> list[ShardRef]:
    """Every shard with its rank in its run and kind (0 = newest), in the order a
    first sync fetches them: every run's newest, then every run's second newest, ...

    ``runs``: run prefix -> (name, kind, (attempt, last step), size) per shard."""
    out = []
    for run, shards in runs.items():
        by_kind: dict[str, list] = {}
        for name, kind, order, size in shards:
            by_kind.setdefault(kind, []).append((order, name, size))
        for kind, items in by_kind.items():
            items.sort(reverse=True)
            out += [ShardRef(run, name, kind, order, size, rank) for rank, (order, name, size) in enumerate(items)]
    out.sort(key=lambda s: (s.rank, s.run, s.kind))
    return out


def plan_shards(ranked: list[ShardRef], budget: int | None) -> tuple[list[ShardRef], list[ShardRef]]:
    """(kept, dropped) under ``budget`` bytes, in fetch order.

    Every run's newest shard of each kind is kept whatever the budget; then
    shards are taken rank by rank (each run's second newest, third newest,
    ...) while they fit; from the first that does not fit on, the rest (the
    oldest) is dropped, so every run keeps about as many of its newest
    shards as the others."""
    if budget is None or sum(s.size for s in ranked) <= budget:
        return list(ranked), []
    kept, dropped = [], []
    used, full = 0, False
    for s in ranked:
        if s.rank == 0 or (not full and used + s.size <= budget):
            kept.append(s)
            used += s.size
        else:
            full = True
            dropped.append(s)
    return kept, dropped


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _mb(n: float) -> str:
    from .progress import mb

    return mb(n)


def _ago(s: float) -> str:
    if s < 3600:
        return f"{max(1, int(s // 60))} min"
    if s < 86400:
        return f"{s / 3600:.0f} h"
    return f"{s / 86400:.0f} days"
