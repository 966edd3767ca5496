"""The report's PNG figures (matplotlib, Agg backend: no display needed).

Every function takes the numbers (and runs), writes one or more PNGs into
``out`` and returns their file names; a figure with nothing to show says
so in the picture rather than failing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .data import ANTI, CENSORED, DIVERGED, GROKKED, NEVER, RunData
from .onsets import SIGNALS

OUTCOME_COLORS = {GROKKED: "#2a9d8f", ANTI: "#e76f51", NEVER: "#8d99ae", DIVERGED: "#222222", CENSORED: "#e9c46a"}
SIGNAL_COLORS = {
    "gai_spike": "#1d3557",
    "persistence_entropy_shift": "#6a4c93",
    "htsr_alpha_below_2": "#e63946",
    "correlation_trap": "#f4a261",
    "commutator_defect": "#2a9d8f",
    "effective_rank_drop": "#0077b6",
    "weight_norm_crossing": "#6c757d",
}
DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=DPI, bbox_inches="tight")
    _plt().close(fig)
    return name


def _wd_label(wd) -> str:
    return "?" if wd is None else f"{wd:g}"


def phase_grid(runs: Mapping[str, RunData], out: Path) -> str:
    """Weight decay x seed, coloured by outcome, t_grok (k steps) written in; and t_grok by weight decay."""
    plt = _plt()
    wds: list[float | None] = list(sorted({r.weight_decay for r in runs.values() if r.weight_decay is not None}))
    if not wds or any(r.weight_decay is None for r in runs.values()):
        wds.append(None)  # a run without a weight decay gets a column of its own ("?")
    seeds: list[int | None] = [*sorted({r.seed for r in runs.values() if r.seed is not None})] or [None]
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(12, max(3.5, 0.28 * len(seeds) + 1.5)), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    if not runs:
        _empty(ax, "no runs")
        _empty(ax2, "no runs")
        return _save(fig, out, "phase_grid.png")
    from matplotlib.patches import Patch

    placed = set()
    for rid, r in runs.items():
        wd = r.weight_decay if r.weight_decay in wds else None
        if wd not in wds or (r.seed not in seeds):
            continue
        x, y = wds.index(wd), seeds.index(r.seed)
        placed.add(rid)
        ax.add_patch(plt.Rectangle((x - 0.45, y - 0.45), 0.9, 0.9, color=OUTCOME_COLORS[r.outcome]))
        if r.info and r.info.t_grok is not None:
            ax.text(x, y, f"{r.info.t_grok / 1000:.1f}k", ha="center", va="center", fontsize=7, color="white")
    ax.set_xlim(-0.5, len(wds) - 0.5)
    ax.set_ylim(len(seeds) - 0.5, -0.5)
    ax.set_xticks(range(len(wds)), [_wd_label(w) for w in wds])
    ax.set_yticks(range(len(seeds)), ["?" if s is None else str(s) for s in seeds], fontsize=7)
    ax.set_xlabel("weight decay")
    ax.set_ylabel("seed")
    ax.set_title(f"outcome per run (t_grok in k steps); {len(placed)} of {len(runs)} runs placed")
    present = sorted({r.outcome for r in runs.values()}, key=list(OUTCOME_COLORS).index)
    ax.legend(
        handles=[Patch(color=OUTCOME_COLORS[o], label=o) for o in present],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08 if len(seeds) > 10 else -0.15),
        ncol=len(present),
        fontsize=8,
        frameon=False,
    )
    # t_grok against weight decay
    xs, ys, cs = [], [], []
    top = max([r.last_step or 0 for r in runs.values()] + [1])
    rng = np.random.default_rng(0)
    for r in runs.values():
        wd = r.weight_decay if r.weight_decay in wds else None
        xj = wds.index(wd) + rng.uniform(-0.15, 0.15)
        t = r.info.t_grok if r.info and r.info.t_grok is not None else None
        xs.append(xj)
        ys.append(t if t is not None else top * 1.15)
        cs.append(OUTCOME_COLORS[r.outcome])
    ax2.scatter(xs, ys, c=cs, s=18, edgecolor="none")
    ax2.axhline(top * 1.07, color="#bbbbbb", lw=0.8, ls=":")
    ax2.text(len(wds) - 0.5, top * 1.15, "no t_grok", ha="right", va="center", fontsize=8, color="#666666")
    ax2.set_yscale("log")
    ax2.set_xticks(range(len(wds)), [_wd_label(w) for w in wds])
    ax2.set_xlim(-0.5, len(wds) - 0.5)
    ax2.set_xlabel("weight decay")
    ax2.set_ylabel("t_grok (step)")
    ax2.set_title("grokking step by weight decay")
    return _save(fig, out, "phase_grid.png")


def lead_times(numbers: dict, out: Path) -> str:
    plt = _plt()
    sig = numbers["signals"]
    names = list(sig)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(names) + 1.5))
    any_data = False
    rng = np.random.default_rng(1)
    for k, name in enumerate(names):
        leads = np.array(list(sig[name]["grokking"]["lead_times"].values()), dtype=float)
        y = len(names) - 1 - k
        if not sig[name]["present"]:
            ax.text(
                0.01,
                y,
                "no data in this sweep",
                va="center",
                fontsize=8,
                color="#888888",
                transform=ax.get_yaxis_transform(),
            )
            continue
        if not len(leads):
            ax.text(
                0.01,
                y,
                "never warned before t_grok",
                va="center",
                fontsize=8,
                color="#888888",
                transform=ax.get_yaxis_transform(),
            )
            continue
        any_data = True
        ax.scatter(
            np.maximum(leads, 1),
            y + rng.uniform(-0.18, 0.18, len(leads)),
            s=10,
            color=SIGNAL_COLORS.get(name, "k"),
            alpha=0.7,
            edgecolor="none",
        )
        med = sig[name]["lead_time_median"]
        if med is not None:
            ax.plot([max(med, 1)] * 2, [y - 0.3, y + 0.3], color="k", lw=2)
        ax.text(1.02, y, f" n={len(leads)}", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    ax.set_yticks(range(len(names)), [sig[n]["title"] for n in reversed(names)])
    ax.set_xscale("log")
    if not any_data:
        ax.set_xlim(1, 10)
    ax.set_xlabel("lead time before t_grok (steps, log; black bar: median)")
    ax.set_title("how early each signal warns of grokking (runs that grokked and were warned)")
    return _save(fig, out, "lead_times.png")


def precision_recall(numbers: dict, out: Path) -> str:
    plt = _plt()
    sig = numbers["signals"]
    names = list(sig)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(names) + 1.8), sharey=True)
    for ax, event, title in zip(axes, ("grokking", "anti_grokking"), ("grokking", "anti-grokking")):
        ev = numbers["events"][event]
        if not ev["n_positive"]:
            _empty(ax, f"no {title} event in this sweep")
            ax.set_title(f"against {title}")
            continue
        y = np.arange(len(names))[::-1]
        for off, key, color in ((0.18, "precision", "#264653"), (-0.18, "recall", "#e9c46a")):
            vals: list[float] = []
            errs: list[list[float]] = [[], []]
            for n in names:
                s = sig[n][event]
                v = s[key]
                lo, hi = s[f"{key}_ci"]
                vals.append(np.nan if v is None else v)
                errs[0].append(0 if v is None or lo is None else max(0.0, v - lo))
                errs[1].append(0 if v is None or hi is None else max(0.0, hi - v))
            ax.barh(y + off, vals, height=0.34, color=color, label=key, xerr=errs, error_kw={"lw": 0.8})
        for yy, n in zip(y, names):
            s = sig[n][event]
            ax.text(1.02, yy, f"n={s['n']}", va="center", fontsize=7, transform=ax.get_yaxis_transform())
        ax.set_xlim(0, 1)
        ax.set_title(f"against {title} ({ev['n_positive']} events, {ev['n_negative']} negatives)")
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_yticks(np.arange(len(names))[::-1], [sig[n]["title"] for n in names])
    return _save(fig, out, "precision_recall.png")


def redundancy(numbers: dict, out: Path) -> str:
    plt = _plt()
    red = numbers["redundancy"]
    names = list(red)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(names) + 1.5))
    rng = np.random.default_rng(2)
    for k, n in enumerate(names):
        y = len(names) - 1 - k
        rho = np.array(list(red[n]["rho"].values()), dtype=float)
        if not len(rho):
            ax.text(0, y, "no data", ha="center", va="center", fontsize=8, color="#888888")
            continue
        ax.scatter(rho, y + rng.uniform(-0.18, 0.18, len(rho)), s=10, alpha=0.7, edgecolor="none")
        med, (lo, hi) = red[n]["rho_median"], red[n]["rho_ci"]
        ax.plot([med] * 2, [y - 0.3, y + 0.3], color="k", lw=2)
        if lo is not None:
            ax.plot([lo, hi], [y, y], color="k", lw=1)
        ax.text(1.04, y, f"n={len(rho)}", va="center", fontsize=8)
    ax.axvline(0, color="#bbbbbb", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.set_yticks(range(len(names)), [red[n]["title"] for n in reversed(names)])
    ax.set_xlabel("Spearman rho with weight norm over the plateau (per run; bar: median, line: 95% CI)")
    ax.set_title("do topological and spectral signals just track weight norm?")
    return _save(fig, out, "redundancy.png")


def prediction_error(numbers: dict, out: Path) -> str:
    plt = _plt()
    pred = numbers["prediction"]
    bl = pred["by_lead"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    lead, err = np.asarray(bl["lead"], float), np.asarray(bl["rel_error"], float)
    if not len(lead):
        _empty(ax, "no numeric t_grok prediction for a run that grokked")
    else:
        floor = 1e-4
        sc = ax.scatter(
            np.maximum(lead, 1),
            np.maximum(err, floor),
            c=np.clip(bl["plateau_share"], 0, 1),
            s=6,
            cmap="viridis",
            alpha=0.6,
            edgecolor="none",
        )
        fig.colorbar(sc, ax=ax, label="share of the plateau elapsed")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(floor / 1.5, max(0.5, float(np.nanmax(err)) * 1.5))
        ax.axhline(0.2, color="#e63946", lw=0.8, ls="--")
        ax.text(ax.get_xlim()[0], 0.2, " 20%", color="#e63946", va="bottom", fontsize=8)
        ax.set_xlabel("lead time: t_grok - step the prediction was made at (log)")
        ax.set_ylabel(f"|t_grok_pred - t_grok| / t_grok (log; floor {floor:g})")
    ax.set_title(f"t_grok prediction error against lead time ({len(lead)} predictions)")
    det = pred["detail"]
    keys = list(det)
    meds = [det[k]["median_rel_error"] for k in keys]
    if all(m is None for m in meds):
        _empty(ax2, "no scored predictions")
    else:
        x = np.arange(len(keys))
        vals = [np.nan if m is None else m for m in meds]
        lo = [
            0 if m is None or det[k]["median_rel_error_ci"][0] is None else m - det[k]["median_rel_error_ci"][0]
            for k, m in zip(keys, meds)
        ]
        hi = [
            0 if m is None or det[k]["median_rel_error_ci"][1] is None else det[k]["median_rel_error_ci"][1] - m
            for k, m in zip(keys, meds)
        ]
        ax2.bar(x, vals, yerr=[lo, hi], color="#457b9d", capsize=4)
        for xi, k in zip(x, keys):
            ax2.text(
                xi,
                0,
                f"n={det[k]['n_predicted']}/{det[k]['n_runs']}",
                ha="center",
                va="bottom",
                fontsize=8,
                color="white" if det[k]["n_predicted"] else "k",
            )
        ax2.set_xticks(x, [f"{k}%" for k in keys])
        ax2.set_xlabel("prediction made at this share of the plateau")
        ax2.set_ylabel("median relative error (95% CI)")
    ax2.set_title("error by how far into the plateau")
    return _save(fig, out, "prediction_error.png")


def _kilo():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}")


def _thin(x: np.ndarray, n: int = 600) -> np.ndarray:
    if len(x) <= n:
        return np.arange(len(x))
    return np.unique(np.linspace(0, len(x) - 1, n).astype(int))


def small_multiples(runs: Mapping[str, RunData], numbers: dict, onsets, out: Path) -> list[str]:
    """One figure per weight decay: every run's accuracies and weight norm, its t_mem / t_grok,
    the first firing of each signal, and the t_grok predicted at half of its plateau."""
    plt = _plt()
    from grokwatch.predict.score import latest_before

    preds: dict[str, list] = {}
    for p in numbers["prediction"].get("preds", []):
        if p.kind == "t_grok" and p.t_grok_pred is not None:
            preds.setdefault(p.run, []).append(p)
    groups: dict = {}
    for rid in sorted(runs):
        groups.setdefault(runs[rid].weight_decay, []).append(rid)
    names = []
    for wd in sorted(groups, key=lambda w: (w is None, w or 0)):
        ids = groups[wd]
        ncol = min(6, len(ids))
        nrow = math.ceil(len(ids) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 1.9 * nrow + 0.8), squeeze=False)
        for ax in axes.flat[len(ids) :]:
            ax.axis("off")
        for ax, rid in zip(axes.flat, ids):
            r = runs[rid]
            s = r.scalars.get("step")
            if s is None or not len(s):
                _empty(ax, "no data")
                ax.set_title(rid, fontsize=8)
                continue
            ta = np.asarray(r.scalars.get("train_acc", np.full(len(s), np.nan)), float)
            va = np.asarray(r.scalars.get("val_acc", np.full(len(s), np.nan)), float)
            k = _thin(s)
            ax.plot(s[k], ta[k], color="#8d99ae", lw=0.8)
            ok = np.isfinite(va)
            kv = _thin(s[ok])
            ax.plot(s[ok][kv], va[ok][kv], color="#2a9d8f", lw=1.0)
            w = r.scalars.get("weight_norm")
            if w is not None:
                w = np.asarray(w, float)
                fin = np.isfinite(w)
                if fin.any():
                    lo, hi = np.nanmin(w), np.nanmax(w)
                    ax.plot(s[k], (w[k] - lo) / (hi - lo if hi > lo else 1), color="#6c757d", lw=0.7, ls=":")
            i = r.info
            if i and i.t_mem is not None:
                ax.axvline(i.t_mem, color="#adb5bd", lw=0.6)
            if i and i.t_grok is not None:
                ax.axvline(i.t_grok, color="#2a9d8f", lw=0.8, ls="--")
            for sig in SIGNALS:
                f = onsets.firings[sig.name].get(rid, [])
                if i and i.t_mem is not None:
                    f = [x for x in f if x >= i.t_mem]
                if f:
                    ax.plot([f[0]], [1.06], marker="v", ms=4, color=SIGNAL_COLORS[sig.name], clip_on=False)
            if i and i.t_grok is not None and i.t_mem is not None and rid in preds:
                p = latest_before(preds[rid], i.t_mem + 0.5 * (i.t_grok - i.t_mem))
                if p is not None:
                    ax.plot([p.t_grok_pred], [0.5], marker="D", ms=4, color="#e63946")
                    ax.plot([p.lo, p.hi], [0.5, 0.5], color="#e63946", lw=0.8)
            ax.set_ylim(-0.05, 1.12)
            ax.set_xlim(0, s[-1])
            ax.xaxis.set_major_formatter(_kilo())
            ax.tick_params(labelsize=6)
            ax.set_title(f"{rid} ({r.outcome})", fontsize=8, color=OUTCOME_COLORS[r.outcome])
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], color="#8d99ae", label="train acc"),
            Line2D([], [], color="#2a9d8f", label="val acc"),
            Line2D([], [], color="#6c757d", ls=":", label="weight norm (min-max)"),
            Line2D([], [], color="#2a9d8f", ls="--", label="t_grok"),
            Line2D([], [], color="#e63946", marker="D", ls="-", ms=4, label="t_grok predicted at 50% plateau"),
        ]
        handles += [
            Line2D([], [], color=SIGNAL_COLORS[s.name], marker="v", ls="", label=s.title)
            for s in SIGNALS
            if any(onsets.firings[s.name].get(rid) for rid in ids)
        ]
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(6, len(handles)),
            fontsize=7,
            frameon=False,
            bbox_to_anchor=(0.5, -0.02),
        )
        fig.suptitle(f"weight decay {_wd_label(wd)}: {len(ids)} runs (markers: first firing after t_mem)", fontsize=10)
        fig.tight_layout(rect=(0, 0.05, 1, 0.97))
        names.append(_save(fig, out, f"runs_wd{_wd_label(wd)}.png"))
    return names
