"""Columns of the runs table: label, width, how a cell reads, how it sorts.

Pure formatting of :class:`~grokwatch.tui.model.RunRow` values; the order and
choice of columns comes from the config (``[table] columns``). A signal shows
in red when the row says it is past the threshold of a loaded alarm rule
(``RunRow.over``, judged by the source with the rule itself): no threshold
lives here. ``width`` is
the least a column takes; it grows to fit its widest cell up to
``max_width`` (:class:`~grokwatch.tui.widgets.line_table.LineTable`), so a
cell is never cut: a predicted interval always shows whole (16 characters
on a 100k-step sweep, its minimum width), and only a text longer than
``max_width`` (a custom rule's long name) is shortened, with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from grokwatch.runs.defaults import GROK_VAL_ACC, MEM_TRAIN_ACC

from .model import PHASE_ORDER, STATE_ORDER, RunRow
from .series import sparkline
from .style import phase_badge, state_text

DASH = "-"


def _num(v: float | None, fmt: str) -> str:
    return DASH if v is None else format(v, fmt)


def _steps(v: int | None) -> str:
    if v is None:
        return DASH
    if v >= 1_000_000:
        return f"{v / 1e6:.1f}M"
    if v >= 10_000:
        return f"{v / 1e3:.0f}k"
    if v >= 1000:
        return f"{v / 1e3:.1f}k"
    return str(v)


def _step_total(r: RunRow) -> str:
    return f"{_steps(r.step)}/{_steps(r.total_steps)}" if r.total_steps else _steps(r.step)


# Whose runs a prediction came from, as the table tags it: the preset's prior (or earlier
# sweeps), the sweep's own grokked runs, or both.
SOURCE_TAG = {"prior": "P", "sweep": "S", "prior+sweep": "P+S"}


def _pred(r: RunRow) -> str:
    p = r.prediction
    if p is None:
        return DASH
    tag = SOURCE_TAG.get(p.source or "", "")
    tag = f" {tag}" if tag else ""
    if p.lo is not None and p.hi is not None:
        return f"{_steps(p.step)} [{_steps(p.lo)},{_steps(p.hi)}]{tag}"
    return _steps(p.step) + tag


def pred_detail(r: RunRow) -> str:
    """The prediction in words, for the detail screen's header."""
    p = r.prediction
    if p is None:
        return DASH
    words = {"prior": "the prior", "sweep": "the sweep's grokked runs", "prior+sweep": "the prior and the sweep"}
    out = _pred(r).rsplit(" ", 1)[0] if p.source in SOURCE_TAG else _pred(r)
    out += f" ({p.method or '?'}" + (f", from {words[p.source]}" if p.source in words else "") + ")"
    if p.p_grok is not None:
        out += f"  P(grok in budget) {p.p_grok:.0%}"
    return out


HOT = "bold #d62728"


def _z(v: float | None, hot: bool) -> Text | str:
    if v is None:
        return DASH
    s = f"{v:+.1f}"
    return Text(s, style=HOT) if hot else s


def _alpha(v: float | None, hot: bool) -> Text | str:
    if v is None:
        return DASH
    return Text(f"{v:.2f}", style=HOT) if hot else f"{v:.2f}"


def _alarms(r: RunRow) -> Text | str:
    if not r.alarms:
        return DASH
    label = r.alarms[0] if len(r.alarms) == 1 else f"{r.alarms[0]} +{len(r.alarms) - 1}"
    return Text(label, style=HOT)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    cell: Callable[[RunRow], Any]
    sort: Callable[[RunRow], Any] | None = None  # None: not sortable
    description: str = ""
    max_width: int = 32  # grows to fit its cells up to this many characters


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in [
        Column("mark", " ", 1, lambda r: DASH, None, "marked for overlay (space)"),
        Column("run", "run", 10, lambda r: r.run_id, lambda r: r.run_id, "run id", max_width=40),
        Column("seed", "seed", 4, lambda r: DASH if r.seed is None else str(r.seed), lambda r: r.seed, "seed"),
        Column(
            "wd",
            "wd",
            4,
            lambda r: DASH if r.weight_decay is None else f"{r.weight_decay:g}",
            lambda r: r.weight_decay,
            "weight decay",
        ),
        Column("step", "step", 9, _step_total, lambda r: r.progress if r.total_steps else r.step, "step / total"),
        Column(
            "phase",
            "phase",
            9,
            lambda r: phase_badge(r.phase),
            lambda r: PHASE_ORDER.index(r.phase) if r.phase in PHASE_ORDER else len(PHASE_ORDER),
            "phase (DESIGN section 4)",
        ),
        Column(
            "state",
            "state",
            9,
            lambda r: state_text(r.state),
            lambda r: (STATE_ORDER.index(r.state) if r.state in STATE_ORDER else len(STATE_ORDER)) if r.state else None,
            "what the run is doing: planned, submitted, pending, requeued, running, stalled, preempted, "
            "completed, diverged, failed, ... (SLURM, status.json and heartbeat, as `grokwatch sweep status`)",
        ),
        Column("train", "train", 5, lambda r: _num(r.train_acc, ".3f"), lambda r: r.train_acc, "train accuracy"),
        Column("val", "val", 5, lambda r: _num(r.val_acc, ".3f"), lambda r: r.val_acc, "val accuracy"),
        Column(
            "spark",
            "val acc",
            10,
            lambda r: sparkline(r.val_spark) or DASH,
            lambda r: r.val_acc,
            "val accuracy over the run",
        ),
        Column("gai_z", "GAI z", 5, lambda r: _z(r.gai_z, "gai_z" in r.over), lambda r: r.gai_z, "latest GAI z-score"),
        Column(
            "alpha_min",
            "α min",
            5,
            lambda r: _alpha(r.alpha_min, "alpha_min" in r.over),
            lambda r: r.alpha_min,
            "smallest reliable HTSR alpha",
        ),
        Column(
            "h0_z",
            "H0 z",
            5,
            lambda r: _z(r.h0_entropy_z, "h0_entropy_z" in r.over),
            lambda r: r.h0_entropy_z,
            "robust z of H0 persistence entropy",
        ),
        Column("alarms", "alarms", 18, _alarms, lambda r: len(r.alarms) or None, "alarms firing", max_width=28),
        Column(
            "t_mem",
            "t_mem",
            5,
            lambda r: _steps(r.t_mem),
            lambda r: r.t_mem,
            f"first step train acc >= {MEM_TRAIN_ACC:g}",
        ),
        Column(
            "t_grok",
            "t_grok",
            6,
            lambda r: _steps(r.t_grok),
            lambda r: r.t_grok,
            f"first step val acc >= {GROK_VAL_ACC:g}",
        ),
        Column(
            "pred",
            "pred t_grok",
            16,
            _pred,
            lambda r: r.prediction.step if r.prediction else None,
            "predicted t_grok [80% interval], from the prior (P), the sweep's own runs (S) or both",
        ),
        Column("slurm", "slurm", 9, lambda r: r.slurm_state or DASH, lambda r: r.slurm_state, "SLURM job state"),
        Column(
            "restarts",
            "rst",
            3,
            lambda r: str(r.restarts) if r.restarts else DASH,
            lambda r: r.restarts or None,
            "requeues / restarts",
        ),
    ]
}


def sort_rows(rows: list[RunRow], key: str, reverse: bool = False) -> list[RunRow]:
    """Rows sorted by a column; runs without a value go last either way; ties by run id."""
    col = COLUMNS[key]
    if col.sort is None:
        return sorted(rows, key=lambda r: r.run_id)
    have = [(col.sort(r), r) for r in rows]
    present = [(v, r) for v, r in have if v is not None]
    missing = [r for v, r in have if v is None]
    present.sort(key=lambda vr: vr[1].run_id)
    present.sort(key=lambda vr: vr[0], reverse=reverse)
    return [r for _, r in present] + sorted(missing, key=lambda r: r.run_id)
