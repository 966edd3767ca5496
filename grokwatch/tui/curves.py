"""The detail view's curves: panels and markers from one run's raw columns.

:func:`build_series` turns :class:`RunCurves` (a run's row, its scalar and
probe columns as the watcher's snapshot holds them, its GAI spike steps and
alarm events) into a :class:`~grokwatch.tui.model.DetailPlot`: every curve of
one run, or one curve per run for an overlay. Pure data, no textual: built
off the UI thread.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .model import AlarmRow, DetailPlot, Marker, Panel, RunRow, Series
from .series import prepare


@dataclass
class RunCurves:
    """One run's raw columns and events, as the watcher source hands them to :func:`build_series`."""

    row: RunRow
    scalars: Mapping[str, np.ndarray]
    probes: Mapping[str, np.ndarray]
    gai_spikes: np.ndarray = field(default_factory=lambda: np.zeros(0))  # steps
    alarms: Sequence[AlarmRow] = ()


def _series(label: str, cols: Mapping[str, np.ndarray], name: str, smoothing: float, color: int) -> Series | None:
    if name not in cols or "step" not in cols:
        return None
    x, y = prepare(cols["step"], cols[name], smoothing)
    if len(x) == 0:
        return None
    return Series(label, x, y, color)


def build_series(
    runs: Sequence[RunCurves], smoothing: float = 0.0, generation: int = 0, alpha_line: float | None = None
) -> DetailPlot:
    """Panels and markers for one run (every curve) or an overlay (one curve per run).
    ``alpha_line``: the horizontal line on the HTSR alpha panels (the threshold of the
    alpha alarm rule; None: no line)."""
    hlines = ((alpha_line, f"alpha={alpha_line:g}"),) if alpha_line is not None else ()
    if len(runs) == 1:
        return _single(runs[0], smoothing, generation, hlines)
    return _overlay(runs, smoothing, generation, hlines)


def _markers(d: RunCurves, color: int | None = None) -> list[Marker]:
    r = d.row
    out: list[Marker] = []
    tag = f"{r.run_id} " if color is not None else ""
    if r.t_mem is not None:
        out.append(Marker(r.t_mem, "t_mem", f"{tag}t_mem {r.t_mem}"))
    if r.t_grok is not None:
        out.append(Marker(r.t_grok, "t_grok", f"{tag}t_grok {r.t_grok}"))
    if r.prediction is not None:
        p = r.prediction
        if color is None and p.lo is not None and p.hi is not None and p.hi > p.lo:
            out.append(Marker(p.lo, "band", f"predicted interval {p.lo}..{p.hi}", end=p.hi))
        out.append(Marker(p.step, "predicted", f"{tag}predicted {p.step}"))
    for s in r.restart_steps:
        out.append(Marker(s, "restart", f"{tag}restart {s}"))
    for a in d.alarms:
        # memorized / grokked events are the t_mem / t_grok markers already
        if a.step is not None and a.state != "resolved" and a.rule not in ("memorized", "grokked"):
            out.append(Marker(a.step, "alarm", f"{tag}{a.rule} {a.step}"))
    return out


def _single(d: RunCurves, smoothing: float, generation: int, alpha_hlines: tuple) -> DetailPlot:
    sc, pr = d.scalars, d.probes
    panels = []

    def add(key, title, specs, cols, **kw):
        ss = [
            s for s in (_series(lbl, cols, name, smoothing, i) for i, (lbl, name) in enumerate(specs)) if s is not None
        ]
        panels.append(Panel(key, title, tuple(ss), **kw))

    add("acc", "accuracy", [("train", "train_acc"), ("val", "val_acc")], sc, y_range=(0.0, 1.0))
    add("loss", "loss (log)", [("train", "train_loss"), ("val", "val_loss")], sc, log=True)
    add("wnorm", "weight norm", [("weight norm", "weight_norm")], sc)
    g = _series("grad norm", sc, "grad_norm", smoothing, 0)
    gs: list[Series] = [g] if g is not None else []
    if g is not None and len(d.gai_spikes):
        ys = np.interp(d.gai_spikes, g.x, g.y)
        gs.append(Series("GAI spike", np.asarray(d.gai_spikes, dtype=np.float64), ys, 3, points=True))
    panels.append(Panel("gnorm", "grad norm (log), GAI spikes", tuple(gs), log=True))
    alphas = sorted(k for k in pr if k.startswith("htsr_alpha/"))
    add(
        "alpha",
        "HTSR alpha per matrix",
        [(k.split("/", 1)[1], k) for k in alphas],
        pr,
        hlines=alpha_hlines,
        note="no HTSR probes",
    )
    add("h0", "H0 persistence entropy", [("entropy", "h0_entropy")], pr, note="no H0 probes")
    add("h0n", "H0 effective features", [("effective count", "h0_effective_count")], pr, note="no H0 probes")
    total = d.row.total_steps or 0
    last = float(sc["step"][-1]) if "step" in sc and len(sc["step"]) else 1.0
    x_hi = max(last, float(total), 1.0)
    if d.row.prediction is not None:
        x_hi = max(x_hi, float(d.row.prediction.hi or d.row.prediction.step))
    return DetailPlot((d.row.run_id,), tuple(panels), tuple(_markers(d)), (0.0, x_hi), (d.row,), generation)


def _overlay(runs: Sequence[RunCurves], smoothing: float, generation: int, alpha_hlines: tuple) -> DetailPlot:
    specs: list[tuple[str, str, str, str, dict[str, Any]]] = [
        ("acc", "val accuracy", "scalars", "val_acc", dict(y_range=(0.0, 1.0))),
        ("loss", "train loss (log)", "scalars", "train_loss", dict(log=True)),
        ("wnorm", "weight norm", "scalars", "weight_norm", {}),
        ("gnorm", "grad norm (log)", "scalars", "grad_norm", dict(log=True)),
        ("alpha", "HTSR alpha, min over matrices", "probes", "alpha_min", dict(hlines=alpha_hlines)),
        ("h0", "H0 persistence entropy", "probes", "h0_entropy", {}),
    ]
    panels = []
    for key, title, kind, name, kw in specs:
        ss = []
        for i, d in enumerate(runs):
            cols = d.scalars if kind == "scalars" else d.probes
            if name == "alpha_min":
                cols = _alpha_min(cols)
            s = _series(d.row.run_id, cols, name, smoothing, i)
            if s is not None:
                ss.append(s)
        panels.append(Panel(key, title, tuple(ss), **kw))
    markers = []
    for i, d in enumerate(runs):
        markers += [m for m in _markers(d, i) if m.kind in ("t_grok", "predicted")]
    x_hi = 1.0
    for d in runs:
        if "step" in d.scalars and len(d.scalars["step"]):
            x_hi = max(x_hi, float(d.scalars["step"][-1]))
        x_hi = max(x_hi, float(d.row.total_steps or 0))
    return DetailPlot(
        tuple(d.row.run_id for d in runs),
        tuple(panels),
        tuple(markers),
        (0.0, x_hi),
        tuple(d.row for d in runs),
        generation,
    )


def _alpha_min(probes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    alphas = [np.asarray(probes[k], dtype=np.float64) for k in probes if k.startswith("htsr_alpha/")]
    if not alphas or "step" not in probes:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns between probes
        return {"step": probes["step"], "alpha_min": np.nanmin(np.vstack(alphas), axis=0)}
