"""The alarm feed: every alarm event, newest first; enter jumps to its run.

Each event shows the wall-clock time it was recorded (local HH:MM:SS, from the
record's UTC time), the step, run, rule, value, threshold, state, severity.
Rows are keyed by event, so new events cost one rendered line each however
long the feed is (:class:`~grokwatch.tui.widgets.line_table.LineTable`).
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.binding import Binding

from ..messages import JumpToAlarm
from ..model import AlarmRow, SweepModel
from .filter_line import RoutesFilterKeys
from .line_table import LineTable

MAX_ROWS = 5000  # the newest; older events stay in alarms.jsonl / the engine's history

_STATE_STYLE = {"firing": "bold #d62728", "pending": "#d78700", "resolved": "#00af5f"}
# (key, label, width, grows to at most): run ids and custom rule names show whole; the
# state (firing / resolved) comes before the numbers, so 80 columns show it.
_COLUMNS = (
    ("time", "time", 8),
    ("step", "step", 6, 12),
    ("run", "run", 10, 40),
    ("rule", "rule", 18, 40),
    ("state", "state", 8),
    ("value", "value", 8),
    ("threshold", "thr", 6),
    ("severity", "sev", 8, 12),
)


def clock_time(iso: str | None) -> str:
    """``2024-01-02T03:04:05.123Z`` -> ``03:04:05`` in local time; '-' when unknown."""
    if not iso:
        return "-"
    try:
        t = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return "-"
    if t.tzinfo is not None:
        t = t.astimezone()  # local time, as the user reads a clock
    return t.strftime("%H:%M:%S")


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
            clock_time(a.time),
            str(a.step) if a.step is not None else "-",
            a.run_id,
            a.rule,
            Text(a.state, style=_STATE_STYLE.get(a.state, "")),
            _num(a.value),
            _num(a.threshold),
            a.severity or "-",
        ]

    def action_jump(self) -> None:
        a = self.selected
        if a is not None:
            self.post_message(JumpToAlarm(a))
