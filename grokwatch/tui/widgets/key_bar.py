"""The key bar at the bottom: the keys that work here, drawn as one line of text.

Textual's Footer re-mounts a widget per key whenever the focus changes, which
costs a layout pass (tens of milliseconds) on every view switch. This bar
renders the same active bindings (those with ``show=True``) as text and only
repaints its own line.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class KeyBar(Widget):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._text = Text("")

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)
        self.bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen) -> None:
        t = Text(no_wrap=True, overflow="crop")
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            b = active.binding
            if not b.show or b.action in seen:
                continue
            seen.add(b.action)
            t.append(f" {self.app.get_key_display(b)}", style="bold #d78700" if active.enabled else "dim")
            t.append(f" {b.description} ", style="" if active.enabled else "dim")
        if t != self._text:
            self._text = t
            self.refresh()

    def render(self) -> Text:
        return self._text
