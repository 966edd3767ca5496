"""The training loop: one flat loop, full-batch AdamW on ``a op b mod p``.

Each step records the scalars of DESIGN section 2 into a device buffer
``[flush_steps, n_metrics]`` with no host synchronization; the buffer leaves the
device once per shard flush (every ``flush_steps`` steps or ``flush_seconds``
seconds, whichever comes first) and goes to disk through grokwatch.store.

Row ``s`` of the scalars describes step ``s``: train_loss/acc, val_loss/acc,
grad_norm and weight_norm at the weights the step starts from (after s - 1
updates), update_norm of the step's own update, and the step's lr. A checkpoint
or snapshot at step ``s`` holds the weights after s updates.

Exit codes (also from ``python -m trainer``): 0 completed (also when stopped by
--stop-after-grok), 2 bad configuration, 3 diverged (non-finite loss),
75 preempted by SIGTERM/SIGUSR1 (checkpointed; resume with --resume),
130 interrupted by SIGINT (checkpointed too). An exception marks the run
"failed" and propagates.
"""

from __future__ import annotations

import io
import logging
import math
import random
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from grokwatch.runs.defaults import GROK_VAL_ACC as GROK_ACC  # DESIGN section 4: t_grok and t_mem thresholds
from grokwatch.runs.defaults import MEM_TRAIN_ACC as MEM_ACC
from grokwatch.store import CHECKPOINT, SNAPSHOTS_DIR, RunWriter, atomic_write_bytes, read_run_config

from .config import IDENTITY_FIELDS, ConfigError, TrainConfig, check_fresh_run
from .model import Transformer
from .probes import ProbeContext, run_probes
from .task import loss_and_acc, make_dataset

log = logging.getLogger("trainer")

EXIT_OK, EXIT_CONFIG, EXIT_DIVERGED, EXIT_PREEMPTED, EXIT_SIGINT = 0, 2, 3, 75, 130
CHECKPOINT_FORMAT = 1
SNAPSHOTS_KEPT = 8  # probe-step weight snapshots held in memory (and in the checkpoint)


def train(cfg: TrainConfig) -> int:
    """Train one run to completion (or a stop); returns the exit code."""
    cfg.validate()
    check_fresh_run(cfg)
    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    run_dir = cfg.run_dir
    ckpt = load_checkpoint(run_dir / CHECKPOINT, device) if cfg.resume else None
    saved = ckpt["config"] if ckpt is not None else read_run_config(run_dir) if cfg.resume else None
    if saved is not None:
        check_same_run(cfg, TrainConfig.from_dict(saved))
    step = ckpt["step"] if ckpt is not None else 0

    # -- data, model, optimizer ----------------------------------------------
    torch.manual_seed(cfg.seed)
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed).to(device)
    model = Transformer(cfg.model_config()).to(device)
    # All parameters become views of one flat tensor (and their grads views of
    # one flat grad): the optimizer updates one tensor, the norms are one pass.
    flat, slices, group_slices = flatten_parameters(model)
    opt = make_optimizer(flat, cfg)
    prev = torch.empty_like(flat.detach())  # weights before the update
    delta = torch.zeros_like(prev)  # the last update
    snapshots: deque = deque(maxlen=SNAPSHOTS_KEPT)  # recent weights, for trajectory probes
    metrics = {"t_mem": None, "t_grok": None, "stop_at": None}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        metrics.update({k: ckpt["metrics"].get(k) for k in metrics})
        delta.copy_(ckpt["probe_state"]["last_update"])
        snapshots.extend((int(s), w) for s, w in ckpt["probe_state"]["snapshots"])
    fwd = maybe_compile(model, cfg, data, flat) if cfg.compile else model

    # -- the metric buffer: stays on the device between flushes --------------
    groups = list(group_slices)
    names = ["train_loss", "train_acc", "grad_norm", "weight_norm", "update_norm"]
    names += [f"grad_norm/{g}" for g in groups] + [f"weight_norm/{g}" for g in groups]
    names += ["val_loss", "val_acc"]  # last: written only on eval steps, NaN between
    G, K = len(groups), len(names) - 2
    buf = torch.full((cfg.flush_steps, len(names)), math.nan, device=device)
    steps_host = np.zeros(cfg.flush_steps, dtype=np.int64)
    lr_host = np.zeros(cfg.flush_steps, dtype=np.float64)
    row = 0
    norm_views = [t[s] for t in (flat.grad, prev, delta) for s in group_slices.values()]
    probe_rows = False
    saved_step = step if ckpt is not None else -1

    writer = RunWriter(
        run_dir,
        cfg.to_dict(),
        flush_steps=cfg.flush_steps,
        flush_seconds=cfg.flush_seconds,
        resume=cfg.resume,
        start_step=step,
    )
    with writer:
        restore_sigint = install_stop_handlers(writer)
        t0, step0, exit_code, message = (time.perf_counter(), time.process_time()), step, EXIT_OK, None
        try:
            while step < cfg.steps:
                if writer.stop_signal:
                    break
                if metrics["stop_at"] is not None and step >= metrics["stop_at"]:
                    message = (
                        f"stopped {cfg.stop_after_grok} steps after val_acc >= {GROK_ACC} at step {metrics['t_grok']}"
                    )
                    break
                step += 1
                lr = cfg.lr * min(1.0, step / cfg.warmup) if cfg.warmup else cfg.lr
                for g in opt.param_groups:
                    g["lr"] = lr

                # probes, on their own cadence (they may sync with the device)
                if cfg.probe_every and cfg.probes and step % cfg.probe_every == 0:
                    snapshots.append((step, flat.detach().clone()))
                    ctx = ProbeContext(
                        step=step,
                        model=model,
                        params=dict(model.named_parameters()),
                        matrices=model.matrices(),
                        train_x=data.train_x,
                        train_y=data.train_y,
                        val_x=data.val_x,
                        val_y=data.val_y,
                        loss_fn=lambda m, x, y: loss_and_acc(m(x), y)[0],
                        config=cfg,
                        lr=lr,
                        optimizer=opt,
                        flat_params=flat.detach(),
                        param_slices=slices,
                        last_update=delta,
                        snapshots=snapshots,
                        generator=torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + step),
                        device=device,
                    )
                    writer.log("probes", step, run_probes(cfg.probes, ctx))
                    probe_rows = True
                    rebind_views(model, flat, slices)  # in case a probe replaced a .data or a .grad

                # validation, on the same weights as this step's training loss
                if step % cfg.eval_every == 0:
                    with torch.no_grad():
                        val_loss, val_acc = loss_and_acc(fwd(data.val_x), data.val_y)
                    buf[row, K:] = torch.stack([val_loss.float(), val_acc])

                # the step: full batch
                flat.grad.zero_()
                loss, acc = loss_and_acc(fwd(data.train_x), data.train_y)
                loss.backward()
                prev.copy_(flat.detach())
                opt.step()
                torch.sub(flat.detach(), prev, out=delta)

                # record, on the device: group norms of grads, weights, update (no .item())
                norms = torch.stack(torch._foreach_norm(norm_views))
                totals = torch.linalg.vector_norm(norms.view(3, G), dim=1)
                buf[row, :K] = torch.cat([loss.detach().view(1), acc.view(1), totals, norms[: 2 * G]])
                steps_host[row], lr_host[row] = step, lr
                row += 1

                checkpoint_due = step % cfg.checkpoint_every == 0
                if writer.flush_due(row) or checkpoint_due or writer.stop_signal or step == cfg.steps:
                    host = flush_scalars(writer, buf, row, steps_host, lr_host, names)  # the one device->host copy
                    row = 0
                    buf[:, K:] = math.nan  # val columns are NaN between evals
                    diverged = scan_flushed(host, names, metrics, cfg, step)
                    if probe_rows:
                        writer.flush()
                        probe_rows = False
                    writer.write_status(force=True, **status_extras(metrics, step, step0, t0))
                    if diverged is not None:
                        writer.close("diverged", message=f"non-finite train_loss at step {diverged}")
                        return EXIT_DIVERGED
                else:
                    writer.heartbeat()
                if checkpoint_due:
                    save_checkpoint(run_dir / CHECKPOINT, step, cfg, model, opt, metrics, names, delta, snapshots)
                    saved_step = step
                if cfg.keep_every and step % cfg.keep_every == 0:
                    save_snapshot(run_dir / SNAPSHOTS_DIR, step, model)
        except Exception:
            if row:  # keep what the device buffer holds, if the device still answers
                try:
                    flush_scalars(writer, buf, row, steps_host, lr_host, names)
                except Exception:
                    pass
            raise
        finally:
            restore_sigint()

        # -- the end: completed, stopped after grokking, or a signal ---------
        if row:
            host = flush_scalars(writer, buf, row, steps_host, lr_host, names)
            diverged = scan_flushed(host, names, metrics, cfg, step)
            if diverged is not None:
                writer.close("diverged", message=f"non-finite train_loss at step {diverged}")
                return EXIT_DIVERGED
        if probe_rows:
            writer.flush()
        extras = status_extras(metrics, step, step0, t0)  # the loop's timing, without the last checkpoint
        if saved_step != step:  # not saved at this step already
            save_checkpoint(run_dir / CHECKPOINT, step, cfg, model, opt, metrics, names, delta, snapshots)
        writer.write_status(force=True, **extras)
        if writer.stop_signal:
            exit_code = EXIT_SIGINT if writer.stop_signal == "SIGINT" else EXIT_PREEMPTED
            writer.close("preempted", message=f"stopped by {writer.stop_signal} at step {step}; resume with --resume")
        else:
            writer.close("completed", message=message)
    return exit_code


# -- helpers, named for what they do -------------------------------------------


def flatten_parameters(model: torch.nn.Module):
    """Make every parameter a view of one flat Parameter (returned), and every
    ``.grad`` a view of its flat grad, laid out group by group (embed, pos,
    attn, mlp, unembed). Backward accumulates into the views in place."""
    params = dict(model.named_parameters())
    groups = model.layer_groups()
    order = [n for names in groups.values() for n in names]
    assert sorted(order) == sorted(params), "every parameter belongs to one layer group"
    flat = torch.nn.Parameter(torch.cat([params[n].detach().reshape(-1) for n in order]))
    flat.grad = torch.zeros_like(flat)
    slices, group_slices, off = {}, {}, 0
    for g, names in groups.items():
        start = off
        for n in names:
            slices[n] = slice(off, off + params[n].numel())
            off += params[n].numel()
        group_slices[g] = slice(start, off)
    rebind_views(model, flat, slices)
    return flat, slices, group_slices


def make_optimizer(flat: torch.nn.Parameter, cfg: TrainConfig) -> torch.optim.AdamW:
    """Full-batch AdamW on the flat parameter: the fused kernel where the device
    has one (CUDA; CPU too since torch 2.4, 2-3x faster than foreach there),
    foreach otherwise."""
    kw = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    try:
        return torch.optim.AdamW([flat], fused=True, **kw)
    except (RuntimeError, ValueError, TypeError):  # no fused AdamW for this device or torch
        return torch.optim.AdamW([flat], foreach=True, **kw)


def rebind_views(model: torch.nn.Module, flat: torch.nn.Parameter, slices: dict[str, slice]) -> None:
    """(Re)point each parameter and its grad at its slice of ``flat``; a value
    that left the flat storage (a probe assigned ``.data``) is copied back."""
    for name, p in model.named_parameters():
        s = slices[name]
        view = flat.data[s].view_as(p)
        if p.data_ptr() != view.data_ptr():
            if p.data.numel():
                view.copy_(p.data)
            p.data = view
        gview = flat.grad[s].view_as(p)
        if p.grad is None or p.grad.data_ptr() != gview.data_ptr():
            p.grad = gview


def flush_scalars(writer: RunWriter, buf: torch.Tensor, n: int, steps_host, lr_host, names) -> dict:
    """One shard: the buffer's first n rows leave the device in one copy."""
    host = buf[:n].to("cpu", copy=True).numpy()  # the host sync, once per shard
    cols = {"step": steps_host[:n].copy()}
    cols.update({name: np.ascontiguousarray(host[:, i]) for i, name in enumerate(names)})
    cols["lr"] = lr_host[:n].copy()
    writer.write_shard("scalars", cols)
    return cols


def scan_flushed(cols: dict, names, metrics: dict, cfg: TrainConfig, step: int) -> int | None:
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


def status_extras(metrics: dict, step: int, step0: int, t0: tuple[float, float]) -> dict:
    n = step - step0
    secs, cpu = time.perf_counter() - t0[0], time.process_time() - t0[1]
    return {
        "step": step,
        "t_mem": metrics["t_mem"],
        "t_grok": metrics["t_grok"],
        "loop_steps": n,
        "loop_seconds": round(secs, 4),
        "loop_cpu_seconds": round(cpu, 4),
        "ms_per_step": round(1000 * secs / n, 4) if n else None,
    }


def install_stop_handlers(writer: RunWriter):
    """SIGTERM/SIGUSR1 (RunWriter) and SIGINT set ``writer.stop_signal``; the
    loop checkpoints and stops at the next step boundary. A second SIGINT
    interrupts at once. Returns a function that restores SIGINT."""
    if threading.current_thread() is not threading.main_thread():
        log.warning("not in the main thread: no signal handlers; the run stops only at its end")
        return lambda: None
    writer.install_signal_handlers()
    old = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        writer.stop_signal = "SIGINT"
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)
    return lambda: signal.signal(signal.SIGINT, old)


def maybe_compile(model: torch.nn.Module, cfg: TrainConfig, data, flat) -> torch.nn.Module:
    """torch.compile the model, or warn and stay eager where it cannot work.
    Compile errors surface at the first call, so one forward/backward is tried."""
    try:
        compiled = torch.compile(model, dynamic=False)  # two static shapes: train and val
        loss, _ = loss_and_acc(compiled(data.train_x), data.train_y)
        loss.backward()
        with torch.no_grad():
            compiled(data.val_x)
    except Exception as exc:  # no compiler, unsupported platform or Python
        msg = " ".join(str(exc).split())[:200]
        print(f"trainer: warning: --compile failed ({type(exc).__name__}: {msg}); running eager", file=sys.stderr)
        return model
    finally:
        flat.grad.zero_()
    return compiled


def check_same_run(cfg: TrainConfig, saved: TrainConfig) -> None:
    """A resumed run keeps every field that fixes its trajectory."""
    for name in IDENTITY_FIELDS:
        a, b = getattr(cfg, name), getattr(saved, name)
        if a != b:
            raise ConfigError(
                f"--resume: the checkpoint has {name}={b!r} but this run asks for {a!r}; pass the run's own settings"
            )


def rng_state() -> dict:
    np_state = np.random.get_state()
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
