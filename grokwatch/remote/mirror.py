"""Mirror a sweep (or one run) from ``ssh://`` into a local cache, incrementally.

One module because it is one class: the pass order, the backfill, the cache
cap and the reconnects all share the Mirror's per-file state and its locks.
Opening a SOURCE (the first sync, the mirrors a process keeps) is in
:mod:`grokwatch.remote.resolve`.

What is copied: ``sweep.json``; per run ``run.json``, ``status.json`` and the
shards (``shards/<kind>-<step>[-aNN].arrow``); not checkpoints, snapshots,
logs or ``*.tmp`` files. Shards are immutable once they have their final
name, so each is fetched exactly once. ``run.json``, ``status.json`` and
``sweep.json`` are fetched again when their size or mtime changes; since SFTP
mtimes have one-second resolution, a file is fetched once more when it has
kept the same (size, mtime) for a while after a fetch, so a rewrite within
the same second is not missed.

Order of a pass, newest first: as each run directory is listed, its
``run.json``, its newest shard of each kind and its ``status.json`` are
fetched; only when every run has its latest state does the backfill start,
every run's second newest shard, then every run's third newest, and so on. A
reader that starts during a first sync (``sync_once(newest_only=True)``, the
dashboard) sees every run at its latest step within seconds, and the older
rows arrive after. The cache is capped (:mod:`grokwatch.remote.cache`): when
a sweep does not fit, every run keeps its newest shards and the oldest are
left out, said once in one line.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from grokwatch.store.atomic import read_json
from grokwatch.store.layout import RUN_JSON, SHARDS_DIR, STATUS_JSON, ShardName, is_valid_run_id

from . import cache
from .progress import SyncProgress, describe, mb
from .ssh import TRANSIENT, Connection, SSHRunner, resolve_settings
from .url import ConnectionLost, RemoteError, SshUrl, cache_path, default_cache_root, parse_ssh_url

if TYPE_CHECKING:
    from paramiko import SFTPAttributes

log = logging.getLogger("grokwatch.remote")

SWEEP_FILES = ("sweep.json",)
RUN_FILES = (RUN_JSON, STATUS_JSON)
TERMINAL_STATES = ("completed", "failed", "diverged")
CHUNK = 1 << 20
SETTLE_SECONDS = 1.5  # > SFTP's 1 s mtime resolution
PUBLISH_SECONDS = 2.0  # a backfill's shards come into view in batches, this often
HELD_SUFFIX = ".held.tmp"  # readers skip *.tmp
PARALLEL_MIN = 32  # a backfill of at least this many shards runs over several SFTP sessions


@dataclass
class SyncResult:
    """What one pass brought (``fetched`` in the order fetched)."""

    fetched: list[str] = field(default_factory=list)  # paths relative to the mirror root
    bytes: int = 0
    seconds: float = 0.0
    complete: bool = False  # everything wanted is local (not a newest-only or a limited pass)

    @property
    def runs(self) -> set[str]:
        return {p.split("/", 1)[0] for p in self.fetched if "/" in p}


@dataclass
class _Seen:
    size: int
    mtime: int
    fetched_at: float
    settled: bool = False


class _PassLimit(Exception):
    """``max_files_per_pass`` files were fetched: the pass ends here, the next goes on."""


class Mirror:
    """Keeps ``local_path`` a copy of the sweep at ``url``.

    ``sync_once()`` does one pass in the caller's thread (connecting if
    needed; errors raise :class:`~grokwatch.remote.url.RemoteError`);
    ``sync_once(newest_only=True)`` stops once every run's run.json,
    status.json and newest shards are local. ``start()`` runs passes every
    ``interval`` seconds in a thread that reconnects after a dropped link
    with exponential back-off (``backoff=(first, max)`` seconds) and stops
    on a host-key or authentication error (``error`` then holds it);
    ``close()`` stops and joins it. ``on_sync(result)`` is called after
    every pass that fetched something, ``on_error(exc)`` after every failed
    one (both from the thread); ``on_progress(progress)`` while a pass runs
    (:class:`~grokwatch.remote.progress.SyncProgress`; ``progress`` holds the
    current one and ``notice()`` says it in one line). ``runner`` runs
    commands (squeue) over the same connection.

    ``cache_mb``: the cap of the whole cache root in MB (default
    ``$GROKWATCH_SSH_CACHE_MB`` or 2048; 0: none). ``workers``: SFTP
    sessions a backfill of many shards uses at once. ``max_files_per_pass``
    ends a pass after that many fetches (the next pass goes on; for tests
    of an interrupted first sync).
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
        cache_mb: float | None = None,
        max_files_per_pass: int | None = None,
        workers: int = 4,
        on_sync: Callable[[SyncResult], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[SyncProgress], None] | None = None,
    ):
        self.url = parse_ssh_url(url) if isinstance(url, str) else url
        self.cache_root = Path(cache_dir) if cache_dir is not None else default_cache_root()
        self.local_path = cache_path(self.url, self.cache_root)
        self.cap = cache.cache_cap_bytes(cache_mb)
        self.max_files_per_pass = max_files_per_pass
        self.workers = max(1, int(workers))
        self.interval = interval
        self.backoff = backoff
        self.on_sync = on_sync
        self.on_error = on_error
        self.on_progress = on_progress
        settings = resolve_settings(self.url, ssh_config=ssh_config, known_hosts=known_hosts, key_filename=key_filename)
        self.connection = Connection(
            settings,
            trust_new_host_key=trust_new_host_key,
            allow_agent=allow_agent,
            look_for_keys=look_for_keys,
            connect_timeout=connect_timeout,
            io_timeout=io_timeout,
        )
        self.runner = SSHRunner(self.connection)
        # Counters: completed fetches and tries per relative path; passes.
        self.fetch_counts: Counter[str] = Counter()
        self.fetch_attempts: Counter[str] = Counter()
        self.passes = 0
        self.failures = 0
        self.complete = False  # a pass has brought everything wanted
        self.error: BaseException | None = None  # the error that stopped the thread
        self.last_error: BaseException | None = None
        self.progress = SyncProgress(url=str(self.url), host=self._host_words(settings))
        self.capped: str | None = None  # the cache cap in a few words, while it leaves shards out
        self.log_notes = True  # say the cache cap on the log (False: a status line shows notice())
        self.dropped: set[str] = set()  # shards left out under the cache cap (relative paths)
        self._remote_root: str | None = None
        self._single_run: bool | None = None
        self._seen: dict[str, _Seen] = {}
        self._shards_done: set[str] = set()
        self._quiet_runs: set[str] = set()  # finished runs whose shards were listed after the final status
        self._runs: dict[str, tuple[str, Path]] = {}  # run prefix -> (remote dir, local dir)
        # run prefix -> name -> (parsed, attrs)
        self._shards: dict[str, dict[str, tuple[ShardName, SFTPAttributes]]] = {}
        self._others: list[cache.CachedSweep] | None = None  # other sweeps in the cache (scanned once)
        self._touched = float("-inf")
        self._capped_note: str | None = None
        self._pass_fetches = 0
        self._count_lock = threading.Lock()
        self._held: list[tuple[Path, Path]] = []  # backfilled shards not yet under their names
        self._published = float("-inf")
        self._layout_changed = True  # a listing found shards (or runs) that the last plan did not know
        self._backlog = False  # the last backfill stopped before its end
        self._warned: set[str] = set()
        self._pass_lock = threading.Lock()
        self._cond = threading.Condition()
        self._started_passes = 0
        self._done_passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _host_words(self, settings) -> str:
        return settings.display if settings.hostname == self.url.host else f"{self.url.host} ({settings.display})"

    # -- thread mode -----------------------------------------------------------
    def start(self) -> Mirror:
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

    def __enter__(self) -> Mirror:
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
            return (
                self._cond.wait_for(lambda: self._done_passes >= target or self._stop.is_set(), timeout)
                and self._done_passes >= target
            )

    def wait_complete(self, timeout: float | None = None) -> bool:
        """Block until a pass has brought everything (True), the thread stopped, or timeout."""
        with self._cond:
            return (
                self._cond.wait_for(lambda: self.complete or self._stop.is_set() or self.error is not None, timeout)
                and self.complete
            )

    def notice(self) -> str | None:
        """One line for a status bar while the mirror is not simply in sync: the first
        sync's progress, a lost link, an error that stopped it, the cache cap; else None."""
        if self.error is not None:
            return f"ssh mirror stopped: {self.error}"
        if self.last_error is not None:
            return f"{self.last_error}; reconnecting"
        p = self.progress
        if not self.complete and p.stage != "done":
            return (
                describe(p) if p.stage != "newest" else f"newest data of all {p.runs_total:,} runs; syncing older rows"
            )
        return self.capped

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
                    with self._cond:
                        self._cond.notify_all()
                    break
                wait = delay * random.uniform(0.8, 1.2)
                log.warning("%s; reconnecting in %.1f s", exc, wait)
                self._stop.wait(wait)
                delay = min(top, delay * 2)
                continue
            delay = first
            if result.fetched and self.on_sync:
                self.on_sync(result)
            if not result.complete:
                continue  # a limited pass: go on at once
            self._stop.wait(self.interval)

    # -- one pass ----------------------------------------------------------------
    def sync_once(self, newest_only: bool = False) -> SyncResult:
        """Fetch what is new or changed (``newest_only``: stop once every run's newest
        data is local). Raises RemoteError (ConnectionLost when the link failed)."""
        with self._pass_lock:
            with self._cond:
                self._started_passes += 1
            try:
                result = SyncResult()
                t0 = time.monotonic()
                try:
                    self._pass(result, newest_only)
                except _PassLimit:
                    pass
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
                if result.complete:
                    self.complete = True
                return result
            finally:
                with self._cond:
                    self._done_passes += 1
                    self._cond.notify_all()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise ConnectionLost("the mirror is closed")

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def _pass(self, result: SyncResult, newest_only: bool) -> None:
        self._check_stop()
        self._pass_fetches = 0
        connected = self.connection.connected
        p = self.progress = SyncProgress(
            url=self.progress.url,
            host=self.progress.host,
            note=self._capped_note,
            stage="listing" if connected else "connecting",
        )
        if not connected:
            self._report()  # "connecting to ..."
            p.stage = "listing"
        sftp = self.connection.sftp()
        root = self._resolve_root(sftp)
        self._touch_index()
        if self._single_run:
            names = [""]
            remotes = {"": (root, self.local_path)}
        else:
            entries = {a.filename: a for a in sftp.listdir_attr(root)}
            for name in SWEEP_FILES:
                if name in entries and stat.S_ISREG(entries[name].st_mode or 0):
                    self._maybe_fetch(sftp, f"{root}/{name}", name, entries[name], result)
            names = sorted(
                n
                for n, a in entries.items()
                if not n.startswith(".") and stat.S_ISDIR(a.st_mode or 0) and is_valid_run_id(n)
            )
            remotes = {n: (f"{root}/{n}", self.local_path / n) for n in names}
            for gone in set(self._shards) - {f"{n}/" for n in names}:
                self._shards.pop(gone, None)  # removed on the server: it no longer counts
                self._runs.pop(gone, None)
                self._layout_changed = True
        p.runs_total = len(names)
        self._report()
        # Every run's latest state first, as its directory is listed.
        listed = []
        for n in names:
            prefix = f"{n}/" if n else ""
            if self._list_run(sftp, *remotes[n], prefix, result):
                listed.append(prefix)
            p.runs_listed += 1
            self._report()
        if newest_only:
            p.stage = "newest"
            return
        # Then the older shards, newest first, as the cache cap allows (planned again
        # only when a listing changed or the last backfill did not finish).
        p.stage = "backfill"
        if self._layout_changed or self._backlog:
            self._layout_changed, self._backlog = False, True
            pending = []
            for s in self._plan():
                rel = f"{s.run}{SHARDS_DIR}/{s.name}"
                if rel in self._shards_done or s.run not in self._runs:
                    continue
                if _matches(self._runs[s.run][1] / SHARDS_DIR / s.name, self._shards[s.run][s.name][1]):
                    self._shards_done.add(rel)  # mirrored by an earlier process
                    self.dropped.discard(rel)
                else:
                    pending.append(s)
            p.files_todo = p.files + len(pending)
            p.bytes_todo = p.bytes + sum(s.size for s in pending)
            p.backfill_started, p.backfill_files = time.monotonic(), p.files
            self._report()
            self._fetch_many(sftp, pending, result)
            self._backlog = False
        # A finished run whose shards are all here is only stat-ed from now on.
        for prefix in listed:
            seen = self._seen.get(f"{prefix}{STATUS_JSON}")
            local = self._runs[prefix][1]
            if seen is not None and seen.settled and _state_of(local / STATUS_JSON) in TERMINAL_STATES:
                self._quiet_runs.add(prefix)
        p.stage = "done"
        result.complete = True
        if not self.complete:
            self._touch_index(force=True)  # the index says how big this sweep is now

    def _touch_index(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._touched >= cache.TOUCH_SECONDS:
            self._touched = now
            size = sum(s.size for s in self._seen.values()) + sum(
                int(a.st_size or 0)
                for prefix, table in self._shards.items()
                for name, (_p, a) in table.items()
                if f"{prefix}{SHARDS_DIR}/{name}" in self._shards_done
            )
            cache.touch_index(self.cache_root, self.local_path, str(self.url), size)

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

    def _list_run(self, sftp, remote: str, local: Path, prefix: str, result: SyncResult) -> bool:
        """List one run and fetch its run.json, newest shard of each kind and status.json.
        False when it was not listed (a quiet finished run, or not a run yet)."""
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
                return False
            self._quiet_runs.discard(prefix)
        try:
            entries = {a.filename: a for a in sftp.listdir_attr(remote)}
        except FileNotFoundError:
            return False  # removed while we looked
        except PermissionError:
            self._warn_once(remote, f"{remote}: permission denied; not mirrored")
            return False
        if RUN_JSON not in entries:
            return False  # not a run (yet): run.json is written before step 1
        self._runs[prefix] = (remote, local)
        self._maybe_fetch(sftp, f"{remote}/{RUN_JSON}", f"{prefix}{RUN_JSON}", entries[RUN_JSON], result)
        table: dict[str, tuple[ShardName, object]] = {}
        if SHARDS_DIR in entries and stat.S_ISDIR(entries[SHARDS_DIR].st_mode or 0):
            try:
                shards = sftp.listdir_attr(f"{remote}/{SHARDS_DIR}")
            except FileNotFoundError:
                shards = []
            for a in shards:
                parsed = ShardName.parse(a.filename)
                if parsed is None or not stat.S_ISREG(a.st_mode or 0):
                    continue  # *.tmp (being written) and foreign files
                table[a.filename] = (parsed, a)
        previous = self._shards.get(prefix)
        if previous is None or previous.keys() != table.keys():
            self._layout_changed = True
        self._shards[prefix] = table
        newest: dict[str, tuple[tuple[int, int], str]] = {}
        for name, (parsed, _a) in table.items():
            key = (parsed.attempt, parsed.last_step)
            if parsed.kind not in newest or key > newest[parsed.kind][0]:
                newest[parsed.kind] = (key, name)
        for _key, name in sorted(newest.values(), key=lambda v: v[1]):
            self._fetch_shard(sftp, prefix, name, table[name][1], result)
        if STATUS_JSON in entries:
            self._maybe_fetch(sftp, f"{remote}/{STATUS_JSON}", status_rel, entries[STATUS_JSON], result)
        return True

    def _fetch_shard(self, sftp, prefix: str, name: str, attrs, result: SyncResult, hold: bool = False) -> None:
        """Fetch one shard unless it is here. ``hold``: keep it under a name readers
        ignore until :meth:`_publish` (a backfill lands in batches)."""
        rel = f"{prefix}{SHARDS_DIR}/{name}"
        if rel in self._shards_done:
            return
        self._check_stop()
        remote, local = self._runs[prefix]
        dest = local / SHARDS_DIR / name
        if not _matches(dest, attrs):
            if hold:
                held = dest.with_name(dest.name + HELD_SUFFIX)
                if self._fetch(sftp, f"{remote}/{SHARDS_DIR}/{name}", held, rel, attrs, result, exact=True):
                    with self._count_lock:
                        self._held.append((held, dest))
                    self._publish()
            else:
                self._fetch(sftp, f"{remote}/{SHARDS_DIR}/{name}", dest, rel, attrs, result, exact=True)
        self._shards_done.add(rel)
        self.dropped.discard(rel)

    def _publish(self, force: bool = False) -> None:
        """Give held shards their names, all at once, at most every PUBLISH_SECONDS (``force``: now).

        A reader takes an older shard as a late one and re-reads the run, so a
        backfill shown shard by shard would have the watcher rescore every run
        over and over; in batches it does so every few seconds."""
        now = time.monotonic()
        with self._count_lock:
            if not self._held or (not force and now - self._published < PUBLISH_SECONDS):
                return
            held, self._held, self._published = self._held, [], now
        for src, dest in held:
            try:
                os.replace(src, dest)
            except OSError as exc:  # the cache itself is the problem; the next pass fetches it again
                self._shards_done.discard(str(dest.relative_to(self.local_path)))
                log.warning("cannot move %s into place: %s", src, exc)

    def _fetch_many(self, sftp, shards: list[cache.ShardRef], result: SyncResult) -> None:
        """Fetch shards in about this order, over ``workers`` SFTP sessions when there are many
        (a first sync: many small files cost round trips, not bandwidth)."""
        try:
            self._fetch_in_order(sftp, shards, result)
        finally:
            self._publish(force=True)

    def _fetch_in_order(self, sftp, shards: list[cache.ShardRef], result: SyncResult) -> None:
        if self.workers <= 1 or len(shards) < PARALLEL_MIN:
            for s in shards:
                self._fetch_shard(sftp, s.run, s.name, self._shards[s.run][s.name][1], result, hold=True)
                self._report()
            return
        import paramiko

        clients = [sftp]
        try:
            for _ in range(self.workers - 1):
                extra = paramiko.SFTPClient.from_transport(self.connection.transport())
                extra.get_channel().settimeout(self.connection.io_timeout)
                clients.append(extra)
        except TRANSIENT as exc:  # the server may allow fewer sessions: go on with what opened
            if len(clients) == 1:
                raise
            log.debug("opened %d of %d SFTP sessions: %s", len(clients), self.workers, _one_line(exc))
        todo = iter(shards)
        lock = threading.Lock()
        failed: list[BaseException] = []

        def work(client) -> None:
            while not failed and not self._stop.is_set():
                with lock:
                    s = next(todo, None)
                if s is None:
                    return
                try:
                    self._fetch_shard(client, s.run, s.name, self._shards[s.run][s.name][1], result, hold=True)
                except BaseException as exc:  # re-raised in the pass's own thread below
                    failed.append(exc)
                    return
                self._report()

        threads = [
            threading.Thread(target=work, args=(c,), name="grokwatch-mirror-fetch", daemon=True) for c in clients[1:]
        ]
        for t in threads:
            t.start()
        try:
            work(sftp)
        finally:
            for t in threads:
                t.join()
            for c in clients[1:]:
                try:
                    c.close()
                except Exception:  # a broken session: the link is gone either way
                    pass
        if failed:
            raise next((e for e in failed if not isinstance(e, _PassLimit)), failed[0])

    def _plan(self) -> list[cache.ShardRef]:
        """The shards to have locally, in fetch order; drops (and deletes) the oldest beyond the cap."""
        ranked = cache.rank_shards(
            {
                prefix: [
                    (name, parsed.kind, (parsed.attempt, parsed.last_step), int(a.st_size or 0))
                    for name, (parsed, a) in table.items()
                ]
                for prefix, table in self._shards.items()
            }
        )
        if self.cap is None:
            return ranked
        total = sum(s.size for s in ranked) + sum(s.size for s in self._seen.values())
        if self._others is None:
            self._others = cache.other_sweeps(self.cache_root, self.local_path)
        others = sum(c.size for c in self._others)
        if total + others > self.cap:
            cache.evict(self._others, total + others - self.cap)
            others = sum(c.size for c in self._others)
        budget = self.cap - others - sum(s.size for s in self._seen.values())
        kept, dropped = cache.plan_shards(ranked, budget)
        for s in dropped:
            rel = f"{s.run}{SHARDS_DIR}/{s.name}"
            if rel not in self.dropped:
                self.dropped.add(rel)
                self._shards_done.discard(rel)
                run = self._runs.get(s.run)
                if run is not None:
                    _unlink(run[1] / SHARDS_DIR / s.name)
        self.progress.kept_shards, self.progress.dropped_shards = len(kept), len(dropped)
        if dropped:
            runs = len(self._shards) or 1
            note = (
                f"cache cap {mb(self.cap)} (${cache.CACHE_MB_ENV}) reached: keeping each run's newest "
                f"~{len(kept) // runs:,} shards ({mb(sum(s.size for s in kept))}), leaving out the "
                f"{len(dropped):,} oldest ({mb(sum(s.size for s in dropped))})"
            )
            if self._capped_note is None:
                if self.on_progress is not None:
                    self.progress.note = note  # the progress printer says it, on its own line
                    self._report()
                elif self.log_notes:
                    log.warning("%s; cache in %s", note, self.cache_root)
            self._capped_note = note
            self.capped = (
                f"cache cap {mb(self.cap)}: newest ~{len(kept) // runs:,} shards per run kept, "
                f"{len(dropped):,} older left out"
            )
        else:
            self._capped_note = self.capped = None
        return kept

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

    def _fetch(self, sftp, remote: str, dest: Path, rel: str, attrs, result: SyncResult, *, exact: bool) -> bool:
        """Copy remote -> dest through dest.tmp + os.replace. ``exact``: the size must match attrs.
        False when the remote file vanished (or is unreadable) before it was read."""
        with self._count_lock:
            if self.max_files_per_pass is not None and self._pass_fetches >= self.max_files_per_pass:
                raise _PassLimit
            self._pass_fetches += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        with self._count_lock:
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
            return False  # vanished (or unreadable) before it was read; a later pass sees what replaced it
        except BaseException:
            _unlink(tmp)
            raise
        with self._count_lock:
            self.fetch_counts[rel] += 1
            result.fetched.append(rel)
            result.bytes += n
            self.progress.files += 1
            self.progress.bytes += n
        return True

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def _on_chunk(self, rel: str, nbytes: int) -> None:
        """Hook called after each chunk written (tests cut the link here)."""


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
