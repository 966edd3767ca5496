"""Priors: finished runs of earlier sweeps, so that no run waits for calibrators.

A prior is a set of finished runs (:class:`PriorRun`), stored compactly as one
Arrow IPC file: the predictor's columns (``COLUMNS``) of each run, every row
of the first ``FULL_ROWS`` steps (the will-grok signature reads them) and then
every ``stride``-th row (t_mem and t_grok keep their exact rows). Two places:

- **per preset**, shipped with grokwatch: ``grokwatch/priors/<preset>.arrow``,
  measured on the evidence sweep (``bench/evidence.py``; docs/evidence/). A run
  whose run.json names that preset gets it automatically.
- **per root**, learned: ``<root>/.grokwatch/priors/<preset>.arrow``. When a
  sweep under ``<root>`` is over (every run finished), :func:`remember_sweep`
  adds its runs there (replacing that sweep's earlier entry), and later sweeps
  of the same preset under the same root use them alongside the shipped ones.

No peeking: a prior holds only runs of *other* sweeps; :func:`auto_prior`
leaves out any prior run whose sweep is the one being predicted for, and the
predictor never calibrates a run with a prior run that is its twin (same
preset, seed and weight decay: on a CPU the same trajectory, bit for bit).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from grokwatch.store import RunConfig

from .series import COLUMNS, PriorRun, RunSeries

log = logging.getLogger("grokwatch.predict")

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "priors"
ROOT_DIR = Path(".grokwatch") / "priors"
SIM_PRESET = "sim"  # grokwatch.sim.simulate's runs say this preset
FULL_ROWS = 400
STRIDE = 10
# A preset prior with fewer grokked runs than this is joined by the other presets' runs on the
# lr x wd scale (plateau x lr x wd is about 9 for both presets). The canonical prior's 12 runs, each
# predicted from the other 11 (bench/evidence_report.py POOLED_LOO), median relative error at 10 /
# 25 / 50 / 75% of the plateau: 0.32 / 0.32 / 0.07 / 0.08 alone, 0.28 / 0.19 / 0.09 / 0.09 joined by
# the tiny runs (the tiny prior's 22 stand alone).
SMALL_PRIOR = 15


def _keep_rows(run: RunSeries, stride: int) -> np.ndarray:
    n = len(run.steps)
    keep = np.zeros(n, bool)
    keep[: min(n, FULL_ROWS)] = True
    # The thinning grid: the rows where validation was evaluated (the growth model reads val
    # loss and accuracy there), thinned to about one row in ``stride``; every stride-th row
    # when the run has no validation rows.
    val = np.isfinite(np.asarray(run.cols.get("val_loss", np.zeros(0)), dtype=np.float64))
    if val.any():
        idx = np.flatnonzero(val)
        keep[idx[:: max(1, int(round(stride * len(idx) / max(1, n))))]] = True
    else:
        keep[:: max(1, stride)] = True
    if n:
        keep[-1] = True
    e = run.events()
    for t in (e.t_mem, e.t_grok, e.t_diverged):
        if t is not None:
            i = int(np.searchsorted(run.steps, t))
            keep[max(0, i - 3) : i + 1] = True  # the exact event row and the rows w_crit averages
    return keep


def write_prior(
    path: Path | str, runs: Iterable[tuple[str, RunSeries, str]], meta: Mapping | None = None, stride: int = STRIDE
) -> int:
    """Write ``runs`` ((sweep name, series, preset) triples) as one prior file; returns the rows written."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    cols: dict[str, list] = {
        "sweep": [],
        "run": [],
        "preset": [],
        "seed": [],
        "weight_decay": [],
        "lr": [],
        "total_steps": [],
        "state": [],
        "step": [],
        **{c: [] for c in COLUMNS},
    }
    for sweep, r, preset in runs:
        keep = _keep_rows(r, stride)
        m = int(keep.sum())
        cols["sweep"] += [sweep] * m
        cols["run"] += [r.run_id] * m
        cols["preset"] += [preset] * m
        cols["seed"] += [r.seed] * m
        cols["weight_decay"] += [r.weight_decay] * m
        cols["lr"] += [r.lr] * m
        cols["total_steps"] += [r.total_steps] * m
        cols["state"] += [r.state] * m
        cols["step"] += r.steps[keep].tolist()
        for c in COLUMNS:
            cols[c] += np.asarray(r.cols[c], dtype=np.float32)[keep].tolist()
    table = pa.table(
        {
            "sweep": pa.array(cols["sweep"], pa.string()).dictionary_encode(),
            "run": pa.array(cols["run"], pa.string()).dictionary_encode(),
            "preset": pa.array(cols["preset"], pa.string()).dictionary_encode(),
            "seed": pa.array(cols["seed"], pa.int64()),
            "weight_decay": pa.array(cols["weight_decay"], pa.float64()),
            "lr": pa.array(cols["lr"], pa.float64()),
            "total_steps": pa.array(cols["total_steps"], pa.int64()),
            "state": pa.array(cols["state"], pa.string()).dictionary_encode(),
            "step": pa.array(cols["step"], pa.int64()),
            **{c: pa.array(cols[c], pa.float32()) for c in COLUMNS},
        }
    )
    table = table.replace_schema_metadata({"grokwatch_prior": json.dumps(dict(meta or {}))})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with ipc.new_file(tmp, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)
    os.replace(tmp, path)
    return table.num_rows


def read_prior(path: Path | str) -> tuple[list[tuple[str, PriorRun]], dict]:
    """[(sweep name, PriorRun)] and the file's metadata; ([], {}) with a warning for a bad file."""
    import pyarrow.ipc as ipc

    try:
        with ipc.open_file(path) as f:
            table = f.read_all()
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on a corrupt file
        log.warning("prior %s: cannot read (%s); ignored", path, exc)
        return [], {}
    meta = json.loads((table.schema.metadata or {}).get(b"grokwatch_prior", b"{}"))
    d = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    out = []
    keys = list(zip(d["sweep"], d["run"]))
    order: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        order.setdefault(k, []).append(i)
    for (sweep, rid), rows in order.items():
        idx = np.asarray(rows)
        i0 = idx[0]
        wd = d["weight_decay"][i0]
        total = d["total_steps"][i0]
        seed = d["seed"][i0] if "seed" in d else None
        seed = None if seed is None or (isinstance(seed, float) and not np.isfinite(seed)) else int(seed)
        preset = d["preset"][i0] if "preset" in d else None
        lr = d["lr"][i0] if "lr" in d else None  # files written before lr was kept have none
        lr = None if lr is None or not np.isfinite(lr) else float(lr)
        series = RunSeries(
            run_id=f"prior:{sweep}/{rid}",
            steps=np.asarray(d["step"][idx], dtype=np.int64),
            cols={c: np.asarray(d[c][idx], dtype=np.float64) if c in d else np.full(len(idx), np.nan) for c in COLUMNS},
            weight_decay=None if wd is None or not np.isfinite(wd) else float(wd),
            total_steps=None if total is None else int(total),
            state=d["state"][i0],
        )
        out.append(
            (
                str(sweep),
                PriorRun(
                    series.run_id,
                    series.steps,
                    series.cols,
                    series.weight_decay,
                    series.total_steps,
                    series.state,
                    preset=preset,
                    seed=seed,
                    lr=lr,
                ),
            )
        )
    return out, meta


def preset_of(configs: Iterable[RunConfig | Mapping | None]) -> str | None:
    """The preset the runs share (run.json ``preset``), or None when none or several."""
    names = {RunConfig.coerce(c).preset for c in configs if c}
    names.discard(None)
    return names.pop() if len(names) == 1 else None


def prior_files(preset: str, root: Path | str | None) -> list[Path]:
    files = [SHIPPED_DIR / f"{preset}.arrow"]
    if root is not None:
        files.append(Path(root) / ROOT_DIR / f"{preset}.arrow")
    return [f for f in files if f.is_file()]


def auto_prior(preset: str | None, sweep_dir: Path | str | None) -> list[PriorRun]:
    """The prior runs for a sweep of ``preset``: the shipped ones and those its
    root has learned, never runs of the sweep itself."""
    if not preset or not _safe_name(preset):
        return []
    sweep_dir = Path(sweep_dir).resolve() if sweep_dir is not None else None
    own = sweep_dir.name if sweep_dir is not None else None
    root = sweep_dir.parent if sweep_dir is not None else None
    out = []
    for f in prior_files(preset, root):
        shipped = f.parent == SHIPPED_DIR
        for sweep, run in read_prior(f)[0]:
            if not shipped and sweep == own:
                continue
            out.append(run)
    return out


def generic_prior() -> list[PriorRun]:
    """Every shipped preset's prior runs together: for runs of no known preset
    (the simulator's, a plain loop's). The growth model puts them on one scale
    through lr x weight decay: on the evidence sweep the plateau was about
    9 / (lr x weight decay) steps for both presets (tiny and canonical)."""
    out = []
    for f in sorted(SHIPPED_DIR.glob("*.arrow")):
        if f.stem != SIM_PRESET:  # the simulator's prior is a fixture, not training
            out += [run for _, run in read_prior(f)[0]]
    return out


def remember_sweep(
    sweep_dir: Path | str, runs: Mapping[str, RunSeries], configs: Mapping[str, RunConfig | Mapping | None]
) -> Path | None:
    """Add a finished sweep's runs to ``<root>/.grokwatch/priors/<preset>.arrow``
    (replacing its earlier entry). Only when every run is over and they share
    one preset; returns the file written, or None."""
    sweep_dir = Path(sweep_dir).resolve()
    preset = preset_of(configs.values())
    if not runs or not preset or not _safe_name(preset):
        return None
    if any(not r.is_over() for r in runs.values()):
        return None
    path = sweep_dir.parent / ROOT_DIR / f"{preset}.arrow"
    kept: list[tuple[str, RunSeries, str]] = []
    if path.is_file():
        for sweep, r in read_prior(path)[0]:
            if sweep != sweep_dir.name:
                kept.append((sweep, _unprefixed(r), preset))
    kept += [(sweep_dir.name, r, preset) for r in runs.values()]
    try:
        write_prior(path, kept, {"preset": preset, "learned_from": "finished sweeps under this root"})
    except OSError as exc:
        log.warning("cannot update the priors file %s: %s", path, exc.strerror or exc)
        return None
    return path


def _unprefixed(r: RunSeries) -> RunSeries:
    rid = r.run_id.split("/", 1)[-1] if r.run_id.startswith("prior:") else r.run_id
    return RunSeries(
        rid, r.steps, r.cols, r.weight_decay, r.total_steps, r.state, preset=r.preset, seed=r.seed, lr=r.lr
    )


def _safe_name(s: str) -> bool:
    return bool(s) and all(c.isalnum() or c in "._-" for c in s)
