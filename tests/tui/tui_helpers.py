"""Helpers for the dashboard tests: screen text, settling, and a tmux driver.

:class:`Tmux` is ``/work/shared/recipes/tui-in-tmux.sh`` in Python: the app
runs in a detached tmux pane of a fixed size on a private server socket (it
never touches a developer's tmux), keys go in with ``send-keys``, the screen
comes back as text with ``capture-pane``. After the app exits the pane prints
``[exited rc=N]`` and lingers, so a traceback and the exit code can be read.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import replace

import pytest

from grokwatch.tui.config import TuiConfig


def frozen_config(**overrides) -> TuiConfig:
    """The test configuration: frozen clock and host, no following, no blinking.

    Heartbeats are judged by the watcher on the real clock: the simulated
    stalled run is an hour old, the others fresh; a 30 min stall timeout keeps
    that true however long the test session runs.
    """
    return replace(TuiConfig.for_tests(), **{"stall_timeout": 1800.0, **overrides})


def screen_text(app) -> str:
    """Every line of the active screen as plain text (what a person would read)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)


async def settle(app, pilot) -> None:
    """Wait until workers (sweep reads, curve loads) are done and the screen is drawn."""
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()


def unavailable(reason: str):
    """Skip with ``reason``, or fail when GROKWATCH_REQUIRE_INFRA=1."""
    if os.environ.get("GROKWATCH_REQUIRE_INFRA") == "1":
        pytest.fail(f"{reason} (GROKWATCH_REQUIRE_INFRA=1: required infrastructure is missing)", pytrace=False)
    print(f"SKIP: {reason}")
    pytest.skip(reason)


class Tmux:
    def __init__(self, name: str, cols: int = 80, rows: int = 24):
        self.tmux = shutil.which("tmux")
        if self.tmux is None:
            unavailable("tmux is not installed (scripts/system-deps.sh installs it)")
        self.socket = f"grokwatch-tests-{os.getpid()}-{name}"  # a server per session: no reuse races
        self.name, self.cols, self.rows = name, cols, rows

    def _t(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        if check and out.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed (exit {out.returncode}): {out.stderr.strip()}")
        return out

    def start(self, command: str, env: dict[str, str] | None = None) -> None:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # COLUMNS and LINES (pytest's process has them: 80 and 24) would override the
        # pane's real size for Textual: the app must see the terminal it runs in.
        line = (
            f"unset COLUMNS LINES; {'export ' + exports + '; ' if exports else ''}{command}; "
            f'echo "[exited rc=$?]"; sleep 600'
        )
        self._t("new-session", "-d", "-s", self.name, "-x", str(self.cols), "-y", str(self.rows), line)
        self._t("set", "-s", "escape-time", "0")  # tmux holds Escape for 500 ms otherwise

    def screen(self) -> str:
        return self._t("capture-pane", "-p", "-t", self.name).stdout

    def wait(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on screen after {timeout:.0f} s; screen is:\n{screen}")
            time.sleep(0.1)

    def wait_gone(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text not in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} still on screen after {timeout:.0f} s; screen is:\n{screen}")
            time.sleep(0.1)

    def keys(self, *keys: str) -> None:
        # One at a time: "Escape" followed at once by a key reads as Alt+key
        # (and can still, on a loaded machine: wait for Escape's effect first).
        for key in keys:
            self._t("send-keys", "-t", self.name, key)
            time.sleep(0.15 if key in ("Escape", "Esc") else 0.02)

    def type(self, text: str) -> None:
        self._t("send-keys", "-t", self.name, "-l", text)

    def stop(self) -> None:
        self._t("kill-server", check=False)


def drive(app, script, size: tuple[int, int] = (100, 30)):
    """Run ``await script(app, pilot)`` against the app (headless) and return its result."""
    import asyncio

    async def main():
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            return await script(app, pilot)

    return asyncio.run(main())
