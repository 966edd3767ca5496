"""A quiet window: background threads step aside while the user waits for the screen.

The dashboard's watcher, model feed and predictor are Python threads in the
UI's process. On a busy login node (or a 2-core VM) a key press that needs a
full repaint (a view switch, opening a run) competes with them for the GIL
and for a CPU, and its repaint comes late. The UI thread calls
:meth:`QuietWindow.hold` when a key arrives; the background threads call
:meth:`QuietWindow.pause` between units of work (one run's shards, one model
build) and sleep until the window closes.

Background work is delayed, never lost, and never starved: one pause lasts at
most ``max_pause`` seconds, and a thread that has just paused runs its next
``grace`` seconds of work without pausing again, so under key auto-repeat it
still gets at least about half of the time.
"""

from __future__ import annotations

import threading
import time


class QuietWindow:
    def __init__(
        self, hold_seconds: float = 0.15, max_pause: float = 0.25, grace: float = 0.25, clock=time.monotonic
    ) -> None:
        self.hold_seconds = hold_seconds
        self.max_pause = max_pause
        self.grace = grace
        self.clock = clock
        self.enabled = True  # False: hold() does nothing (benchmarks compare both)
        self._until = 0.0
        self._lock = threading.Lock()
        self._open = threading.Event()  # set while no window is held
        self._open.set()
        self._local = threading.local()
        self.holds = 0  # windows opened (key presses)
        self.pauses = 0  # how many times a background thread stepped aside (tests and benchmarks)
        self.paused_seconds = 0.0

    def hold(self, seconds: float | None = None) -> None:
        """Open (or extend) a quiet window of ``seconds`` from now. UI thread."""
        if not self.enabled:
            return
        until = self.clock() + (self.hold_seconds if seconds is None else seconds)
        with self._lock:
            self.holds += 1
            if until > self._until:
                self._until = until
            self._open.clear()

    def release(self) -> None:
        """Close the window now (the repaint the user waited for is done)."""
        with self._lock:
            self._until = 0.0
            self._open.set()

    @property
    def held(self) -> bool:
        return self.clock() < self._until

    def pause(self, stop: threading.Event | None = None) -> float:
        """Background threads: sleep while a window is held (bounded); the seconds slept."""
        now = self.clock()
        if now >= self._until or now < getattr(self._local, "exempt_until", 0.0):
            return 0.0
        end = min(self._until, now + self.max_pause)
        while (left := end - self.clock()) > 0:
            # _open wakes us early on release(); stop (the thread's own) ends the wait too
            if self._open.wait(min(left, 0.02)) or (stop is not None and stop.is_set()):
                break
        slept = self.clock() - now
        self._local.exempt_until = self.clock() + self.grace
        with self._lock:
            self.pauses += 1
            self.paused_seconds += slept
            if self.clock() >= self._until:
                self._open.set()
        return slept
