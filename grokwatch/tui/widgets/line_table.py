"""A keyboard-driven table that repaints only rows that changed (base of the runs table and the alarm feed).

Textual's DataTable re-renders every visible row whenever any cell changes
(its render caches are keyed by a global update count), which costs tens of
milliseconds a refresh at 160x48 when 90 runs tick each second. Here each
row's line is rendered once into a :class:`Strip` and cached under the row's
key until that row changes; a repaint crops cached strips to the viewport.
Rows are identified by key, so the cursor follows a row when the order
changes. The header stays on the first line; columns scroll sideways.

A column is at least its given width and grows to fit its widest cell (up to
its maximum), so no cell is silently cut; a cell longer than the maximum is
shortened with an ellipsis. Columns only grow (no jitter as values change).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = "str | Text"
PAD = 1  # blank cells each side of a column
ELLIPSIS = "…"


def _plain(cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class LineTable(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"line-table--header", "line-table--cursor"}
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False, id="table.up"),
        Binding("down", "cursor(1)", "Down", show=False, id="table.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="table.page_down"),
        Binding("home", "cursor_to(0)", "First row", show=False, id="table.first"),
        Binding("end", "cursor_to(-1)", "Last row", show=False, id="table.last"),
        Binding("left", "scroll_columns(-8)", "Scroll left", show=False, id="table.left"),
        Binding("right", "scroll_columns(8)", "Scroll right", show=False, id="table.right"),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=True, init=False)

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._columns: list[tuple[str, str, int]] = []  # key, label, width (as now)
        self._max: dict[str, int] = {}  # key -> the most a column grows to fit its cells
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self._cells: dict[str, list] = {}
        self._strips: dict[str, Strip] = {}
        self._header: Strip | None = None
        self._styles_key: tuple[str, Style] | None = None  # (theme, base style) the styles below are for
        self._base = self._head_style = self._cursor_style = Style()
        self.rows_rendered = 0  # row lines rendered (the benchmark and tests read it)

    # -- columns and rows --------------------------------------------------------------
    def set_columns(self, columns: Sequence[tuple]) -> None:
        """``(key, label, width)`` or ``(key, label, width, max_width)``: at least
        ``width`` cells, growing to fit the widest cell up to ``max_width``
        (default: ``width``, a fixed column)."""
        self._columns = [(c[0], c[1], c[2]) for c in columns]
        self._max = {c[0]: max(c[2], c[3] if len(c) > 3 else c[2]) for c in columns}
        self._fit(list(self._cells.values()))
        self._strips.clear()
        self._header = None
        self._resize_virtual()
        self.refresh()

    def set_label(self, key: str, label: str) -> None:
        self._columns = [(k, label if k == key else lab, w) for k, lab, w in self._columns]
        self._header = None
        self.refresh(Region(0, 0, self.size.width, 1))

    @property
    def column_keys(self) -> list[str]:
        return [k for k, _, _ in self._columns]

    def label(self, key: str) -> str:
        return next(lab for k, lab, _ in self._columns if k == key)

    @property
    def row_keys(self) -> list[str]:
        return list(self._keys)

    @property
    def row_count(self) -> int:
        return len(self._keys)

    @property
    def cursor_key(self) -> str | None:
        return self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None

    def get_cell(self, key: str, column: str):
        return self._cells[key][self.column_keys.index(column)]

    def width(self, column: str) -> int:
        return next(w for k, _, w in self._columns if k == column)

    def _fit(self, rows: Sequence[list]) -> bool:
        """Grow columns to fit ``rows``' cells (up to their maximum); True if one grew."""
        grew = False
        for i, (k, lab, w) in enumerate(self._columns):
            top = self._max.get(k, w)
            if w >= top:
                continue
            need = max((cell_len(_plain(cells[i])) for cells in rows if i < len(cells)), default=0)
            if need > w:
                self._columns[i] = (k, lab, min(need, top))
                grew = True
        if grew:
            self._strips.clear()
            self._header = None
            self._resize_virtual()
            self.refresh()
        return grew

    def set_rows(self, keys: Sequence[str], cells: Callable[[str], list], changed: Iterable[str] = ()) -> None:
        """Show rows ``keys`` in this order. ``cells(key)`` is asked for rows that are
        new or in ``changed`` only; every other row keeps its cached line."""
        keep = self.cursor_key
        index = self.cursor_row
        keys = list(keys)
        order_changed = keys != self._keys
        changed = set(changed)
        fresh = []
        for k in keys:
            if k not in self._cells or k in changed:
                new = cells(k)
                if self._cells.get(k) != new:
                    self._cells[k] = new
                    self._strips.pop(k, None)
                    changed.add(k)
                    fresh.append(new)
                else:
                    changed.discard(k)
        self._fit(fresh)
        if order_changed:
            gone = set(self._keys) - set(keys)
            for k in gone:
                self._cells.pop(k, None)
                self._strips.pop(k, None)
            self._keys = keys
            self._index = {k: i for i, k in enumerate(keys)}
            self._resize_virtual()
            if keep in self._index:
                row = self._index[keep]
            else:
                row = min(max(index, 0), max(len(keys) - 1, 0))
            self.set_cursor(row)
            self.refresh()
            return
        for k in changed:
            self._refresh_key(k)

    def update_row(self, key: str, cells: list) -> None:
        if key in self._index and self._cells.get(key) != cells:
            self._cells[key] = cells
            self._strips.pop(key, None)
            if not self._fit([cells]):
                self._refresh_key(key)

    def set_cursor(self, row: int) -> None:
        row = min(max(row, 0), max(len(self._keys) - 1, 0))
        self.cursor_row = row

    def move_to_key(self, key: str) -> bool:
        if key not in self._index:
            return False
        self.set_cursor(self._index[key])
        return True

    # -- geometry ------------------------------------------------------------------------
    @property
    def total_width(self) -> int:
        return sum(w + 2 * PAD for _, _, w in self._columns)

    def _resize_virtual(self) -> None:
        self.virtual_size = Size(self.total_width, len(self._keys) + 1)

    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _refresh_key(self, key: str) -> None:
        i = self._index.get(key)
        if i is None:
            return
        y = i - int(self.scroll_y) + 1
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        top = int(self.scroll_y)
        h = self._body_height()
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + h:
            self.scroll_to(y=new - h + 1, animate=False, immediate=True)
        for row in (old, new):
            if 0 <= row < len(self._keys):
                self._refresh_key(self._keys[row])

    # -- actions ---------------------------------------------------------------------------
    def action_cursor(self, delta: int) -> None:
        self.set_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.set_cursor(self.cursor_row + direction * self._body_height())

    def action_cursor_to(self, row: int) -> None:
        self.set_cursor(len(self._keys) - 1 if row < 0 else row)

    def action_scroll_columns(self, cells: int) -> None:
        self.scroll_to(x=max(0, int(self.scroll_x) + cells), animate=False)

    def on_click(self, event: events.Click) -> None:
        row = event.y - 1 + int(self.scroll_y)
        if event.y >= 1 and 0 <= row < len(self._keys):
            self.set_cursor(row)

    # -- rendering -------------------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        # Styles are looked up once per paint, not once per line.
        base = self.rich_style
        key = (self.app.theme, base)
        if key != self._styles_key:
            self._styles_key = key
            self._strips.clear()
            self._header = None
            self._base = base
            self._head_style = base + self.get_component_rich_style("line-table--header", partial=True)
            self._cursor_style = base + self.get_component_rich_style("line-table--cursor", partial=True)
        return super().render_lines(crop)

    def _render_cells(self, cells: Sequence, base: Style) -> Strip:
        segs = []
        pad = " " * PAD
        for (_, _, width), cell in zip(self._columns, cells):
            style: Style | None
            if isinstance(cell, Text):
                plain = cell.plain
                if isinstance(cell.style, str):
                    style = Style.parse(cell.style) if cell.style else None
                else:
                    style = cell.style
            else:
                plain, style = str(cell), None
            n = cell_len(plain)
            if n <= width:
                body = plain + " " * (width - n)
            else:  # longer than the column's maximum: shortened, visibly
                body = plain[: max(0, width - 1)] + ELLIPSIS if width > 0 else ""
            segs.append(Segment(pad, base))
            segs.append(Segment(body, base + style if style else base))
            segs.append(Segment(pad, base))
        self.rows_rendered += 1
        return Strip(segs, self.total_width)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x = int(self.scroll_x)
        base = self._base
        if y == 0:
            if self._header is None:
                self._header = self._render_cells([lab for _, lab, _ in self._columns], self._head_style)
            return self._header.crop_extend(scroll_x, scroll_x + width, base)
        i = y - 1 + int(self.scroll_y)
        if not (0 <= i < len(self._keys)):
            return Strip.blank(width, base)
        key = self._keys[i]
        if i == self.cursor_row:  # drawn fresh: one row
            cursor = self._cursor_style
            return self._render_cells(self._cells[key], cursor).crop_extend(scroll_x, scroll_x + width, cursor)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = self._render_cells(self._cells[key], base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def on_resize(self) -> None:
        self._resize_virtual()
