"""The report's numbers: one dict, JSON-ready (``--format json`` writes it alone)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .data import ANTI, CENSORED, DIVERGED, GROKKED, NEVER, RunData
from .onsets import SIGNALS, Onsets
from .stats import event_table, median_ci, paired_gain, score, spearman

log = logging.getLogger("grokwatch.report")

# Series compared with weight norm over the plateau (redundancy), by name:
# (title, family, how to get it from a run's probes).
REDUNDANCY = (
    ("h0_entropy", "H0 persistence entropy", "topological"),
    ("h0_total", "H0 total persistence", "topological"),
    ("h0_effective_count", "H0 effective feature count", "topological"),
    ("htsr_alpha_min", "HTSR alpha (min, reliable fits)", "spectral"),
    ("effective_rank", "effective rank (mean)", "spectral"),
    ("commutator_defect", "commutator defect", "geometric"),
)


def counts(runs: Mapping[str, RunData]) -> dict:
    out = {"runs": len(runs), "memorized": 0, GROKKED: 0, ANTI: 0, NEVER: 0, DIVERGED: 0, CENSORED: 0}
    for r in runs.values():
        out[r.outcome] += 1
        if r.info and r.info.t_mem is not None:
            out["memorized"] += 1
    # Runs that reached t_grok, whatever came after (anti-grokking, divergence):
    # the positives of the grokking event.
    out["grokked_total"] = sum(1 for r in runs.values() if r.info and r.info.t_grok is not None)
    return out


def _probe_series(run: RunData, name: str) -> np.ndarray | None:
    pr = run.probes
    if name == "htsr_alpha_min":
        from grokwatch.watch import ScoreConfig
        from grokwatch.watch.scores import htsr_summary

        if not any(k.startswith("htsr_alpha/") for k in pr) or "step" not in pr:
            return None
        amin, _ = htsr_summary(pr, slice(0, len(pr["step"])), ScoreConfig())
        return amin
    if name == "effective_rank":
        cols = [np.asarray(v, dtype=np.float64) for k, v in pr.items() if k.startswith("effective_rank/")]
        if not cols:
            return None
        m = np.vstack(cols)
        cnt = np.isfinite(m).sum(0)
        with np.errstate(invalid="ignore"):
            return np.where(cnt > 0, np.nansum(m, 0) / np.maximum(cnt, 1), np.nan)
    v = pr.get(name)
    return None if v is None else np.asarray(v, dtype=np.float64)


def plateau_window(run: RunData) -> tuple[int, int] | None:
    i = run.info
    if i is None or i.t_mem is None:
        return None
    end = i.t_grok if i.t_grok is not None else (i.t_diverged if i.t_diverged is not None else run.last_step)
    return (i.t_mem, end) if end is not None and end > i.t_mem else None


def redundancy(runs: Mapping[str, RunData]) -> dict:
    """Per series: Spearman rho with weight norm over each run's plateau (probe steps)."""
    out = {}
    for name, title, family in REDUNDANCY:
        rhos = {}
        for rid, r in runs.items():
            win = plateau_window(r)
            x = _probe_series(r, name)
            ps, ss, w = r.probes.get("step"), r.scalars.get("step"), r.scalars.get("weight_norm")
            if win is None or x is None or ps is None or ss is None or w is None or not len(ss):
                continue
            keep = (ps >= win[0]) & (ps < win[1])
            if keep.sum() < 5:
                continue
            j = np.searchsorted(ss, ps[keep])
            j_ok = j < len(ss)
            wj = np.full(len(j), np.nan)
            match = j_ok.copy()
            match[j_ok] = ss[j[j_ok]] == ps[keep][j_ok]
            wj[match] = np.asarray(w, dtype=np.float64)[j[match]]
            rho = spearman(x[keep], wj)
            if rho is not None:
                rhos[rid] = rho
        med, ci = median_ci(list(rhos.values()))
        vals = np.array(list(rhos.values()))
        out[name] = {
            "title": title,
            "family": family,
            "n": len(rhos),
            "rho_median": med,
            "rho_ci": ci,
            "abs_rho_over_0.8": float(np.mean(np.abs(vals) > 0.8)) if len(vals) else None,
            "rho": rhos,
        }
    return out


def prediction_section(sweep_dir: Path, runs: Mapping[str, RunData], predictions: str = "auto") -> dict:
    """``predictions``: "log" (the sweep's predictions.arrow, what the watcher logged), "replay" (replay
    the sweep now with the current predictor), "auto" (the log when there is one, else a replay)."""
    from grokwatch.predict import read_predictions, replay
    from grokwatch.predict.score import error_by_lead, fate_at_share, fate_scores, plateau_errors, window_errors

    series = {rid: r.series for rid, r in runs.items() if r.series is not None}
    preds = read_predictions(sweep_dir) if predictions in ("auto", "log") else []
    source = "the sweep's predictions.arrow"
    if predictions == "replay":
        preds = replay(series, sweep_dir=sweep_dir)
        source = "a replay of the sweep made for this report"
    elif not preds and predictions == "auto":
        preds = replay(series, sweep_dir=sweep_dir)
        source = "a replay of the sweep made for this report (no predictions.arrow)"
    elif not preds:
        source = "the sweep's predictions.arrow (empty or missing)"
    errs = plateau_errors(preds, series)
    detail = {}
    for k, v in errs.items():
        med, ci = median_ci(list(v["errors"].values()))
        detail[k] = {
            **{kk: vv for kk, vv in v.items() if kk != "errors"},
            "median_rel_error_ci": ci,
            "errors": v["errors"],
        }
    by_lead = error_by_lead(preds, series)
    return {
        "source": source,
        "n_predictions": len(preds),
        "methods": _count(p.method for p in preds if p.kind == "t_grok"),
        "detail": detail,
        "by_lead": by_lead,
        "mid_plateau": window_errors(preds, series, 0.4, 0.6),
        "will_grok": fate_scores(preds, series),
        "will_grok_at_10pct_budget": fate_at_share(preds, series, 0.1),
        "sources": _count(p.source or "-" for p in preds if p.kind == "t_grok" and p.ok),
        "preds": preds,
    }


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def build(sweep_dir: Path, runs: Mapping[str, RunData], onsets: Onsets, predictions: str = "auto") -> dict:
    """Every number of the report."""
    tables = {"grokking": event_table(runs, "grokking"), "anti_grokking": event_table(runs, "anti")}
    signals = {}
    for s in SIGNALS:
        fir, av = onsets.firings[s.name], onsets.available[s.name]
        g = score(tables["grokking"], fir, av)
        a = score(tables["anti_grokking"], fir, av)
        entry = {
            "title": s.title,
            "family": s.family,
            "source": onsets.source[s.name],
            "present": bool(onsets.has_data[s.name]),
            "n": g["n"],
            "lead_time_median": g["lead_time_median"],
            "precision": g["precision"],
            "recall": g["recall"],
            "grokking": g,
            "anti_grokking": a,
        }
        if s.name != "weight_norm_crossing":
            wn = "weight_norm_crossing"
            entry["vs_weight_norm"] = paired_gain(tables["grokking"], fir, onsets.firings[wn], av, onsets.available[wn])
        signals[s.name] = entry
    pred = prediction_section(Path(sweep_dir), runs, predictions)
    return {
        "sweep": str(sweep_dir),
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "counts": counts(runs),
        "events": {
            k: {"n_positive": sum(v[0] for v in t.values()), "n_negative": sum(not v[0] for v in t.values())}
            for k, t in tables.items()
        },
        "signals": signals,
        "redundancy": redundancy(runs),
        "prediction_error": {k: v["median_rel_error"] for k, v in pred["detail"].items()},
        "prediction": pred,
        "weight_norm_threshold": onsets.w_star,
    }


def to_json(numbers: dict) -> dict:
    """The JSON document: arrays and objects made plain, per-run details kept."""
    out = dict(numbers)
    pred = dict(out["prediction"])
    pred.pop("preds", None)
    bl = pred.pop("by_lead")
    pred["by_lead"] = {k: [round(float(x), 6) for x in v] for k, v in bl.items()}
    out["prediction"] = pred
    out["weight_norm_threshold"] = {
        k: (None if not np.isfinite(v) else v) for k, v in out["weight_norm_threshold"].items()
    }
    return _plain(out)


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
