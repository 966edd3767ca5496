"""Remote sources: ``ssh://[user@]host[:port]/path`` mirrored over SFTP.

- :mod:`.resolve`: :func:`resolve_remote` (url) -> (local path, :class:`Mirror`): what
  ``grokwatch.remote.source`` calls for an ``ssh://`` SOURCE; or :func:`open_mirror`
  (url) -> local path, a drop-in ``RESOLVERS["ssh"]`` that keeps the mirror
  running until :func:`close_sources` (atexit), with :func:`runner_for`
  (local path) -> its SSH runner for ``QueueState``.
- :class:`Mirror`: ``sync_once()``, or ``start()`` / ``close()`` for a
  background thread that reconnects after a dropped link; ``runner`` runs
  ``squeue`` over the same connection (for :class:`slurm.queue.QueueState`).
  A pass brings every run's run.json, status.json and newest shards before
  any older shard; ``notice()`` (and :func:`notice_for` (local path)) says
  in one line how the first sync is going, for a status bar.
- :mod:`.progress`: :class:`SyncProgress` and :class:`StderrProgress`, the
  progress lines of a first sync; :mod:`.cache`: the cache's cap
  (``$GROKWATCH_SSH_CACHE_MB``), its LRU index and which shards it keeps.
- :class:`RemoteError` (a :class:`grokwatch.errors.UsageError`: one line, exit
  2) and :class:`HostKeyError` for unknown or changed host keys.

paramiko is imported only when a mirror is made: ``import grokwatch.remote``
stays cheap.
"""

from __future__ import annotations

from .url import (
    ConnectionLost,
    HostKeyError,
    RemoteError,
    SshUrl,
    cache_path,
    default_cache_root,
    is_ssh_url,
    parse_ssh_url,
)

__all__ = [
    "ConnectionLost",
    "HostKeyError",
    "Mirror",
    "RemoteError",
    "SSHRunner",
    "SshUrl",
    "SyncResult",
    "cache_path",
    "StderrProgress",
    "SyncProgress",
    "close_sources",
    "default_cache_root",
    "is_ssh_url",
    "notice_for",
    "open_mirror",
    "parse_ssh_url",
    "resolve_remote",
    "runner_for",
]

_LAZY = {
    "Mirror": "mirror",
    "SyncResult": "mirror",
    "resolve_remote": "resolve",
    "open_mirror": "resolve",
    "runner_for": "resolve",
    "close_sources": "resolve",
    "notice_for": "resolve",
    "SSHRunner": "ssh",
    "SyncProgress": "progress",
    "StderrProgress": "progress",
    "Connection": "ssh",
    "resolve_settings": "ssh",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
