"""Import TensorBoard event files (``torch.utils.tensorboard.SummaryWriter``) as grokwatch runs.

Runs: when LOGDIR itself holds event files it is one run (named after it);
otherwise every directory under it that holds event files is one run, named by
its path relative to LOGDIR ('/' becomes '_'). A directory that
``SummaryWriter.add_scalars(main_tag, {key: ...})`` wrote (``<main_tag>_<key>``
inside the writer's log_dir, tag ``main_tag``) belongs to its parent run, as
the tag ``<main_tag>/<key>``.

Tags become grokwatch columns: ``--map TAG=COLUMN`` first (``TAG=-`` drops the
tag), then :func:`default_column` (``train/loss``, ``Loss/train``,
``train_loss`` -> train_loss; ``val/acc``, ``Accuracy/test`` -> val_acc;
``grad_norm`` -> grad_norm; ...), and any other tag is kept under its own name.
When two tags claim one column the one with more points wins; the other keeps
its own name. Each run is written through :mod:`grokwatch.integrations.track` (same shards
and status as a live run, state ``completed``), one row per step.

Reading needs the ``tensorboard`` package: ``pip install 'grokwatch[tensorboard]'``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grokwatch.store import is_valid_run_id, run_dir

EVENTS = "tfevents"
TRAIN = {"train", "training", "trn"}
VAL = {"val", "valid", "validation", "test", "eval", "evaluation", "dev", "holdout"}


class ImportProblem(ValueError):
    """Bad input (no event files, an existing run, a bad --map): one line for the user."""


@dataclass
class TbRun:
    run_id: str
    path: Path
    series: dict[str, dict[int, float]] = field(default_factory=dict)  # tag -> step -> value
    columns: dict[str, str] = field(default_factory=dict)  # tag -> column (after mapping)


def _tokens(tag: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", tag.lower()) if t]


def default_column(tag: str) -> str | None:
    """The grokwatch column a TensorBoard tag means, or None when it is not a known one."""
    toks = _tokens(tag)
    s = set(toks)
    split = "train" if s & TRAIN else "val" if s & VAL else None
    if "loss" in s and not s & {"grad", "gradient", "weight", "norm"}:
        return f"{split or 'train'}_loss"
    if s & {"acc", "accuracy"}:
        return f"{split or 'train'}_acc"
    if s & {"grad", "grads", "gradient", "gradients"} and s & {"norm", "norms", "l2"}:
        return "grad_norm"
    if s & {"weight", "weights", "param", "params", "parameter", "parameters"} and s & {"norm", "norms", "l2"}:
        return "weight_norm"
    if "lr" in s or ("learning" in s and "rate" in s):
        return "lr"
    return None


def parse_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or ():
        tag, sep, col = item.rpartition("=")
        if not sep or not tag or not col:
            raise ImportProblem(f"--map needs TAG=COLUMN, not {item!r}")
        if col == "step":
            raise ImportProblem("--map: 'step' is the row key, not a column; steps come from the event files")
        out[tag] = col
    return out


def _sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
    return s if s not in (".", "..") else "run"


def _has_events(d: Path) -> bool:
    try:
        return any(EVENTS in f.name and f.is_file() for f in d.iterdir())
    except OSError:
        return False


def _load(d: Path) -> dict[str, dict[int, float]]:
    """Every scalar tag of the event files directly in ``d``: tag -> step -> value (last write wins)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise ImportProblem(
            "reading TensorBoard event files needs the tensorboard extra: pip install 'grokwatch[tensorboard]'"
        ) from None
    ea = EventAccumulator(str(d), size_guidance={"scalars": 0})  # 0: keep every point
    ea.Reload()
    out: dict[str, dict[int, float]] = {}
    for tag in ea.Tags().get("scalars", []):
        out[tag] = {int(e.step): float(e.value) for e in ea.Scalars(tag)}
    return out


def _scalars_part(d: Path, series: Mapping[str, Any]) -> tuple[str, str] | None:
    """(main_tag, key) when ``d`` is an add_scalars directory (``<main_tag>_<key>``), else None."""
    if len(series) != 1:
        return None
    (tag,) = series
    prefix = tag.replace("/", "_") + "_"
    if d.name.startswith(prefix) and len(d.name) > len(prefix):
        return tag, d.name[len(prefix) :]
    return None


def discover(logdir: Path) -> list[TbRun]:
    """The runs under ``logdir`` with their scalar series (see the module docstring)."""
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise ImportProblem(f"{logdir} is not a directory")
    event_dirs = sorted({Path(root) for root, _, files in os.walk(logdir) if any(EVENTS in f for f in files)})
    if not event_dirs:
        raise ImportProblem(f"no TensorBoard event files (*{EVENTS}*) under {logdir}")
    loaded = {d: _load(d) for d in event_dirs}
    runs: dict[Path, TbRun] = {}
    parts: list[tuple[Path, str, str]] = []
    for d in event_dirs:
        part = _scalars_part(d, loaded[d]) if d != logdir and d.parent in loaded else None
        if part is not None:
            parts.append((d, *part))
            continue
        rel = d.relative_to(logdir)
        name = _sanitize(logdir.resolve().name if d == logdir else "_".join(rel.parts))
        runs[d] = TbRun(run_id=name, path=d, series=dict(loaded[d]))
    for d, tag, key in parts:
        owner = runs.get(d.parent)
        if owner is None:  # its parent is itself a part: keep it as a run of its own
            runs[d] = TbRun(run_id=_sanitize("_".join(d.relative_to(logdir).parts)), path=d, series=dict(loaded[d]))
            continue
        owner.series[f"{tag}/{key}"] = loaded[d][tag]
    out = sorted(runs.values(), key=lambda r: r.run_id)
    ids = [r.run_id for r in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ImportProblem(f"two runs would share the id {dup[0]!r}; rename one of their directories")
    return out


def assign_columns(run: TbRun, mapping: Mapping[str, str]) -> dict[str, str]:
    """tag -> column for one run; dropped tags are left out."""
    claims: dict[str, list[str]] = {}
    out: dict[str, str] = {}
    for tag in sorted(run.series):
        if tag in mapping:
            if mapping[tag] != "-":
                out[tag] = mapping[tag]
            continue
        col = default_column(tag)
        if col is None:
            out[tag] = tag
        else:
            claims.setdefault(col, []).append(tag)
    explicit = set(out.values())
    for col, tags in claims.items():
        tags.sort(key=lambda t: (-len(run.series[t]), t))
        winner = None if col in explicit else tags[0]
        for t in tags:
            out[t] = col if t == winner else t
    run.columns = out
    return out


def import_tensorboard(
    logdir: Path | str,
    root: Path | str,
    sweep: str,
    mapping: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    on_run: Callable[[TbRun, Path, int], None] | None = None,
) -> list[Path]:
    """Write every run under ``logdir`` to ``<root>/<sweep>/<run_id>/``; returns the run directories.

    ``config`` is added to every run's run.json (e.g. ``{"weight_decay": 1.0}``);
    an existing run is an error (nothing is written then)."""
    from grokwatch.integrations.track import init

    if not is_valid_run_id(sweep):
        raise ImportProblem(f"bad sweep name {sweep!r}: use letters, digits, '.', '_' and '-'")
    runs = discover(Path(logdir))
    for r in runs:
        if (run_dir(root, sweep, r.run_id) / "run.json").exists():
            raise ImportProblem(f"{run_dir(root, sweep, r.run_id)} already holds a run; pick another --sweep or --root")
    written = []
    for r in runs:
        cols = assign_columns(r, mapping or {})
        rows: dict[int, dict[str, float]] = {}
        for tag, col in cols.items():
            for step, value in r.series[tag].items():
                rows.setdefault(step, {})[col] = value
        steps = sorted(rows)
        cfg = {
            **(config or {}),
            "steps": steps[-1] if steps else 0,
            "imported_from": {"tensorboard": str(Path(r.path).resolve()), "tags": cols},
        }
        run = init(root=root, sweep=sweep, run_id=r.run_id, config=cfg, flush_steps=10_000, flush_seconds=1e9)
        try:
            for s in steps:
                run.log(s, rows[s])
        except BaseException as exc:
            run.finish("failed", message=f"import failed: {type(exc).__name__}: {exc}")
            raise
        run.finish(message=None if run.diverged is not None else f"imported from {r.path}")  # completed or diverged
        written.append(run.path)
        if on_run is not None:
            on_run(r, run.path, len(steps))
    return written
