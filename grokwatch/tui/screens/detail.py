"""One run's curves (or several runs overlaid), with event markers.

The curves are read, smoothed and assembled in a worker
(``source.series``); the screen only lays out the panels and hands each
its data. While the run is live, a model update that touches it reloads the
curves (at most once per ``min_reload`` seconds).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from ..columns import _step_total, pred_detail
from ..dashboard_app import dashboard_app
from ..messages import SeriesReady
from ..model import DetailPlot, SweepModel
from ..style import MARKER_STYLE, palette, phase_badge, state_text
from ..widgets.key_bar import KeyBar
from ..widgets.plot import Plot

PANEL_KEYS = ("acc", "loss", "wnorm", "gnorm", "alpha", "h0", "h0n")


class DetailScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="detail.back"),
        Binding("j,down", "scroll(1)", "Scroll down", show=False, id="detail.down"),
        Binding("k,up", "scroll(-1)", "Scroll up", show=False, id="detail.up"),
        Binding("pagedown,space", "scroll(8)", "Page down", show=False, id="detail.page_down"),
        Binding("pageup", "scroll(-8)", "Page up", show=False, id="detail.page_up"),
        Binding("n", "neighbour(1)", "Next run", id="detail.next"),
        Binding("N", "neighbour(-1)", "Previous run", show=False, id="detail.previous"),
    ]

    min_reload = 1.0

    def __init__(self, run_ids: tuple[str, ...], smoothing: float = 0.0) -> None:
        super().__init__()
        self.run_ids = tuple(run_ids)
        self.smoothing = smoothing
        self.series: DetailPlot | None = None
        self.loads = 0
        self._last_load = 0.0
        self._pending = False

    @property
    def overlay(self) -> bool:
        return len(self.run_ids) > 1

    def compose(self) -> ComposeResult:
        yield Static(id="detail-header")
        with VerticalScroll(id="plots"):
            with Grid(id="plot-grid"):
                for key in PANEL_KEYS:
                    yield Plot(id=f"plot-{key}")
        yield KeyBar()

    def on_mount(self) -> None:
        self._header()
        # After the first paint: the screen shows at once, and reading the curves
        # (a worker thread, sharing the GIL) does not delay it.
        self.call_after_refresh(self.load)

    def on_screen_resume(self) -> None:
        self.refresh(layout=True)  # paint at once when pushed again (see DashboardScreen.on_screen_resume)

    def retarget(self, run_ids: tuple[str, ...]) -> None:
        """Show other runs. The app keeps one detail screen and re-pushes it, so
        opening a run costs a data load, not composing seven plots again."""
        self.run_ids = tuple(run_ids)
        self.series = None
        if not self.is_mounted:
            return  # on_mount loads
        for key in PANEL_KEYS:
            self.query_one(f"#plot-{key}", Plot).clear()
        self.query_one("#plots", VerticalScroll).scroll_home(animate=False)
        self._header()
        self.load()

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        self._last_load = time.monotonic()
        self._pending = False
        self.loads += 1
        self._load(self.run_ids)

    @work(thread=True, exclusive=True, group="series")
    def _load(self, run_ids: tuple[str, ...]) -> None:
        series = dashboard_app(self).source.series(run_ids, self.smoothing)
        self.post_message(SeriesReady(series, run_ids))

    def on_series_ready(self, msg: SeriesReady) -> None:
        if msg.request != self.run_ids:
            return
        self.series = msg.series
        s = msg.series
        for key in PANEL_KEYS:
            plot = self.query_one(f"#plot-{key}", Plot)
            panel = s.panel(key)
            plot.display = panel is not None
            if panel is not None:
                markers = s.markers
                plot.set_data(panel, markers, s.x_range)
        self._header()
        self.refresh()  # paint the curves now, not at the next message the screen gets

    def update_model(self, model: SweepModel, changed: set[str]) -> None:
        """A new sweep model: reload if one of our runs changed (rate limited)."""
        if not changed.intersection(self.run_ids):
            return
        if time.monotonic() - self._last_load >= self.min_reload:
            self.load()
        elif not self._pending:
            self._pending = True
            self.set_timer(self.min_reload, self._reload_pending)
        self._header()

    def _reload_pending(self) -> None:
        if self._pending:
            self.load()

    # -- header ----------------------------------------------------------------------------
    def _header(self) -> None:
        model = dashboard_app(self).model
        t = Text(no_wrap=False)
        if self.overlay:
            t.append("overlay ", style="bold")
            for i, rid in enumerate(self.run_ids):
                t.append("━ ", style=palette(i))
                t.append(rid + "  ")
            t.append("\n")
            t.append("val acc, train loss, norms, min alpha, H0 entropy per run; ┆ t_grok ┊ predicted", style="dim")
        else:
            rid = self.run_ids[0]
            r = model.row(rid) if model else None
            t.append(f"{rid} ", style="bold")
            if r is not None:
                t.append_text(phase_badge(r.phase, pad=True))
                if r.state:
                    t.append(" ")
                    t.append_text(Text.assemble(state_text(r.state)))
                t.append(f"  step {_step_total(r)}")
                if r.weight_decay is not None:
                    t.append(f"  wd {r.weight_decay:g}")
                if r.seed is not None:
                    t.append(f"  seed {r.seed}")
                t.append(f"  t_mem {r.t_mem if r.t_mem is not None else '-'}")
                t.append(f"  t_grok {r.t_grok if r.t_grok is not None else '-'}")
                t.append(f"  pred {pred_detail(r)}")
                if r.restarts:
                    t.append(f"  restarts {r.restarts}")
                if r.alarms:
                    t.append("  alarms: " + ", ".join(r.alarms), style="bold #d62728")
            t.append("\n")
            for kind, label in (
                ("t_mem", "t_mem"),
                ("t_grok", "t_grok"),
                ("alarm", "alarm"),
                ("predicted", "predicted"),
                ("band", "80% interval"),
                ("restart", "restart"),
            ):
                ch, color = MARKER_STYLE[kind]
                t.append(f"{ch} {label}  ", style=color)
        if self.series is None:
            t.append("   reading curves ...", style="italic")
        self.query_one("#detail-header", Static).update(t)

    # -- actions ---------------------------------------------------------------------------
    def action_scroll(self, lines: int) -> None:
        self.query_one("#plots", VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_neighbour(self, delta: int) -> None:
        """Next / previous run in the runs table's order (single-run view)."""
        order = dashboard_app(self).table_order()
        if self.overlay or not order:
            return
        rid = self.run_ids[0]
        i = order.index(rid) if rid in order else -1
        nxt = order[(i + delta) % len(order)]
        self.run_ids = (nxt,)
        self.series = None
        dashboard_app(self).select_run(nxt)
        self._header()
        self.load()
