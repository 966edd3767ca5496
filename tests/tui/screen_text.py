"""Plain text of what a running Textual app shows (for assertions and debugging)."""

from __future__ import annotations


def screen_text(app) -> str:
    """Every line of the active screen as plain text (what a person would read)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)
