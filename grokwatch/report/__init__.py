"""``grokwatch report``: what a finished (or running) sweep says about its
early-warning signals and onset predictions, as Markdown + PNG figures or
as JSON numbers. Headless: numpy, scipy, matplotlib (Agg), never a UI.

::

    from grokwatch.report import make_report
    numbers = make_report(sweep_dir, out_dir, fmt="md")   # report.md, *.png, report.json

Sections: the sweep (outcome counts, phase picture weight decay x seed);
per signal lead time before t_grok, precision and recall against grokking
and anti-grokking (:mod:`grokwatch.report.stats`), onsets from alarms.jsonl
or computed with the alarm rules (:mod:`grokwatch.report.onsets`);
redundancy with weight norm (Spearman over the plateau) and the gain over a
weight-norm-only baseline; t_grok prediction error at 25/50/75% of the
plateau (:mod:`grokwatch.predict.score`); small multiples of every run.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_report(
    sweep_dir: Path | str,
    out_dir: Path | str,
    fmt: str = "md",
    onsets: str = "auto",
    rules: Path | str | None = None,
    predictions: str = "auto",
) -> dict:
    """Write the report for ``sweep_dir`` into ``out_dir``; return its JSON numbers.

    fmt "md": report.md, the PNG figures and report.json; "json": report.json only.
    onsets: "auto" (alarms.jsonl when present), "alarms" or "computed".
    rules: an alarm rules file (merged over the defaults) for computed onsets.
    predictions: "auto" (predictions.arrow when present, else a replay), "log" or "replay".
    """
    from .build import build, to_json
    from .data import load_runs
    from .onsets import compute_onsets

    sweep_dir, out = Path(sweep_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(sweep_dir)
    ons = compute_onsets(sweep_dir, runs, source=onsets, rules_path=rules)
    numbers = build(sweep_dir, runs, ons, predictions)
    doc = to_json(numbers)
    if fmt == "md":
        from . import figures as F
        from .markdown import render

        figs = {
            "phase": [F.phase_grid(runs, out)],
            "lead": [F.lead_times(numbers, out)],
            "pr": [F.precision_recall(numbers, out)],
            "redundancy": [F.redundancy(numbers, out)],
            "prediction": [F.prediction_error(numbers, out)],
            "runs": F.small_multiples(runs, numbers, ons, out),
        }
        doc["figures"] = [n for v in figs.values() for n in v]
        (out / "report.md").write_text(render(numbers, figs))
    from grokwatch.store import atomic_write_bytes

    atomic_write_bytes(out / "report.json", (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode())
    return doc


__all__ = ["make_report"]
