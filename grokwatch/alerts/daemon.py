"""The headless alarm daemon behind ``grokwatch alerts``.

    watcher thread:  shards -> scores -> engine -> events
                     events -> alarms.jsonl (fsync) -> stdout -> state.json -> channel queues
    channel threads: queue -> apprise -> deliveries.jsonl (or give up -> fallback)
    main thread:     heartbeat.json + lock refresh, rules reload, watchdog message

Exactly-once, as far as a process can promise it: an event is journaled
before anything is sent and a delivery is journaled right after the send
returns, so a daemon killed at any moment (SIGKILL included) resends on
restart only what it had not marked delivered -- at most the one message
whose send was in flight at the kill. Replayed events keep their ids and are
not journaled, printed or sent twice.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from grokwatch.runs.defaults import STALL_TIMEOUT
from grokwatch.store import atomic_write_json
from grokwatch.store.writer import utcnow

from .engine import AlarmEvent, AlertEngine
from .journal import Journal
from .lock import InstanceLock
from .notify import Channel, ChannelPolicy
from .rules import RuleError, load_rules
from .silences import SilenceWatch
from .subscriber import AlarmSubscriber

log = logging.getLogger("grokwatch.alerts")

HEARTBEAT = "heartbeat.json"


@dataclass
class DaemonOptions:
    notify: list[str] = field(default_factory=list)
    fallback: str | None = None
    rules: Path | None = None
    poll: bool | None = None
    interval: float = 5.0
    stall_timeout: float = STALL_TIMEOUT
    heartbeat_every: float = 10.0
    watchdog_every: float | None = None
    lock_stale: float = 120.0
    deliver_timeout: float = 60.0  # --once: how long to keep trying before exiting
    drain_timeout: float = 5.0  # on exit: time given to queued notifications
    state_every: float = 5.0  # state.json at least this often while data flows
    policy: ChannelPolicy = field(default_factory=ChannelPolicy)
    predict: bool = True  # onset predictions: logged to .grokwatch/predictions.arrow, signal predicted_onset_in


class AlertDaemon:
    def __init__(self, sweep_dir: Path | str, opts: DaemonOptions, out: IO[str] | None = None):
        from grokwatch.watch import ScoreConfig, SweepWatcher

        self.sweep_dir = Path(sweep_dir)
        self.opts = opts
        self.out = out or sys.stdout
        self.journal = Journal(self.sweep_dir)
        self.lock = InstanceLock(self.journal.dir / "lock.json", stale_after=opts.lock_stale)
        self.rules_path = opts.rules
        self._rules_sig = self._file_sig(self.rules_path)
        self.engine = AlertEngine(load_rules(self.rules_path))
        self.silences = SilenceWatch(self.sweep_dir)
        self._out_lock = threading.Lock()
        self._stdout_broken = False
        self._last_state = 0.0
        self._saved_revision = -1
        self._started = utcnow()
        self._last_cycle: float | None = None
        self.error: str | None = None
        policy = opts.policy
        self.fallback = None
        if opts.fallback:
            self.fallback = Channel(
                opts.fallback,
                sweep=self.sweep_dir.name,
                policy=policy,
                role="fallback",
                on_delivered=self._delivered,
                on_gave_up=self._gave_up,
            )
        self.channels = [
            Channel(
                url,
                sweep=self.sweep_dir.name,
                policy=policy,
                fallback=self.fallback,
                on_delivered=self._delivered,
                on_gave_up=self._gave_up,
            )
            for url in dict.fromkeys(opts.notify)
        ]
        # The daemon is the one process that logs predictions; a restarted
        # daemon carries on after the steps its log already holds.
        self.predictor = None
        if opts.predict:
            from grokwatch.predict import PredictionLog, SweepPredictor, read_predictions

            self.predictor = SweepPredictor(
                log=PredictionLog(self.sweep_dir), resume=read_predictions(self.sweep_dir), sweep_dir=self.sweep_dir
            )
        # The watcher publishes; the predictor (first: it feeds its onset signal
        # to the engine in the same cycle) and the engine subscribe.
        alarms = AlarmSubscriber(self.engine, on_events=self._on_alarms)
        subscribers: list = [alarms]
        if self.predictor is not None:
            from grokwatch.predict.subscriber import PredictorSubscriber

            subscribers.insert(0, PredictorSubscriber(self.predictor, feed=alarms))
        self.watcher = SweepWatcher(
            self.sweep_dir,
            subscribers=subscribers,
            config=ScoreConfig(stall_timeout=opts.stall_timeout),
            poll=opts.poll,
            interval=opts.interval,
            on_error=self._on_error,
        )

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        """Take the lock, load state and the outbox, start the channels."""
        self.journal.dir.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        self.journal.load()
        state = self.journal.load_state()
        if state.get("engine"):
            self.engine.load_dict(state["engine"])
        for ch in self._all_channels():
            ch.start()
        owed = self.journal.outbox([c.key for c in self.channels], self.fallback.key if self.fallback else None)
        for ch in self._all_channels():
            if owed.get(ch.key):
                log.info("%s: resending %d undelivered alarm(s)", ch.label, len(owed[ch.key]))
                ch.enqueue(owed[ch.key])
        self._write_heartbeat()

    def close(self, drain: float | None = None) -> None:
        self.watcher.close(timeout=30.0)
        if self.watcher.alive:
            # Still inside a cycle: its events may not be journaled yet, so the
            # engine's state must not be saved ahead of them (a restart replays).
            log.warning("the watcher did not stop in time; not saving alarm state")
        else:
            self._save_state()
            if self.predictor is not None and self.predictor.log is not None:
                try:
                    self.predictor.log.compact()  # the parts, folded into predictions.arrow
                except OSError as exc:
                    log.warning("cannot compact the prediction log: %s", exc)
        drain = self.opts.drain_timeout if drain is None else drain
        deadline = time.monotonic() + drain
        for ch in self._all_channels():
            ch.wait_idle(max(0.0, deadline - time.monotonic()))
        for ch in self._all_channels():
            ch.close(timeout=5.0)
        self._write_heartbeat(stopped=True)
        self.lock.release()

    def _all_channels(self) -> list[Channel]:
        return self.channels + ([self.fallback] if self.fallback else [])

    def run(self, stop: threading.Event) -> int:
        """Follow the sweep until ``stop`` is set; 0, or 1 after a fatal error."""
        self.watcher.start()
        next_hb = time.monotonic() + self.opts.heartbeat_every
        dog_every = self.opts.watchdog_every or 0.0
        next_dog = time.monotonic() + dog_every if dog_every else None
        announced = False
        while not stop.wait(1.0 if announced else 0.05):
            if not announced and self.watcher.wait_ready(0):
                announced = True  # the backfill is done: say so now, not at the next beat
                self._write_heartbeat()
            self._reload_rules()
            now = time.monotonic()
            if now >= next_hb:
                next_hb = now + self.opts.heartbeat_every
                if not self.lock.refresh():
                    self.error = f"lost the lock {self.lock.path} to another daemon; stopping"
                    log.error("%s", self.error)
                    return 1
                self._write_heartbeat()
            if next_dog is not None and now >= next_dog:
                next_dog = now + dog_every
                self._watchdog()
            if not self.watcher.alive:
                self.error = "the watcher thread ended unexpectedly"
                log.error("%s", self.error)
                return 1
        return 0

    def run_once(self) -> int:
        """Evaluate what is on disk, deliver, exit: 0, or 1 if something stayed undelivered."""
        self.watcher.cycle()
        deadline = time.monotonic() + self.opts.deliver_timeout
        for ch in self.channels:
            ch.wait_idle(max(0.0, deadline - time.monotonic()))
        if self.fallback:
            self.fallback.wait_idle(max(0.0, deadline - time.monotonic()))
        left = sum(ch.pending() for ch in self._all_channels())
        if left:
            log.warning("%d notification(s) not delivered yet; they stay in the outbox for the next run", left)
        return 1 if left else 0

    # -- the watcher's callbacks (watcher thread) -------------------------------------------
    def _on_alarms(self, events: list[AlarmEvent]) -> None:
        now = time.time()
        self._last_cycle = now
        records = [self._record(e, now) for e in events]
        fresh = self.journal.append_events(records) if records else []
        if fresh:
            self._print(fresh)
        if fresh or (self.engine.revision != self._saved_revision and now - self._last_state >= self.opts.state_every):
            self._save_state()
        by_key = {c.key: c for c in self.channels}
        for r in fresh:
            for key in r["notify"]:
                if key in by_key:
                    by_key[key].enqueue([r])

    def _print(self, records: list[dict]) -> None:
        """One JSON object per line on stdout; a closed stdout must not stop the alarms."""
        with self._out_lock:
            if self._stdout_broken:
                return
            try:
                self.out.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
                self.out.flush()
            except (OSError, ValueError) as exc:
                self._stdout_broken = True
                log.warning("stdout is gone (%s); alarms still go to alarms.jsonl and the channels", exc)

    def _record(self, e: AlarmEvent, now: float) -> dict:
        rec = e.to_record()
        rec["sweep"] = self.sweep_dir.name
        silence = self.silences.match(e.run, e.rule, now)
        rule = self.engine.rules.get(e.rule)
        wanted = e.state == "firing" or (rule is not None and rule.notify_resolved)
        rec["silenced"] = silence["id"] if silence else None
        rec["notify"] = [c.key for c in self.channels] if wanted and not silence else []
        return rec

    def _on_error(self, message: str, exc: BaseException | None) -> None:
        pass  # already logged by the watcher (stderr); nothing else to do headless

    # -- channel callbacks (channel threads) ---------------------------------------------------
    def _delivered(self, ch: Channel, records: list[dict]) -> None:
        self.journal.record_delivery(records, ch.key, True, role=ch.role, time=utcnow())

    def _gave_up(self, ch: Channel, records: list[dict], error: str) -> None:
        self.journal.record_delivery(records, ch.key, False, role=ch.role, time=utcnow(), error=error[:200])

    # -- housekeeping -------------------------------------------------------------------------
    def _save_state(self) -> None:
        self._last_state = time.time()
        self._saved_revision = self.engine.revision
        self.journal.save_state({"version": 1, "saved": utcnow(), "engine": self.engine.to_dict()})

    def _reload_rules(self) -> None:
        if self.rules_path is None:
            return
        sig = self._file_sig(self.rules_path)
        if sig == self._rules_sig:
            return
        self._rules_sig = sig
        try:
            rules = load_rules(self.rules_path)
        except RuleError as exc:
            log.warning("rules not reloaded, keeping the previous ones: %s", exc)
            return
        self.engine.set_rules(rules)
        log.warning("reloaded %d rule(s) from %s", len(rules), self.rules_path)

    @staticmethod
    def _file_sig(path: Path | None) -> tuple | None:
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _write_heartbeat(self, stopped: bool = False) -> None:
        snap = self.watcher.snapshot()
        firing = sum(1 for _, a in snap.active_alarms() if a.state == "firing")
        atomic_write_json(
            self.journal.dir / HEARTBEAT,
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": self._started,
                "time": utcnow(),
                "time_unix": time.time(),
                "state": "stopped" if stopped else "running",
                "ready": self.watcher.wait_ready(0),
                "mode": self.watcher.mode,
                "runs": len(snap.runs),
                "firing": firing,
                "last_cycle_unix": self._last_cycle,
                "channels": {
                    ch.label: {
                        "pending": ch.pending(),
                        "sent": ch.sent,
                        "failures": ch.failures,
                        "last_error": ch.last_error,
                    }
                    for ch in self._all_channels()
                },
            },
        )

    def _watchdog(self) -> None:
        snap = self.watcher.snapshot()
        firing = sum(1 for _, a in snap.active_alarms() if a.state == "firing")
        title = f"[grokwatch] watcher alive: {self.sweep_dir.name}"
        body = (
            f"grokwatch alerts on {socket.gethostname()} (pid {os.getpid()}) watches {len(snap.runs)} runs; "
            f"{firing} alarm(s) firing."
        )
        for ch in self.channels:
            ch.enqueue_message(title, body)


def send_test(urls: list[str], fallback: str | None, sweep: str) -> list[dict]:
    """One test notification through every channel; a result per channel."""
    results = []
    for role, url in [("notify", u) for u in dict.fromkeys(urls)] + ([("fallback", fallback)] if fallback else []):
        ch = Channel(url, sweep=sweep, role=role)
        ok, _ = ch.send(
            f"[grokwatch] test notification ({sweep})",
            f"grokwatch alerts on {socket.gethostname()} can reach this channel.",
        )
        results.append({"test": ch.label, "role": role, "ok": ok, "error": ch.last_error})
    return results
