"""Series for plotting: smooth at full resolution, then decimate per screen column.

Pure numpy, no UI. A 100K-point run costs two passes over its samples
(a cumulative sum and a ``reduceat``), so a plot redraws in about a
millisecond whatever the run length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def finite_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop samples whose y is not finite (e.g. val_acc between evaluations)."""
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y)
    if keep.all():
        return x, y
    return x[keep], y[keep]


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` samples (the first samples use
    what precedes them). ``window <= 1`` returns ``y`` unchanged. NaNs must be
    removed first (:func:`finite_xy`)."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if window <= 1 or n == 0:
        return y
    window = min(int(window), n)
    c = np.cumsum(y)
    out = np.empty(n, dtype=np.float64)
    out[:window] = c[:window] / np.arange(1, window + 1)
    out[window:] = (c[window:] - c[:-window]) / window
    return out


def smoothing_window(n: int, fraction: float) -> int:
    """Window length for a smoothing strength given as a fraction of the series."""
    if fraction <= 0 or n <= 1:
        return 1
    return max(1, int(round(n * fraction)))


@dataclass(frozen=True)
class Decimated:
    """Per screen column: the min and max of the samples that fall in it (NaN where none)."""

    lo: np.ndarray
    hi: np.ndarray
    first: np.ndarray
    last: np.ndarray

    @property
    def columns(self) -> int:
        return len(self.lo)


def decimate(x: np.ndarray, y: np.ndarray, x0: float, x1: float, columns: int) -> Decimated:
    """Min/max of ``y`` per column of ``columns`` equal bins over [x0, x1].

    ``x`` must be sorted ascending and ``y`` finite (see :func:`finite_xy`).
    Samples outside [x0, x1] are dropped. ``first``/``last`` hold the first and
    last sample of each bin, to join neighbouring columns with a line.
    """
    columns = max(1, int(columns))
    lo = np.full(columns, np.nan)
    hi = np.full(columns, np.nan)
    first = np.full(columns, np.nan)
    last = np.full(columns, np.nan)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) == 0:
        return Decimated(lo, hi, first, last)
    i0 = int(np.searchsorted(x, x0, side="left"))
    i1 = int(np.searchsorted(x, x1, side="right"))
    x, y = x[i0:i1], y[i0:i1]
    if len(x) == 0:
        return Decimated(lo, hi, first, last)
    span = float(x1 - x0)
    if span <= 0:
        b = np.zeros(len(x), dtype=np.int64)
    else:
        b = np.floor((x - x0) / span * columns).astype(np.int64)
        np.clip(b, 0, columns - 1, out=b)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    ends = np.r_[starts[1:], len(b)] - 1
    cols = b[starts]
    lo[cols] = np.minimum.reduceat(y, starts)
    hi[cols] = np.maximum.reduceat(y, starts)
    first[cols] = y[starts]
    last[cols] = y[ends]
    return Decimated(lo, hi, first, last)


def prepare(x: np.ndarray, y: np.ndarray, smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Finite samples of a series, smoothed on full resolution."""
    x, y = finite_xy(x, y)
    return x, smooth(y, smoothing_window(len(y), smoothing))


def sparkline_values(x: np.ndarray, y: np.ndarray, width: int) -> tuple[float, ...]:
    """``width`` values for a text sparkline: the last sample of each column
    over the series' own step range (NaN-free; empty bins carry the previous value)."""
    x, y = finite_xy(x, y)
    if len(x) == 0 or width <= 0:
        return ()
    d = decimate(x, y, float(x[0]), float(x[-1]), width)
    vals = d.last.copy()
    # carry forward over empty columns (sparse evaluation cadence)
    idx = np.where(np.isfinite(vals), np.arange(len(vals)), 0)
    np.maximum.accumulate(idx, out=idx)
    vals = vals[idx]
    return tuple(round(float(v), 4) for v in vals if np.isfinite(v))


SPARK_CHARS = "▁▂▃▄▅▆▇█"


def sparkline(values: tuple[float, ...] | list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    """Block-character sparkline of ``values`` on the fixed range [lo, hi]."""
    if not values:
        return ""
    span = (hi - lo) or 1.0
    n = len(SPARK_CHARS) - 1
    out = []
    for v in values:
        t = (min(max(v, lo), hi) - lo) / span
        out.append(SPARK_CHARS[int(round(t * n))])
    return "".join(out)
