"""``grokwatch predict SOURCE``: predicted t_grok (and will-grok odds) per run.

Without ``--replay``: each run's prediction as of its newest data (what the
live watcher shows now); nothing is written.

``--replay``: the whole sweep in step order, making exactly the predictions
the live watcher would have made (each from data up to its own step, only
runs grokked by then calibrating it). Written to
``<sweep>/.grokwatch/predictions.arrow`` (replacing it) or ``--out FILE``,
then scored where runs have grokked: median relative error of t_grok for
predictions made at 25, 50 and 75% of each run's plateau.
"""

from __future__ import annotations

import argparse
from typing import Any

from grokwatch.commands import SSH_SOURCE, add_trust_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict each run's grokking step; --replay a finished sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help=f"a sweep directory, or {SSH_SOURCE}")
    add_trust_flag(p)
    p.add_argument("--replay", action="store_true", help="replay the sweep in step order and log every prediction")
    p.add_argument("--out", metavar="FILE", help="with --replay: write the log here instead of the sweep's")
    p.add_argument("--no-write", action="store_true", help="with --replay: write nothing")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--every", type=int, metavar="N", help="predict every N steps (default: budget / 400 per run)")
    p.add_argument(
        "--methods",
        metavar="LIST",
        help="t_grok methods in fallback order (default wnorm-analog,wnorm-extrapolation,plateau-ratio)",
    )
    p.add_argument(
        "--min-calibrators",
        type=int,
        default=3,
        metavar="K",
        help="grokked runs a method needs before it answers (default 3)",
    )
    p.add_argument(
        "--prior",
        action="append",
        default=[],
        metavar="SOURCE",
        help=f"a finished earlier sweep (a directory, or {SSH_SOURCE}) whose runs calibrate from the "
        "start (repeatable)",
    )
    p.add_argument(
        "--no-preset-prior",
        action="store_true",
        help="do not use the runs' preset prior (shipped with grokwatch, and learned from finished "
        "sweeps under the same root): predict from the sweep's own runs and --prior only",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from grokwatch.errors import UsageError
    from grokwatch.predict import (
        METHODS,
        PredictConfig,
        PredictionLog,
        SweepPredictor,
        load_sweep,
        replay,
        write_predictions,
    )
    from grokwatch.predict.score import fate_at_share, fate_scores, plateau_errors, window_errors
    from grokwatch.remote.source import resolve_source

    sweep = resolve_source(args.source)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else METHODS
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UsageError(f"--methods: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(METHODS)}")
    if args.every is not None and args.every < 1:
        raise UsageError("--every must be a positive number of steps")
    if args.min_calibrators < 1:
        raise UsageError("--min-calibrators must be >= 1")
    if (args.out or args.no_write) and not args.replay:
        raise UsageError("--out and --no-write go with --replay")
    cfg = PredictConfig(every=args.every, methods=methods, min_calibrators=args.min_calibrators)
    runs = load_sweep(sweep, cfg.thresholds)
    if not runs:
        raise UsageError(f"{sweep} holds no runs")
    prior = []
    for src in args.prior:
        prior += list(load_sweep(resolve_source(src), cfg.thresholds).values())

    if not args.replay:
        pred = SweepPredictor(cfg, prior=prior, sweep_dir=sweep, auto_prior=not args.no_preset_prior)
        pred.update(runs, backfill=False)
        latest, fate = pred.latest_all(), pred.latest_all("will_grok")
        rows = []
        for rid in sorted(runs):
            r = runs[rid]
            p, f = latest.get(rid), fate.get(rid)
            e = r.events()
            rows.append(
                {
                    "run": rid,
                    "weight_decay": r.weight_decay,
                    "step": r.last_step,
                    "t_mem": e.t_mem,
                    "t_grok": e.t_grok,
                    "prediction": p.to_record() if p else None,
                    "will_grok": f.to_record() if f else None,
                }
            )
        if args.json:
            json.dump({"sweep": str(sweep), "config": cfg.to_dict(), "runs": rows}, sys.stdout, indent=1)
            print()
        else:
            _table(rows)
        return 0

    preds = replay(runs, cfg, prior=prior, sweep_dir=sweep, auto_prior=not args.no_preset_prior)
    _remember(sweep, runs)
    path = None
    if not args.no_write:
        if args.out:
            path = args.out
            try:
                write_predictions(path, preds)
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        else:
            log = PredictionLog(sweep)
            path = str(log.path)
            try:
                log.replace(preds)
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    errors = plateau_errors(preds, runs)
    for v in errors.values():
        v.pop("errors")
    summary: dict[str, Any] = {
        "sweep": str(sweep),
        "written": path,
        "predictions": len(preds),
        "methods": _count(p.method for p in preds if p.kind == "t_grok"),
        "prediction_error": errors,
        "mid_plateau": window_errors(preds, runs, 0.4, 0.6),
        "will_grok": fate_scores(preds, runs),
        "will_grok_at_10pct_budget": fate_at_share(preds, runs, 0.1),
        "sources": _count(p.source or "-" for p in preds if p.kind == "t_grok" and p.ok),
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
        return 0
    print(f"{len(preds)} predictions over {len(runs)} runs" + (f"; written to {path}" if path else ""))
    print("methods: " + ", ".join(f"{m} {n}" for m, n in summary["methods"].items()))
    print("numbers made from: " + (", ".join(f"{m} {n}" for m, n in summary["sources"].items()) or "none"))
    print("t_grok predicted at      runs  with a number  median rel. error  within 20%  in interval")
    for k, v in errors.items():
        med = "-" if v["median_rel_error"] is None else f"{v['median_rel_error']:.3f}"
        w20 = "-" if v["within_20"] is None else f"{v['within_20']:.0%}"
        cov = "-" if v["interval_coverage"] is None else f"{v['interval_coverage']:.0%}"
        print(f"  {k:>2}% of the plateau   {v['n_runs']:>6}  {v['n_predicted']:>13}  {med:>17}  {w20:>10}  {cov:>11}")
    mid = summary["mid_plateau"]
    if mid["n_predictions"]:
        print(
            f"every prediction made at 40-60% of its plateau: {mid['n_predictions']} from {mid['n_with']} of "
            f"{mid['n_runs']} runs, median rel. error {mid['median_rel_error']:.3f}, within 20% "
            f"{mid['within_20']:.0%}, in interval "
            + ("-" if mid["interval_coverage"] is None else f"{mid['interval_coverage']:.0%}")
        )
    fs = summary["will_grok"]
    if fs["n"]:
        auc = "-" if fs["auc"] is None else f"{fs['auc']:.2f}"
        when = "" if fs["made_vs_t_mem"] is None else f", made a median {fs['made_vs_t_mem']:+.0f} steps from t_mem"
        print(
            f"will-grok (first prediction per run{when}): {fs['n']} runs scored, accuracy {fs['accuracy']:.0%}, "
            f"Brier {fs['brier']:.3f}, AUC {auc}"
        )
    else:
        print("will-grok: no run got a prediction (too few finished runs of each outcome; see --prior)")
    fb = summary["will_grok_at_10pct_budget"]
    if fb["n"]:
        auc = "-" if fb["auc"] is None else f"{fb['auc']:.2f}"
        print(
            f"P(groks within budget) at t_mem + 10% of the budget: {fb['n']} runs still on their plateau then "
            f"({fb['n_grokked']} grokked within budget), AUC {auc}, Brier {fb['brier']:.3f}"
        )
    return 0


def _remember(sweep, runs) -> None:
    """A finished sweep teaches its root's priors file (grokwatch.predict.priors)."""
    from grokwatch.predict.priors import remember_sweep
    from grokwatch.store import ContractError, RunConfig

    def config(rid):
        try:
            return RunConfig.read(sweep / rid)
        except ContractError:
            return None

    configs = {rid: config(rid) for rid in runs}
    remember_sweep(sweep, runs, configs)


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _table(rows: list[dict]) -> None:
    head = (
        f"{'run':<16} {'wd':>5} {'step':>7} {'t_mem':>6} {'t_grok':>7}  "
        f"{'predicted t_grok':<24} {'method':<20} {'P(grok)':>7}"
    )
    print(head)
    for r in rows:
        p, f = r["prediction"], r["will_grok"]
        if p and p["t_grok_pred"] is not None:
            pred = f"{p['t_grok_pred']:.0f} [{p['lo']:.0f}, {p['hi']:.0f}]"
        else:
            pred = "-"
        method = p["method"] if p else ("grokked" if r["t_grok"] is not None else "-")
        pg = f"{f['p_grok']:.2f}" if f and f["p_grok"] is not None else "-"
        wd = "-" if r["weight_decay"] is None else f"{r['weight_decay']:g}"
        print(
            f"{r['run']:<16} {wd:>5} {r['step'] or 0:>7} {r['t_mem'] or '-':>6} {r['t_grok'] or '-':>7}  "
            f"{pred:<24} {method:<20} {pg:>7}"
        )
