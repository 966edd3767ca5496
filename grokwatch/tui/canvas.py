"""A braille canvas: turns a :class:`~grokwatch.tui.model.Panel` into styled text rows.

Each character cell holds 2 x 4 dots, so a 70 x 8 cell plot is 140 x 32 dots.
Every series is decimated to one min/max pair per dot column
(:func:`~grokwatch.tui.series.decimate`) and drawn as vertical strokes joined
to their neighbours, so spikes survive decimation. No textual here: the widget
in :mod:`grokwatch.tui.widgets.plot` only turns the runs into segments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .model import Marker, Panel
from .series import Decimated, decimate

# bit of each dot, indexed [row 0..3][col 0..1]
_DOTS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint32)

GUTTER = 7  # y-axis labels
GRID = -1  # colour key of reference lines
AXIS = -2  # colour key of labels and axes


@dataclass(frozen=True)
class Run:
    """A run of characters drawn in one colour: ``color`` is a palette index,
    :data:`GRID`, :data:`AXIS`, or a marker kind (str)."""

    text: str
    color: int | str | None


Row = list[Run]


def fmt_step(v: float) -> str:
    v = float(v)
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.0f}"


def fmt_value(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    a = abs(v)
    if a != 0 and (a >= 1e4 or a < 1e-2):
        e = math.floor(math.log10(a))
        m = v / 10**e
        s = f"{m:.1f}e{e}"
        return s if len(s) <= GUTTER - 1 else f"{m:.0f}e{e}"
    return f"{v:.3g}"


def _y_range(panel: Panel, decs: Sequence[tuple[int, Decimated]], log: bool) -> tuple[float, float] | None:
    if panel.y_range is not None and not log:
        return panel.y_range
    vals = []
    for _, d in decs:
        lo, hi = d.lo[np.isfinite(d.lo)], d.hi[np.isfinite(d.hi)]
        if lo.size:
            vals += [float(lo.min()), float(hi.max())]
    for v, _ in panel.hlines:
        t = math.log10(v) if log and v > 0 else v
        if not log or v > 0:
            vals.append(t)
    if not vals:
        return None
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.04
    return lo - pad, hi + pad


def _fill_gaps(d, points: bool):
    """Linear joins over empty dot columns between samples (sparse probes)."""
    if points:
        return d.lo, d.hi, d.first, d.last
    have = np.flatnonzero(np.isfinite(d.lo))
    if have.size < 2:
        return d.lo, d.hi, d.first, d.last
    cols = np.arange(have[0], have[-1] + 1)
    gap = cols[~np.isfinite(d.lo[cols])]
    if gap.size == 0:
        return d.lo, d.hi, d.first, d.last
    lo, hi, first, last = d.lo.copy(), d.hi.copy(), d.first.copy(), d.last.copy()
    interp = np.interp(gap, have, (d.first[have] + d.last[have]) / 2)
    lo[gap] = hi[gap] = first[gap] = last[gap] = interp
    return lo, hi, first, last


def rasterize(
    panel: Panel, markers: tuple[Marker, ...] | list[Marker], x_range: tuple[float, float], width: int, height: int
) -> list[Row]:
    """Rows of styled runs for a plot of ``width`` x ``height`` cells (title, plot, x axis)."""
    rows: list[Row] = []
    width, height = max(1, width), max(1, height)
    pw, ph = max(1, width - GUTTER), max(1, height - 2)
    x0, x1 = float(x_range[0]), float(x_range[1])
    if x1 <= x0:
        x1 = x0 + 1.0
    log = panel.log
    # 1. decimate every series to dot columns (the series are already smoothed)
    decs = []
    for i, s in enumerate(panel.series):
        x, y = s.x, np.asarray(s.y, dtype=np.float64)
        if log:
            positive = y > 0
            x, y = x[positive], np.log10(y[positive])
        if len(x):
            decs.append((i, decimate(x, y, x0, x1, pw * 2)))
    rng = _y_range(panel, decs, log)
    # title + legend
    title: Row = [Run(panel.title, AXIS)]
    for s in panel.series:
        title += [Run("  ", None), Run("●" if s.points else "━", s.color), Run(" " + s.label, AXIS)]
    rows.append(_crop(title, width))
    if rng is None:
        note = panel.note or "no data yet"
        for r in range(ph):
            rows.append([Run(" " * GUTTER, None), Run(note.center(pw) if r == ph // 2 else " " * pw, AXIS)])
        rows.append([Run(" " * width, None)])
        return rows[:height]
    y_lo, y_hi = rng
    R, C = ph * 4, pw * 2
    codes = np.zeros((ph, pw), dtype=np.uint32)
    color = np.full((ph, pw), -9, dtype=np.int64)  # -9: empty

    def to_row(v: np.ndarray) -> np.ndarray:
        t = (y_hi - v) / (y_hi - y_lo) * (R - 1)
        return np.clip(np.rint(np.nan_to_num(t, nan=-1)), -1, R).astype(np.int64)

    def paint(mask: np.ndarray, key: int) -> None:
        bits = (mask.reshape(ph, 4, pw, 2) * _DOTS[None, :, None, :]).sum(axis=(1, 3)).astype(np.uint32)
        np.bitwise_or(codes, bits, out=codes)
        color[bits > 0] = key

    rr = np.arange(R)[:, None]
    # reference lines: dotted rows of dots
    for v, _ in panel.hlines:
        if log and v <= 0:
            continue
        t = math.log10(v) if log else v
        if y_lo <= t <= y_hi:
            r = int(to_row(np.array([t]))[0])
            mask = np.zeros((R, C), dtype=bool)
            if 0 <= r < R:
                mask[r, ::3] = True
                paint(mask, GRID)
    for i, d in decs:
        s = panel.series[i]
        lo, hi, first, last = _fill_gaps(d, s.points)
        ok = np.isfinite(lo)
        top, bot = to_row(hi), to_row(lo)
        if not s.points:
            prev = np.r_[np.nan, last[:-1]]
            pr = to_row(prev)
            join = ok & np.isfinite(prev)
            top = np.where(join, np.minimum(top, pr), top)
            bot = np.where(join, np.maximum(bot, pr), bot)
        mask = (rr >= top[None, :]) & (rr <= bot[None, :]) & ok[None, :]
        paint(mask, s.color)
    text = (codes + 0x2800).astype("<u4").tobytes().decode("utf-32-le")
    chars = [list(text[r * pw : (r + 1) * pw]) for r in range(ph)]
    ckeys: list[list[int | str | None]] = [[(c if c != -9 else None) for c in row] for row in color.tolist()]
    # a band (the predicted interval) first, in the empty cells of its columns; then
    # vertical markers where the column is empty
    for m in markers:
        if m.kind != "band" or m.end is None or m.end < x0 or m.step > x1:
            continue
        c0 = max(0, int((max(m.step, x0) - x0) / (x1 - x0) * pw))
        c1 = min(pw - 1, int((min(m.end, x1) - x0) / (x1 - x0) * pw))
        for cc in range(c0, c1 + 1):
            for r in range(ph):
                if codes[r, cc] == 0:
                    chars[r][cc] = "░"
                    ckeys[r][cc] = m.kind
    for m in markers:
        if m.kind == "band" or not (x0 <= m.step <= x1):
            continue
        cc = min(pw - 1, int((m.step - x0) / (x1 - x0) * pw))
        ch = "┆" if m.kind in ("t_mem", "t_grok") else "╎" if m.kind == "alarm" else "┊"
        for r in range(ph):
            if codes[r, cc] == 0:
                chars[r][cc] = ch
                ckeys[r][cc] = m.kind
    # y labels at top, middle and bottom
    labels = {0: y_hi, ph - 1: y_lo}
    if ph >= 5:
        labels[(ph - 1) // 2] = (y_hi + y_lo) / 2
    for r in range(ph):
        label = labels.get(r)
        if label is not None:
            lab = fmt_value(10**label if log else label)
            gutter = lab[: GUTTER - 1].rjust(GUTTER - 1) + "┤"
        else:
            gutter = " " * (GUTTER - 1) + "│"
        row: Row = [Run(gutter, AXIS)]
        row += _runs(chars[r], ckeys[r])
        rows.append(row)
    # x axis labels
    axis = [" "] * width
    for frac in (0.0, 0.5, 1.0):
        lab = fmt_step(x0 + frac * (x1 - x0))
        pos = GUTTER + int(frac * (pw - 1))
        start = min(max(GUTTER, pos - len(lab) // 2), width - len(lab))
        if frac == 0.0:
            start = GUTTER
        for k, ch in enumerate(lab):
            if 0 <= start + k < width:
                axis[start + k] = ch
    rows.append([Run("".join(axis), AXIS)])
    return rows[:height]


def _runs(chars: list[str], keys: list) -> Row:
    out: Row = []
    start = 0
    for k in range(1, len(chars) + 1):
        if k == len(chars) or keys[k] != keys[start]:
            out.append(Run("".join(chars[start:k]), keys[start]))
            start = k
    return out


def _crop(row: Row, width: int) -> Row:
    out, used = [], 0
    for run in row:
        if used >= width:
            break
        t = run.text[: width - used]
        out.append(Run(t, run.color))
        used += len(t)
    if used < width:
        out.append(Run(" " * (width - used), None))
    return out


def as_text(rows: list[Row]) -> str:
    """The plain text of rasterized rows (tests, the benchmark)."""
    return "\n".join("".join(r.text for r in row) for row in rows)
