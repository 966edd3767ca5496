"""The Markdown text of the report."""

from __future__ import annotations

from .data import ANTI, CENSORED, DIVERGED, GROKKED, NEVER
from .onsets import SIGNALS, Z_BASELINE, Z_THRESHOLD


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _ci(ci, fmt="{:.2f}") -> str:
    lo, hi = ci
    return "" if lo is None else f" [{fmt.format(lo)}, {fmt.format(hi)}]"


def _ci_pct(ci) -> str:
    lo, hi = ci
    return "" if lo is None else f" [{100 * lo:.0f}, {100 * hi:.0f}]"


def _n(k: int, word: str) -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


def _steps(x) -> str:
    return "–" if x is None else f"{x:,.0f}"


def render(numbers: dict, figures: dict[str, list[str]]) -> str:
    c = numbers["counts"]
    sig = numbers["signals"]
    ev = numbers["events"]
    L: list[str] = []
    add = L.append
    add(f"# grokwatch report: {numbers['sweep']}")
    add("")
    add(
        f"Generated {numbers['generated']} by `grokwatch report`. Every number below is computed from the "
        "sweep's own data; intervals are 95% percentile bootstrap CIs over runs (2,000 resamples; none below 5 runs); "
        "n is the number of runs a figure rests on."
    )
    add("")
    add("## The sweep")
    add("")
    add(
        f"{_n(c['runs'], 'run')}: {c[GROKKED]} grokked, {c[ANTI]} grokked then anti-grokked, {c[NEVER]} never grokked "
        f"within their budget, {c[DIVERGED]} diverged (a non-finite loss, before or after grokking; "
        f"{c['grokked_total']} reached t_grok in all), {c[CENSORED]} still open or stalled (censored: left out of "
        f"precision and recall). {c['memorized']} memorized."
    )
    add("")
    for name in figures.get("phase", []):
        add(f"![phase picture]({name})")
    add("")
    if c["runs"] < 5:
        add(
            f"> **Tiny sweep**: {_n(c['runs'], 'run')}. The statistics below rest on very few runs; intervals "
            "are given only where at least 5 runs are scored."
        )
        add("")

    add("## Early-warning signals")
    add("")
    add(
        f"Scored against **grokking** ({_n(ev['grokking']['n_positive'], 'run')} grokked, "
        f"{ev['grokking']['n_negative']} memorized and never grokked: the negatives) and against "
        f"**anti-grokking** ({_n(ev['anti_grokking']['n_positive'], 'run')} collapsed after grokking, "
        f"{_n(ev['anti_grokking']['n_negative'], 'grokked run')} finished without collapsing). A signal *warns* when "
        "it fires between t_mem and t_grok (anti-grokking: between t_grok and the collapse); on a negative run any "
        "firing after t_mem (t_grok) is a false alarm. Lead time = t_grok - first warning."
    )
    add("")
    add(
        "| signal | onsets from | n | lead time median [CI] | precision [CI] | recall [CI] "
        "| anti-grokking precision | anti-grokking recall |"
    )
    add("|---|---|---:|---:|---:|---:|---:|---:|")
    absent = []
    for s in sig.values():
        g, a = s["grokking"], s["anti_grokking"]
        if not s["present"]:
            absent.append(s["title"])
        add(
            f"| {s['title']} | {s['source'] if s['present'] else 'absent'} | {s['n']} "
            f"| {_steps(g['lead_time_median'])}{_ci(g['lead_time_ci'], '{:,.0f}')} "
            f"| {_pct(g['precision'])}{_ci_pct(g['precision_ci'])} | {_pct(g['recall'])}{_ci_pct(g['recall_ci'])} "
            f"| {_pct(a['precision'])} (n={a['n']}) | {_pct(a['recall'])} |"
        )
    add("")
    if absent:
        add(f"**Absent from this sweep's data** (n = 0, no figures): {', '.join(absent)}.")
        add("")
    for name in figures.get("lead", []) + figures.get("pr", []):
        add(f"![{name}]({name})")
    add("")
    add("How onsets were found:")
    add("")
    srcs = {s["source"] for s in sig.values() if s["present"]}
    if "alarms.jsonl" in srcs:
        add(
            "- Rule-based signals (GAI spike, persistence-entropy shift, alpha < 2, correlation traps): the "
            "`firing` records of `.grokwatch/alarms.jsonl`, i.e. what the alarm daemon raised."
        )
    else:
        add(
            "- Rule-based signals (GAI spike, persistence-entropy shift, alpha < 2, correlation traps): no "
            "`alarms.jsonl` was used, so the alarm rules were evaluated here on the runs' columns, through the "
            "watcher's own scoring (GAI z-score of `observables.gai`, robust z of h0_entropy, reliable-fit HTSR alpha "
            "minimum, trap count) and the alarm engine with the rules' thresholds, durations, gates and cooldowns."
        )
    add(
        f"- Commutator defect: robust z of `commutator_defect` against its {Z_BASELINE} trailing probe values "
        f"(a full window) > {Z_THRESHOLD:g} while memorized. Effective-rank drop: the same z of the mean "
        f"`effective_rank/*` < -{Z_THRESHOLD:g}. (No built-in alarm rule exists for either; "
        "same shape as the entropy-shift rule.)"
    )
    add(
        "- Weight norm crossing (the baseline): weight_norm <= w* after t_mem, where w* is the median weight "
        "norm at t_grok of the *other* runs that grokked (same weight decay when at least 3 did) — "
        "leave-one-out, so no run sets its own threshold."
    )
    add("")

    add("## Redundancy with weight norm")
    add("")
    add(
        "Spearman rank correlation between each series and weight norm at the probe steps of each run's plateau "
        "(t_mem to t_grok, or to the end of data). |rho| near 1: the series moves in lockstep with weight norm "
        "there and may say nothing weight norm does not."
    )
    add("")
    add("| series | n runs | median rho [CI] | runs with abs(rho) > 0.8 |")
    add("|---|---:|---:|---:|")
    for r in numbers["redundancy"].values():
        add(f"| {r['title']} | {r['n']} | {_f(r['rho_median'])}{_ci(r['rho_ci'])} | {_pct(r['abs_rho_over_0.8'])} |")
    add("")
    for name in figures.get("redundancy", []):
        add(f"![{name}]({name})")
    add("")
    add(
        "Does each signal add anything beyond the weight-norm baseline? Paired over the runs where both have data: "
        "lead gain = (baseline's lead) subtracted from (the signal's lead) on runs where both warned before t_grok "
        "(> 0: the signal warns earlier); precision and recall gains = signal minus baseline."
    )
    add("")
    add("| signal | runs | pairs | lead gain median [CI] | precision gain [CI] | recall gain [CI] | verdict |")
    add("|---|---:|---:|---:|---:|---:|---|")
    for s in sig.values():
        v = s.get("vs_weight_norm")
        if v is None:
            continue
        add(
            f"| {s['title']} | {v['n']} | {v['n_pairs']} | {_steps(v['lead_gain_median'])}"
            f"{_ci(v['lead_gain_ci'], '{:,.0f}')} | {_f(v['precision_gain'], '{:+.2f}')}{_ci(v['precision_gain_ci'])} "
            f"| {_f(v['recall_gain'], '{:+.2f}')}{_ci(v['recall_gain_ci'])} | {_verdict(v, s['present'])} |"
        )
    add("")

    pred = numbers["prediction"]
    add("## Onset prediction")
    add("")
    add(
        f"Predictions from {pred['source']} ({pred['n_predictions']} rows; t_grok methods: "
        + (", ".join(f"{m} {n}" for m, n in pred["methods"].items()) or "none")
        + "). For each run that grokked, the "
        "newest prediction made by 10%, 25%, 50% and 75% of its plateau (t_mem + f (t_grok - t_mem)) is scored by "
        "|t_grok_pred - t_grok| / t_grok. A run whose newest prediction then was `insufficient-data` has no number "
        "(coverage). The interval is the nominal 80% band. Whose runs made the numbers: "
        + (", ".join(f"{m} {n}" for m, n in pred.get("sources", {}).items()) or "none")
        + " (prior: the preset's shipped runs or earlier sweeps under the root; sweep: its own grokked runs)."
    )
    add("")
    add("| made at | runs | with a number | median relative error [CI] | within 20% | t_grok inside interval |")
    add("|---:|---:|---:|---:|---:|---:|")
    for k, d in pred["detail"].items():
        add(
            f"| {k}% of plateau | {d['n_runs']} | {d['n_predicted']} | {_f(d['median_rel_error'], '{:.3f}')}"
            f"{_ci(d['median_rel_error_ci'], '{:.3f}')} | {_pct(d['within_20'])} | {_pct(d['interval_coverage'])} |"
        )
    add("")
    mid = pred.get("mid_plateau") or {}
    if mid.get("n_predictions"):
        add(
            f"Every prediction made at 40-60% of its plateau, pooled: {mid['n_predictions']} predictions from "
            f"{mid['n_with']} of {mid['n_runs']} grokked runs, median relative error "
            f"{_f(mid['median_rel_error'], '{:.3f}')}, within 20% {_pct(mid['within_20'])}, t_grok inside the "
            f"interval {_pct(mid['interval_coverage'])}."
        )
        add("")
    for name in figures.get("prediction", []):
        add(f"![{name}]({name})")
    add("")
    fb = pred.get("will_grok_at_10pct_budget") or {}
    if fb.get("n"):
        add(
            f"P(groks within budget) as it stood at t_mem + 10% of the budget, for the runs still on their plateau "
            f"then: {fb['n']} runs ({fb['n_grokked']} grokked within budget), ROC AUC {_f(fb['auc'])}, "
            f"Brier {_f(fb['brier'], '{:.3f}')}, accuracy at 0.5 {_pct(fb['accuracy'])}."
        )
        add("")
    fs = pred["will_grok"]
    if fs["n"]:
        when = "" if fs["made_vs_t_mem"] is None else f" (made a median {fs['made_vs_t_mem']:+,.0f} steps from t_mem)"
        add(
            f"Will it grok within budget, each run's first prediction{when} (before memorization the spectral "
            f"signature of the first 400 training losses; on the plateau the growth model's plateau-survival): "
            f"{fs['n']} runs "
            f"({fs['n_grokked']} grokked), accuracy {_pct(fs['accuracy'])}, Brier {_f(fs['brier'], '{:.3f}')}, "
            f"ROC AUC {_f(fs['auc'])}."
        )
    else:
        add(
            "Will it grok within budget: no run got a prediction — the classifier needs at least two finished "
            "runs of each outcome (grokked / not) before it answers, which a single sweep rarely has while its runs "
            "are young. `grokwatch predict --replay --prior OLD_SWEEP` trains it on an earlier sweep."
        )
    add("")

    add("## Every run")
    add("")
    add(
        "Train accuracy (grey), validation accuracy (green), weight norm scaled to its range (dotted), t_mem (grey "
        "line), t_grok (dashed), the first firing of each signal after t_mem (triangles), and the t_grok predicted "
        "at half the plateau with its interval (red diamond)."
    )
    add("")
    for name in figures.get("runs", []):
        add(f"![{name}]({name})")
    add("")
    return "\n".join(L)


def _verdict(v: dict, present: bool) -> str:
    if not present:
        return "no data"
    if not v["n"]:
        return "no runs with both"
    parts = []
    lo = v["lead_gain_ci"][0]
    if lo is not None and lo > 0:
        parts.append("earlier")
    hi = v["lead_gain_ci"][1]
    if hi is not None and hi < 0:
        parts.append("later")
    for key, word in (("precision_gain_ci", "precision"), ("recall_gain_ci", "recall")):
        lo, hi = v[key]
        if lo is not None and lo > 0:
            parts.append(f"more {word}")
        elif hi is not None and hi < 0:
            parts.append(f"less {word}")
    return ", ".join(parts) if parts else "no clear difference"


__all__ = ["SIGNALS", "render"]
