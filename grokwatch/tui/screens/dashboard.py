"""The main screen: the runs table, the sweep grid and the alarm feed.

``tab`` cycles the three views; ``r``, ``g`` and ``a`` go to one directly.
``/`` opens the filter line under the view.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Input

from ..filtering import parse_filter
from ..model import PHASE_ORDER, SweepModel
from ..widgets.alarm_feed import AlarmFeed
from ..widgets.runs_table import RunsTable
from ..widgets.status_bar import StatusBar
from ..widgets.sweep_grid import SweepGrid

VIEWS = ("runs", "grid", "alarms")


class DashboardScreen(Screen):
    BINDINGS = [
        Binding("tab", "next_view", "Next view", show=False, id="dashboard.next_view"),
        Binding("shift+tab", "previous_view", "Previous view", show=False, id="dashboard.previous_view"),
        Binding("r", "show_view('runs')", "Runs", show=False, id="dashboard.runs"),
        Binding("g", "show_view('grid')", "Grid", id="dashboard.grid"),
        Binding("a", "show_view('alarms')", "Alarms", id="dashboard.alarms"),
        Binding("slash", "filter", "Filter", id="dashboard.filter"),
        Binding("p", "cycle_phase", "Filter by phase", show=False, id="dashboard.phase_filter"),
        Binding("w", "cycle_wd", "Filter by weight decay", show=False, id="dashboard.wd_filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="dashboard.clear_filter"),
    ]

    def __init__(self, host: str, columns: tuple[str, ...], sort: str, reverse: bool, cursor_blink: bool = True) -> None:
        super().__init__()
        self.host = host
        self._columns, self._sort, self._reverse = columns, sort, reverse
        self._cursor_blink = cursor_blink
        self.view = "runs"
        self.model: SweepModel | None = None
        self.ready = False  # composed and mounted: models can be applied

    def compose(self) -> ComposeResult:
        yield StatusBar(self.host, id="status")
        with Vertical(id="body"):
            with ContentSwitcher(initial="runs", id="views"):
                yield RunsTable(self._columns, self._sort, self._reverse, id="runs")
                yield SweepGrid(id="grid")
                yield AlarmFeed(id="alarms")
            filt = Input(placeholder="filter: phase:mem wd:1 seed:3 has:alarm text", id="filter")
            filt.cursor_blink = self._cursor_blink
            yield filt
        yield Footer(compact=True, show_command_palette=False)

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    @property
    def grid(self) -> SweepGrid:
        return self.query_one(SweepGrid)

    @property
    def feed(self) -> AlarmFeed:
        return self.query_one(AlarmFeed)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.table.focus()
        self.ready = True
        if self.app.model is not None:  # a model that arrived while composing
            self.update_model(self.app.model)
        self._status()

    # -- model -------------------------------------------------------------------------
    def update_model(self, model: SweepModel) -> None:
        self.model = model
        self.table.update_model(model)
        self.grid.update_model(model, visible=self.view == "grid")
        self.feed.update_model(model, visible=self.view == "alarms")
        self._status()

    def _status(self) -> None:
        self.query_one(StatusBar).update_state(
            self.model, view=self.view, filter_text=self.table.filter.text, shown=len(self.table.visible_ids),
            now=self.app.now(),
        )

    def tick(self) -> None:
        """Once a second: only the 'updated N s ago' text changes."""
        self._status()

    # -- views -------------------------------------------------------------------------
    def action_show_view(self, view: str) -> None:
        if view not in VIEWS:
            return
        if view != self.view:
            if view == "grid" and self.table.selected_run_id:
                self.grid.select_run(self.table.selected_run_id)
            elif view == "runs" and self.view == "grid" and self.grid.selected_run_id:
                self.table.select_run(self.grid.selected_run_id)
        self.view = view
        self.query_one(ContentSwitcher).current = view
        self.set_focus(self.query_one(f"#{view}"))
        self._status()

    def action_next_view(self) -> None:
        self.action_show_view(VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)])

    def action_previous_view(self) -> None:
        self.action_show_view(VIEWS[(VIEWS.index(self.view) - 1) % len(VIEWS)])

    # -- filter ------------------------------------------------------------------------
    def action_filter(self) -> None:
        if self.view != "runs":
            self.action_show_view("runs")
        inp = self.query_one("#filter", Input)
        inp.display = True
        self.set_focus(inp)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self._close_filter()

    def apply_filter(self, text: str) -> None:
        f = parse_filter(text)
        self.table.set_filter(f)
        if f.errors:
            self.notify("; ".join(f.errors), severity="warning", timeout=3)
        self._status()

    def set_filter_text(self, text: str) -> None:
        inp = self.query_one("#filter", Input)
        inp.value = text
        inp.display = bool(text)
        self.apply_filter(text)

    def _close_filter(self) -> None:
        inp = self.query_one("#filter", Input)
        inp.display = bool(inp.value)
        self.set_focus(self.query_one(f"#{self.view}"))

    def action_clear_filter(self) -> None:
        inp = self.query_one("#filter", Input)
        if inp.has_focus:
            self._close_filter()
            return
        if inp.value:
            self.set_filter_text("")

    def _cycle(self, key: str, values: list[str]) -> None:
        words = self.table.filter.text.split()
        current = next((w.split(":", 1)[1] for w in words if w.startswith(key + ":")), None)
        rest = [w for w in words if not w.startswith(key + ":")]
        options = [None, *values]
        i = options.index(current) if current in options else 0
        nxt = options[(i + 1) % len(options)]
        self.set_filter_text(" ".join(rest + ([f"{key}:{nxt}"] if nxt else [])))

    def action_cycle_phase(self) -> None:
        if self.model is None:
            return
        present = {r.phase for r in self.model.rows}
        self._cycle("phase", [p for p in PHASE_ORDER if p in present])

    def action_cycle_wd(self) -> None:
        if self.model is None:
            return
        self._cycle("wd", [f"{w:g}" for w in self.model.weight_decays() if w is not None])
