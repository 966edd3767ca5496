"""A plot panel drawn with braille dots (see :mod:`grokwatch.tui.canvas`).

The rasterized lines are cached per (size, data): scrolling and repaints cost
nothing; new data or a resize rasterizes once (about a millisecond per
100K-point series, since series are decimated per dot column first).
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from ..canvas import AXIS, GRID, rasterize
from ..model import Marker, Panel
from ..style import MARKER_STYLE, palette


class Plot(Widget):
    def __init__(self, panel: Panel | None = None, **kw) -> None:
        super().__init__(**kw)
        self.panel = panel
        self.markers: tuple[Marker, ...] = ()
        self.x_range: tuple[float, float] = (0.0, 1.0)
        self._cache_key: tuple | None = None
        self._strips: list[Strip] = []
        self._version = 0

    def set_data(self, panel: Panel, markers: tuple[Marker, ...], x_range: tuple[float, float]) -> None:
        self.panel, self.markers, self.x_range = panel, markers, x_range
        self._version += 1
        self.refresh()

    def clear(self) -> None:
        """Blank until new data comes (no stale curves of another run)."""
        self.panel, self.markers = None, ()
        self._version += 1
        self.refresh()

    def _style(self, key) -> Style:
        base = self.rich_style
        if key is None:
            return base
        if key == AXIS:
            return base + Style(dim=True)
        if key == GRID:
            return base + Style(color="#8a8a8a")
        if isinstance(key, str):
            return base + Style(color=MARKER_STYLE.get(key, ("", "#8a8a8a"))[1])
        return base + Style(color=palette(key))

    def _build(self) -> None:
        w, h = self.size.width, self.size.height
        key = (w, h, self._version, self.app.theme)
        if key == self._cache_key:
            return
        self._cache_key = key
        if self.panel is None or w <= 0 or h <= 0:
            self._strips = []
            return
        rows = rasterize(self.panel, self.markers, self.x_range, w, h)
        styles: dict = {}
        strips = []
        for row in rows:
            segs = []
            for run in row:
                st = styles.get(run.color)
                if st is None:
                    st = styles[run.color] = self._style(run.color)
                segs.append(Segment(run.text, st))
            strips.append(Strip(segs).adjust_cell_length(w, self.rich_style))
        self._strips = strips

    def render_line(self, y: int) -> Strip:
        self._build()
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width, self.rich_style)
