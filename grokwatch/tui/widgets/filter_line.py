"""The filter line under the views, and the key routing that feeds it.

While the line is open, the focused view hands every printable key to it
(:class:`RoutesFilterKeys`). Focus never moves, so keys typed right after
``/`` cannot race a focus change and leak into bindings ("p" cycling the
phase filter, "q" quitting) the way they would with a focused Input.
"""

from __future__ import annotations

from typing import Protocol

from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widgets import Static

PLACEHOLDER = "phase:mem wd:1 seed:3 has:alarm text"


class FilterLine(Static):
    """``/ text█`` while editing; ``filter: text`` while a filter is applied."""

    def __init__(self, **kw) -> None:
        super().__init__("", **kw)
        self.text = ""
        self.editing = False

    def show(self, text: str, editing: bool) -> None:
        self.text, self.editing = text, editing
        self.display = editing or bool(text)
        t = Text(no_wrap=True, overflow="ellipsis")
        if editing:
            t.append("/ ", style="bold")
            t.append(text)
            t.append("█")
            if not text:
                t.append(f"  {PLACEHOLDER}", style="dim italic")
            t.append("   enter: done  esc: close  ctrl+u: clear", style="dim")
        else:
            t.append("filter: ", style="bold")
            t.append(text)
            t.append("   / edit  esc clear", style="dim")
        self.update(t)


class _InAScreen(Protocol):
    """What the mixin needs of the widget it is mixed into."""

    @property
    def screen(self) -> Screen[object]: ...


class RoutesFilterKeys:
    """Mixin for the views: open the filter on its key, feed it while it is open."""

    def on_key(self: _InAScreen, event: events.Key) -> None:
        screen = self.screen
        handler = getattr(screen, "filter_key", None)
        if handler is not None and handler(event):
            event.stop()
            event.prevent_default()
