"""The runs table: every run of the sweep, sortable and filterable.

Rows are keyed by run id. A new model re-renders only the rows whose cells
changed (:class:`~grokwatch.tui.widgets.line_table.LineTable`); the order is
recomputed only when the visible set or a sort value changes, and the cursor
then stays on the same run (never on the same row index).
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from ..columns import COLUMNS, Column, sort_rows
from ..filtering import RunFilter
from ..messages import OpenRun
from ..model import SweepModel
from .filter_line import RoutesFilterKeys
from .line_table import LineTable

MARK = Text("●", style="bold #ff7f0e")


class RunsTable(RoutesFilterKeys, LineTable):
    BINDINGS = [
        Binding("j", "cursor(1)", "Down", show=False, id="runs.down"),
        Binding("k", "cursor(-1)", "Up", show=False, id="runs.up"),
        Binding("enter", "open", "Detail", id="runs.open"),
        Binding("s", "sort_next", "Sort", id="runs.sort_next"),
        Binding("S", "sort_reverse", "Reverse sort", show=False, id="runs.sort_reverse"),
        Binding("space", "toggle_mark", "Mark", show=False, id="runs.mark"),
        Binding("o", "overlay", "Overlay", id="runs.overlay"),
        Binding("M", "clear_marks", "Clear marks", show=False, id="runs.clear_marks"),
    ]

    def __init__(self, columns: tuple[str, ...], sort: str = "run", reverse: bool = False, **kw) -> None:
        super().__init__(**kw)
        self.column_specs: list[Column] = [COLUMNS[c] for c in columns if c in COLUMNS]
        self.sort_key = sort if sort in COLUMNS and COLUMNS[sort].sort else "run"
        self.reverse = reverse
        self.filter = RunFilter()
        self.marked: set[str] = set()
        self.model: SweepModel | None = None
        self.rebuilds = 0  # order recomputations that changed the rows shown
        self.cell_updates = 0  # rows whose cells were formatted again

    def on_mount(self) -> None:
        self.set_columns(
            [
                (c.key, self._label(c), self._width(c), c.width if c.key == "mark" else c.max_width)
                for c in self.column_specs
            ]
        )

    # -- public ------------------------------------------------------------------
    @property
    def selected_run_id(self) -> str | None:
        return self.cursor_key

    @property
    def visible_ids(self) -> list[str]:
        return self.row_keys

    def select_run(self, run_id: str) -> bool:
        """Move the cursor to ``run_id``; False when it is not visible."""
        return self.move_to_key(run_id)

    def set_filter(self, f: RunFilter) -> None:
        self.filter = f
        self._apply()

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        if key not in COLUMNS or COLUMNS[key].sort is None:
            return
        self.sort_key = key
        if reverse is not None:
            self.reverse = reverse
        for c in self.column_specs:  # only the header changes: row lines stay cached
            if self.label(c.key) != self._label(c):
                self.set_label(c.key, self._label(c))
        self._apply()

    def update_model(self, model: SweepModel) -> None:
        prev, self.model = self.model, model
        self._apply(model.changed_since(prev))

    # -- drawing -------------------------------------------------------------------
    def _label(self, col: Column) -> str:
        if col.key == self.sort_key:
            return f"{col.label}{'▼' if self.reverse else '▲'}"
        return col.label

    @staticmethod
    def _width(col: Column) -> int:
        return col.width if col.key == "mark" else max(col.width, len(col.label) + 1)  # +1: the sort arrow

    def _row_cells(self, run_id: str) -> list:
        # Only for runs of the current model (_apply and _redraw_marks check).
        assert self.model is not None
        row = self.model.row(run_id)
        assert row is not None
        self.cell_updates += 1
        return [(MARK if run_id in self.marked else " ") if c.key == "mark" else c.cell(row) for c in self.column_specs]

    def _apply(self, changed: set[str] | None = None) -> None:
        if self.model is None:
            return
        rows = [r for r in self.model.rows if self.filter.matches(r)]
        ids = [r.run_id for r in sort_rows(rows, self.sort_key, self.reverse)]
        if ids != self.row_keys:
            self.rebuilds += 1
        self.set_rows(ids, self._row_cells, changed if changed is not None else ids)

    def _redraw_marks(self, run_ids) -> None:
        for rid in run_ids:
            if self.model is not None and self.model.row(rid) is not None and rid in self.row_keys:
                self.update_row(rid, self._row_cells(rid))

    # -- actions -------------------------------------------------------------------
    def action_open(self) -> None:
        rid = self.selected_run_id
        if rid is not None:
            self.post_message(OpenRun((rid,)))

    def action_sort_next(self) -> None:
        keys = [c.key for c in self.column_specs if c.sort is not None]
        if not keys:
            return
        i = keys.index(self.sort_key) if self.sort_key in keys else -1
        self.set_sort(keys[(i + 1) % len(keys)])

    def action_sort_reverse(self) -> None:
        self.set_sort(self.sort_key, not self.reverse)

    def action_toggle_mark(self) -> None:
        rid = self.selected_run_id
        if rid is None:
            return
        self.marked.symmetric_difference_update({rid})
        self._redraw_marks([rid])
        self.action_cursor(1)

    def action_clear_marks(self) -> None:
        old, self.marked = self.marked, set()
        self._redraw_marks(old)

    def action_overlay(self) -> None:
        ids = [r for r in self.row_keys if r in self.marked] or sorted(self.marked)
        if not ids:
            rid = self.selected_run_id
            if rid is None:
                self.notify("Mark runs with space, then press o to overlay them", severity="warning")
                return
            ids = [rid]
        self.post_message(OpenRun(tuple(ids)))
