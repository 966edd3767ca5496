"""Help text as markdown, built from the bindings themselves.

Each section lists one part of the app with its keys, what they do and the
binding id (the name to remap it under ``[keys]`` in the config file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from textual.binding import Binding

from .model import PHASE_LETTER, PHASE_MEANING, PHASE_ORDER

INTRO = """\
# grokwatch dashboard

Every run of the sweep, live. Keyboard only; no mouse needed.
Remap a key in `~/.config/grokwatch/tui.toml` under `[keys]` by its id
(after the dash), e.g. `"runs.sort_next" = "ctrl+s"`.

**Filter** (`/`): words that must all match — `phase:mem` (phase prefix,
`phase:grokked,anti` for several), `wd:0.3`, `seed:7`, `state:running`,
`has:alarm`, or any text found in the run id or phase.
"""

STATES = """\
## The state column

What a run is doing, as `grokwatch sweep status` says it (SLURM's record, the
run's `status.json` and its heartbeat): `planned` (in the sweep manifest, not
submitted), `submitted`, `pending` (queued), `requeued`, `running`,
`stalled` (running, no heartbeat), `preempted`, `timeout`, `completed`,
`diverged`, `failed`, `cancelled`, `node-fail`, `oom`. A run at 800/8.0k steps
that is *completed* stopped there (e.g. after grokking); one that is *running*
goes on.
"""


def legend_markdown() -> str:
    """The phase letters of the status bar and the sweep grid, explained."""
    lines = ["## Phases: the letters of the status bar and the grid", ""]
    lines += [f"- `{PHASE_LETTER[p]}` **{p}**: {PHASE_MEANING[p]}" for p in PHASE_ORDER]
    lines.append("")
    return "\n".join(lines)


def _bindings(cls: type) -> list[Binding]:
    out = []
    for b in getattr(cls, "BINDINGS", []):
        if isinstance(b, Binding):
            out.append(b)
        elif isinstance(b, tuple) and len(b) >= 2:  # (key, action[, description])
            out.append(Binding(*b))
    return out


def help_markdown(
    sections: Iterable[tuple[str, type]],
    keymap: Mapping[str, str] | None = None,
    key_display: Callable[[str], str] | None = None,
) -> str:
    """Markdown for ``sections``: (title, class with BINDINGS) pairs."""
    keymap = keymap or {}
    show = key_display or (lambda k: k)
    lines = [INTRO, legend_markdown(), STATES]
    for title, cls in sections:
        rows = []
        for b in _bindings(cls):
            keys = keymap.get(b.id, b.key) if b.id else b.key
            shown = " ".join(f"`{show(k.strip())}`" for k in keys.split(","))
            rows.append(f"- {shown} {b.description or b.action} — `{b.id or '-'}`")
        if rows:
            lines.append(f"## {title}\n")
            lines.extend(rows)
            lines.append("")
    return "\n".join(lines)
