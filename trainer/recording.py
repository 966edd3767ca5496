"""Recording the scalars of DESIGN section 2: the metric columns, the device
buffer they wait in, and its flush to shards.

Row ``s`` describes step ``s``: train_loss/acc, val_loss/acc, grad_norm and
weight_norm at the weights the step starts from (after s - 1 updates),
update_norm of the step's own update, and the step's lr. The buffer
``[flush_steps, K, n_metrics]`` (K runs: 1 alone, more in a pack) is written on
the device with no host synchronization; it leaves the device in one copy per
flush, and each run's rows become one shard in its own run directory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from grokwatch.runs.defaults import GROK_VAL_ACC as GROK_ACC  # DESIGN section 4: t_grok and t_mem thresholds
from grokwatch.runs.defaults import MEM_TRAIN_ACC as MEM_ACC


def metric_names(groups: list[str]) -> list[str]:
    """The recorded columns (besides step and lr), in buffer order."""
    names = ["train_loss", "train_acc", "grad_norm", "weight_norm", "update_norm"]
    names += [f"grad_norm/{g}" for g in groups] + [f"weight_norm/{g}" for g in groups]
    return names + ["val_loss", "val_acc"]  # last: written only on eval steps, NaN between


class Recorder:
    """The device buffer of K runs' scalars, and when it is due to leave."""

    def __init__(self, groups: list[str], k: int, flush_steps: int, flush_seconds: float, device: torch.device):
        self.names = metric_names(groups)
        self.G, self.NC = len(groups), len(self.names) - 2  # NC: the columns of every step
        self.flush_steps, self.flush_seconds, self.device = flush_steps, flush_seconds, device
        self.steps = np.zeros(flush_steps, dtype=np.int64)
        self.lrs = np.zeros(flush_steps, dtype=np.float64)
        self.resize(k)

    def resize(self, k: int) -> None:
        """A fresh, empty buffer for k runs (after runs left, right after a flush)."""
        self.buf = torch.full((self.flush_steps, k, len(self.names)), math.nan, device=self.device)
        self.row, self.last_flush = 0, time.monotonic()

    def record_val(self, val_loss: torch.Tensor, val_acc: torch.Tensor) -> None:
        """This step's validation loss and accuracy, [K] each, on the device."""
        self.buf[self.row, :, self.NC :] = torch.stack([val_loss.float(), val_acc], dim=1)

    def record(self, step: int, lr: float, loss: torch.Tensor, acc: torch.Tensor, norm_views) -> None:
        """This step's row, on the device (no .item()): loss and acc [K], and the
        norms of ``norm_views`` -- per run, its grad, weights and update by layer group."""
        norms = torch.stack(torch._foreach_norm(norm_views)).view(-1, 3, self.G)
        totals = torch.linalg.vector_norm(norms, dim=2)
        self.buf[self.row, :, : self.NC] = torch.cat(
            [loss.detach().float().view(-1, 1), acc.view(-1, 1), totals, norms[:, :2].flatten(1)], dim=1
        )
        self.steps[self.row], self.lrs[self.row] = step, lr
        self.row += 1

    def due(self) -> bool:
        """Every flush_steps steps or flush_seconds seconds, whichever comes first."""
        return self.row >= self.flush_steps or time.monotonic() - self.last_flush >= self.flush_seconds


class Recorded(Protocol):
    """What a flush needs of a run (trainer.loop.Run)."""

    cfg: Any
    start: int
    writer: Any
    metrics: dict
    probe_rows: list


R = TypeVar("R", bound=Recorded)


def flush_shards(rec: Recorder, runs: Sequence[R], step: int) -> list[tuple[R, int | None]]:
    """One shard per run from the buffer's rows (one device->host copy for all
    runs), then its pending probe rows; runs[i] is the buffer's run i. A run's
    rows start after its checkpoint step and end at its first non-finite
    train_loss. Returns (run, diverged step or None) per run; the buffer is
    empty afterwards."""
    n = rec.row
    host = rec.buf[:n].to("cpu", copy=True).numpy()  # the host sync, once per flush
    out = []
    for i, run in enumerate(runs):
        take = np.flatnonzero(rec.steps[:n] > run.start)
        bad = np.flatnonzero(~np.isfinite(host[take, i, 0]))
        if bad.size:
            take = take[: bad[0] + 1]
        diverged = None
        if take.size:
            cols: dict[str, np.ndarray] = {"step": rec.steps[take].copy()}
            cols.update({name: np.ascontiguousarray(host[take, i, j]) for j, name in enumerate(rec.names)})
            cols["lr"] = rec.lrs[take].copy()
            run.writer.write_shard("scalars", cols)
            diverged = scan_flushed(cols, run.metrics, run.cfg, step)
        if run.probe_rows:
            last = diverged if diverged is not None else step
            for s, values in run.probe_rows:
                if s <= last:
                    run.writer.log("probes", s, values)
            run.probe_rows.clear()
            run.writer.flush()
        out.append((run, diverged))
    rec.row, rec.last_flush = 0, time.monotonic()
    rec.buf[:, :, rec.NC :] = math.nan  # val columns are NaN between evals
    return out


def scan_flushed(cols: dict, metrics: dict, cfg, step: int) -> int | None:
    """Host-side checks on a flushed shard: t_mem, t_grok (and the stop it sets),
    and the first non-finite train_loss (returned; None when all finite)."""
    steps = cols["step"]
    bad = np.flatnonzero(~np.isfinite(cols["train_loss"]))
    if metrics["t_mem"] is None:
        hit = np.flatnonzero(cols["train_acc"] >= MEM_ACC)
        if hit.size:
            metrics["t_mem"] = int(steps[hit[0]])
    if metrics["t_mem"] is not None and metrics["t_grok"] is None:
        with np.errstate(invalid="ignore"):
            hit = np.flatnonzero((cols["val_acc"] >= GROK_ACC) & (steps >= metrics["t_mem"]))
        if hit.size:
            metrics["t_grok"] = int(steps[hit[0]])
            if cfg.stop_after_grok is not None:
                metrics["stop_at"] = max(metrics["t_grok"] + cfg.stop_after_grok, step)
    return int(steps[bad[0]]) if bad.size else None
