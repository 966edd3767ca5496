"""The main screen: the runs table, the sweep grid and the alarm feed.

``tab`` cycles the three views; ``r``, ``g`` and ``a`` go to one directly.
``/`` opens the filter line under the view.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher

from ..dashboard_app import dashboard_app
from ..filtering import parse_filter
from ..model import PHASE_ORDER, SweepModel
from ..widgets.alarm_feed import AlarmFeed
from ..widgets.filter_line import FilterLine
from ..widgets.key_bar import KeyBar
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

    def __init__(self, host: str, columns: tuple[str, ...], sort: str, reverse: bool) -> None:
        super().__init__()
        self.host = host
        self._columns, self._sort, self._reverse = columns, sort, reverse
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
            yield FilterLine(id="filter")
        yield KeyBar()

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
        self.query_one(FilterLine).display = False
        self.table.focus()
        self.ready = True
        model = dashboard_app(self).model
        if model is not None:  # a model that arrived while composing
            self.update_model(model)
        self._status()

    def on_unmount(self) -> None:
        self.ready = False

    def on_screen_resume(self) -> None:
        # Back from the detail or help screen: repaint now. Without this, the
        # first paint of the dashboard waited for the next model or clock tick
        # (0.2-0.7 s, bench/tui_refresh.py), though the screen was current.
        self.refresh(layout=True)
        self.table.refresh()

    # -- model -------------------------------------------------------------------------
    def update_model(self, model: SweepModel) -> None:
        self.model = model
        self.table.update_model(model)
        self.grid.update_model(model, visible=self.view == "grid")
        self.feed.update_model(model, visible=self.view == "alarms")
        self._status()

    def _status(self) -> None:
        self.query_one(StatusBar).update_state(
            self.model,
            view=self.view,
            filter_text=self.table.filter.text,
            shown=len(self.table.visible_ids),
            now=dashboard_app(self).now(),
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
    @property
    def filtering(self) -> bool:
        return self.query_one(FilterLine).editing

    def _filter_keys(self) -> set[str]:
        keys = self.app._keymap.get("dashboard.filter") if hasattr(self.app, "_keymap") else None
        return set((keys or "slash").split(","))

    def filter_key(self, event: events.Key) -> bool:
        """Called by the focused view for every key; True when the filter took it.

        Runs in the view's own handler, so the editing state is set before the
        view handles the next key, however fast they come.
        """
        line = self.query_one(FilterLine)
        if not line.editing:
            if event.key in self._filter_keys():
                self.action_filter()
                return True
            return False
        key = event.key
        if key in ("enter", "escape", "tab"):
            line.show(line.text, editing=False)
        elif key == "backspace":
            self.apply_filter(line.text[:-1], editing=True)
        elif key == "ctrl+u":
            self.apply_filter("", editing=True)
        elif event.is_printable and event.character:
            self.apply_filter(line.text + event.character, editing=True)
        else:
            return False  # arrows and the like still move the cursor
        return True

    def action_filter(self) -> None:
        if self.view != "runs":
            self.action_show_view("runs")
        line = self.query_one(FilterLine)
        line.show(line.text, editing=True)

    def apply_filter(self, text: str, editing: bool | None = None) -> None:
        f = parse_filter(text)
        self.table.set_filter(f)
        line = self.query_one(FilterLine)
        line.show(text, line.editing if editing is None else editing)
        if f.errors:
            self.notify("; ".join(f.errors), severity="warning", timeout=3)
        self._status()

    def set_filter_text(self, text: str) -> None:
        self.apply_filter(text, editing=False)

    def action_clear_filter(self) -> None:
        if self.table.filter.text:
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
