"""The dashboard app, built by :func:`make_app` (the CLI and the tests alike).

Data flow (nvitop's and toolong's shape)::

    watcher thread (grokwatch.watch) --on_change--> ModelFeed thread
        builds a SweepModel (off the UI thread), at most every `redraw` s
        --post ModelReady (can_replace)--> app --> the screens update only
        what changed

With ``config.follow`` off (the test configuration) there are no threads:
the sweep is read once in a worker and the clock and host name are frozen.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from textual import events, work
from textual.app import App
from textual.binding import Binding

from grokwatch.runs.defaults import STALL_TIMEOUT
from grokwatch.watch.quiet import QuietWindow

from .config import TuiConfig
from .dashboard_app import DashboardApp
from .help import help_markdown
from .messages import JumpToAlarm, ModelReady, OpenRun, SourceFailed
from .model import ModelFeed, SweepModel
from .screens.dashboard import DashboardScreen
from .screens.detail import DetailScreen
from .screens.help import HelpScreen
from .source import SweepSource, WatcherUnavailable, resolve_sweep
from .widgets.alarm_feed import AlarmFeed
from .widgets.line_table import LineTable
from .widgets.runs_table import RunsTable
from .widgets.sweep_grid import SweepGrid


class GrokwatchApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "grokwatch"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="app.quit_ctrl_c"),
        Binding("question_mark", "help", "Help, legend", id="app.help"),
        Binding("ctrl+r", "reload", "Reload now", show=False, id="app.reload"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    def __init__(self, source: SweepSource, config: TuiConfig | None = None, quiet: QuietWindow | None = None) -> None:
        super().__init__()
        self.source = source
        self._models_in_flight = 0  # ModelReady posted by the feed thread, not yet handled
        self._in_flight_lock = threading.Lock()
        # Key presses open it; the source's thread and the model feed step aside
        # while it is held (make_app hands its pause to the source).
        self.quiet = quiet or QuietWindow()
        self.config = config or TuiConfig()
        self.model: SweepModel | None = None
        self.host = self.config.hostname or socket.gethostname().split(".")[0]
        self.feed: ModelFeed[SweepModel] | None = None
        self.detail: DetailScreen | None = None  # one, re-pushed for every run opened
        self.refresh_seconds: list[float] = []  # UI-thread time per model applied
        self.models_applied = 0
        if not self.config.animations:
            self.animation_level = "none"

    # -- lifecycle ---------------------------------------------------------------------
    def now(self) -> float:
        return self.config.now()

    def get_default_screen(self) -> DashboardScreen:
        self.dashboard = DashboardScreen(self.host, self.config.columns, self.config.sort, self.config.reverse)
        return self.dashboard

    def on_mount(self) -> None:
        # The watcher, the feed and curve workers are Python threads sharing the
        # GIL with this one: hand it over every 1 ms instead of 5 ms, so a key
        # press never waits behind a watcher cycle for long.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, 0.001))
        if self.config.theme in self.available_themes:
            self.theme = self.config.theme
        if self.config.keys:
            self.set_keymap(dict(self.config.keys))
        self.sub_title = str(getattr(self.source, "sweep_dir", ""))
        if self.config.follow:
            self.feed = ModelFeed(
                self.source.model,
                self._post_model,
                min_interval=self.config.redraw,
                wait_ready=self._queue_drained,
                on_error=self._post_error,
                pause=self.quiet.pause,
            )
            self.feed.start()
            self.source.start(self.feed.notify)
            self.feed.notify()
            self.set_interval(1.0, self._tick)
        else:
            self.load_once()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self.quiet.hold()  # the background threads wait until this key has repainted
        await super().on_event(event)

    def on_unmount(self) -> None:
        if getattr(self, "_froze_gc", False):
            gc.unfreeze()  # a process that goes on (tests, an embedding app) can collect it again
        self.close_source()
        sys.setswitchinterval(getattr(self, "_switch_interval", sys.getswitchinterval()))

    def close_source(self) -> None:
        if self.feed is not None:
            self.feed.close()
        self.source.close()

    def _post_model(self, model: SweepModel) -> None:
        err = getattr(self.source, "error", None)
        if err is not None:
            self.post_message(SourceFailed(err))
            return
        with self._in_flight_lock:
            self._models_in_flight += 1
        self.post_message(ModelReady(model))

    def _post_error(self, exc: BaseException) -> None:
        self.post_message(SourceFailed(exc))

    def _queue_drained(self) -> bool:
        # Backpressure: hold the next model while the UI has not taken the last one
        # (the feed then posts the newest, never a backlog).
        with self._in_flight_lock:
            return self._models_in_flight == 0

    @work(thread=True, exclusive=True, group="load")
    def load_once(self) -> None:
        self.source.refresh()
        self.post_message(ModelReady(self.source.model()))

    def action_reload(self) -> None:
        if self.config.follow and self.feed is not None:
            req = getattr(self.source, "request_refresh", None)
            if req is not None:
                req()
            self.feed.notify()
        else:
            self.load_once()

    def _tick(self) -> None:
        if self.screen is self.dashboard:
            self.dashboard.tick()

    # -- model updates -----------------------------------------------------------------
    def on_model_ready(self, msg: ModelReady) -> None:
        with self._in_flight_lock:
            self._models_in_flight = max(0, self._models_in_flight - 1)
        t0 = time.perf_counter()
        prev, self.model = self.model, msg.model
        changed = msg.model.changed_since(prev)
        if not self.dashboard.ready or self._exit:
            return  # not mounted yet (it applies self.model when it mounts), or shutting down
        self.dashboard.update_model(msg.model)
        for screen in self.screen_stack:
            if isinstance(screen, DetailScreen):
                screen.update_model(msg.model, changed)
        self.models_applied += 1
        if self.models_applied == 1 and self.config.follow:
            # What the backfill built (run columns, widgets) lives as long as the
            # app: move it out of the collector's reach, so that full collections
            # scan only what came since and stay short (a full collection stops
            # every thread, the UI included, at any moment, e.g. mid-key press).
            gc.freeze()
            self._froze_gc = True
        self.refresh_seconds.append(time.perf_counter() - t0)

    def on_source_failed(self, msg: SourceFailed) -> None:
        raise RuntimeError(f"reading the sweep failed: {msg.error!r}") from msg.error

    # -- navigation --------------------------------------------------------------------
    def table_order(self) -> list[str]:
        return self.dashboard.table.visible_ids

    def select_run(self, run_id: str) -> None:
        self.dashboard.table.select_run(run_id)
        self.dashboard.grid.select_run(run_id)

    def open_detail(self, run_ids: tuple[str, ...]) -> None:
        if self.detail is None:
            self.detail = DetailScreen(run_ids, smoothing=self.config.smoothing)
            self.install_screen(self.detail, name="detail")  # installed: kept, not unmounted, when popped
        else:
            self.detail.retarget(run_ids)
        if self.detail in self.screen_stack:
            return
        self.push_screen("detail")

    def on_open_run(self, msg: OpenRun) -> None:
        if len(msg.run_ids) == 1:
            self.select_run(msg.run_ids[0])
        self.open_detail(msg.run_ids)

    def on_jump_to_alarm(self, msg: JumpToAlarm) -> None:
        rid = msg.alarm.run_id
        if self.model is None or self.model.row(rid) is None:
            self.notify(f"run {rid} is not in this sweep", severity="warning")
            return
        table = self.dashboard.table
        if rid not in table.visible_ids:
            self.dashboard.set_filter_text("")
        self.select_run(rid)  # the table follows (n / N in the detail walk its order)
        self.open_detail((rid,))  # the dashboard stays on the alarms: Esc comes back to them

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        sections = [
            ("Everywhere", GrokwatchApp),
            ("Dashboard", DashboardScreen),
            ("Runs table", RunsTable),
            ("Tables (runs, alarms)", LineTable),
            ("Sweep grid", SweepGrid),
            ("Alarm feed", AlarmFeed),
            ("Run detail", DetailScreen),
            ("Help", HelpScreen),
        ]
        self.push_screen(HelpScreen(help_markdown(sections, self.config.keys, self.get_key_display_name)))

    def get_key_display_name(self, key: str) -> str:
        names = {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc", "enter": "enter"}
        return names.get(key, key)


if TYPE_CHECKING:

    def _gives_the_screens_what_they_use(app: GrokwatchApp) -> DashboardApp:
        return app  # mypy checks that GrokwatchApp provides the DashboardApp protocol


log = logging.getLogger("grokwatch.tui")


def open_source(
    source: str | os.PathLike,
    *,
    stall_timeout: float = STALL_TIMEOUT,
    interval: float = 1.0,
    clock=time.time,
    pause=None,
    rules: str | os.PathLike | None = None,
) -> SweepSource:
    """The watcher's view of SOURCE (:class:`~grokwatch.tui.watcher_source.WatcherSource`).
    ``pause``: called by the watcher's thread between runs (the dashboard's
    :class:`grokwatch.watch.quiet.QuietWindow`), so key presses repaint first.
    ``rules``: a rules file merged over the defaults (as ``grokwatch alerts
    --rules``). Raises :class:`~grokwatch.tui.source.WatcherUnavailable` when
    the watcher does not import (with the reason): there is no other way to
    read a sweep."""
    sweep = resolve_sweep(source)
    try:
        from .watcher_source import WatcherSource
    except Exception as exc:  # a broken install or a bug in the watcher: say which, stop
        log.debug("importing the watcher failed", exc_info=True)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise WatcherUnavailable(f"the sweep watcher (grokwatch.watch) cannot be loaded: {reason}") from exc
    return WatcherSource(sweep, stall_timeout=stall_timeout, interval=interval, clock=clock, pause=pause, rules=rules)


def make_app(
    source: SweepSource | str | os.PathLike, config: TuiConfig | None = None, rules: str | os.PathLike | None = None
) -> GrokwatchApp:
    """The dashboard over SOURCE (a sweep directory, or a ready source object);
    ``rules``: a rules file merged over the defaults, as ``grokwatch alerts --rules``."""
    config = config or TuiConfig()
    quiet = QuietWindow()
    if isinstance(source, (str, os.PathLike, Path)):
        frozen = config.clock  # TuiConfig is frozen: read once here or at each call, the same value
        clock = (lambda: frozen) if frozen is not None else time.time
        source = open_source(
            source,
            stall_timeout=config.stall_timeout,
            interval=config.interval,
            clock=clock,
            pause=quiet.pause,
            rules=rules,
        )
    return GrokwatchApp(source, config, quiet=quiet)
