"""One line at the top: sweep, runs per phase, alarms (and where they come
from, when not the built-in rules), how fresh the data is.

Runs per phase read as words ("7 grokked") when the line has room, else as
the grid's letters ("G7"), which the help screen (``?``, "Help, legend" in the
key bar) explains.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

from ..model import PHASE_LETTER, PHASE_ORDER, SweepModel
from ..style import phase_style


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    return f"{s // 3600} h ago"


class StatusBar(Widget):
    """Shows the sweep's state; ``now`` and ``host`` come from the app (frozen in tests).

    A plain widget of fixed height: a new text repaints one line, it never
    asks for a layout pass (a Static's ``update`` would, for the whole screen).
    """

    def __init__(self, host: str, **kw) -> None:
        super().__init__(**kw)
        self._text = Text("")
        self.host = host
        self.model: SweepModel | None = None
        self.view_name = "runs"
        self.filter_text = ""
        self.shown: int | None = None
        self.now: float | None = None
        self.letters = False  # the phases shown as letters (no room for words)

    def update_state(
        self,
        model: SweepModel | None = None,
        view: str | None = None,
        filter_text: str | None = None,
        shown: int | None = None,
        now: float | None = None,
    ) -> None:
        if model is not None:
            self.model = model
        if view is not None:
            self.view_name = view
        if filter_text is not None:
            self.filter_text = filter_text
        if shown is not None:
            self.shown = shown
        if now is not None:
            self.now = now
        self._update()

    def _update(self) -> None:
        width = self.size.width or None
        text = self.text(self.now)
        letters = False
        if width is not None and cell_len(text.plain) > width:
            text, letters = self.text(self.now, letters=True), True
        self.letters = letters
        if text != self._text:
            self._text = text
            self.refresh()

    def on_resize(self) -> None:
        self._update()

    def render(self) -> Text:
        return self._text

    def text(self, now: float | None, letters: bool = False) -> Text:
        m = self.model
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" grokwatch ", style="bold reverse")
        if m is None:
            t.append(" reading ...")
            return t
        t.append(f" {m.sweep} ", style="bold")
        n = len(m.rows)
        t.append(f"{self.shown}/{n} runs " if self.shown is not None and self.shown != n else f"{n} runs ")
        counts = m.phase_counts()
        for p in PHASE_ORDER:
            if counts.get(p):
                t.append(f"{PHASE_LETTER[p]}{counts[p]}" if letters else f"{counts[p]} {p}", style=phase_style(p))
                t.append(" ")
        firing = sum(1 for r in m.rows if r.alarms)
        if firing:
            t.append(f" {firing} alarming ", style="bold #d62728")
        if m.alarm_source:
            t.append(f" {m.alarm_source} ", style="italic")
        from grokwatch.remote.source import source_notice  # an ssh:// mirror's first sync, a lost link, its cache cap

        note = source_notice(m.path)
        if note:
            t.append(f" {note} ", style="bold #ff7f0e")
        if self.filter_text:
            t.append(f" filter: {self.filter_text} ", style="italic")
        age = None if m.updated is None or now is None else now - m.updated
        t.append(f" [{self.view_name}] updated {ago(age)} on {self.host}", style="dim")
        if m.errors:
            t.append("  " + m.errors[-1], style="bold #d62728")
        return t
