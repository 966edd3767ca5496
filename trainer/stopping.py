"""How a training process stops: its exit codes and its stop signals.

SIGTERM and SIGUSR1 (SLURM's preemption notice and the batch script's
requeue signal) and SIGINT set :attr:`StopSignals.name`; the loop then flushes,
checkpoints every run and stops at the next step boundary, exit code 75 (130
for SIGINT). Whether the job is requeued is the batch script's decision, not
the trainer's: both signals stop it the same way. A second SIGINT interrupts at
once (KeyboardInterrupt): no checkpoint, the runs are marked preempted.

The store's RunWriter handles no signals; this is the one place that does.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger("trainer")

EXIT_OK, EXIT_CONFIG, EXIT_DIVERGED, EXIT_PREEMPTED, EXIT_SIGINT = 0, 2, 3, 75, 130
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopSignals:
    """A context manager: while inside, the stop signals set :attr:`name`
    (``"SIGTERM"``, ``"SIGUSR1"`` or ``"SIGINT"``); on leaving, the previous
    handlers come back. Outside the main thread it installs nothing (Python
    allows handlers there only) and the loop stops only at its end."""

    def __init__(self) -> None:
        self.name: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: no signal handlers; training stops only at its end")
            return self
        for sig in STOP_SIGNALS:
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.name = signal.Signals(signum).name
        if signum == signal.SIGINT:  # a second Ctrl-C interrupts at once
            signal.signal(signal.SIGINT, signal.default_int_handler)

    @property
    def exit_code(self) -> int:
        return EXIT_SIGINT if self.name == "SIGINT" else EXIT_PREEMPTED

    def message(self, step: int) -> str:
        return f"stopped by {self.name} at step {step}; resume with --resume"
