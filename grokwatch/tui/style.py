"""Colours that read on dark and light terminals.

Phases are drawn as badges: a fixed foreground on a mid-tone background, so
they do not depend on the terminal's own background colour. Plot colours are
the matplotlib tab10 hues, which stay legible on both.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from .model import PHASE_LETTER

PHASE_BG = {
    "waiting": "#8a8a8a",
    "learning": "#5f87d7",
    "memorized": "#d78700",
    "grokking": "#d7af00",
    "grokked": "#00af5f",
    "anti-grokking": "#d7005f",
    "diverged": "#af0000",
    "stalled": "#6c6c6c",
    "failed": "#af0000",
    "preempted": "#8787af",
}
PHASE_FG = {"grokking": "#000000", "memorized": "#000000", "grokked": "#000000"}

# The state column: live runs green, trouble red, not started grey; over: plain.
STATE_STYLE = {
    "running": "#00af5f",
    "planned": "dim",
    "submitted": "dim",
    "pending": "#8a8a8a",
    "requeued": "#8787af",
    "suspended": "#8787af",
    "preempted": "#d78700",
    "timeout": "#d78700",
    "stalled": "bold #d62728",
    "failed": "bold #d62728",
    "diverged": "bold #d62728",
    "cancelled": "#d62728",
    "node-fail": "bold #d62728",
    "oom": "bold #d62728",
    "unknown": "dim",
}


def state_text(state: str | None) -> Text | str:
    return "-" if not state else Text(state, style=STATE_STYLE.get(state, ""))


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")

MARKER_STYLE = {
    "t_mem": ("┆", "#d78700"),
    "t_grok": ("┆", "#00af5f"),
    "alarm": ("╎", "#d62728"),
    "predicted": ("┊", "#9467bd"),
    "band": ("░", "#3a3a5f"),  # the predicted t_grok's interval, behind the curves
    "restart": ("┊", "#8a8a8a"),
}


def phase_style(phase: str) -> Style:
    return Style(color=PHASE_FG.get(phase, "#ffffff"), bgcolor=PHASE_BG.get(phase, "#8a8a8a"))


def phase_badge(phase: str, width: int | None = None, pad: bool = False) -> Text:
    label = phase if width is None else phase[:width].ljust(width)
    return Text(f" {label} " if pad else label, style=phase_style(phase))


def phase_cell(phase: str) -> Text:
    return Text(f"{PHASE_LETTER.get(phase, '?')} ", style=phase_style(phase))


def palette(i: int) -> str:
    return PALETTE[i % len(PALETTE)]
