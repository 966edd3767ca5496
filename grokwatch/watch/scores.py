"""Watcher-side scores, computed incrementally from the raw columns.

One module: the incremental scores share one contract (causal, bounded
look-back, equal to a full recomputation) and the buffers that keep it.

Pure numpy, no I/O. Every score is *causal with a bounded look-back*: the
value at row i depends only on rows ``i - lookback .. i``. So a refresh that
brings m new rows recomputes only ``m + lookback`` rows, never the whole run,
and the result equals a full recomputation exactly (tests check this).

- GAI z-score ("Gradient Norm Dynamics Predict Grokking Onset"): moving average
  of ``grad_norm`` over ``window`` steps, its second finite difference, and the
  z-score of that against the mean and standard deviation of its trailing
  ``baseline`` values (the current one excluded). When
  ``observables.gai.gai_zscore(grad_norm, window, baseline)`` exists it is used
  instead of the private fallback here (same contract, called on a tail slice).
- Robust z-score of ``h0_entropy``: ``(x - median) / (1.4826 MAD)`` against the
  trailing ``baseline`` probe values.
- HTSR: the minimum ``htsr_alpha/<matrix>`` over matrices whose fit is
  reliable (``htsr_n_tail/<m>`` >= min_n_tail and ``htsr_ks/<m>`` <= max_ks when
  those columns exist), and the total ``htsr_traps/<m>`` over matrices.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from grokwatch.runs.defaults import STALL_TIMEOUT
from grokwatch.runs.phases import Thresholds, first_step

log = logging.getLogger("grokwatch.watch")

MAD_SCALE = 1.4826  # MAD of a normal distribution -> its standard deviation


@dataclass(frozen=True)
class ScoreConfig:
    """Parameters of the watcher-side scores (not of the alarm thresholds)."""

    gai_window: int = 20
    gai_baseline: int = 200  # as observables.gai
    entropy_baseline: int = 30  # probe rows
    entropy_min_baseline: int = 5
    htsr_min_n_tail: float = 10.0
    htsr_max_ks: float = 0.2
    # the crossing signal (htsr_alpha_cross) also needs a real tail: at most this share
    # of the matrix's eigenvalues (htsr_n_evals/<m>; on the evidence sweep the fits of
    # alpha < 2 spanned 60-100% of a 49-64-eigenvalue spectrum) and a tighter KS
    htsr_cross_max_tail_share: float = 0.5
    htsr_cross_max_ks: float = 0.1
    htsr_cross_after: int = 3  # reliable fits >= 2 in a row before a fall below 2 counts
    stall_timeout: float = STALL_TIMEOUT  # seconds without a heartbeat
    phases: Thresholds = field(default_factory=Thresholds)

    @property
    def gai_lookback(self) -> int:
        return self.gai_window + self.gai_baseline + 2


# -- growable float buffer -------------------------------------------------------


class GrowBuf:
    """Append-only float32 array; ``view()`` is a read-only slice, no copy.

    Appends never write below ``n``, so a view handed out earlier stays valid
    and unchanged: snapshots can share it with the reader thread.
    """

    def __init__(self, dtype=np.float32) -> None:
        self._a = np.empty(0, dtype=dtype)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, values: np.ndarray) -> None:
        m = len(values)
        need = self.n + m
        if need > len(self._a):
            grown = np.empty(max(need, len(self._a) + len(self._a) // 2, 256), dtype=self._a.dtype)
            grown[: self.n] = self._a[: self.n]
            self._a = grown
        self._a[self.n : need] = values
        self.n = need

    def view(self) -> np.ndarray:
        v = self._a[: self.n]
        v.flags.writeable = False
        return v


# -- GAI -------------------------------------------------------------------------


def _windowed_sums(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing sums over w items (of NaN-as-0 values) and the finite counts; index i covers x[i-w+1..i]."""
    finite = np.isfinite(x)
    cs = np.concatenate(([0.0], np.cumsum(np.where(finite, x, 0.0))))
    cn = np.concatenate(([0], np.cumsum(finite)))
    n = len(x)
    hi = np.arange(1, n + 1)
    lo = np.maximum(hi - w, 0)
    return cs[hi] - cs[lo], cn[hi] - cn[lo]


def _gai_zscore(grad_norm: np.ndarray, window: int = 20, baseline: int = 200) -> np.ndarray:
    """GAI z-score of each step; the contract of ``observables.gai.gai_zscore``.

    ma[i] = mean(g[i-window+1 .. i])          (NaN unless all finite)
    d2[i] = ma[i] - 2 ma[i-1] + ma[i-2]
    z[i]  = (d2[i] - mean(B)) / std(B, ddof=1),  B = finite d2[i-baseline .. i-1]
    NaN until B holds ``baseline`` finite values and where d2[i] is NaN;
    +-inf when B is constant and d2[i] differs from it.
    """
    g = np.asarray(grad_norm, dtype=np.float64)
    n = len(g)
    z = np.full(n, np.nan)
    if n < window + 3:
        return z
    s, c = _windowed_sums(g, window)
    ma = np.where(c == window, s / window, np.nan)
    ma[: window - 1] = np.nan
    d2 = np.full(n, np.nan)
    d2[2:] = ma[2:] - 2.0 * ma[1:-1] + ma[:-2]
    finite = np.isfinite(d2)
    if not finite.any():
        return z
    y = np.where(finite, d2 - d2[np.argmax(finite)], 0.0)  # a causal reference, for precision
    cs = np.concatenate(([0.0], np.cumsum(y)))
    cs2 = np.concatenate(([0.0], np.cumsum(y * y)))
    cn = np.concatenate(([0], np.cumsum(finite)))
    hi = np.arange(n)  # B ends before i
    lo = np.maximum(hi - baseline, 0)
    k = (cn[hi] - cn[lo]).astype(np.float64)
    s1, s2 = cs[hi] - cs[lo], cs2[hi] - cs2[lo]
    ok = finite & (k >= baseline)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / k
        var = np.maximum(s2 - s1 * mean, 0.0) / (k - 1.0)
        out = (y - mean) / np.sqrt(var)
    z[ok] = out[ok]
    return z


_external_gai: Callable | None | bool = False  # False: not looked up yet


def gai_function() -> Callable[[np.ndarray, int, int], np.ndarray]:
    """``observables.gai.gai_zscore`` when it exists, else the private fallback."""
    global _external_gai
    if _external_gai is False:
        try:
            from observables.gai import gai_zscore

            _external_gai = gai_zscore
        except Exception:  # broken: the watcher must still run
            _external_gai = None
    return _external_gai if callable(_external_gai) else _gai_zscore


def gai_tail(grad_norm: np.ndarray, start: int, cfg: ScoreConfig) -> np.ndarray:
    """GAI z-scores of rows ``start ..`` of ``grad_norm`` (all rows so far), from a tail slice."""
    lo = max(0, start - cfg.gai_lookback)
    z = np.asarray(gai_function()(np.asarray(grad_norm[lo:], dtype=np.float64), cfg.gai_window, cfg.gai_baseline))
    return z[start - lo :]


# -- HTSR crossing --------------------------------------------------------------------


class AlphaCrossing:
    """``htsr_alpha_cross``: once some matrix's alpha falls below 2 after at
    least ``cfg.htsr_cross_after`` reliable fits >= 2 in a row, the smallest
    alpha of such matrices at every row while they stay below 2 (so an alarm
    on it stays active until alpha recovers); NaN at every other row. "Reliable" here:
    n_tail >= htsr_min_n_tail, KS <= htsr_cross_max_ks and, where the probe
    wrote ``htsr_n_evals/<m>``, a tail of at most htsr_cross_max_tail_share of
    the eigenvalues. This is the paper's reading (Prakash & Martin, "Grokking
    and Generalization Collapse"): alpha *drops* below 2 late in training as a
    matrix over-fits, not alpha < 2 of a small matrix whose whole spectrum was
    fitted. Incremental: state per matrix across refreshes."""

    def __init__(self, cfg: ScoreConfig, n_evals: dict[str, int] | None = None) -> None:
        self.cfg = cfg
        self.n_evals = n_evals or {}  # for probes written before htsr_n_evals/<m> existed
        self.above: dict[str, int] = {}
        self.crossed: set[str] = set()

    def update(self, probes: dict[str, np.ndarray], rows: slice) -> np.ndarray:
        n = len(probes["step"][rows])
        out = np.full(n, np.nan)
        cfg = self.cfg
        for m in htsr_matrices(probes):
            a = np.asarray(probes[f"htsr_alpha/{m}"][rows], dtype=np.float64)
            good = np.isfinite(a)
            nt = probes.get(f"htsr_n_tail/{m}")
            if nt is not None:
                nt = np.asarray(nt[rows], dtype=np.float64)
                with np.errstate(invalid="ignore"):
                    good &= nt >= cfg.htsr_min_n_tail
                col = probes.get(f"htsr_n_evals/{m}")
                ne = np.asarray(col[rows], dtype=np.float64) if col is not None else self.n_evals.get(m)
                if ne is not None:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        good &= ~(nt / ne > cfg.htsr_cross_max_tail_share)
            ks = probes.get(f"htsr_ks/{m}")
            if ks is not None:
                with np.errstate(invalid="ignore"):
                    good &= np.asarray(ks[rows], dtype=np.float64) <= cfg.htsr_cross_max_ks
            run = self.above.get(m, 0)
            crossed = m in self.crossed
            for i in range(len(a)):
                if np.isfinite(a[i]) and a[i] >= 2.0:
                    crossed = False  # recovered (by any fit): the episode is over
                if good[i]:
                    if a[i] < 2.0:
                        crossed = crossed or run >= cfg.htsr_cross_after
                        run = 0
                    else:
                        run += 1
                if crossed and np.isfinite(a[i]) and a[i] < 2.0:
                    out[i] = a[i] if not np.isfinite(out[i]) else min(out[i], a[i])
            self.above[m] = run
            if crossed:
                self.crossed.add(m)
            else:
                self.crossed.discard(m)
        return out


def trainer_matrix_evals(config) -> dict[str, int]:
    """Eigenvalue count of each matrix of the trainer's model (trainer.model.Transformer) from
    its run.json (a :class:`grokwatch.store.RunConfig`; the trainer's ``d_model``, ``d_mlp``
    and ``vocab_size``): min(rows, cols). For probe shards written before the htsr probe
    logged n_evals; {} for a run not made by the trainer."""
    try:
        dm, dmlp, v = (int(config.extra[k]) for k in ("d_model", "d_mlp", "vocab_size"))
    except (KeyError, TypeError, ValueError):
        return {}
    out = {"embed": min(v, dm), "unembed": min(v, dm), "mlp.W_in": min(dm, dmlp), "mlp.W_out": min(dm, dmlp)}
    out.update({f"attn.W_{k}": dm for k in "QKVO"})
    return out


# -- rise above the plateau minimum ----------------------------------------------------


class PlateauRise:
    """``x - min(x since t_mem)`` at each probe row on or after t_mem, once at
    least ``min_points`` plateau rows came before it; NaN elsewhere. On real
    runs the Rips H0 persistence entropy falls while the landscape sharpens
    on the plateau and turns up before grokking (docs/evidence/), so the rise
    above its plateau minimum is the H0 early warning. Incremental."""

    def __init__(self, min_points: int = 2) -> None:
        self.min_points = min_points
        self.low = np.inf
        self.n = 0

    def update(self, steps: np.ndarray, x: np.ndarray, t_mem: int | None) -> np.ndarray:
        out = np.full(len(steps), np.nan)
        if t_mem is None:
            return out
        x = np.asarray(x, dtype=np.float64)
        for i in range(len(steps)):
            if steps[i] < t_mem or not np.isfinite(x[i]):
                continue
            if self.n >= self.min_points:
                out[i] = x[i] - self.low
            self.low = min(self.low, x[i])
            self.n += 1
        return out


# -- robust z of h0_entropy --------------------------------------------------------


def robust_z_tail(x: np.ndarray, start: int, baseline: int, min_points: int = 5) -> np.ndarray:
    """Robust z of rows ``start ..`` of ``x`` against the trailing ``baseline`` rows (median/MAD)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    m = n - start
    out = np.full(m, np.nan)
    if m <= 0:
        return out
    lo = max(0, start - baseline)
    seg = x[lo:]
    pad = np.concatenate((np.full(baseline - (start - lo), np.nan), seg))
    # windows[k] = the `baseline` rows before row start+k
    windows = np.lib.stride_tricks.sliding_window_view(pad, baseline)[:m]
    cur = x[start:]
    cnt = np.sum(np.isfinite(windows), axis=1)
    ok = (cnt >= min_points) & np.isfinite(cur)
    if not ok.any():
        return out
    w = windows[ok]
    med = np.nanmedian(w, axis=1)
    mad = np.nanmedian(np.abs(w - med[:, None]), axis=1)
    scale = np.maximum(MAD_SCALE * mad, 1e-6 * np.abs(med) + 1e-12)
    out[ok] = (cur[ok] - med) / scale
    return out


# -- HTSR ----------------------------------------------------------------------------


def htsr_matrices(columns) -> list[str]:
    return sorted(c.split("/", 1)[1] for c in columns if c.startswith("htsr_alpha/"))


def htsr_summary(probes: Mapping[str, np.ndarray], rows: slice, cfg: ScoreConfig) -> tuple[np.ndarray, np.ndarray]:
    """(min reliable alpha, total traps) for the probe rows in ``rows``."""
    n = len(probes["step"][rows])
    alpha_min = np.full(n, np.nan)
    traps = np.full(n, np.nan)
    for m in htsr_matrices(probes):
        a = np.asarray(probes[f"htsr_alpha/{m}"][rows], dtype=np.float64)
        good = np.isfinite(a)
        nt = probes.get(f"htsr_n_tail/{m}")
        if nt is not None:
            with np.errstate(invalid="ignore"):
                good &= np.asarray(nt[rows]) >= cfg.htsr_min_n_tail
        ks = probes.get(f"htsr_ks/{m}")
        if ks is not None:
            with np.errstate(invalid="ignore"):
                good &= np.asarray(ks[rows]) <= cfg.htsr_max_ks
        a = np.where(good, a, np.nan)
        alpha_min = np.fmin(alpha_min, a)
    for c in probes:
        if c.startswith("htsr_traps/"):
            t = np.asarray(probes[c][rows], dtype=np.float64)
            traps = np.where(np.isnan(traps), t, traps + np.where(np.isfinite(t), t, 0.0))
    return alpha_min, traps


# -- phases, incrementally ---------------------------------------------------------------


@dataclass
class PhaseTracker:
    """:func:`grokwatch.runs.phases.phase_of`, fed row blocks instead of the whole run.

    ``update`` returns per-row lifecycle indicators (1.0/0.0) for the alarm
    engine: memorized, grokked, anti_grokking, diverged.
    """

    th: Thresholds = field(default_factory=Thresholds)
    t_mem: int | None = None
    t_grok: int | None = None
    t_anti: int | None = None
    t_diverged: int | None = None
    seen_finite_loss: bool = False
    last_val: float | None = None
    last_train: float | None = None

    @property
    def phase(self) -> str:
        th = self.th
        if self.t_diverged is not None:
            return "diverged"
        if self.t_grok is not None:
            if (
                self.t_anti is not None
                and self.last_val is not None
                and self.last_val < th.anti_val_acc
                and (self.last_train or 0) >= th.mem_train_acc
            ):
                return "anti-grokking"
            return "grokked"
        if self.t_mem is not None:
            return "grokking" if self.last_val is not None and self.last_val > th.grokking_val_acc else "memorized"
        return "learning"

    def update(
        self, steps: np.ndarray, train_acc: np.ndarray, val_acc: np.ndarray, loss: np.ndarray
    ) -> dict[str, np.ndarray]:
        th = self.th
        n = len(steps)
        train_acc = np.asarray(train_acc, dtype=np.float64)
        val_acc = np.asarray(val_acc, dtype=np.float64)
        loss = np.asarray(loss, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            if self.t_diverged is None:
                bad = np.isinf(loss)
                nan = np.isnan(loss)
                if self.seen_finite_loss:
                    bad |= nan
                else:
                    fin = np.flatnonzero(np.isfinite(loss))
                    if fin.size:
                        bad |= nan & (np.arange(n) > fin[0])
                self.t_diverged = first_step(steps, bad)
            if np.isfinite(loss).any():
                self.seen_finite_loss = True
            if self.t_mem is None:
                self.t_mem = first_step(steps, train_acc >= th.mem_train_acc)
            if self.t_mem is not None and self.t_grok is None:
                self.t_grok = first_step(steps, val_acc >= th.grok_val_acc, after=self.t_mem - 1)
            if self.t_grok is not None and self.t_anti is None:
                self.t_anti = first_step(
                    steps, (val_acc < th.anti_val_acc) & (train_acc >= th.mem_train_acc), after=self.t_grok
                )
            anti = np.zeros(n)
            if self.t_grok is not None:
                k = int(np.searchsorted(steps, self.t_grok))  # only rows from t_grok on can be anti-grokking
                if k < n:
                    before_v = _last_finite(val_acc[:k], self.last_val)
                    before_t = _last_finite(train_acc[:k], self.last_train)
                    val_ff = _ffill(val_acc[k:], before_v)
                    train_ff = _ffill(train_acc[k:], before_t)
                    anti[k:] = (val_ff < th.anti_val_acc) & (train_ff >= th.mem_train_acc)
        if n:
            self.last_val = _last_finite(val_acc, self.last_val)
            self.last_train = _last_finite(train_acc, self.last_train)
        return {
            "memorized": _after(steps, self.t_mem),
            "grokked": _after(steps, self.t_grok),
            "anti_grokking": anti,
            "diverged": _after(steps, self.t_diverged),
        }


def _after(steps: np.ndarray, t: int | None) -> np.ndarray:
    if t is None:
        return np.zeros(len(steps))
    return (steps >= t).astype(float)


def _ffill(x: np.ndarray, before: float | None) -> np.ndarray:
    """Forward-fill NaNs, seeding with the last finite value of earlier blocks."""
    ok = np.isfinite(x)
    idx = np.where(ok, np.arange(len(x)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, x[np.maximum(idx, 0)], np.nan if before is None else before)
    return out


def _last_finite(x: np.ndarray, default: float | None) -> float | None:
    idx = np.flatnonzero(np.isfinite(x))
    return float(x[idx[-1]]) if idx.size else default
