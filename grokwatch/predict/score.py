"""Scoring logged predictions against what happened (used by ``grokwatch
predict --replay`` and by the report).

t_grok: for each run that grokked, the newest t_grok prediction made at or
before t_mem + f (t_grok - t_mem), for f = 10%, 25%, 50%, 75% of its plateau;
relative error |t_grok_pred - t_grok| / t_grok. A run whose newest
prediction then was ``insufficient-data`` (or that had none) counts in
``n_runs`` but not in the error: ``coverage`` says how many had a number.

will_grok: for each run whose outcome is known at the end (grokked, or
over without grokking), its first will_grok prediction with a number (the
earliest the classifier could answer; made at step 400 or later, once the
signature's losses are in): accuracy at p = 0.5, Brier score, ROC AUC when
both outcomes occur.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .config import T_GROK, WILL_GROK, Prediction
from .series import RunSeries

FRACTIONS = (0.10, 0.25, 0.5, 0.75)


def _by_run(preds: Iterable[Prediction], kind: str) -> dict[str, list[Prediction]]:
    out: dict[str, list[Prediction]] = {}
    for p in preds:
        if p.kind == kind:
            out.setdefault(p.run, []).append(p)
    for v in out.values():
        v.sort(key=lambda p: p.step)
    return out


def latest_before(preds: list[Prediction], step: float) -> Prediction | None:
    """The newest of ``preds`` (sorted by step) made at or before ``step``."""
    steps = [p.step for p in preds]
    i = int(np.searchsorted(steps, step, side="right"))
    return preds[i - 1] if i else None


def plateau_errors(
    preds: Iterable[Prediction], runs: Mapping[str, RunSeries], fractions: Iterable[float] = FRACTIONS
) -> dict[str, dict]:
    """Per fraction (keys "25", "50", "75"): n_runs, n_predicted, coverage,
    median_rel_error, within_20 (share of predicted runs within 20%),
    interval_coverage (share with lo <= t_grok <= hi), errors {run: rel error},
    methods {method: count}."""
    by = _by_run(preds, T_GROK)
    out = {}
    for f in fractions:
        errs: dict[str, float] = {}
        inside = []
        methods: dict[str, int] = {}
        n_runs = 0
        for rid in sorted(runs):
            e = runs[rid].events()
            if e.t_grok is None or e.t_mem is None:
                continue
            n_runs += 1
            p = latest_before(by.get(rid, []), e.t_mem + f * (e.t_grok - e.t_mem))
            if p is None:
                continue
            methods[p.method] = methods.get(p.method, 0) + 1
            if p.t_grok_pred is None or not np.isfinite(p.t_grok_pred):
                continue
            errs[rid] = abs(p.t_grok_pred - e.t_grok) / e.t_grok
            if p.lo is not None and p.hi is not None:
                inside.append(p.lo <= e.t_grok <= p.hi)
        vals = np.array(list(errs.values()))
        out[f"{round(f * 100):d}"] = {
            "n_runs": n_runs,
            "n_predicted": len(errs),
            "coverage": len(errs) / n_runs if n_runs else None,
            "median_rel_error": float(np.median(vals)) if len(vals) else None,
            "within_20": float(np.mean(vals <= 0.2)) if len(vals) else None,
            "interval_coverage": float(np.mean(inside)) if inside else None,
            "errors": errs,
            "methods": methods,
        }
    return out


def window_errors(preds: Iterable[Prediction], runs: Mapping[str, RunSeries], lo: float = 0.4, hi: float = 0.6) -> dict:
    """Every numeric t_grok prediction made between ``lo`` and ``hi`` of its run's
    plateau (t_mem + share x (t_grok - t_mem)), pooled: n_runs (grokked), n_with
    (runs with at least one), n_predictions, median_rel_error, interval_coverage.
    The window a user checks by hand ("mid-plateau"), where the table above reads
    one prediction per run."""
    by = _by_run(preds, T_GROK)
    errs: list[float] = []
    inside: list[bool] = []
    n_runs = n_with = 0
    for rid in sorted(runs):
        e = runs[rid].events()
        if e.t_grok is None or e.t_mem is None:
            continue
        n_runs += 1
        a, b = e.t_mem + lo * (e.t_grok - e.t_mem), e.t_mem + hi * (e.t_grok - e.t_mem)
        got = [(p, p.t_grok_pred) for p in by.get(rid, []) if a <= p.step <= b and p.t_grok_pred is not None]
        got = [(p, v) for p, v in got if np.isfinite(v)]
        n_with += bool(got)
        for p, v in got:
            errs.append(abs(v - e.t_grok) / e.t_grok)
            if p.lo is not None and p.hi is not None:
                inside.append(p.lo <= e.t_grok <= p.hi)
    return {
        "lo": lo,
        "hi": hi,
        "n_runs": n_runs,
        "n_with": n_with,
        "n_predictions": len(errs),
        "median_rel_error": float(np.median(errs)) if errs else None,
        "within_20": float(np.mean(np.array(errs) <= 0.2)) if errs else None,
        "interval_coverage": float(np.mean(inside)) if inside else None,
    }


def error_by_lead(preds: Iterable[Prediction], runs: Mapping[str, RunSeries]) -> dict[str, np.ndarray]:
    """Every numeric t_grok prediction of a run that grokked: its lead time
    (t_grok - step made), relative error, and the plateau share elapsed."""
    lead, err, share = [], [], []
    for p in preds:
        if p.kind != T_GROK or p.t_grok_pred is None or p.run not in runs:
            continue
        e = runs[p.run].events()
        if e.t_grok is None or e.t_mem is None or e.t_grok <= e.t_mem:
            continue
        lead.append(e.t_grok - p.step)
        err.append(abs(p.t_grok_pred - e.t_grok) / e.t_grok)
        share.append((p.step - e.t_mem) / (e.t_grok - e.t_mem))
    return {"lead": np.array(lead, dtype=float), "rel_error": np.array(err), "plateau_share": np.array(share)}


def final_outcome(run: RunSeries) -> bool | None:
    """True: grokked; False: over without grokking; None: open or censored."""
    last = run.last_step
    return None if last is None else run.outcome_at(last)


def fate_scores(preds: Iterable[Prediction], runs: Mapping[str, RunSeries]) -> dict:
    """Score each run's first will_grok prediction with a number (see module doc)
    against its final outcome; ``made_vs_t_mem``: median of (step made - t_mem)."""
    by = _by_run(preds, WILL_GROK)
    y, p, rel = [], [], []
    for rid in sorted(runs):
        out = final_outcome(runs[rid])
        if out is None:
            continue
        q = next((x for x in by.get(rid, []) if x.p_grok is not None), None)
        if q is None:
            continue
        y.append(1.0 if out else 0.0)
        p.append(q.p_grok)
        t_mem = runs[rid].events().t_mem
        if t_mem is not None:
            rel.append(q.step - t_mem)
    y_arr, p_arr = np.array(y), np.array(p)
    res = {
        "n": len(y),
        "n_grokked": int(y_arr.sum()) if len(y) else 0,
        "accuracy": None,
        "brier": None,
        "auc": None,
        "made_vs_t_mem": float(np.median(rel)) if rel else None,
    }
    if len(y):
        res["accuracy"] = float(np.mean((p_arr >= 0.5) == (y_arr == 1)))
        res["brier"] = float(np.mean((p_arr - y_arr) ** 2))
        res["auc"] = roc_auc(y_arr, p_arr)
    return res


def fate_at_share(preds: Iterable[Prediction], runs: Mapping[str, RunSeries], share: float = 0.1) -> dict:
    """P(groks within budget) as it stood at t_mem + ``share`` x the run's budget:
    for each run with a budget and a final outcome that had memorized and not
    yet grokked by then, the newest will_grok prediction made at or before that
    step, scored against the outcome (AUC, Brier, accuracy at 0.5)."""
    by = _by_run(preds, WILL_GROK)
    y, p = [], []
    for rid in sorted(runs):
        r = runs[rid]
        out = final_outcome(r)
        e = r.events()
        if out is None or e.t_mem is None or not r.total_steps:
            continue
        at = e.t_mem + share * r.total_steps
        if e.t_grok is not None and e.t_grok <= at:
            continue  # grokked before the prediction was due: nothing to predict
        q = latest_before(by.get(rid, []), at)
        if q is None or q.p_grok is None:
            continue
        y.append(1.0 if out else 0.0)
        p.append(q.p_grok)
    y_arr, p_arr = np.array(y), np.array(p)
    return {
        "share": share,
        "n": len(y),
        "n_grokked": int(y_arr.sum()) if len(y) else 0,
        "auc": roc_auc(y_arr, p_arr) if len(y) else None,
        "brier": float(np.mean((p_arr - y_arr) ** 2)) if len(y) else None,
        "accuracy": float(np.mean((p_arr >= 0.5) == (y_arr == 1))) if len(y) else None,
    }


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Mann-Whitney ROC AUC (ties count half); None without both classes."""
    pos, neg = score[y == 1], score[y == 0]
    if not len(pos) or not len(neg):
        return None
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(gt / (len(pos) * len(neg)))
