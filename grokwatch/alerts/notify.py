"""Notification channels: one apprise URL each, each with its own thread.

Per channel: a queue, bounded retry with back-off (the plugin's rate-limit
reset where apprise exposes one, e.g. Discord's ``ratelimit_reset``; otherwise
exponential with jitter), and a token-bucket rate limit. Alarms that queue
up while a channel waits go out together as one digest message, so a burst
(a cold start on a finished sweep) is a few messages, not hundreds.

Channels share nothing: a failing channel only delays itself, and never
makes another one send twice. After ``max_tries`` failed attempts a batch is
handed to the fallback channel, if there is one; without one the channel
keeps trying every ``backoff_max`` seconds, since dropping an alarm is worse
than a late one. Every delivery and hand-over is reported through callbacks,
which the daemon journals.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("grokwatch.alerts")

Delivered = Callable[["Channel", list], None]
GaveUp = Callable[["Channel", list, str], None]


@dataclass(frozen=True)
class ChannelPolicy:
    max_tries: int = 8  # attempts per batch before handing it to the fallback (if any)
    backoff: float = 2.0  # first retry delay, seconds; doubles per failure
    backoff_max: float = 300.0
    rate_per_min: float = 30.0  # sustained messages per minute
    burst: int = 5  # messages that may go out back to back
    batch: int = 20  # most alarms in one digest message


def channel_key(url: str) -> str:
    """A stable id for a URL that does not reveal its secrets."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def _plugin(url: str):
    import apprise  # heavy: imported only when a channel is built

    quiet = logging.getLogger("apprise")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # our one-line error says it; apprise's own is noise here
    try:
        plugin = apprise.Apprise.instantiate(url)
    finally:
        quiet.setLevel(level)
    if plugin is None:
        raise ValueError(f"not a usable apprise URL: {_redact(url)}")
    # grokwatch rate-limits itself; apprise's own per-plugin throttle (5.5 s
    # between e-mails) would only add latency on top.
    plugin.request_rate_per_sec = 0
    return plugin


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}" + ("/..." if host != rest else "")


_ICON = {"critical": "failure", "warning": "warning", "info": "info"}


def format_message(records: list[dict], sweep: str) -> tuple[str, str, str]:
    """(title, body, apprise notify type) for one or more alarm records."""
    import apprise

    worst = max(records, key=lambda r: ("info", "warning", "critical").index(r.get("severity", "info")))
    ntype = getattr(apprise.NotifyType, _ICON.get(str(worst.get("severity", "info")), "info").upper())
    if len(records) == 1:
        r = records[0]
        if r["state"] == "resolved":
            ntype = apprise.NotifyType.SUCCESS
        title = f"[grokwatch] {r['run']}: {r['rule']} {r['state']}"
        body = f"{_line(r)}\n{r.get('description') or ''}\nsweep {sweep}, {r['time']}".strip()
        return title, body, ntype
    title = f"[grokwatch] {len(records)} alarms in {sweep}"
    return title, "\n".join(_line(r) for r in records), ntype


def _line(r: dict) -> str:
    value = r.get("value")
    v = "n/a" if value is None else f"{value:.4g}"
    return (
        f"{r['state'].upper()} {r['severity']} {r['rule']} {r['run']} step {r['step']}: "
        f"{r.get('signal', r['rule'])} = {v} ({r.get('comparison', '')} {r['threshold']:g}) id={r['id']}"
    )


class Channel:
    """One notification target with its own queue and thread."""

    def __init__(
        self,
        url: str,
        *,
        sweep: str = "",
        policy: ChannelPolicy = ChannelPolicy(),
        on_delivered: Delivered | None = None,
        on_gave_up: GaveUp | None = None,
        fallback: Channel | None = None,
        role: str = "notify",
    ):
        self.url = url
        self.key = channel_key(url)
        self.plugin = _plugin(url)
        try:
            self.label = self.plugin.url(privacy=True)
        except Exception:
            self.label = _redact(url)
        self.sweep = sweep
        self.policy = policy
        self.on_delivered = on_delivered
        self.on_gave_up = on_gave_up
        self.fallback = fallback
        self.role = role
        self._q: deque[dict] = deque()
        self._transient: deque[tuple[str, str]] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._tokens = float(policy.burst)
        self._refilled = time.monotonic()
        self._next = 0.0  # monotonic time before which nothing is sent (back-off)
        self._tries = 0
        self._busy = False
        self._queued_ids: set[str] = set()
        self.sent = 0
        self.failures = 0
        self.last_error: str | None = None

    # -- queue --------------------------------------------------------------------------
    def enqueue(self, records: list[dict]) -> None:
        with self._cond:
            for r in records:
                if r["id"] not in self._queued_ids:
                    self._queued_ids.add(r["id"])
                    self._q.append(r)
            self._cond.notify()

    def enqueue_message(self, title: str, body: str) -> None:
        """A message that is not an alarm (the watchdog): not journaled."""
        with self._cond:
            self._transient.append((title, body))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._q) + len(self._transient) + (1 if self._busy else 0)

    # -- thread -------------------------------------------------------------------------
    def start(self) -> Channel:
        self._thread = threading.Thread(target=self._run, name=f"grokwatch-notify-{self.key}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight (True) or the timeout passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.02)
        return self.pending() == 0

    def _refill(self, now: float) -> None:
        rate = self.policy.rate_per_min / 60.0
        self._tokens = min(float(self.policy.burst), self._tokens + (now - self._refilled) * rate)
        self._refilled = now

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    now = time.monotonic()
                    self._refill(now)
                    if self._q or self._transient:
                        wait = max(self._next - now, 0.0)
                        if self._tokens < 1.0:
                            wait = max(wait, (1.0 - self._tokens) / max(self.policy.rate_per_min / 60.0, 1e-9))
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._transient:
                    transient = self._transient.popleft()
                    batch: list[dict] = []
                else:
                    transient = None
                    batch = [self._q[i] for i in range(min(self.policy.batch, len(self._q)))]
                self._tokens -= 1.0
                self._busy = True
            try:
                self._deliver(batch, transient)
            except Exception as exc:  # a bug in a callback must not kill the channel
                log.exception("%s: delivery failed unexpectedly: %s", self.label, exc)
            finally:
                with self._cond:
                    self._busy = False

    def _deliver(self, batch: list[dict], transient: tuple[str, str] | None) -> None:
        if transient is not None:
            ok, _ = self.send(*transient)
            if not ok:
                log.warning("%s: watchdog message not delivered", self.label)
            return
        title, body, ntype = format_message(batch, self.sweep)
        ok, retry_after = self.send(title, body, ntype)
        if ok:
            with self._cond:
                for _ in batch:
                    r = self._q.popleft()
                    self._queued_ids.discard(r["id"])
                self._tries = 0
            self.sent += 1
            if self.on_delivered:
                self.on_delivered(self, batch)
            return
        self.failures += 1
        with self._cond:
            self._tries += 1
            tries = self._tries
            give_up = tries >= self.policy.max_tries and self.fallback is not None
            if give_up:
                for _ in batch:
                    r = self._q.popleft()
                    self._queued_ids.discard(r["id"])
                self._tries = 0
            else:
                delay = retry_after
                if delay is None:
                    delay = min(self.policy.backoff_max, self.policy.backoff * 2 ** (tries - 1)) * random.uniform(
                        0.8, 1.2
                    )
                self._next = time.monotonic() + delay
        if give_up:
            log.warning(
                "%s: %d alarm(s) not delivered after %d tries; handing them to the fallback",
                self.label,
                len(batch),
                tries,
            )
            if self.on_gave_up:
                self.on_gave_up(self, batch, self.last_error or "failed")
            if self.fallback is not None:
                self.fallback.enqueue(batch)
        else:
            log.warning(
                "%s: notification failed (try %d of %d); retrying in %.1f s",
                self.label,
                tries,
                self.policy.max_tries,
                delay,
            )

    def send(self, title: str, body: str, notify_type=None) -> tuple[bool, float | None]:
        """One attempt through apprise; (ok, seconds to wait before a retry if the plugin says)."""
        kwargs = {"title": title, "body": body}
        if notify_type is not None:
            kwargs["notify_type"] = notify_type
        try:
            ok = bool(self.plugin.notify(**kwargs))
        except Exception as exc:  # apprise reports failures by return value; be safe anyway
            ok = False
            self.last_error = f"{type(exc).__name__}: {exc}"
        if ok:
            self.last_error = None
            return True, None
        self.last_error = self.last_error or "apprise reported a failure"
        return False, _retry_after(self.plugin)


def _retry_after(plugin) -> float | None:
    """Seconds until the service's rate limit resets, where the plugin exposes it."""
    reset = getattr(plugin, "ratelimit_reset", None)
    remaining = getattr(plugin, "ratelimit_remaining", None)
    if isinstance(reset, datetime) and (remaining is None or remaining <= 0):
        now = datetime.now(UTC) if reset.tzinfo else datetime.utcnow()
        wait = (reset - now).total_seconds()
        if 0 < wait < 3600:
            return wait
    return None
