"""When did each early-warning signal fire, per run?

Two sources, and the report says which it used for each signal:

``alarms.jsonl``
    When ``<sweep>/.grokwatch/alarms.jsonl`` exists (the alarm daemon ran),
    the firings of the four rule-based signals are read from it: every
    ``state == "firing"`` record of rules ``gai_spike``,
    ``persistence_entropy_shift``, ``htsr_alpha_below_2`` and
    ``correlation_trap``. A run the daemon never saw fire counts as silent.
``computed``
    Otherwise (or with ``source="computed"``) the same rules are evaluated
    here: the run's columns go through the watcher's scoring
    (:class:`grokwatch.watch.RunState`: GAI z-score from
    ``observables.gai``, robust z of ``h0_entropy``, reliable-fit HTSR
    alpha minimum, trap count) into an :class:`grokwatch.alerts.AlertEngine`
    loaded with the alarm rules (``default_rules.toml``, or ``rules_path``),
    i.e. with their thresholds, ``for_steps``, gates and cooldowns.

Three signals have no built-in alarm rule and are always computed here,
with rules of the same shape:

``commutator_defect``   robust z of ``commutator_defect`` against its 30 (a full window of)
                        trailing probe values (as ``h0_entropy_z``) > 5,
                        while memorized;
``effective_rank_drop`` robust z of the mean of the ``effective_rank/*``
                        columns < -5, while memorized;
``weight_norm_crossing`` the baseline: weight_norm <= w*, while memorized,
                        where w* is the median weight norm at t_grok of the
                        *other* runs that grokked (same weight decay when
                        at least 3 did, else all) -- leave-one-out, so a
                        run's own t_grok never sets its threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import RunData


@dataclass(frozen=True)
class Signal:
    name: str
    title: str
    family: str  # gradient | topological | spectral | geometric | baseline
    needs: tuple[str, ...]  # column names or prefixes ("htsr_alpha/") that must have finite data
    rule: str | None = None  # the built-in alarm rule, when there is one


SIGNALS = (
    Signal("gai_spike", "GAI spike", "gradient", ("grad_norm",), "gai_spike"),
    Signal(
        "persistence_entropy_shift",
        "persistence-entropy shift",
        "topological",
        ("h0_entropy",),
        "persistence_entropy_shift",
    ),
    Signal("htsr_alpha_below_2", "HTSR alpha < 2", "spectral", ("htsr_alpha/",), "htsr_alpha_below_2"),
    Signal("correlation_trap", "correlation traps", "spectral", ("htsr_traps/",), "correlation_trap"),
    Signal("commutator_defect", "commutator defect", "geometric", ("commutator_defect",)),
    Signal("effective_rank_drop", "effective-rank drop", "spectral", ("effective_rank/",)),
    Signal("weight_norm_crossing", "weight norm crossing", "baseline", ("weight_norm",)),
)
BY_NAME = {s.name: s for s in SIGNALS}
Z_THRESHOLD = 5.0
Z_BASELINE = 30
MIN_CALIBRATORS = 3


def available(run: RunData, sig: Signal) -> bool:
    """The run has finite data for the signal (so silence means "did not fire", not "not measured")."""
    for need in sig.needs:
        cols = [run.scalars, run.probes]
        names = [k for c in cols for k in c if (k.startswith(need) if need.endswith("/") else k == need)]
        for c in cols:
            for k in names:
                if k in c and np.isfinite(np.asarray(c[k], dtype=np.float64)).any():
                    return True
    return False


def _firings_from_engine(run: RunData, rules) -> dict[str, list[int]]:
    from grokwatch.alerts import AlertEngine

    engine = AlertEngine(rules)
    out: dict[str, list[int]] = {}
    for b in run.batches:
        for e in engine.evaluate(run.run_id, b.steps, b.signals, now=0.0, gates=b.gates):
            if e.state == "firing":
                out.setdefault(e.rule, []).append(int(e.step))
    return out


def _probe_z_rules(run: RunData) -> dict[str, list[int]]:
    """commutator_defect and effective_rank_drop through the engine, as rules of the entropy shift's shape."""
    from grokwatch.alerts import AlertEngine, Rule
    from grokwatch.watch.scores import robust_z_tail

    pr = run.probes
    steps = pr.get("step")
    if steps is None or not len(steps) or run.info is None or run.info.t_mem is None:
        return {}
    signals = {}
    if "commutator_defect" in pr:
        signals["commutator_defect_z"] = robust_z_tail(pr["commutator_defect"], 0, Z_BASELINE, Z_BASELINE)
    ranks = [np.asarray(v, dtype=np.float64) for k, v in pr.items() if k.startswith("effective_rank/")]
    if ranks:
        with np.errstate(invalid="ignore"), _quiet():
            mean_rank = np.nanmean(np.vstack(ranks), axis=0)
        signals["effective_rank_z"] = robust_z_tail(mean_rank, 0, Z_BASELINE, Z_BASELINE)
    if not signals:
        return {}
    rules = [
        Rule(
            name="commutator_defect",
            signal="commutator_defect_z",
            comparison=">",
            threshold=Z_THRESHOLD,
            when="memorized",
            cooldown_steps=5000,
        ),
        Rule(
            name="effective_rank_drop",
            signal="effective_rank_z",
            comparison="<",
            threshold=-Z_THRESHOLD,
            when="memorized",
            cooldown_steps=5000,
        ),
    ]
    gates = {"memorized": (steps >= run.info.t_mem).astype(float)}
    out: dict[str, list[int]] = {}
    for e in AlertEngine(rules).evaluate(run.run_id, steps, signals, now=0.0, gates=gates):
        if e.state == "firing":
            out.setdefault(e.rule, []).append(int(e.step))
    return out


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def critical_weight_norms(runs: Mapping[str, RunData]) -> dict[str, float]:
    """w* per run (leave-one-out; see the module doc); NaN when too few other runs grokked."""
    at_grok: dict[str, tuple[float | None, float]] = {}
    for rid, r in runs.items():
        t = r.info.t_grok if r.info else None
        w = r.scalars.get("weight_norm")
        if t is None or w is None:
            continue
        i = int(np.searchsorted(r.scalars["step"], t, side="right"))
        tail = np.asarray(w[max(0, i - 3) : i], dtype=np.float64)
        tail = tail[np.isfinite(tail)]
        if len(tail):
            at_grok[rid] = (r.weight_decay, float(np.mean(tail)))
    out = {}
    for rid, r in runs.items():
        others = [(wd, w) for k, (wd, w) in at_grok.items() if k != rid]
        same = [
            w for wd, w in others if wd is not None and r.weight_decay is not None and np.isclose(wd, r.weight_decay)
        ]
        pool = same if len(same) >= MIN_CALIBRATORS else [w for _, w in others]
        out[rid] = float(np.median(pool)) if pool else float("nan")
    return out


def _wnorm_crossing(run: RunData, w_star: float) -> list[int]:
    if not np.isfinite(w_star) or run.info is None or run.info.t_mem is None:
        return []
    s, w = run.scalars.get("step"), run.scalars.get("weight_norm")
    if s is None or w is None:
        return []
    with np.errstate(invalid="ignore"):
        hit = np.flatnonzero((s >= run.info.t_mem) & (np.asarray(w, dtype=np.float64) <= w_star))
    return [int(s[hit[0]])] if len(hit) else []


def read_alarm_firings(sweep_dir: Path | str) -> dict[str, dict[str, list[int]]] | None:
    """{run: {rule: [firing steps]}} from alarms.jsonl, or None when there is none."""
    from grokwatch.alerts.journal import ALARMS, read_jsonl, state_dir

    path = state_dir(sweep_dir) / ALARMS
    if not path.exists():
        return None
    out: dict[str, dict[str, list[int]]] = {}
    seen = set()
    for rec in read_jsonl(path):
        if rec.get("state") != "firing":
            continue
        key = rec.get("id") or (rec.get("run"), rec.get("rule"), rec.get("step"))
        if key in seen:
            continue
        seen.add(key)
        try:
            out.setdefault(str(rec["run"]), {}).setdefault(str(rec["rule"]), []).append(int(rec["step"]))
        except (KeyError, TypeError, ValueError):
            continue
    for rules in out.values():
        for v in rules.values():
            v.sort()
    return out


@dataclass
class Onsets:
    """firings[signal][run] = sorted firing steps; available[signal] = runs scored (data, and for
    the weight-norm baseline a threshold); has_data[signal] = runs with data; source[signal]."""

    firings: dict[str, dict[str, list[int]]]
    available: dict[str, set[str]]
    source: dict[str, str]
    w_star: dict[str, float]
    has_data: dict[str, set[str]]


def compute_onsets(
    sweep_dir: Path | str, runs: Mapping[str, RunData], source: str = "auto", rules_path: Path | str | None = None
) -> Onsets:
    """Firings of every signal in every run. ``source``: "auto" (alarms.jsonl
    when present), "alarms" or "computed"."""
    from grokwatch.alerts import load_rules

    journal = read_alarm_firings(sweep_dir) if source in ("auto", "alarms") else None
    if source == "alarms" and journal is None:
        raise FileNotFoundError(f"no alarms.jsonl under {sweep_dir}/.grokwatch")
    rule_names = {s.rule for s in SIGNALS if s.rule}
    all_rules = load_rules(rules_path)
    rules = [r for n, r in all_rules.items() if n in rule_names]
    w_star = critical_weight_norms(runs)
    firings: dict[str, dict[str, list[int]]] = {s.name: {} for s in SIGNALS}
    avail: dict[str, set[str]] = {s.name: set() for s in SIGNALS}
    has_data: dict[str, set[str]] = {s.name: set() for s in SIGNALS}
    src: dict[str, str] = {}
    for s in SIGNALS:
        if s.rule is None:
            src[s.name] = "computed"
        elif s.rule not in all_rules:
            src[s.name] = "rule disabled"
        else:
            src[s.name] = "alarms.jsonl" if journal is not None else "computed"
    for rid, run in runs.items():
        fired = _firings_from_engine(run, rules) if journal is None else journal.get(rid, {})
        fired = {**fired, **_probe_z_rules(run)}
        fired["weight_norm_crossing"] = _wnorm_crossing(run, w_star.get(rid, float("nan")))
        for s in SIGNALS:
            ok = available(run, s)
            if ok:
                has_data[s.name].add(rid)
            ok = ok and src[s.name] != "rule disabled"
            if s.name == "weight_norm_crossing":
                ok = ok and np.isfinite(w_star.get(rid, float("nan")))
            if ok:
                avail[s.name].add(rid)
                firings[s.name][rid] = sorted(fired.get(s.rule or s.name, []))
    if has_data["weight_norm_crossing"] and not avail["weight_norm_crossing"]:
        src["weight_norm_crossing"] = "computed (no threshold: too few runs grokked)"
    return Onsets(firings, avail, src, w_star, has_data)
