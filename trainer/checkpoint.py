"""Checkpoints and weight snapshots: one format for a lone run and a run of a pack.

A checkpoint at step ``s`` holds the weights after s updates, the optimizer
(torch.optim.AdamW's state_dict over the one flat parameter), the RNG states,
what the host knows of the metrics, and what the probes see of the past. A run
checkpointed alone resumes packed, and back.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grokwatch.store import atomic_write_bytes

from .config import IDENTITY_FIELDS, ConfigError, TrainConfig

CHECKPOINT_FORMAT = 1
SNAPSHOTS_KEPT = 8  # probe-step weight snapshots held in memory (and in the checkpoint)


def check_same_run(cfg: TrainConfig, saved: TrainConfig) -> None:
    """A resumed run keeps every field that fixes its trajectory."""
    for name in IDENTITY_FIELDS:
        a, b = getattr(cfg, name), getattr(saved, name)
        if a != b:
            raise ConfigError(
                f"--resume: the checkpoint has {name}={b!r} but this run asks for {a!r}; pass the run's own settings"
            )


def rng_state() -> dict:
    np_state: Any = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    random.setstate(_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(
    path: Path, step: int, cfg: TrainConfig, model, opt, metrics: dict, names, delta, snapshots
) -> None:
    """Atomically (tmp + fsync + os.replace): a kill leaves the old or the new file."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "config": cfg.to_dict(),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": rng_state(),
        # the metric buffer is flushed before every checkpoint: its state is the
        # column layout and what the host has seen in it
        "metrics": {**metrics, "columns": list(names), "flushed_through": step},
        # what the probes see of the past, so a resumed run's probes match too
        "probe_state": {"last_update": delta, "snapshots": [[s, w] for s, w in snapshots]},
    }
    bio = io.BytesIO()
    torch.save(state, bio)
    atomic_write_bytes(path, bio.getvalue())


def load_checkpoint(path: Path, device: torch.device) -> dict | None:
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read checkpoint {path}: {exc}") from exc
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RuntimeError(f"checkpoint {path} has format {ckpt.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    return ckpt


def save_snapshot(folder: Path, step: int, model: torch.nn.Module) -> None:
    """A weight-only snapshot for post-hoc probes: <run>/snapshots/weights-<step:09d>.pt."""
    folder.mkdir(exist_ok=True)
    bio = io.BytesIO()
    torch.save({"step": step, "model": model.state_dict()}, bio)
    atomic_write_bytes(folder / f"weights-{step:09d}.pt", bio.getvalue())
