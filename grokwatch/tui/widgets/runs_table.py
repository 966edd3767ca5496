"""The runs table: every run of the sweep, sortable and filterable.

Rows are keyed by run id. A new model redraws only the cells that changed;
the rows are rebuilt only when the visible set or its order changes, and the
cursor then goes back to the same run (never to the same row index).
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from ..columns import COLUMNS, DASH, Column, sort_rows
from ..filtering import RunFilter
from ..messages import OpenRun
from ..model import RunRow, SweepModel
from .filter_line import RoutesFilterKeys


class RunsTable(RoutesFilterKeys, DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="runs.down"),
        Binding("k", "cursor_up", "Up", show=False, id="runs.up"),
        Binding("enter", "open", "Detail", id="runs.open"),
        Binding("s", "sort_next", "Sort", id="runs.sort_next"),
        Binding("S", "sort_reverse", "Reverse sort", show=False, id="runs.sort_reverse"),
        Binding("space", "toggle_mark", "Mark", show=False, id="runs.mark"),
        Binding("o", "overlay", "Overlay", id="runs.overlay"),
        Binding("M", "clear_marks", "Clear marks", show=False, id="runs.clear_marks"),
    ]

    def __init__(self, columns: tuple[str, ...], sort: str = "run", reverse: bool = False, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self.column_specs: list[Column] = [COLUMNS[c] for c in columns if c in COLUMNS]
        self.sort_key = sort if sort in COLUMNS and COLUMNS[sort].sort else "run"
        self.reverse = reverse
        self.filter = RunFilter()
        self.marked: set[str] = set()
        self.model: SweepModel | None = None
        self._order: list[str] = []
        self._drawn: dict[str, RunRow] = {}
        self.rebuilds = 0  # full rebuilds (tests and the benchmark read these)
        self.cell_updates = 0

    # -- public ------------------------------------------------------------------
    def on_mount(self) -> None:
        for col in self.column_specs:
            self.add_column(self._label(col), width=self._width(col), key=col.key)

    @property
    def selected_run_id(self) -> str | None:
        if not self._order or not (0 <= self.cursor_row < len(self._order)):
            return None
        return self._order[self.cursor_row]

    @property
    def visible_ids(self) -> list[str]:
        return list(self._order)

    def select_run(self, run_id: str) -> bool:
        """Move the cursor to ``run_id``; False when it is not visible."""
        if run_id not in self._order:
            return False
        self.move_cursor(row=self._order.index(run_id), animate=False)
        return True

    def set_filter(self, f: RunFilter) -> None:
        self.filter = f
        self._apply(force_order=True)

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        if key not in COLUMNS or COLUMNS[key].sort is None:
            return
        self.sort_key = key
        if reverse is not None:
            self.reverse = reverse
        for col in self.column_specs:
            self.columns[col.key].label = Text(self._label(col))
        self._apply(force_order=True)
        self.refresh()

    def update_model(self, model: SweepModel) -> None:
        self.model = model
        self._apply()

    # -- drawing -------------------------------------------------------------------
    def _label(self, col: Column) -> str:
        if col.key == self.sort_key:
            return f"{col.label}{'▼' if self.reverse else '▲'}"
        return col.label

    @staticmethod
    def _width(col: Column) -> int:
        return max(col.width, len(col.label) + 1)

    def _cell(self, col: Column, row: RunRow):
        if col.key == "mark":
            return Text("●", style="bold #ff7f0e") if row.run_id in self.marked else " "
        return col.cell(row)

    def _apply(self, force_order: bool = False) -> None:
        if self.model is None:
            return
        rows = [r for r in self.model.rows if self.filter.matches(r)]
        rows = sort_rows(rows, self.sort_key, self.reverse)
        ids = [r.run_id for r in rows]
        if ids != self._order or force_order:
            self._rebuild(rows)
            return
        specs = self.column_specs
        for r in rows:
            old = self._drawn.get(r.run_id)
            if old == r:
                continue
            for col in specs:
                new = self._cell(col, r)
                if old is not None and _same(self._cell(col, old), new):
                    continue
                self.update_cell(r.run_id, col.key, new)
                self.cell_updates += 1
            self._drawn[r.run_id] = r

    def _rebuild(self, rows: list[RunRow]) -> None:
        selected = self.selected_run_id
        index = self.cursor_row
        self.rebuilds += 1
        self.clear()
        specs = self.column_specs
        for r in rows:
            self.add_row(*(self._cell(c, r) for c in specs), key=r.run_id)
        self._order = [r.run_id for r in rows]
        self._drawn = {r.run_id: r for r in rows}
        if not rows:
            return
        if selected in self._order:
            self.move_cursor(row=self._order.index(selected), animate=False)
        else:
            self.move_cursor(row=min(max(index, 0), len(rows) - 1), animate=False)

    def _redraw_marks(self, run_ids) -> None:
        if "mark" not in self.columns:
            return
        mark = COLUMNS["mark"]
        for rid in run_ids:
            row = self._drawn.get(rid)
            if row is not None:
                self.update_cell(rid, "mark", self._cell(mark, row))

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
        if self.cursor_row < len(self._order) - 1:
            self.action_cursor_down()

    def action_clear_marks(self) -> None:
        old, self.marked = self.marked, set()
        self._redraw_marks(old)

    def action_overlay(self) -> None:
        ids = [r for r in self._order if r in self.marked] or [r for r in sorted(self.marked)]
        if not ids:
            rid = self.selected_run_id
            if rid is None:
                self.notify("Mark runs with space, then press o to overlay them", severity="warning")
                return
            ids = [rid]
        self.post_message(OpenRun(tuple(ids)))


def _same(a, b) -> bool:
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return a == b


__all__ = ["RunsTable", "DASH"]
