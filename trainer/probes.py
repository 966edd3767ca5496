"""Probes: the heavy observables, run every ``probe_every`` steps (DESIGN section 2).

A probe is a function ``probe(ctx: ProbeContext) -> dict[str, float]`` registered
in :data:`PROBES` under a name; the config's ``probes`` list picks which run.
Their values go to the "probes" shards, one row per probe step. A probe may
synchronize with the device (it runs on its own cadence) and may use autograd,
but it must leave the weights as it found them; it draws random numbers only
from ``ctx.generator`` so the training trajectory stays reproducible.

The context describes the model *at the start of step ``ctx.step``*: the same
weights as that step's train_loss, val_loss and weight_norm.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

log = logging.getLogger("trainer.probes")


@dataclass
class ProbeContext:
    step: int
    model: torch.nn.Module  # eager model (not the compiled wrapper)
    params: dict[str, torch.nn.Parameter]  # named parameters
    matrices: dict[str, torch.Tensor]  # 2-D weights by short name: attn.W_Q, mlp.W_in, unembed, ...
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, x, y) -> loss
    config: Any  # the TrainConfig
    lr: float
    optimizer: torch.optim.Optimizer
    flat_params: torch.Tensor  # every parameter, as one flat vector (the model's storage: do not write)
    param_slices: dict[str, slice]  # name -> its slice of flat_params
    last_update: torch.Tensor  # flat theta_{step-1} - theta_{step-2}
    snapshots: deque = field(default_factory=deque)  # (step, flat params clone), oldest first, this one last
    generator: torch.Generator | None = None  # seeded from (seed, step)
    device: torch.device = torch.device("cpu")


Probe = Callable[[ProbeContext], dict[str, float]]
PROBES: dict[str, Probe] = {}


def register(name: str) -> Callable[[Probe], Probe]:
    def deco(fn: Probe) -> Probe:
        PROBES[name] = fn
        return fn

    return deco


_failed: set[str] = set()


def run_probes(names: list[str] | tuple[str, ...], ctx: ProbeContext) -> dict[str, float]:
    """Run the named probes and merge their values. A probe that raises is
    logged (with its traceback, once per probe) and skipped: one broken
    observable must not end a 100K-step run."""
    values: dict[str, float] = {}
    for name in names:
        try:
            out = PROBES[name](ctx)
        except Exception:
            if name not in _failed:
                _failed.add(name)
                log.exception("probe %s failed at step %d; skipping it where it fails", name, ctx.step)
            continue
        values.update({k: float(v) for k, v in out.items()})
    return values


@register("effective_rank")
@torch.no_grad()
def effective_rank(ctx: ProbeContext) -> dict[str, float]:
    """``effective_rank/<matrix>``: exp of the Shannon entropy of the normalized
    singular values, p_i = s_i / sum(s) (Roy & Vetterli, "The effective rank: a
    measure of effective dimensionality", EUSIPCO 2007)."""
    names = list(ctx.matrices)
    svals = [torch.linalg.svdvals(ctx.matrices[n].detach().float()) for n in names]
    out = []
    for s in svals:
        p = s / s.sum().clamp_min(1e-30)
        h = -(p * torch.log(p.clamp_min(1e-30))).sum()
        out.append(torch.exp(h))
    vals = torch.stack(out).cpu().tolist()  # one sync for all matrices
    return {f"effective_rank/{n}": v for n, v in zip(names, vals)}
