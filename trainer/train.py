"""A lone run: ``train(TrainConfig) -> exit code``, full-batch AdamW on ``a op b mod p``.

The loop is trainer.loop's (shared with the pack); this module is the lone
run's step (:class:`Lone`: the model of trainer.model, torch.optim.AdamW over
one flat parameter) and the parameter layout both trainers share. The
scalars and their buffer: trainer.recording; checkpoints: trainer.checkpoint.

Exit codes (also from ``python -m trainer``): 0 completed (also when stopped by
--stop-after-grok), 2 bad configuration, 3 diverged (non-finite loss),
75 preempted by SIGTERM/SIGUSR1 (checkpointed; resume with --resume),
130 interrupted by SIGINT (checkpointed too). An exception marks the run
"failed" and propagates. See trainer.stopping.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from grokwatch.store import CHECKPOINT, SNAPSHOTS_DIR

from .checkpoint import SNAPSHOTS_KEPT, save_checkpoint, save_snapshot, set_rng_state
from .config import TrainConfig, check_fresh_run
from .loop import Run, open_run, run_loop
from .model import Transformer
from .probes import probe_context, run_probes
from .recording import GROK_ACC, MEM_ACC
from .stopping import EXIT_CONFIG, EXIT_DIVERGED, EXIT_OK, EXIT_PREEMPTED, EXIT_SIGINT
from .task import loss_and_acc, make_dataset

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DIVERGED",
    "EXIT_OK",
    "EXIT_PREEMPTED",
    "EXIT_SIGINT",
    "GROK_ACC",
    "MEM_ACC",
    "SNAPSHOTS_KEPT",
    "Lone",
    "compile_or_eager",
    "flatten_parameters",
    "make_optimizer",
    "rebind_views",
    "train",
]


def train(cfg: TrainConfig) -> int:
    """Train one run to completion (or a stop); returns the exit code."""
    cfg.validate()
    check_fresh_run(cfg)
    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    run, ckpt = open_run(cfg, device, device)
    return run_loop([run], lambda live: Lone(cfg, ckpt, device), cfg)


class Lone:
    """One run on the device: the model, its flat parameter and its optimizer.

    All parameters are views of one flat tensor (and their grads views of one
    flat grad): the optimizer updates one tensor, the norms are one pass."""

    def __init__(self, cfg: TrainConfig, ckpt: dict | None, device: torch.device):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed).to(device)
        self.model = Transformer(cfg.model_config()).to(device)
        self.flat, self.slices, group_slices = flatten_parameters(self.model)
        self.opt = make_optimizer(self.flat, cfg)
        self.prev = torch.empty_like(self.flat.detach())  # weights before the update
        self.delta = torch.zeros_like(self.prev)  # the last update
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            set_rng_state(ckpt["rng"])
            self.delta.copy_(ckpt["probe_state"]["last_update"])
        self.groups = list(group_slices)
        self.norm_views = [t[s] for t in (self.flat.grad, self.prev, self.delta) for s in group_slices.values()]
        self.fwd = compile_or_eager(self.model, self._trial, self.flat.grad.zero_) if cfg.compile else self.model

    def _trial(self, fwd) -> None:
        loss, _ = loss_and_acc(fwd(self.data.train_x), self.data.train_y)
        loss.backward()
        with torch.no_grad():
            fwd(self.data.val_x)

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def validate(self) -> tuple[torch.Tensor, torch.Tensor]:
        val_loss, val_acc = loss_and_acc(self.fwd(self.data.val_x), self.data.val_y)
        return val_loss.view(1), val_acc.view(1)

    def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        self.set_lr(lr)
        self.flat.grad.zero_()
        loss, acc = loss_and_acc(self.fwd(self.data.train_x), self.data.train_y)
        loss.backward()
        self.prev.copy_(self.flat.detach())
        self.opt.step()
        torch.sub(self.flat.detach(), self.prev, out=self.delta)
        return loss.detach().view(1), acc.view(1)

    def join(self, i: int) -> None:
        pass  # a lone run trains from its first step

    def drop(self, keep: list[int]) -> None:
        raise AssertionError("a lone run leaves the loop by ending it")

    def weights(self, i: int) -> torch.Tensor:
        return self.flat.detach().clone()

    def probe(self, i: int, run: Run, step: int, lr: float) -> dict[str, float]:
        """The probes on the live model and optimizer; a probe that replaced a
        ``.data`` or a ``.grad`` is repaired before the next step."""
        self.set_lr(lr)
        ctx = probe_context(
            step,
            self.model,
            self.flat,
            self.slices,
            self.data,
            self.cfg,
            lr,
            optimizer=self.opt,
            last_update=self.delta,
            snapshots=run.snapshots,
        )
        values = run_probes(self.cfg.probes, ctx)
        rebind_views(self.model, self.flat, self.slices)
        return values

    def save(self, i: int, run: Run, step: int, lr: float, names: list[str]) -> None:
        save_checkpoint(
            run.cfg.run_dir / CHECKPOINT,
            step,
            run.cfg,
            self.model,
            self.opt,
            run.metrics,
            names,
            self.delta,
            run.snapshots,
        )

    def save_weights(self, i: int, run: Run, step: int) -> None:
        save_snapshot(run.cfg.run_dir / SNAPSHOTS_DIR, step, self.model)


# -- the parameter layout and the optimizer, shared with trainer.pack ------------


def flatten_parameters(model: Transformer):
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
    kw: dict[str, Any] = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    try:
        return torch.optim.AdamW([flat], fused=True, **kw)
    except (RuntimeError, ValueError, TypeError):  # no fused AdamW for this device or torch
        return torch.optim.AdamW([flat], foreach=True, **kw)


def rebind_views(model: torch.nn.Module, flat: torch.nn.Parameter, slices: dict[str, slice]) -> None:
    """(Re)point each parameter and its grad at its slice of ``flat``; a value
    that left the flat storage (a probe assigned ``.data``) is copied back."""
    grad = flat.grad
    assert grad is not None  # flatten_parameters gave it one
    for name, p in model.named_parameters():
        s = slices[name]
        view = flat.data[s].view_as(p)
        if p.data_ptr() != view.data_ptr():
            if p.data.numel():
                view.copy_(p.data)
            p.data = view
        gview = grad[s].view_as(p)
        if p.grad is None or p.grad.data_ptr() != gview.data_ptr():
            p.grad = gview


def compile_or_eager(fn: Callable, trial: Callable[[Callable], None], cleanup: Callable[[], object]) -> Callable:
    """torch.compile ``fn`` (the model, or the pack's batched forward), or warn
    and stay eager where it cannot work. Compile errors surface at the first
    call, so ``trial(compiled)`` runs one forward/backward; ``cleanup`` then
    clears the grads it left, whatever happened."""
    try:
        compiled = torch.compile(fn, dynamic=False)  # two static shapes: train and val
        trial(compiled)
    except Exception as exc:  # no compiler, unsupported platform or Python
        msg = " ".join(str(exc).split())[:200]
        print(f"trainer: warning: --compile failed ({type(exc).__name__}: {msg}); running eager", file=sys.stderr)
        return fn
    finally:
        cleanup()
    return compiled
