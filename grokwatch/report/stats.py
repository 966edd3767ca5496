"""Scoring signals against grokking and anti-grokking, with bootstrap CIs.

Per event (grokking: from t_mem; anti-grokking: from t_grok) the runs are:

- positives: the event happened; the signal *warned* if it fired in
  [start, t_event); lead time = t_event - first firing in that window;
- negatives: the run reached the start and is over without the event
  (grokking: never grokked within its budget, or diverged; anti-grokking:
  grokked and finished without collapsing); the signal raised a *false
  alarm* if it fired anywhere in [start, end of data];
- runs still open (running, stalled, failed, preempted) are censored and
  left out, as are runs without data for the signal.

precision = TP / (TP + FP), recall = TP / positives. Confidence intervals:
percentile bootstrap over runs (2,000 resamples, fixed seed), 95%.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .data import DIVERGED, NEVER, RunData

B = 2000
SEED = 20240501
MIN_N_CI = 5  # fewer runs than this: no interval (a bootstrap of 1-4 runs says nothing)


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _ci(values: np.ndarray) -> list[float | None]:
    v = values[np.isfinite(values)]
    if len(v) < 10:
        return [None, None]
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


def event_table(runs: Mapping[str, RunData], event: str) -> dict[str, tuple[bool, int, int]]:
    """{run: (is_positive, window start, window end or t_event)} of the runs scored for ``event``."""
    out = {}
    for rid, r in runs.items():
        i = r.info
        if i is None:
            continue
        if event == "grokking":
            if i.t_mem is None:
                continue
            if i.t_grok is not None:
                out[rid] = (True, i.t_mem, i.t_grok)
            elif r.outcome in (NEVER, DIVERGED):
                end = i.t_diverged if i.t_diverged is not None else (r.last_step or i.t_mem)
                out[rid] = (False, i.t_mem, end)
        else:
            if i.t_grok is None:
                continue
            # The event is the collapse (t_anti), whatever the run's phase is now
            # (it may have recovered, or diverged later).
            if i.t_anti is not None:
                out[rid] = (True, i.t_grok, i.t_anti)
            elif r.over:
                out[rid] = (False, i.t_grok, r.last_step or i.t_grok)
    return out


def first_in(steps: list[int], lo: int, hi: int, inclusive: bool) -> int | None:
    for s in steps:
        if s >= lo and (s <= hi if inclusive else s < hi):
            return s
    return None


def score(
    table: dict[str, tuple[bool, int, int]], firings: dict[str, list[int]], available: set[str], seed: int = SEED
) -> dict:
    """Precision, recall and lead times of one signal for one event, with bootstrap CIs."""
    ids = sorted(r for r in table if r in available)
    pos = np.array([table[r][0] for r in ids], dtype=bool)
    fired = np.zeros(len(ids), dtype=bool)
    lead = np.full(len(ids), np.nan)
    onset = {}
    for k, r in enumerate(ids):
        is_pos, lo, hi = table[r]
        s = first_in(firings.get(r, []), lo, hi, inclusive=not is_pos)
        if s is not None:
            fired[k] = True
            onset[r] = s
            if is_pos:
                lead[k] = hi - s
    res: dict[str, Any] = {
        "n": len(ids),
        "n_positive": int(pos.sum()),
        "n_negative": int((~pos).sum()),
        "tp": int((pos & fired).sum()),
        "fp": int((~pos & fired).sum()),
        "fn": int((pos & ~fired).sum()),
        "precision": None,
        "recall": None,
        "lead_time_median": None,
        "precision_ci": [None, None],
        "recall_ci": [None, None],
        "lead_time_ci": [None, None],
        "lead_times": {r: float(lead[k]) for k, r in enumerate(ids) if np.isfinite(lead[k])},
        "onsets": onset,
    }
    if not ids:
        return res
    tp, fp = res["tp"], res["fp"]
    res["precision"] = tp / (tp + fp) if tp + fp else None
    res["recall"] = tp / res["n_positive"] if res["n_positive"] else None
    res["lead_time_median"] = _num(np.median(lead[np.isfinite(lead)])) if np.isfinite(lead).any() else None
    if len(ids) < MIN_N_CI:
        return res
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ids), size=(B, len(ids)))
    P, F, L = pos[idx], fired[idx], lead[idx]
    TP = (P & F).sum(1).astype(float)
    FP = (~P & F).sum(1).astype(float)
    NP = P.sum(1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        res["precision_ci"] = _ci(TP / (TP + FP))
        res["recall_ci"] = _ci(TP / NP)
    if np.isfinite(lead).sum() >= 2:
        res["lead_time_ci"] = _ci(_nanmedian_rows(L))
    return res


def _nanmedian_rows(a: np.ndarray) -> np.ndarray:
    out = np.full(len(a), np.nan)
    ok = np.isfinite(a).any(1)
    if ok.any():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[ok] = np.nanmedian(a[ok], axis=1)
    return out


def median_ci(values, seed: int = SEED) -> tuple[float | None, list[float | None]]:
    """Median of ``values`` and a bootstrap 95% CI of it."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return None, [None, None]
    med = float(np.median(v))
    if len(v) < MIN_N_CI:
        return med, [None, None]
    rng = np.random.default_rng(seed)
    reps = np.median(v[rng.integers(0, len(v), size=(B, len(v)))], axis=1)
    return med, _ci(reps)


def paired_gain(table, firings_a, firings_b, available_a, available_b, seed: int = SEED) -> dict:
    """Signal A against signal B (the weight-norm baseline) on the runs where both have data:
    lead gain (lead_A - lead_B on positives where both warned; > 0: A warns earlier),
    precision and recall gains (A - B) with paired bootstrap CIs."""
    ids = sorted(r for r in table if r in available_a and r in available_b)
    res: dict[str, Any] = {
        "n": len(ids),
        "n_pairs": 0,
        "lead_gain_median": None,
        "lead_gain_ci": [None, None],
        "precision_gain": None,
        "precision_gain_ci": [None, None],
        "recall_gain": None,
        "recall_gain_ci": [None, None],
    }
    if not ids:
        return res
    pos = np.array([table[r][0] for r in ids], dtype=bool)
    fa, fb = np.zeros(len(ids), bool), np.zeros(len(ids), bool)
    gain = np.full(len(ids), np.nan)
    for k, r in enumerate(ids):
        is_pos, lo, hi = table[r]
        sa = first_in(firings_a.get(r, []), lo, hi, not is_pos)
        sb = first_in(firings_b.get(r, []), lo, hi, not is_pos)
        fa[k], fb[k] = sa is not None, sb is not None
        if is_pos and sa is not None and sb is not None:
            gain[k] = sb - sa
    res["n_pairs"] = int(np.isfinite(gain).sum())
    if res["n_pairs"]:
        res["lead_gain_median"], res["lead_gain_ci"] = median_ci(gain[np.isfinite(gain)], seed)

    def prec(P, F):
        tp, fp = (P & F).sum(-1), (~P & F).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return tp / (tp + fp)

    def rec(P, F):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (P & F).sum(-1) / P.sum(-1)

    pg = prec(pos, fa) - prec(pos, fb)
    rg = rec(pos, fa) - rec(pos, fb)
    res["precision_gain"], res["recall_gain"] = _num(pg), _num(rg)
    if len(ids) < MIN_N_CI:
        return res
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ids), size=(B, len(ids)))
    P, A, Bf = pos[idx], fa[idx], fb[idx]
    res["precision_gain_ci"] = _ci(prec(P, A) - prec(P, Bf))
    res["recall_gain_ci"] = _ci(rec(P, A) - rec(P, Bf))
    return res


def _ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (scipy.stats.rankdata's 'average')."""
    uniq, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - (counts - 1) / 2.0)[inv]).astype(np.float64)


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation of the finite pairs (Pearson on average ranks, as
    scipy.stats.spearmanr; numpy only, so the watching install needs no scipy);
    None with fewer than 5 or a constant side."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 5 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    rx, ry = _ranks(np.asarray(x[ok], dtype=np.float64)), _ranks(np.asarray(y[ok], dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    rho = float(np.dot(rx, ry) / np.sqrt(np.dot(rx, rx) * np.dot(ry, ry)))
    return _num(rho)
