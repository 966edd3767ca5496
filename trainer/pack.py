"""Many runs in one process: K independent runs trained as one batched model.

``python -m trainer --pack --runs wd0.3-s00:0.3:0,wd1.0-s01:1.0:1`` (or
``--seeds 0-29 --weight-decays 0.1,0.3,1.0``, weight-decay major) trains the
runs side by side on one device. They share the preset (task, model, lr,
cadences); each has its own seed and weight decay.

- Parameters are stacked along a leading run axis: one flat tensor [K, P] whose
  row k is exactly the flat vector the single-run trainer keeps
  (trainer.train.flatten_parameters), and each weight a [K, ...] view of it.
  The forward (:func:`packed_logits`) is model.py's, with batched matmuls
  (torch.bmm over the run axis), logits at the answer position only.
- One optimizer step for all runs (:func:`adamw_step`): torch.optim.AdamW's
  update with per-run weight decay, step count and a per-run mask on the
  device -- its fused kernel on each run's row where the single-run trainer
  uses it (CPU, CUDA), so a packed run's update is bit for bit its lone update.
- Init and data split per run exactly as trainer.train does them
  (``torch.manual_seed(seed)``, then the split, then the model), so a run starts
  identical alone or packed; its losses match the lone run to float tolerance.
- Each run keeps its own run directory, run.json, status.json, shards and
  checkpoint in the single-run formats: the watcher cannot tell a packed run
  from a lone one, and a packed run's checkpoint resumes alone (and back).
- A run whose train loss turns non-finite stops updating at once (a mask on
  the device; no host sync); at the next flush it is marked diverged and leaves
  the pack. A run that stops after grokking leaves it too; the rest go on.
- Resume: each run restarts from its own checkpoint. Runs whose checkpoints
  are at different steps (a kill between two checkpoint writes) are masked
  until the pack's step reaches theirs, so nothing is trained twice.

Exit codes as trainer.train: 0 every run completed, 2 bad configuration,
3 some run diverged (the others completed), 75/130 stopped by a signal
(checkpointed; resume with --resume).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import logging
import math
import signal
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from grokwatch.store import CHECKPOINT, SNAPSHOTS_DIR, RunWriter, read_run_config
from grokwatch.store.layout import run_id_for

from .config import ConfigError, TrainConfig, check_fresh_run
from .model import ModelConfig, Transformer
from .probes import ProbeContext, run_probes
from .task import loss_and_acc, make_dataset
from .train import (
    EXIT_DIVERGED,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_SIGINT,
    GROK_ACC,
    SNAPSHOTS_KEPT,
    check_same_run,
    flatten_parameters,
    load_checkpoint,
    make_optimizer,
    rebind_views,
    save_checkpoint,
    save_snapshot,
    scan_flushed,
    status_extras,
)

log = logging.getLogger("trainer.pack")

# The only fields in which the runs of a pack may differ.
PACK_VARIES = ("run_id", "seed", "weight_decay")
_LAYOUT_WARNING = "grad and param do not obey the gradient layout contract"  # our [K, ...] views of [K, P]


# -- the batched model and optimizer ---------------------------------------------


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """nn.Linear for each run: x [K, ..., in], w [K, out, in] (nn.Linear's layout), b [K, out]."""
    x2 = x.reshape(x.shape[0], -1, x.shape[-1])
    y = torch.bmm(x2, w.mT) if b is None else torch.baddbmm(b.unsqueeze(1), x2, w.mT)
    return y.view(*x.shape[:-1], w.shape[1])


def packed_logits(p: dict[str, torch.Tensor], idx: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """model.Transformer.forward for K runs at once: ``p`` maps its parameter
    names to [K, ...] stacks, idx [K, B, T] token ids -> logits [K, B, vocab] at
    the last position (the last block computes its query, MLP and logits there
    alone, as model.py does).

    It mirrors model.py op for op -- each use of a tensor is its own op, in the
    same order -- so backward sums a tensor's gradients in the same order, and
    on the CPU a packed run's gradients are bit for bit its lone gradients."""
    K, B, T = idx.shape
    C, H, D, V = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.vocab_size
    offsets = torch.arange(K, device=idx.device).view(K, 1, 1) * V  # run k's rows of the stacked table
    x = F.embedding(idx + offsets, p["embed.weight"].reshape(K * V, C)) + p["pos"][:, None, :T]  # K B T C
    for i in range(cfg.n_layers):
        w = {n[len(f"blocks.{i}.") :]: t for n, t in p.items() if n.startswith(f"blocks.{i}.")}
        last = i == cfg.n_layers - 1
        # Attention (model.Attention.forward)
        k = _linear(x, w["attn.W_K.weight"]).view(K, B, T, H, D).transpose(2, 3)  # K B H T D
        v = _linear(x, w["attn.W_V.weight"]).view(K, B, T, H, D).transpose(2, 3)
        if last:  # the last query sees every key: no mask needed
            q = _linear(x[:, :, -1:], w["attn.W_Q.weight"]).view(K, B, 1, H, D).transpose(2, 3)  # K B H 1 D
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
        else:
            q = _linear(x, w["attn.W_Q.weight"]).view(K, B, T, H, D).transpose(2, 3)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
            causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            att = att.masked_fill(~causal, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(2, 3).reshape(K, B, q.shape[3], C)
        a = _linear(y, w["attn.W_O.weight"])
        # Block.forward
        x = (x[:, :, -1:] if last else x) + a
        x = x + _linear(
            F.relu(_linear(x, w["mlp.W_in.weight"], w["mlp.W_in.bias"])), w["mlp.W_out.weight"], w["mlp.W_out.bias"]
        )
    return _linear(x[:, :, -1], p["unembed.weight"])


def packed_loss_and_acc(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """task.loss_and_acc per run: cross-entropy (float64) and accuracy, [K] each, on the device."""
    K, B, V = logits.shape
    loss = F.cross_entropy(logits.to(torch.float64).reshape(K * B, V), y.reshape(K * B), reduction="none")
    acc = (logits.argmax(dim=-1) == y).to(logits.dtype).mean(dim=1)
    return loss.view(K, B).mean(dim=1), acc


@torch.no_grad()
def adamw_step(
    T: dict,
    active: torch.Tensor,
    lr: float,
    weight_decays: list[float],
    beta1: float,
    beta2: float,
    fused: bool,
    rows: list | None = None,
) -> None:
    """One AdamW step for every run of the pack, in place on T's [K, P] tensors.
    A run with False in ``active`` (a diverged run, a run waiting for the pack to
    catch up) is left exactly as it was: weights, moments and step count.

    ``fused``: the kernel of torch.optim.AdamW(fused=True) -- the single-run
    trainer's optimizer (trainer.train.make_optimizer) -- once per run on its
    row, with the run's weight decay; ``found_inf`` (AMP's skip-this-step flag)
    carries the mask, on the device. So a packed run gets bit for bit the update
    it gets alone. Otherwise :func:`adamw_`, torch's foreach math over [K, P].
    ``rows``: :func:`adam_rows` of T, when the caller keeps them."""
    if not fused:
        adamw_(
            T["flat"],
            T["grad"],
            T["exp_avg"],
            T["exp_avg_sq"],
            T["n"],
            active,
            lr,
            torch.tensor(weight_decays, dtype=torch.float64, device=T["n"].device),
            beta1,
            beta2,
        )
        return
    rows = rows or adam_rows(T)
    torch.logical_not(active, out=T["skip"])  # 1.0: the kernel skips that run (AMP's found_inf)
    T["n"].add_(1)  # as torch.optim.AdamW: count the step, then undo it where it was skipped
    for (p, g, m, v, n, skip), wd in zip(rows, weight_decays):
        torch._fused_adamw_(
            [p],
            [g],
            [m],
            [v],
            [],
            [n],
            amsgrad=False,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=wd,
            eps=1e-8,
            maximize=False,
            grad_scale=None,
            found_inf=skip,
        )
    T["n"].sub_(T["skip"])


def adam_rows(T: dict) -> list[tuple[torch.Tensor, ...]]:
    """Run k's row of each tensor the fused AdamW kernel takes: weights, grad,
    moments, step count and skip flag (views; build them once per layout)."""
    if "skip" not in T:
        T["skip"] = torch.zeros_like(T["n"])
    keys = ("flat", "grad", "exp_avg", "exp_avg_sq", "n", "skip")
    return [tuple(T[key][k] for key in keys) for k in range(T["flat"].shape[0])]


@torch.no_grad()
def adamw_(
    param, grad, exp_avg, exp_avg_sq, n, active, lr: float, weight_decay, beta1: float, beta2: float, eps: float = 1e-8
) -> None:
    """torch.optim.AdamW's step for K runs at once, in place, in plain tensor
    ops (the same results, bit for bit, as its foreach implementation).

    param, grad, exp_avg, exp_avg_sq: [K, P]. n: [K] float32, the steps each run
    has taken (counts this one). active: [K] bool; a run with False is left
    exactly as it was, moments and step count included. weight_decay: [K].

    The math of torch.optim.AdamW (decoupled decay, then bias-corrected Adam):
        p <- p (1 - lr wd);  m <- lerp(m, g, 1 - b1);  v <- b2 v + (1 - b2) g^2
        p <- p - lr / (1 - b1^n) * m / (sqrt(v) / sqrt(1 - b2^n) + eps)
    with the per-run scalars computed in float64, as torch does on the host.
    """
    n += active.to(n.dtype)
    a, nd = active.to(torch.float64), n.to(torch.float64)
    col = lambda t: t.to(param.dtype)[:, None]  # noqa: E731  per-run scalars as a [K, 1] column
    g = torch.where(active[:, None], grad, 0.0)  # a non-finite grad of a stopped run reaches nothing
    step_size = torch.where(active, lr / (1 - beta1**nd), 0.0)
    bc2_sqrt = torch.where(active, (1 - beta2**nd).sqrt(), 1.0)
    param.mul_(col(1 - lr * weight_decay * a))
    exp_avg.lerp_(g, col((1 - beta1) * a))
    exp_avg_sq.mul_(col(torch.where(active, beta2, 1.0))).addcmul_(g, g, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / col(bc2_sqrt)).add_(eps)
    param.add_((exp_avg * col(-step_size)).div_(denom))  # (-step_size * m) / denom, the fused kernel's order


# -- the runs --------------------------------------------------------------------


@dataclass
class Run:
    """What the host keeps of one run of the pack."""

    cfg: TrainConfig
    start: int = 0  # the step its checkpoint holds (0: fresh)
    writer: RunWriter | None = None
    joined: bool = False  # trains from step start + 1 on (False while the pack catches up to it)
    saved_step: int = -1
    metrics: dict = field(default_factory=lambda: {"t_mem": None, "t_grok": None, "stop_at": None})
    snapshots: deque = field(default_factory=lambda: deque(maxlen=SNAPSHOTS_KEPT))
    probe_rows: list = field(default_factory=list)  # (step, values), logged at the next flush


def check_pack(cfgs: list[TrainConfig], fresh: bool = True) -> None:
    """Every run valid, distinct run ids, and the same config but for PACK_VARIES."""
    if not cfgs:
        raise ConfigError("--pack: no runs; give --runs RUN:WD:SEED,... or --seeds/--weight-decays")
    seen: set[str] = set()
    for c in cfgs:
        if c.run_id in seen:
            raise ConfigError(f"--pack: run {c.run_id!r} is listed twice")
        seen.add(c.run_id)
        c.validate()
        if fresh:
            check_fresh_run(c)
    c0 = cfgs[0]
    for c in cfgs[1:]:
        for f in dataclasses.fields(TrainConfig):
            a, b = getattr(c0, f.name), getattr(c, f.name)
            if f.name not in PACK_VARIES and a != b:
                raise ConfigError(
                    f"--pack: run {c.run_id} has {f.name}={b!r} but run {c0.run_id} has {a!r}; "
                    "the runs of a pack share everything but run id, seed and weight decay"
                )


def train_pack(cfgs: list[TrainConfig]) -> int:
    """Train the runs of ``cfgs`` as one batched model to completion (or a stop); returns the exit code."""
    check_pack(cfgs)
    c0 = cfgs[0]
    torch.set_num_threads(c0.threads)
    device = torch.device(c0.device)
    if device.type == "cpu":
        keep_freed_memory()
    mc = c0.model_config()

    # -- each run exactly as trainer.train starts it, on the CPU ---------------
    runs: list[Run] = []
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("flat", "exp_avg", "exp_avg_sq", "delta", "n")}
    data: dict[str, list[torch.Tensor]] = {k: [] for k in ("train_x", "train_y", "val_x", "val_y")}
    for cfg in cfgs:
        ckpt = load_checkpoint(cfg.run_dir / CHECKPOINT, torch.device("cpu")) if cfg.resume else None
        saved = ckpt["config"] if ckpt is not None else read_run_config(cfg.run_dir) if cfg.resume else None
        if saved is not None:
            check_same_run(cfg, TrainConfig.from_dict(saved))
        torch.manual_seed(cfg.seed)
        split = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
        model = Transformer(mc)
        flat, slices, group_slices = flatten_parameters(model)
        run = Run(cfg)
        state = {
            "exp_avg": torch.zeros_like(flat.detach()),
            "exp_avg_sq": torch.zeros_like(flat.detach()),
            "step": torch.tensor(0.0),
        }
        delta = torch.zeros_like(flat.detach())
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])  # into flat's views
            state.update(ckpt["optimizer"]["state"].get(0, {}))
            delta = ckpt["probe_state"]["last_update"]
            run.start = run.saved_step = int(ckpt["step"])
            run.metrics.update({k: ckpt["metrics"].get(k) for k in run.metrics})
            run.snapshots.extend((int(s), w.to(device)) for s, w in ckpt["probe_state"]["snapshots"])
        runs.append(run)
        rows["flat"].append(flat.detach())
        rows["exp_avg"].append(state["exp_avg"])
        rows["exp_avg_sq"].append(state["exp_avg_sq"])
        rows["n"].append(torch.as_tensor(state["step"], dtype=torch.float32).reshape(()))
        rows["delta"].append(delta)
        for k in data:
            data[k].append(getattr(split, k))
    shapes = {name: p.shape for name, p in model.named_parameters()}
    # a scratch single model on the device: probes, checkpoints and snapshots see one run through it
    scratch = Transformer(mc).to(device)
    scratch_flat, _, _ = flatten_parameters(scratch)
    # the single-run trainer's optimizer choice: its fused kernel where it has one
    fused = bool(make_optimizer(scratch_flat, c0).defaults.get("fused")) and hasattr(torch, "_fused_adamw_")

    # -- the metric columns, as trainer.train records them ---------------------
    groups = list(group_slices)
    names = ["train_loss", "train_acc", "grad_norm", "weight_norm", "update_norm"]
    names += [f"grad_norm/{g}" for g in groups] + [f"weight_norm/{g}" for g in groups]
    names += ["val_loss", "val_acc"]  # last: written only on eval steps, NaN between
    G, NC = len(groups), len(names) - 2
    steps_host = np.zeros(c0.flush_steps, dtype=np.int64)
    lr_host = np.zeros(c0.flush_steps, dtype=np.float64)
    pack_meta = {"pack": {"size": len(runs), "runs": [r.cfg.run_id for r in runs]}}

    stop = {"signal": None}
    diverged: list[str] = []  # run ids
    with contextlib.ExitStack() as stack, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_LAYOUT_WARNING)
        for run in runs:
            run.writer = stack.enter_context(
                RunWriter(
                    run.cfg.run_dir,
                    {**run.cfg.to_dict(), "meta": pack_meta},
                    flush_steps=c0.flush_steps,
                    flush_seconds=c0.flush_seconds,
                    resume=run.cfg.resume,
                    start_step=run.start,
                )
            )
        t0 = (time.perf_counter(), time.process_time())
        for run in [r for r in runs if r.start >= c0.steps]:  # nothing left to train
            run.writer.write_status(force=True, **status_extras(run.metrics, run.start, run.start, t0))
            run.writer.close("completed")
        keep = [i for i, r in enumerate(runs) if r.start < c0.steps]
        live = [runs[i] for i in keep]
        if not live:
            return EXIT_OK

        # -- the stacked state on the device: row i is run live[i] -------------
        T = {k: torch.stack([v[i] for i in keep]).to(device) for k, v in {**rows, **data}.items()}
        step = min(r.start for r in live)
        for r in live:
            r.joined = r.start == step
        T["joined"] = torch.tensor([r.joined for r in live], device=device)
        T["alive"] = torch.ones(len(live), dtype=torch.bool, device=device)
        T["grad"] = torch.zeros_like(T["flat"])
        T["prev"] = torch.empty_like(T["flat"])
        T["skip"] = torch.zeros_like(T["n"])
        params, norm_views = bind_params(T, slices, shapes, group_slices)
        rows_adam, wds = adam_rows(T), [r.cfg.weight_decay for r in live]
        fwd = maybe_compile_packed(params, T, mc) if c0.compile else packed_logits
        buf = torch.full((c0.flush_steps, len(live), len(names)), math.nan, device=device)
        row, last_flush, step0 = 0, time.monotonic(), {id(r): r.start for r in live}
        restore_signals = install_stop_handlers(stop)
        lr = c0.lr
        t0 = (time.perf_counter(), time.process_time())  # the loop's clock: setup and compiling excluded

        def flush() -> list[Run]:
            """One device->host copy for every run; returns the runs found diverged (closed)."""
            nonlocal row, last_flush
            done = []
            if row:
                for run, bad in flush_pack(live, buf, row, steps_host, lr_host, names, step):
                    if bad is not None:
                        run.writer.write_status(force=True, **status_extras(run.metrics, bad, step0[id(run)], t0))
                        run.writer.close("diverged", message=f"non-finite train_loss at step {bad}")
                        diverged.append(run.cfg.run_id)
                        done.append(run)
                row = 0
                buf[:, :, NC:] = math.nan  # val columns are NaN between evals
            for run in live:
                if run not in done:
                    run.writer.write_status(force=True, **status_extras(run.metrics, step, step0[id(run)], t0))
            last_flush = time.monotonic()
            return done

        def leave(gone: list[Run]) -> None:
            """Drop finished runs from the stacked state (right after a flush: the buffer is empty)."""
            nonlocal live, params, norm_views, rows_adam, wds, buf
            if not gone:
                return
            idx = [i for i, r in enumerate(live) if r not in gone]
            live = [live[i] for i in idx]
            if live:
                sel = torch.tensor(idx, device=device)
                T.update({k: t.index_select(0, sel) for k, t in T.items()})
                params, norm_views = bind_params(T, slices, shapes, group_slices)
                rows_adam, wds = adam_rows(T), [r.cfg.weight_decay for r in live]
                buf = torch.full((c0.flush_steps, len(live), len(names)), math.nan, device=device)

        def finish(run: Run, i: int, state: str, msg: str | None, extras: dict | None = None) -> None:
            extras = extras or status_extras(run.metrics, max(step, run.start), step0[id(run)], t0)
            if run.joined and run.saved_step != step:
                save_run(run, i, T, step, lr, scratch, scratch_flat, names)
            run.writer.write_status(force=True, **extras)
            run.writer.close(state, message=msg)

        try:
            while step < c0.steps and live:
                if stop["signal"]:
                    break
                # runs that stop after grokking leave the pack at their stop step
                ended = [r for r in live if r.metrics["stop_at"] is not None and step >= r.metrics["stop_at"]]
                if ended:
                    gone = flush()
                    ended = [r for r in ended if r not in gone]
                    for run in ended:
                        finish(
                            run,
                            live.index(run),
                            "completed",
                            f"stopped {run.cfg.stop_after_grok} steps after val_acc >= {GROK_ACC} "
                            f"at step {run.metrics['t_grok']}",
                        )
                    leave(gone + ended)
                    continue
                step += 1
                lr = c0.lr * min(1.0, step / c0.warmup) if c0.warmup else c0.lr
                for i, run in enumerate(live):
                    if not run.joined and run.start == step - 1:  # the pack caught up with this run
                        run.joined = True
                        T["joined"][i] = True  # a fill on the device, no sync

                # probes, on their own cadence (they may sync), one run at a time
                if c0.probe_every and c0.probes and step % c0.probe_every == 0:
                    for i, run in enumerate(live):
                        if run.joined:
                            run.snapshots.append((step, T["flat"][i].clone()))
                            run.probe_rows.append((step, probe_run(run, i, T, step, lr, scratch, scratch_flat, slices)))

                # validation, on the same weights as this step's training loss
                if step % c0.eval_every == 0:
                    with torch.no_grad():
                        val_loss, val_acc = packed_loss_and_acc(fwd(params, T["val_x"], mc), T["val_y"])
                    buf[row, :, NC:] = torch.stack([val_loss.float(), val_acc], dim=1)

                # the step: full batch, every run at once
                T["grad"].zero_()
                loss, acc = packed_loss_and_acc(fwd(params, T["train_x"], mc), T["train_y"])
                loss.sum().backward()  # each run's loss depends on its own parameters only
                T["prev"].copy_(T["flat"])
                T["alive"] &= torch.isfinite(loss)  # a diverged run stops here, on the device
                adamw_step(T, T["alive"] & T["joined"], lr, wds, c0.beta1, c0.beta2, fused, rows_adam)
                torch.sub(T["flat"], T["prev"], out=T["delta"])

                # record, on the device: per-run group norms of grads, weights, update (no .item())
                norms = torch.stack(torch._foreach_norm(norm_views)).view(-1, 3, G)
                totals = torch.linalg.vector_norm(norms, dim=2)
                buf[row, :, :NC] = torch.cat(
                    [loss.detach().float().view(-1, 1), acc.view(-1, 1), totals, norms[:, :2].flatten(1)], dim=1
                )
                steps_host[row], lr_host[row] = step, lr
                row += 1

                checkpoint_due = step % c0.checkpoint_every == 0
                due = row >= c0.flush_steps or time.monotonic() - last_flush >= c0.flush_seconds
                gone: list[Run] = []
                if due or checkpoint_due or stop["signal"] or step == c0.steps:
                    gone = flush()  # the host sync, once per shard
                    if checkpoint_due:
                        for i, run in enumerate(live):
                            if run.joined and run not in gone:
                                save_run(run, i, T, step, lr, scratch, scratch_flat, names)
                else:
                    for run in live:
                        run.writer.heartbeat()
                if c0.keep_every and step % c0.keep_every == 0:
                    for i, run in enumerate(live):
                        if run.joined and run not in gone:
                            scratch_flat.data.copy_(T["flat"][i])
                            save_snapshot(run.cfg.run_dir / SNAPSHOTS_DIR, step, scratch)
                leave(gone)
        except Exception:
            if row:  # keep what the device buffer holds, if the device still answers
                with contextlib.suppress(Exception):
                    flush_pack(live, buf, row, steps_host, lr_host, names, step)
            raise
        finally:
            restore_signals()

        # -- the end: completed, or a signal -----------------------------------
        gone = flush() if live else []
        # the loop's timing, without the last checkpoints
        extras = {id(r): status_extras(r.metrics, max(step, r.start), step0[id(r)], t0) for r in live}
        for i, run in enumerate(live):
            if run in gone:
                continue
            if stop["signal"]:
                finish(
                    run,
                    i,
                    "preempted",
                    f"stopped by {stop['signal']} at step {max(step, run.start)}; resume with --resume",
                    extras[id(run)],
                )
            else:
                finish(run, i, "completed", None, extras[id(run)])
        if stop["signal"] and any(r not in gone for r in live):
            return EXIT_SIGINT if stop["signal"] == "SIGINT" else EXIT_PREEMPTED
    return EXIT_DIVERGED if diverged else EXIT_OK


# -- helpers, named for what they do -------------------------------------------


def bind_params(T: dict, slices: dict[str, slice], shapes: dict, group_slices: dict[str, slice]):
    """Each parameter a [K, ...] leaf viewing its columns of T["flat"], its
    ``.grad`` the same columns of T["grad"]: backward accumulates in place.
    Also the views whose norms are recorded: per run, grad, weights and update
    by layer group (trainer.train's norm_views, run after run)."""
    K = T["flat"].shape[0]
    params = {}
    for name, s in slices.items():
        p = torch.nn.Parameter(T["flat"][:, s].view(K, *shapes[name]))
        p.grad = T["grad"][:, s].view(K, *shapes[name])
        params[name] = p
    norm_views = [T[t][k, s] for k in range(K) for t in ("grad", "prev", "delta") for s in group_slices.values()]
    return params, norm_views


def flush_pack(live: list[Run], buf, n: int, steps_host, lr_host, names, step: int) -> list[tuple[Run, int | None]]:
    """One shard per run from the buffer's first n rows (one device->host copy
    for all runs). A run's rows start after its checkpoint step and end at its
    first non-finite train_loss. Returns (run, diverged step or None) per run."""
    host = buf[:n].to("cpu", copy=True).numpy()  # the host sync, once per flush
    out = []
    for i, run in enumerate(live):
        take = np.flatnonzero(steps_host[:n] > run.start)
        bad = np.flatnonzero(~np.isfinite(host[take, i, 0]))
        if bad.size:
            take = take[: bad[0] + 1]
        diverged = None
        if take.size:
            cols = {"step": steps_host[take].copy()}
            cols.update({name: np.ascontiguousarray(host[take, i, j]) for j, name in enumerate(names)})
            cols["lr"] = lr_host[take].copy()
            run.writer.write_shard("scalars", cols)
            diverged = scan_flushed(cols, names, run.metrics, run.cfg, step)
        if run.probe_rows:
            last = diverged if diverged is not None else step
            for s, values in run.probe_rows:
                if s <= last:
                    run.writer.log("probes", s, values)
            run.probe_rows.clear()
            run.writer.flush()
        out.append((run, diverged))
    return out


def run_optimizer(cfg: TrainConfig, flat: torch.nn.Parameter, T: dict, i: int, lr: float) -> torch.optim.Optimizer:
    """The single-run trainer's AdamW over ``flat``, holding run i's moments and
    step count: its state_dict is what trainer.train checkpoints."""
    opt = make_optimizer(flat, cfg)
    for g in opt.param_groups:
        g["lr"] = lr
    on_device = bool(opt.defaults.get("fused"))  # fused AdamW keeps its step on the device, the others on the CPU
    opt.state[flat] = {
        "step": T["n"][i].to(torch.float32).to(flat.device if on_device else "cpu").clone(),
        "exp_avg": T["exp_avg"][i].clone(),
        "exp_avg_sq": T["exp_avg_sq"][i].clone(),
    }
    return opt


def save_run(run: Run, i: int, T: dict, step: int, lr: float, scratch, scratch_flat, names) -> None:
    """Run i's checkpoint, in trainer.train's format (it resumes alone or packed)."""
    scratch_flat.data.copy_(T["flat"][i])
    opt = run_optimizer(run.cfg, scratch_flat, T, i, lr)
    save_checkpoint(
        run.cfg.run_dir / CHECKPOINT,
        step,
        run.cfg,
        scratch,
        opt,
        run.metrics,
        names,
        T["delta"][i].clone(),
        run.snapshots,
    )
    run.saved_step = step


def probe_run(run: Run, i: int, T: dict, step: int, lr: float, scratch, scratch_flat, slices) -> dict[str, float]:
    """Run the probes on run i as trainer.train does, through the scratch model:
    a probe sees (and can disturb) only a copy of that run."""
    cfg = run.cfg
    scratch_flat.data.copy_(T["flat"][i])
    scratch_flat.grad.zero_()
    device = scratch_flat.device
    ctx = ProbeContext(
        step=step,
        model=scratch,
        params=dict(scratch.named_parameters()),
        matrices=scratch.matrices(),
        train_x=T["train_x"][i],
        train_y=T["train_y"][i],
        val_x=T["val_x"][i],
        val_y=T["val_y"][i],
        loss_fn=lambda m, x, y: loss_and_acc(m(x), y)[0],
        config=cfg,
        lr=lr,
        optimizer=run_optimizer(cfg, scratch_flat, T, i, lr),
        flat_params=scratch_flat.detach(),
        param_slices=slices,
        last_update=T["delta"][i].clone(),
        snapshots=run.snapshots,
        generator=torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + step),
        device=device,
    )
    values = run_probes(cfg.probes, ctx)
    rebind_views(scratch, scratch_flat, slices)  # in case a probe replaced a .data or a .grad
    return values


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (this process only).

    A packed step's activations are blocks of hundreds of MB; glibc serves
    blocks over 32 MB with mmap and unmaps them on free, so every step faults
    in and zeroes gigabytes afresh. Measured (canonical, one thread): 171 ms per
    run-step at K = 30 without this, 87 ms with it -- the lone run's cost. The
    price: the process keeps its peak memory. False where malloc is not glibc's."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, -1))
    except (OSError, AttributeError):
        return False


def install_stop_handlers(stop: dict):
    """SIGTERM/SIGUSR1/SIGINT set ``stop["signal"]``; the loop flushes,
    checkpoints every run and stops at the next step boundary. A second SIGINT
    interrupts at once. Returns a function that restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        log.warning("not in the main thread: no signal handlers; the pack stops only at its end")
        return lambda: None
    sigs = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
    old = {s: signal.getsignal(s) for s in sigs}

    def on_stop(signum, frame):
        stop["signal"] = signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    for s in sigs:
        signal.signal(s, on_stop)
    return lambda: [signal.signal(s, h) for s, h in old.items()]


def maybe_compile_packed(params, T, mc):
    """torch.compile the batched forward, or warn and stay eager where it cannot
    work. Compile errors surface at the first call, so one forward/backward is tried."""
    try:
        compiled = torch.compile(packed_logits, dynamic=False)
        loss, _ = packed_loss_and_acc(compiled(params, T["train_x"], mc), T["train_y"])
        loss.sum().backward()
        with torch.no_grad():
            compiled(params, T["val_x"], mc)
    except Exception as exc:  # no compiler, unsupported platform or Python
        msg = " ".join(str(exc).split())[:200]
        print(f"trainer: warning: --compile failed ({type(exc).__name__}: {msg}); running eager", file=sys.stderr)
        return packed_logits
    finally:
        T["grad"].zero_()
    return compiled


# -- the command line: python -m trainer --pack ----------------------------------


def _ints(text: str) -> list[int]:
    """``"0,1,5-9"`` -> [0, 1, 5, 6, 7, 8, 9]."""
    out: list[int] = []
    for part in (s.strip() for s in text.split(",")):
        lo, dash, hi = part.partition("-")
        try:
            out += list(range(int(lo), int(hi) + 1)) if dash else [int(part)]
        except ValueError:
            raise ConfigError(f"--seeds: {part!r} is not a seed or a range like 0-29") from None
    return out


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None


def run_specs(args: argparse.Namespace, preset_wd: float) -> list[tuple[str, float, int]]:
    """(run_id, weight_decay, seed) per run, from --runs or from --seeds x --weight-decays."""
    given = vars(args)
    if "runs" in given:
        if "seeds" in given or "weight_decays" in given:
            raise ConfigError("--pack: give --runs, or --seeds/--weight-decays, not both")
        specs = []
        for item in (s.strip() for s in args.runs.split(",") if s.strip()):
            parts = item.split(":")
            if len(parts) != 3:
                raise ConfigError(f"--runs: {item!r} is not RUN_ID:WEIGHT_DECAY:SEED")
            try:
                specs.append((parts[0], float(parts[1]), int(parts[2])))
            except ValueError:
                raise ConfigError(f"--runs: {item!r} is not RUN_ID:WEIGHT_DECAY:SEED") from None
        return specs
    seeds = _ints(args.seeds) if "seeds" in given else [0]
    wds = _floats(args.weight_decays, "--weight-decays") if "weight_decays" in given else [preset_wd]
    # weight-decay major, named as `grokwatch sweep plan` names them
    return [(run_id_for(wd, seed), wd, seed) for wd in wds for seed in seeds]


def build_pack_parser() -> argparse.ArgumentParser:
    from .__main__ import build_parser

    p = build_parser()
    p.prog = "python -m trainer --pack"
    p.description = (
        "Train several grokking runs (same preset; any seeds and weight decays) in one process, as one\n"
        "batched model on one device. Each run gets its own run directory, run.json, shards, checkpoint and\n"
        "status, exactly as if it ran alone. --runs (or --seeds x --weight-decays) replaces the per-run\n"
        "flags --run-id, --seed and --weight-decay; every other flag applies to all runs. With --resume\n"
        "each run continues from its own checkpoint (one written alone resumes packed, and back)."
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "examples:\n"
        "  python -m trainer --pack --root runs --sweep s --preset tiny --runs a:0.3:0,b:1.0:1\n"
        "  python -m trainer --pack --root runs --sweep s --seeds 0-29 --weight-decays 0.1,0.3,1.0 --device cuda\n"
        "  (a requeue: the same with --resume; each run continues from its own checkpoint)"
    )
    for action in p._actions:  # per-run flags: --runs replaces them
        if action.dest in ("run_id", "seed", "weight_decay"):
            action.help = argparse.SUPPRESS
    a = p.add_argument
    a("--runs", help="the runs, RUN_ID:WEIGHT_DECAY:SEED comma-separated (e.g. wd0.3-s00:0.3:0,wd1.0-s01:1.0:1)")
    a(
        "--seeds",
        help="with --weight-decays: every seed x weight decay, run ids wd<WD>-s<SEED:02d>; "
        "seeds like 0,1,2 or 0-29 (default 0)",
    )
    a("--weight-decays", help="comma-separated weight decays (default: the preset's)")
    return p


def resolve_pack(args: argparse.Namespace) -> list[TrainConfig]:
    from .__main__ import resolve

    given = {k: v for k, v in vars(args).items() if k not in ("pack", "runs", "seeds", "weight_decays")}
    for flag in ("run_id", "seed", "weight_decay"):
        if flag in given:
            raise ConfigError(
                f"--pack: --{flag.replace('_', '-')} is per run; use --runs RUN_ID:WEIGHT_DECAY:SEED,... "
                "or --seeds/--weight-decays"
            )
    preset = TrainConfig.from_preset(given.get("preset", "canonical"))
    cfgs = []
    for run_id, wd, seed in run_specs(args, preset.weight_decay):
        cfgs.append(resolve(argparse.Namespace(**given, run_id=run_id, seed=seed, weight_decay=wd)))
    return cfgs


def main(argv: list[str] | None = None) -> int:
    args = build_pack_parser().parse_args(argv)
    try:
        cfgs = resolve_pack(args)
        if getattr(args, "dry_run", False):
            check_pack(cfgs, fresh=False)
            print(json.dumps({"pack": [c.to_dict() for c in cfgs]}, sort_keys=True))
            return 0
        return train_pack(cfgs)
    except ConfigError as exc:
        print(f"trainer: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
