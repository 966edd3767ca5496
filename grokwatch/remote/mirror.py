"""Mirror a sweep (or one run) from ``ssh://`` into a local cache, incrementally.

What is copied: ``sweep.json``; per run ``run.json``, ``status.json`` and the
shards (``shards/<kind>-<step>[-aNN].arrow``); not checkpoints, logs or
``*.tmp`` files. Shards are immutable once they have their final name, so each
is fetched exactly once. ``run.json``, ``status.json`` and ``sweep.json`` are
fetched again when their size or mtime changes; since SFTP mtimes have
one-second resolution, a file is fetched once more when it has kept the same
(size, mtime) for a while after a fetch, so a rewrite within the same second
is not missed.

Every file is written locally as ``name.tmp`` and then ``os.replace``d, so a
local reader never sees a half file (readers ignore ``*.tmp``); the local
mtime is set to the remote one. A fetch interrupted by a dropped link leaves
nothing under the final name and is repeated whole after reconnecting. On
start, local files whose size and mtime match the remote are not fetched
again, so a restarted mirror resumes where it stopped.

Names from the server are checked (run ids, shard names) before they become
local paths, so a hostile server cannot write outside the cache directory.
"""

from __future__ import annotations

import logging
import os
import random
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from grokwatch.store.atomic import read_json
from grokwatch.store.layout import RUN_JSON, SHARDS_DIR, STATUS_JSON, ShardName, is_valid_run_id

from .ssh import TRANSIENT, Connection, SSHRunner, resolve_settings
from .url import ConnectionLost, RemoteError, SshUrl, cache_path, parse_ssh_url

log = logging.getLogger("grokwatch.remote")

SWEEP_FILES = ("sweep.json",)
RUN_FILES = (RUN_JSON, STATUS_JSON)
TERMINAL_STATES = ("completed", "failed", "diverged")
CHUNK = 1 << 20
SETTLE_SECONDS = 1.5  # > SFTP's 1 s mtime resolution


@dataclass
class SyncResult:
    """What one pass brought."""

    fetched: list[str] = field(default_factory=list)  # paths relative to the mirror root
    bytes: int = 0
    seconds: float = 0.0

    @property
    def runs(self) -> set[str]:
        return {p.split("/", 1)[0] for p in self.fetched if "/" in p}


@dataclass
class _Seen:
    size: int
    mtime: int
    fetched_at: float
    settled: bool = False


class Mirror:
    """Keeps ``local_path`` a copy of the sweep at ``url``.

    ``sync_once()`` does one pass in the caller's thread (connecting if
    needed; errors raise :class:`~grokwatch.remote.url.RemoteError`).
    ``start()`` runs passes every ``interval`` seconds in a thread that
    reconnects after a dropped link with exponential back-off
    (``backoff=(first, max)`` seconds) and stops on a host-key or
    authentication error (``error`` then holds it); ``close()`` stops and
    joins it. ``on_sync(result)`` is called after every pass that fetched
    something, ``on_error(exc)`` after every failed one (both from the thread).
    ``runner`` runs commands (squeue) over the same connection.
    """

    def __init__(
        self,
        url: str | SshUrl,
        cache_dir: str | os.PathLike | None = None,
        *,
        interval: float = 2.0,
        trust_new_host_key: bool = False,
        ssh_config: str | os.PathLike | None = None,
        known_hosts: str | os.PathLike | None = None,
        key_filename: str | os.PathLike | None = None,
        allow_agent: bool = True,
        look_for_keys: bool = True,
        connect_timeout: float = 15.0,
        io_timeout: float = 30.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        on_sync: Callable[[SyncResult], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ):
        self.url = parse_ssh_url(url) if isinstance(url, str) else url
        self.local_path = cache_path(self.url, cache_dir)
        self.interval = interval
        self.backoff = backoff
        self.on_sync = on_sync
        self.on_error = on_error
        settings = resolve_settings(self.url, ssh_config=ssh_config, known_hosts=known_hosts,
                                    key_filename=key_filename)
        self.connection = Connection(settings, trust_new_host_key=trust_new_host_key, allow_agent=allow_agent,
                                     look_for_keys=look_for_keys, connect_timeout=connect_timeout,
                                     io_timeout=io_timeout)
        self.runner = SSHRunner(self.connection)
        # Counters: completed fetches and tries per relative path; passes.
        self.fetch_counts: Counter[str] = Counter()
        self.fetch_attempts: Counter[str] = Counter()
        self.passes = 0
        self.failures = 0
        self.error: BaseException | None = None  # the error that stopped the thread
        self.last_error: BaseException | None = None
        self._remote_root: str | None = None
        self._single_run: bool | None = None
        self._seen: dict[str, _Seen] = {}
        self._shards_done: set[str] = set()
        self._quiet_runs: set[str] = set()  # finished runs whose shards were listed after the final status
        self._warned: set[str] = set()
        self._pass_lock = threading.Lock()
        self._cond = threading.Condition()
        self._started_passes = 0
        self._done_passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- thread mode -----------------------------------------------------------
    def start(self) -> "Mirror":
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"grokwatch-mirror {self.url.host}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread (if any), join it, and close the connection."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            self.connection.close()  # unblocks a read in progress
            thread.join()
        self.connection.close()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> "Mirror":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_pass(self, timeout: float | None = None) -> bool:
        """Block until a pass that started after this call has ended (True), or timeout."""
        with self._cond:
            target = self._started_passes + 1
            return self._cond.wait_for(lambda: self._done_passes >= target or self._stop.is_set(), timeout) \
                and self._done_passes >= target

    def _loop(self) -> None:
        first, top = self.backoff
        delay = first
        while not self._stop.is_set():
            try:
                result = self.sync_once()
            except RemoteError as exc:
                if self._stop.is_set():
                    break
                self.last_error = exc
                if self.on_error:
                    self.on_error(exc)
                if not isinstance(exc, ConnectionLost):
                    self.error = exc  # host key, authentication, missing path: retrying cannot help
                    log.error("%s", exc)
                    break
                wait = delay * random.uniform(0.8, 1.2)
                log.warning("%s; reconnecting in %.1f s", exc, wait)
                self._stop.wait(wait)
                delay = min(top, delay * 2)
                continue
            delay = first
            if result.fetched and self.on_sync:
                self.on_sync(result)
            self._stop.wait(self.interval)

    # -- one pass ----------------------------------------------------------------
    def sync_once(self) -> SyncResult:
        """Fetch what is new or changed. Raises RemoteError (ConnectionLost when the link failed)."""
        with self._pass_lock:
            with self._cond:
                self._started_passes += 1
            try:
                result = SyncResult()
                t0 = time.monotonic()
                try:
                    self._pass(result)
                except RemoteError:
                    self.failures += 1
                    raise
                except TRANSIENT as exc:
                    self.failures += 1
                    self.connection.close()
                    raise ConnectionLost(f"link to {self.connection.settings.display} lost: {_one_line(exc)}") from None
                result.seconds = time.monotonic() - t0
                self.passes += 1
                self.last_error = None
                return result
            finally:
                with self._cond:
                    self._done_passes += 1
                    self._cond.notify_all()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise ConnectionLost("the mirror is closed")

    def _pass(self, result: SyncResult) -> None:
        self._check_stop()
        sftp = self.connection.sftp()
        root = self._resolve_root(sftp)
        if self._single_run:
            self._sync_run(sftp, root, self.local_path, "", result)
            return
        entries = {a.filename: a for a in sftp.listdir_attr(root)}
        for name in SWEEP_FILES:
            if name in entries and stat.S_ISREG(entries[name].st_mode or 0):
                self._maybe_fetch(sftp, f"{root}/{name}", name, entries[name], result)
        for name in sorted(entries):
            a = entries[name]
            if name.startswith(".") or not stat.S_ISDIR(a.st_mode or 0) or not is_valid_run_id(name):
                continue
            self._sync_run(sftp, f"{root}/{name}", self.local_path / name, f"{name}/", result)

    def _resolve_root(self, sftp) -> str:
        if self._remote_root is None:
            path = self.url.path
            try:
                if path.startswith("~"):
                    home = sftp.normalize(".")
                    path = home.rstrip("/") + path[1:]
                attrs = sftp.stat(path)
            except FileNotFoundError:
                raise RemoteError(f"{self.url}: no such directory on {self.url.host}") from None
            except PermissionError:
                raise RemoteError(f"{self.url}: permission denied") from None
            if not stat.S_ISDIR(attrs.st_mode or 0):
                raise RemoteError(f"{self.url}: not a directory")
            try:
                sftp.stat(f"{path}/{RUN_JSON}")
                self._single_run = True
            except FileNotFoundError:
                self._single_run = False
            self._remote_root = path
        return self._remote_root

    def _sync_run(self, sftp, remote: str, local: Path, prefix: str, result: SyncResult) -> None:
        self._check_stop()
        status_rel = f"{prefix}{STATUS_JSON}"
        if prefix in self._quiet_runs:
            # A finished run: one stat of status.json unless it changes.
            try:
                a = sftp.stat(f"{remote}/{STATUS_JSON}")
            except FileNotFoundError:
                a = None
            seen = self._seen.get(status_rel)
            if a is not None and seen is not None and (a.st_size, a.st_mtime) == (seen.size, seen.mtime):
                return
            self._quiet_runs.discard(prefix)
        try:
            entries = {a.filename: a for a in sftp.listdir_attr(remote)}
        except FileNotFoundError:
            return  # removed while we looked
        except PermissionError:
            self._warn_once(remote, f"{remote}: permission denied; not mirrored")
            return
        if RUN_JSON not in entries:
            return  # not a run (yet): run.json is written before step 1
        self._maybe_fetch(sftp, f"{remote}/{RUN_JSON}", f"{prefix}{RUN_JSON}", entries[RUN_JSON], result)
        if SHARDS_DIR in entries and stat.S_ISDIR(entries[SHARDS_DIR].st_mode or 0):
            try:
                shards = sftp.listdir_attr(f"{remote}/{SHARDS_DIR}")
            except FileNotFoundError:
                shards = []
            for a in sorted(shards, key=lambda a: a.filename):
                if ShardName.parse(a.filename) is None or not stat.S_ISREG(a.st_mode or 0):
                    continue  # *.tmp (being written) and foreign files
                rel = f"{prefix}{SHARDS_DIR}/{a.filename}"
                if rel in self._shards_done:
                    continue
                self._check_stop()
                dest = local / SHARDS_DIR / a.filename
                if not _matches(dest, a):
                    self._fetch(sftp, f"{remote}/{SHARDS_DIR}/{a.filename}", dest, rel, a, result, exact=True)
                self._shards_done.add(rel)
        if STATUS_JSON in entries:
            self._maybe_fetch(sftp, f"{remote}/{STATUS_JSON}", status_rel, entries[STATUS_JSON], result)
            seen = self._seen.get(status_rel)
            if seen is not None and seen.settled and _state_of(local / STATUS_JSON) in TERMINAL_STATES:
                self._quiet_runs.add(prefix)

    def _maybe_fetch(self, sftp, remote: str, rel: str, attrs, result: SyncResult) -> None:
        """Fetch a small mutable file when its (size, mtime) changed, and once more after it settled."""
        dest = self.local_path / rel
        now = time.monotonic()
        seen = self._seen.get(rel)
        key = (attrs.st_size, attrs.st_mtime)
        if seen is None:
            if _matches(dest, attrs):  # mirrored by an earlier process; check once more after settling
                self._seen[rel] = _Seen(*key, fetched_at=now)
                return
        elif (seen.size, seen.mtime) == key:
            if seen.settled or now - seen.fetched_at < SETTLE_SECONDS:
                return
            self._fetch(sftp, remote, dest, rel, attrs, result, exact=False)
            self._seen[rel] = _Seen(*key, fetched_at=now, settled=True)
            return
        self._fetch(sftp, remote, dest, rel, attrs, result, exact=False)
        self._seen[rel] = _Seen(*key, fetched_at=now)

    def _fetch(self, sftp, remote: str, dest: Path, rel: str, attrs, result: SyncResult, *, exact: bool) -> None:
        """Copy remote -> dest through dest.tmp + os.replace. ``exact``: the size must match attrs."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        self.fetch_attempts[rel] += 1
        n = 0
        try:
            with sftp.open(remote, "rb") as fh, open(tmp, "wb") as out:
                if attrs.st_size:
                    fh.prefetch(attrs.st_size)
                while True:
                    chunk = fh.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    n += len(chunk)
                    self._on_chunk(rel, n)
            if exact and n != attrs.st_size:
                raise ConnectionLost(f"{rel}: got {n} of {attrs.st_size} bytes")
            if attrs.st_mtime is not None:
                os.utime(tmp, (time.time(), attrs.st_mtime))
            os.replace(tmp, dest)
        except (FileNotFoundError, PermissionError) as exc:
            _unlink(tmp)
            if exc.filename and str(exc.filename) == str(tmp):
                raise  # the local cache itself is the problem
            if isinstance(exc, PermissionError):
                self._warn_once(remote, f"{remote}: permission denied; not mirrored")
            return  # vanished (or unreadable) before it was read; a later pass sees what replaced it
        except BaseException:
            _unlink(tmp)
            raise
        self.fetch_counts[rel] += 1
        result.fetched.append(rel)
        result.bytes += n

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def _on_chunk(self, rel: str, nbytes: int) -> None:
        """Hook called after each chunk written (tests cut the link here)."""


def resolve_remote(url: str, cache_dir: str | os.PathLike | None = None, *, start: bool = True,
                   initial_sync: bool = True, **kwargs) -> tuple[Path, Mirror]:
    """Local directory that mirrors an ``ssh://`` SOURCE, and its :class:`Mirror`.

    With ``initial_sync`` one pass runs before returning (so the directory
    holds the sweep, and a bad host key, login or path raises
    :class:`~grokwatch.remote.url.RemoteError` here, one line); with ``start``
    the mirror then keeps syncing in its thread. The caller owns the mirror:
    ``mirror.close()`` when done. ``kwargs`` go to :class:`Mirror`
    (``trust_new_host_key``, ``interval``, ``ssh_config``, ``known_hosts``, ...).
    """
    mirror = Mirror(url, cache_dir, **kwargs)
    try:
        if initial_sync:
            mirror.sync_once()
        mirror.local_path.mkdir(parents=True, exist_ok=True)
    except BaseException:
        mirror.close()
        raise
    if start:
        mirror.start()
    return mirror.local_path, mirror


_OPEN: dict[Path, Mirror] = {}
_OPEN_LOCK = threading.Lock()


def open_source(url: str, **kwargs) -> Path:
    """Resolver for ``grokwatch.source.RESOLVERS["ssh"]``: the local mirror of
    ``url``, synced once and then kept in sync by a thread until
    :func:`close_sources` (registered with atexit). Opening the same URL again
    reuses its mirror. ``kwargs`` go to :func:`resolve_remote`."""
    import atexit

    local = cache_path(parse_ssh_url(url), kwargs.get("cache_dir"))
    with _OPEN_LOCK:
        mirror = _OPEN.pop(local, None)
        if mirror is not None:
            if mirror.running:
                _OPEN[local] = mirror
                return local
            mirror.close()  # its thread stopped on an error: try afresh
        if not _OPEN:
            atexit.register(close_sources)
        local, mirror = resolve_remote(url, **kwargs)
        _OPEN[local] = mirror
        return local


def runner_for(local_path: str | os.PathLike) -> SSHRunner | None:
    """The SSH runner of the mirror serving ``local_path`` (for QueueState), or None if it is local."""
    with _OPEN_LOCK:
        mirror = _OPEN.get(Path(local_path))
    return mirror.runner if mirror is not None else None


def close_sources() -> None:
    """Stop and join every mirror :func:`open_source` started."""
    with _OPEN_LOCK:
        mirrors = list(_OPEN.values())
        _OPEN.clear()
    for m in mirrors:
        m.close()


def _matches(local: Path, attrs) -> bool:
    try:
        st = local.stat()
    except OSError:
        return False
    return st.st_size == attrs.st_size and int(st.st_mtime) == int(attrs.st_mtime or 0)


def _state_of(path: Path) -> str | None:
    return (read_json(path) or {}).get("state")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
