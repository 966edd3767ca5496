"""The alarm feed: every alarm event, newest first; enter jumps to its run."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from ..messages import JumpToAlarm
from ..model import AlarmRow, SweepModel
from .filter_line import RoutesFilterKeys

MAX_ROWS = 2000  # the newest; older events stay in alarms.jsonl

_STATE_STYLE = {"firing": "bold #d62728", "pending": "#d78700", "resolved": "#00af5f"}
_COLUMNS = (("step", "step", 8), ("run", "run", 12), ("rule", "rule", 26), ("value", "value", 8),
            ("threshold", "thr", 6), ("state", "state", 8), ("severity", "sev", 8))


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


class AlarmFeed(RoutesFilterKeys, DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="alarms.down"),
        Binding("k", "cursor_up", "Up", show=False, id="alarms.up"),
        Binding("enter", "jump", "Go to run", id="alarms.jump"),
    ]

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", **kw)
        self.alarms: tuple[AlarmRow, ...] = ()
        self._shown: tuple[AlarmRow, ...] | None = None
        self.dirty = False

    def on_mount(self) -> None:
        for key, label, width in _COLUMNS:
            self.add_column(label, width=width, key=key)

    def update_model(self, model: SweepModel, visible: bool = True) -> None:
        """Take the model's alarms; redrawn only while the feed is on screen."""
        if model.alarms is self.alarms or model.alarms == self.alarms:
            return
        self.alarms = model.alarms
        self.dirty = True
        if visible:
            self._redraw()

    def on_show(self) -> None:
        if self.dirty:
            self._redraw()

    @property
    def selected(self) -> AlarmRow | None:
        shown = self._shown or ()
        return shown[self.cursor_row] if 0 <= self.cursor_row < len(shown) else None

    def _redraw(self) -> None:
        self.dirty = False
        keep = self.selected
        shown = self.alarms[:MAX_ROWS]
        self.clear()
        for a in shown:
            self.add_row(
                str(a.step) if a.step is not None else "-",
                a.run_id,
                a.rule,
                _num(a.value),
                _num(a.threshold),
                Text(a.state, style=_STATE_STYLE.get(a.state, "")),
                a.severity or "-",
                key=f"{a.seq}",
            )
        self._shown = shown
        if keep is not None:
            for i, a in enumerate(shown):
                if a.key == keep.key:
                    self.move_cursor(row=i, animate=False)
                    break

    def action_jump(self) -> None:
        a = self.selected
        if a is not None:
            self.post_message(JumpToAlarm(a))
