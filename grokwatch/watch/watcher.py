"""The sweep watcher: a plain thread (no UI) that follows a sweep directory.

One module: it is one thread's loop; discovery, polling, inotify and
publishing share its locks, its per-run signatures and its wake-up event.

Toolong's shape: ``start()``, ``close()`` through an Event (and a join), and
callbacks. First a backfill of every run already on disk, then it follows new
shards -- woken by inotify (watchdog) on local filesystems, or by polling on
network filesystems where inotify never hears remote writes.

Polling cost does not grow with finished runs: each poll stats two paths per
*active* run (``shards/`` and ``status.json``) and lists shards only when one
changed (or every ``force_every`` polls, against NFS attribute caching); a
finished run (completed/failed/diverged and unchanged) is stat-ed only every
``finished_every`` polls. In inotify mode the same pass runs every
``rescan_every`` seconds as a safety net (a queue overflow, a missed watch).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from grokwatch.store import list_runs
from grokwatch.store.atomic import read_json
from grokwatch.store.layout import MANIFEST, RUN_JSON, WATCHER_DIR
from grokwatch.watch.memory import pin_mmap_threshold

from .fs import is_network_fs
from .queue import run_state, slurm_word
from .runstate import FINAL_STATES, Batch, RunState
from .scores import ScoreConfig
from .snapshot import EMPTY_SNAPSHOT, PlannedRun, RunView, SweepSnapshot, planned_runs
from .subscribe import VIEW_FIELDS, QueuePoller, Subscriber

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

log = logging.getLogger("grokwatch.watch")

UpdateCallback = Callable[[SweepSnapshot, frozenset], None]
ErrorCallback = Callable[[str, "BaseException | None"], None]
CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})  # not opened / closed_no_write


class SweepWatcher:
    """Follow one sweep directory; publish immutable snapshots.

    Parameters
    ----------
    sweep_dir: ``<root>/<sweep>``, holding run directories.
    subscribers: what the watcher publishes new points to, in this order
        (:mod:`grokwatch.watch.subscribe`): the alarm engine
        (:class:`grokwatch.alerts.AlarmSubscriber`), the onset predictor
        (:class:`grokwatch.predict.subscriber.PredictorSubscriber`) ... Without them the
        snapshot has no alarms and no predictions.
    queue: a :class:`~grokwatch.watch.subscribe.QueuePoller`
        (:class:`grokwatch.watch.queue.SlurmQueue`): SLURM's state of the
        runs, joined into the snapshot (optional; without one the state words
        come from status.json and the heartbeat alone).
    poll: True to poll, False for inotify, None to decide from the filesystem
        type (/proc/self/mounts).
    interval: seconds between polls (poll mode).
    on_update(snapshot, changed_run_ids): after a new snapshot is published.
    on_error(message, exc): a warning (unreadable shard, vanished run) or an
        unexpected error in a cycle; the watcher carries on.
    pause: called in the watcher thread before each run's refresh and before
        each subscriber's end of cycle (optional): the dashboard passes
        :meth:`grokwatch.watch.quiet.QuietWindow.pause`, so a key press waiting for
        its repaint does not compete with reading shards.
    """

    def __init__(
        self,
        sweep_dir: Path | str,
        *,
        subscribers: Sequence[Subscriber] = (),
        queue: QueuePoller | None = None,
        config: ScoreConfig | None = None,
        poll: bool | None = None,
        interval: float = 2.0,
        on_update: UpdateCallback | None = None,
        on_error: ErrorCallback | None = None,
        debounce: float = 0.05,
        rescan_every: float = 60.0,
        finished_every: int = 30,
        force_every: int = 5,
        retry_every: float = 10.0,
        pause: Callable[[], object] | None = None,
    ):
        pin_mmap_threshold()  # many large growing buffers: keep them out of the heap (grokwatch.watch.memory)
        self.sweep_dir = Path(sweep_dir)
        self.subscribers: tuple[Subscriber, ...] = tuple(subscribers)
        self.queue = queue
        self.cfg = config or ScoreConfig()
        self.mode = "poll" if (poll if poll is not None else is_network_fs(self.sweep_dir)) else "inotify"
        self.interval = float(interval)
        self.on_update = on_update
        self.on_error = on_error
        self.debounce = debounce
        self.rescan_every = rescan_every
        self.finished_every = max(1, finished_every)
        self.force_every = max(1, force_every)
        self.retry_every = retry_every
        self.pause = pause
        self.runs: dict[str, RunState] = {}
        self._lock = threading.Lock()
        self._snapshot: SweepSnapshot = EMPTY_SNAPSHOT
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._dirty: set[str] = set()
        self._dirty_all = False
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None
        self._warnings: deque[str] = deque(maxlen=50)
        self._version = 0
        self._sweep_sig: tuple[int, int] | str | None = None  # (mtime_ns, inode), or "missing"
        self._last_pass = 0.0
        self._last_retry = 0.0
        self._polls = 0
        self._next_poll = 0.0
        self._last_stall_check = 0.0
        self._last_discover = float("-inf")
        # The sweep manifest (sweep.json): runs planned, started or not. Re-read
        # when its stat signature changes (one stat per full pass).
        self._planned: dict[str, PlannedRun] = {}
        self._submitted = False
        self._manifest_sig: tuple[int, int, int] | None = None
        self._manifest_dirty = False
        # The queue poller's latest answer (run id -> task), re-read when it says it changed.
        self._tasks: dict[str, object] = {}
        self._queue_dirty = queue is not None

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> SweepWatcher:
        if self._thread is not None:
            raise RuntimeError("watcher already started")
        self._thread = threading.Thread(target=self._run, name=f"grokwatch-watch-{self.sweep_dir.name}", daemon=True)
        self._thread.start()
        if self.queue is not None:
            self.queue.start(self._on_queue_change)
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the thread (and the inotify observer) and join them."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._stop_observer()
        if self.queue is not None:
            self.queue.close()

    def __enter__(self) -> SweepWatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the initial backfill is complete."""
        return self._ready.wait(timeout)

    def snapshot(self) -> SweepSnapshot:
        with self._lock:
            return self._snapshot

    def request_refresh(self, run_id: str | None = None) -> None:
        """Ask the thread for a cycle soon (all runs when ``run_id`` is None)."""
        with self._lock:
            if run_id is None:
                self._dirty_all = True
            else:
                self._dirty.add(run_id)
        self._wake.set()

    def cycle(self, full: bool = True) -> SweepSnapshot:
        """Run one cycle in the caller's thread (for ``--once`` and tests);
        only while the thread is not running."""
        if self.alive:
            raise RuntimeError("cycle() while the watcher thread runs")
        if self.queue is not None and self.queue.refresh():
            self._queue_dirty = True
        self._cycle(set(), full=full, now=time.time())
        self._ready.set()
        return self.snapshot()

    # -- the thread -------------------------------------------------------------------
    def _run(self) -> None:
        if self.mode == "inotify":
            self._start_observer()  # before the backfill, so nothing written during it is missed
        self._safe_cycle(set(), full=True)
        self._next_poll = time.time() + self.interval
        self._ready.set()
        while not self._stop.is_set():
            woke = self._wake.wait(self._next_timeout())
            if self._stop.is_set():
                break
            if woke and self.debounce:
                self._stop.wait(self.debounce)  # coalesce a burst of events into one cycle
            self._wake.clear()
            with self._lock:
                dirty, self._dirty = self._dirty, set()
                full, self._dirty_all = self._dirty_all, False
            now = time.time()
            if self.mode == "poll":
                if now >= self._next_poll:
                    full, self._next_poll = True, now + self.interval
            elif now - self._last_pass >= self.rescan_every:
                full = True
            self._safe_cycle(dirty, full=full, now=now)

    def _next_timeout(self) -> float:
        """Sleep until the next stall check, or the next poll if sooner."""
        tick = min(5.0, max(0.05, self.cfg.stall_timeout / 4))
        if self.mode == "poll":
            return max(0.0, min(tick, self._next_poll - time.time()))
        return tick

    def _safe_cycle(self, dirty: set[str], full: bool, now: float | None = None) -> None:
        try:
            self._cycle(dirty, full=full, now=time.time() if now is None else now)
        except Exception as exc:  # one bad cycle must not end the watcher
            self._warn(f"watcher cycle failed: {type(exc).__name__}: {exc}", exc)

    def _cycle(self, dirty: set[str], full: bool, now: float) -> None:
        changed: set[str] = set()
        removed: set[str] = set()
        fed: set[str] = set()  # runs a subscriber was given points of
        to_refresh = set(r for r in dirty if r in self.runs)
        # Names not known as runs: worth a listing only once they hold a run.json
        # (SLURM logs written into the sweep directory are not runs).
        new_ids = {r for r in dirty if r not in self.runs and os.path.exists(self.sweep_dir / r / RUN_JSON)}
        if full or new_ids:
            # Listing the sweep costs one stat unless its mtime moved (a run
            # came or went); a full listing anyway now and then (NFS caches).
            rediscover = bool(new_ids) or now - self._last_discover >= self.rescan_every
            if rediscover:
                self._last_discover = now
            added, gone = self._discover(force=rediscover)
            to_refresh |= added
            removed |= gone
        if full:
            self._last_pass = now
            to_refresh |= self._stat_pass()
        with self._lock:
            manifest_dirty, self._manifest_dirty = self._manifest_dirty, False
            queue_dirty, self._queue_dirty = self._queue_dirty, False
        planned_changed = (full or manifest_dirty) and self._read_manifest()
        if queue_dirty and self._read_queue(changed):
            planned_changed = True
        if now - self._last_retry >= self.retry_every:
            self._last_retry = now
            to_refresh |= {rid for rid, rs in self.runs.items() if rs.failed_files}
        live = []
        for rid in sorted(to_refresh):
            rs = self.runs.get(rid)
            if rs is None:
                continue
            if not rs.exists():
                self._remove(rid)
                removed.add(rid)
                continue
            live.append(rs)
        for rs in live:
            if self.pause is not None:
                self.pause()  # a dashboard key press waits for a repaint: step aside (bounded)
            rid = rs.run_id
            v0 = rs.version
            try:
                batches = rs.refresh(now)
                self._report_failures(rs)
                for b in batches:
                    for sub in self.subscribers:
                        sub.on_batch(rid, b, now)
                    fed.add(rid)
            except Exception as exc:  # a bug on one run's data must not cost the others their alarms
                self._warn(f"{rid}: refresh failed: {type(exc).__name__}: {exc}", exc)
            if rs.version != v0 or rs.view is None:
                changed.add(rid)
        # Wall-clock signals: stalls change with time, not with data. Every run
        # at most once a second; runs just refreshed (a heartbeat came) at once.
        if now - self._last_stall_check >= 1.0:
            self._last_stall_check = now
            check = list(self.runs.items())
        else:
            check = [(rs.run_id, rs) for rs in live if rs.run_id in self.runs]
        for rid, rs in check:
            was = rs.stalled
            now_stalled = rs.check_stalled(now)
            if self.subscribers and (rs.state == "running" or was or now_stalled):
                step = rs.last_step()
                if step is not None:
                    b = Batch(
                        np.array([step], dtype=np.int64),
                        {"stalled": np.array([1.0 if now_stalled else 0.0])},
                        {},
                        repeat_last=True,
                    )
                    try:
                        for sub in self.subscribers:
                            sub.on_batch(rid, b, now)
                        fed.add(rid)
                    except Exception as exc:
                        self._warn(f"{rid}: stall check failed: {type(exc).__name__}: {exc}", exc)
            if was != now_stalled:
                changed.add(rid)
        # The end of the cycle, subscriber by subscriber (the predictor predicts
        # and feeds the engine; the engine hands its events on).
        runs = MappingProxyType(self.runs)
        for sub in self.subscribers:
            if self.pause is not None:
                self.pause()
            try:
                fed.update(sub.on_cycle(runs, frozenset(changed), now) or ())
            except Exception as exc:  # one subscriber must not cost the others, nor the view
                name = getattr(sub, "name", type(sub).__name__)
                self._warn(f"{name} failed: {type(exc).__name__}: {exc}", exc)
        for rid in fed - changed:  # alarm states (pending -> firing), new predictions show in the view
            rs = self.runs.get(rid)
            v = rs.view if rs is not None else None
            if v is not None and any(getattr(v, k) != f for k, f in self._view_fields(rid).items()):
                changed.add(rid)
        if changed or removed or planned_changed or self._version == 0:
            self._publish(changed, removed, now)

    def _view_fields(self, rid: str) -> dict[str, Any]:
        """What the subscribers add to a run's view (later subscribers win)."""
        out: dict[str, Any] = {}
        for sub in self.subscribers:
            try:
                out.update(sub.view_fields(rid))
            except Exception as exc:  # the view goes without this subscriber's fields
                name = getattr(sub, "name", type(sub).__name__)
                self._warn(f"{name} failed: {rid}: {type(exc).__name__}: {exc}", exc)
        return {k: v for k, v in out.items() if k in VIEW_FIELDS}

    # -- the queue poller -----------------------------------------------------------------
    def _on_queue_change(self) -> None:
        with self._lock:
            self._queue_dirty = True
        self._wake.set()

    def _read_queue(self, changed: set[str]) -> bool:
        """Take the poller's latest answer; runs whose task changed join ``changed``.
        True when it changed at all (planned runs' states may have)."""
        if self.queue is None:
            return False
        try:
            tasks = dict(self.queue.tasks())
        except Exception as exc:
            self._warn(f"queue poller failed: {type(exc).__name__}: {exc}", exc)
            return False
        if tasks == self._tasks:
            return False
        changed.update(
            rid for rid in set(tasks) | set(self._tasks) if rid in self.runs and tasks.get(rid) != self._tasks.get(rid)
        )
        self._tasks = tasks
        return True

    # -- discovery and polling ------------------------------------------------------------
    def _read_manifest(self) -> bool:
        """Re-read sweep.json if it changed; True when the planned runs changed."""
        path = self.sweep_dir / MANIFEST
        try:
            st = os.stat(path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = None
        if sig == self._manifest_sig:
            return False
        self._manifest_sig = sig
        manifest = read_json(path) if sig is not None else None
        if sig is not None and manifest is None:
            self._warn(f"cannot read the sweep manifest {path}; planned runs not shown")
        planned = planned_runs(manifest)
        submitted = bool(isinstance(manifest, dict) and (manifest.get("submissions") or manifest.get("array_job_id")))
        if planned == self._planned and submitted == self._submitted:
            return False
        self._planned, self._submitted = planned, submitted
        return True

    def _discover(self, force: bool) -> tuple[set[str], set[str]]:
        try:
            st = os.stat(self.sweep_dir)
            sig = (st.st_mtime_ns, st.st_ino)
        except OSError as exc:
            if self._sweep_sig != "missing":
                self._warn(f"cannot read sweep directory {self.sweep_dir}: {exc}", exc)
            self._sweep_sig = "missing"
            return set(), set()
        if not force and sig == self._sweep_sig:
            return set(), set()
        self._sweep_sig = sig
        found = {p.name: p for p in list_runs(self.sweep_dir)}
        added = set()
        for rid, path in found.items():
            if rid not in self.runs:
                self.runs[rid] = RunState(path, self.cfg)
                added.add(rid)
        gone = set()
        for rid in list(self.runs):
            if rid not in found and not self.runs[rid].exists():
                self._remove(rid)
                gone.add(rid)
        return added, gone

    def _stat_pass(self) -> set[str]:
        """Runs worth a refresh, found by stat alone (the polling rule)."""
        self._polls += 1
        out = set()
        for rid, rs in self.runs.items():
            finished = rs.state in FINAL_STATES
            if finished and rs.poll_sig is not None and rs.polls_skipped + 1 < self.finished_every:
                rs.polls_skipped += 1
                continue
            rs.polls_skipped = 0
            sig = rs.signature()
            if sig != rs.poll_sig or (not finished and self._polls % self.force_every == 0) or rs.failed_files:
                out.add(rid)
            rs.poll_sig = sig
        return out

    def _remove(self, rid: str) -> None:
        self.runs.pop(rid, None)
        self._warn(f"run {rid} disappeared from {self.sweep_dir}; dropped from the view")

    def _report_failures(self, rs: RunState) -> None:
        failed = set(rs.failed_files)
        for name in sorted(failed - rs.reported_failures):
            self._warn(f"{rs.run_id}: cannot read shards/{name} yet; will retry")
        rs.reported_failures = failed

    def _warn(self, message: str, exc: BaseException | None = None) -> None:
        log.warning("%s", message)
        self._warnings.append(message)
        if self.on_error is not None:
            try:
                self.on_error(message, exc)
            except Exception:  # a broken callback must not stop the watcher
                log.exception("on_error callback failed")

    def _publish(self, changed: set[str], removed: set[str], now: float) -> None:
        views: dict[str, RunView] = {}
        for rid in sorted(self.runs):
            rs = self.runs[rid]
            if rid in changed or rs.view is None:
                task = self._tasks.get(rid)
                rs.view = rs.build_view(
                    now,
                    slurm_state=slurm_word(task),
                    state=run_state(task, rs.state, rs.heartbeat_age(now), stall_timeout=self.cfg.stall_timeout),
                    **self._view_fields(rid),
                )
                changed.add(rid)
            views[rid] = rs.view
        self._version += 1
        snap = SweepSnapshot(
            sweep=self.sweep_dir.name,
            path=str(self.sweep_dir),
            version=self._version,
            time=now,
            mode=self.mode,
            ready=True,  # published at the end of a cycle; the first cycle is the backfill
            runs=MappingProxyType(views),
            changed=frozenset(changed),
            removed=frozenset(removed),
            warnings=tuple(self._warnings),
            planned=MappingProxyType(self._planned_states()),
            submitted=self._submitted,
        )
        with self._lock:
            self._snapshot = snap
        if self.on_update is not None:
            self.on_update(snap, snap.changed)

    def _planned_states(self) -> dict[str, PlannedRun]:
        """The manifest's runs, each with its state word (pending, submitted, ...)."""
        out = {}
        for rid, p in self._planned.items():
            task = self._tasks.get(rid)
            out[rid] = replace(
                p,
                slurm_state=slurm_word(task),
                state=run_state(task, started=rid in self.runs, submitted=self._submitted),
            )
        return out

    # -- inotify -------------------------------------------------------------------------
    def _start_observer(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError as exc:
            self._warn(f"watchdog unavailable ({exc}); polling instead", exc)
            self.mode = "poll"
            return
        # watchdog 7 re-registers a directory created under a recursive watch and
        # warns, with the repr of every watch in it, each time a run directory
        # appears: harmless (the callback is the same), and 90 new runs would
        # bury the headless log and paint over the dashboard. Only that warning.
        warnings.filterwarnings(
            "ignore", message=r"Callback with id .* already exists for watch", category=RuntimeWarning
        )
        watcher = self
        root = str(self.sweep_dir)

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                # Opens and reads (ours included) are not changes: reacting to
                # them would make every refresh trigger the next one.
                if event.event_type not in CHANGE_EVENTS:
                    return
                for path in (getattr(event, "dest_path", None), event.src_path):
                    if path:
                        watcher._on_fs_event(os.fsdecode(path), root)

        try:
            obs = Observer()
            obs.schedule(Handler(), root, recursive=True)
            obs.daemon = True
            obs.start()
        except Exception as exc:  # no inotify watches left, sweep missing, ...
            self._warn(f"inotify unavailable for {root} ({exc}); polling instead", exc)
            self.mode = "poll"
            return
        self._observer = obs

    def _on_fs_event(self, path: str, root: str) -> None:
        rel = os.path.relpath(path, root)
        if rel == "." or rel.startswith(".."):
            with self._lock:
                self._dirty_all = True
            self._wake.set()
            return
        parts = rel.split(os.sep)
        rid = parts[0]
        if rid == MANIFEST and len(parts) == 1:
            with self._lock:
                self._manifest_dirty = True
            self._wake.set()
            return
        if rid == WATCHER_DIR or rid.startswith(".") or path.endswith(".tmp"):
            return
        with self._lock:
            self._dirty.add(rid)
        self._wake.set()

    def _stop_observer(self) -> None:
        obs, self._observer = self._observer, None
        if obs is not None:
            obs.stop()
            obs.join(10)
