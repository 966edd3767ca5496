"""The alarm feed: every alarm event, newest first; enter jumps to its run.

Rows are keyed by event, so new events cost one rendered line each however
long the feed is (:class:`~grokwatch.tui.widgets.line_table.LineTable`).
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from ..messages import JumpToAlarm
from ..model import AlarmRow, SweepModel
from .filter_line import RoutesFilterKeys
from .line_table import LineTable

MAX_ROWS = 5000  # the newest; older events stay in alarms.jsonl / the engine's history

_STATE_STYLE = {"firing": "bold #d62728", "pending": "#d78700", "resolved": "#00af5f"}
_COLUMNS = (("step", "step", 8), ("run", "run", 12), ("rule", "rule", 26), ("value", "value", 8),
            ("threshold", "thr", 6), ("state", "state", 8), ("severity", "sev", 8))


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def _key(a: AlarmRow) -> str:
    return f"{a.seq}"


class AlarmFeed(RoutesFilterKeys, LineTable):
    BINDINGS = [
        Binding("j", "cursor(1)", "Down", show=False, id="alarms.down"),
        Binding("k", "cursor(-1)", "Up", show=False, id="alarms.up"),
        Binding("enter", "jump", "Go to run", id="alarms.jump"),
    ]

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.alarms: tuple[AlarmRow, ...] = ()
        self._by_key: dict[str, AlarmRow] = {}
        self.dirty = False

    def on_mount(self) -> None:
        self.set_columns(list(_COLUMNS))

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
        key = self.cursor_key
        return self._by_key.get(key) if key is not None else None

    def _redraw(self) -> None:
        self.dirty = False
        shown = self.alarms[:MAX_ROWS]
        self._by_key = {_key(a): a for a in shown}
        self.set_rows([_key(a) for a in shown], self._row_cells)

    def _row_cells(self, key: str) -> list:
        a = self._by_key[key]
        return [
            str(a.step) if a.step is not None else "-", a.run_id, a.rule, _num(a.value), _num(a.threshold),
            Text(a.state, style=_STATE_STYLE.get(a.state, "")), a.severity or "-",
        ]

    def action_jump(self) -> None:
        a = self.selected
        if a is not None:
            self.post_message(JumpToAlarm(a))
