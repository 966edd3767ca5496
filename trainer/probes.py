# Over 400 lines: the probe registry, one short function per probe beside its settings and the cost table they share.
"""Probes: the heavy observables, run every ``probe_every`` steps (DESIGN section 2).

A probe is a function ``probe(ctx: ProbeContext) -> dict[str, float]`` registered
in :data:`PROBES` under a name; the config's ``probes`` list picks which run.
Their values go to the "probes" shards, one row per probe step. A probe may
synchronize with the device (it runs on its own cadence) and may use autograd,
but it must leave the weights as it found them; its random numbers come from
generators of its own, seeded from the run's seed and the probe's name (never
the global RNG), so the training trajectory stays reproducible and a resumed
run records the same probe values as an uninterrupted one.

The context describes the model *at the start of step ``ctx.step``*: the same
weights as that step's train_loss, val_loss and weight_norm.

The probes and their columns (the math is in ``observables``; each function's
docstring gives its definition and source):

==================  =============================================================  =====
name                columns                                                        every
==================  =============================================================  =====
``effective_rank``  ``effective_rank/<matrix>``                                     1
``htsr``            ``htsr_alpha/<matrix>``, ``htsr_sigma/<matrix>``,              1
                    ``htsr_ks/<matrix>``, ``htsr_n_tail/<matrix>``,
                    ``htsr_n_evals/<matrix>``
``htsr_traps``      ``htsr_traps/<matrix>``                                         1
``h0``              ``h0_total``, ``h0_effective_count``, ``h0_median``,            10
                    ``h0_entropy``
``commutator``      ``commutator_defect``, ``defect_transverse_frac``               1
``hessian``         ``hessian_lambda_max``, ``hessian_lambda_min``,                 10
                    ``hessian_ratio``
``hessian_trace``   ``hessian_trace``                                               10
``update_cosine``   ``update_cosine``                                               1
``pca2``            ``pca2_variance_share``                                         1
==================  =============================================================  =====

``<matrix>`` is a short name from ``Transformer.matrices()`` (embed, attn.W_Q,
attn.W_K, attn.W_V, attn.W_O, mlp.W_in, mlp.W_out, unembed). Every singular
value decomposition runs in float64 on the host.

*every* is the probe's own sub-cadence in probe steps: with k = step //
probe_every, a probe with every = m runs at every m-th probe step, k = m, 2m,
3m, ... (at the default probe_every 500: h0 and the Hessian every 5000 steps,
from step 5000). A ``--probes`` entry ``name@m`` overrides it for that run
(``h0@1``: a slice at every probe step). Grid sizes and
iteration counts are in :data:`SETTINGS`. :data:`DEFAULT_PROBES` are chosen so
that, for the canonical preset on one CPU thread at probe_every = 500, all of
them together cost under 5% of the training time (``bench/probes.py``
measures it).

A value that is undefined at a step (fewer than three trajectory snapshots for
the PCA-based columns, a zero update, a matrix too small for a fit) is left
out of the row, which reads back as NaN.
"""

from __future__ import annotations

import contextlib
import logging
import math
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.optimize  # noqa: F401  (htsr_traps' Marchenko-Pastur fit: imported here, not at the first probe step)
import torch
import torch.nn.functional as F

# Probe names and the ones on by default (TrainConfig.probes) live with the config's checks,
# which run without torch; every probe registered here must be one of PROBE_NAMES.
from grokwatch.runs.training import DEFAULT_PROBES as DEFAULT_PROBES
from grokwatch.runs.training import PROBE_NAMES, parse_probe_spec

from .task import loss_and_acc

if TYPE_CHECKING:
    from .model import Transformer

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
    optimizer: torch.optim.Optimizer | None  # None post hoc (no optimizer state in a weight snapshot)
    flat_params: torch.Tensor  # every parameter, as one flat vector (the model's storage: do not write)
    param_slices: dict[str, slice]  # name -> its slice of flat_params
    last_update: torch.Tensor | None  # flat theta_{step-1} - theta_{step-2}; None post hoc
    snapshots: deque = field(default_factory=deque)  # (step, flat params clone), oldest first, this one last
    generator: torch.Generator | None = None  # seeded from (seed, step)
    device: torch.device = torch.device("cpu")
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-probe overrides of SETTINGS
    cache: dict[str, Any] = field(default_factory=dict)  # shared by the probes of one step


def model_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training loss of ``model`` on (x, y): ProbeContext.loss_fn."""
    return loss_and_acc(model(x), y)[0]


def probe_context(
    step: int,
    model: Transformer,
    flat: torch.Tensor,
    slices: dict[str, slice],
    data: Any,
    config: Any,
    lr: float,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    last_update: torch.Tensor | None = None,
    snapshots: deque | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> ProbeContext:
    """The probes' view of one run at the start of ``step``, built the same way
    for a lone run, a run of a pack and a post-hoc pass. ``model``: the eager
    model whose parameters are views of ``flat`` (trainer.train.flatten_parameters,
    ``slices`` its layout); ``data``: the run's trainer.task.Split on flat's
    device; ``config``: its TrainConfig. The generator is seeded from (seed, step)."""
    device = flat.device
    return ProbeContext(
        step=step,
        model=model,
        params=dict(model.named_parameters()),
        matrices=model.matrices(),
        train_x=data.train_x,
        train_y=data.train_y,
        val_x=data.val_x,
        val_y=data.val_y,
        loss_fn=model_loss,
        config=config,
        lr=lr,
        optimizer=optimizer,
        flat_params=flat.detach(),
        param_slices=slices,
        last_update=last_update,
        snapshots=deque() if snapshots is None else snapshots,
        generator=torch.Generator(device).manual_seed(int(config.seed) * 1_000_003 + step),
        device=device,
        options=options or {},
    )


Probe = Callable[[ProbeContext], dict[str, float]]


class _Registry(dict):
    """Probe functions by name; ``spec in PROBES`` also accepts ``name@every``."""

    def __contains__(self, spec: object) -> bool:
        if not isinstance(spec, str):
            return False
        try:
            name, _ = parse_spec(spec)
        except ValueError:
            return False
        return dict.__contains__(self, name)


PROBES: dict[str, Probe] = _Registry()

#: Per-probe settings. ``every``: sub-cadence in probe steps (see the module
#: docstring); the rest are the observables' knobs. Chosen with bench/probes.py
#: (canonical preset, one CPU thread, probe_every 500): see DEFAULT_PROBES.
SETTINGS: dict[str, dict[str, Any]] = {
    "effective_rank": {"every": 1},
    "htsr": {"every": 1},
    "htsr_traps": {"every": 1},
    # vectorize: torch.vmap over `chunk` grid points; "auto" = on CUDA only (on
    # CPU one point at a time is ~4x cheaper than a vmapped chunk)
    "h0": {"every": 10, "grid": 15, "span": 1.0, "chunk": 16, "vectorize": "auto"},
    "commutator": {"every": 1, "k": 2},
    "hessian": {"every": 10, "iters": 20},
    "hessian_trace": {"every": 10, "samples": 8},
    "update_cosine": {"every": 1},
    "pca2": {"every": 1, "k": 2},
}


#: Trajectory snapshots the PCA-based columns need (k + 1 for k = 2).
MIN_SNAPSHOTS = 3


def register(name: str) -> Callable[[Probe], Probe]:
    if name not in PROBE_NAMES:  # the config's checks would refuse it
        raise ValueError(f"probe {name!r} is not in grokwatch.runs.training.PROBE_NAMES; add it there")

    def deco(fn: Probe) -> Probe:
        PROBES[name] = fn
        return fn

    return deco


parse_spec = parse_probe_spec  # "h0@5" -> ("h0", 5); "h0" -> ("h0", None)


def settings(ctx: ProbeContext, name: str) -> dict[str, Any]:
    """SETTINGS[name] with the context's overrides."""
    return {**SETTINGS.get(name, {}), **ctx.options.get(name, {})}


def is_due(name: str, every: int | None, step: int, probe_every: int) -> bool:
    """Whether probe ``name`` (sub-cadence ``every``, else its SETTINGS') runs at probe step ``step``."""
    m = every if every is not None else int(SETTINGS.get(name, {}).get("every", 1))
    if m <= 1 or probe_every <= 0:
        return True
    return (step // probe_every) % m == 0


_failed: set[str] = set()


def run_probes(names: list[str] | tuple[str, ...], ctx: ProbeContext, cadence: bool = True) -> dict[str, float]:
    """Run the named probes (``name`` or ``name@every``) that are due at
    ``ctx.step`` and merge their values; ``cadence=False`` runs them all (post
    hoc). A probe that raises is logged (with its traceback, once per probe)
    and skipped: one broken observable must not end a 100K-step run."""
    values: dict[str, float] = {}
    probe_every = int(getattr(ctx.config, "probe_every", 0) or 0)
    with _blas_threads(int(getattr(ctx.config, "threads", 1) or 1)):
        for spec in names:
            name, every = parse_spec(spec)
            if cadence and not is_due(name, every, ctx.step, probe_every):
                continue
            try:
                out = PROBES[name](ctx)
            except Exception:
                if name not in _failed:
                    _failed.add(name)
                    log.exception("probe %s failed at step %d; skipping it where it fails", name, ctx.step)
                continue
            values.update({k: float(v) for k, v in out.items()})
    return values


def _blas_threads(n: int):
    """numpy/scipy BLAS limited to the trainer's thread count (where threadpoolctl is there)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=max(1, n), user_api="blas")


# -- shared helpers --------------------------------------------------------------


def probe_seed(ctx: ProbeContext, name: str) -> int:
    """A seed of the run and the probe (not the step): the same random
    directions / vectors / shuffles at every probe step, so the time series
    follows the weights, not the draw; independent of which other probes run."""
    return zlib.crc32(f"{name}:{int(getattr(ctx.config, 'seed', 0))}".encode()) & 0x7FFFFFFF


def _cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # the training loss of trainer.task.loss_and_acc (float64), without the accuracy
    return F.cross_entropy(logits.to(torch.float64), y)


def train_loss_of(ctx: ProbeContext):
    """(loss_of(params dict) -> training loss, params): the full-batch training loss."""
    if "train_loss_of" not in ctx.cache:
        from observables.topology import module_loss

        ctx.cache["train_loss_of"] = module_loss(ctx.model, _cross_entropy, ctx.train_x, ctx.train_y)
    return ctx.cache["train_loss_of"]


def host_matrices(ctx: ProbeContext) -> dict[str, np.ndarray]:
    """The weight matrices as float64 host arrays (one device->host copy per step)."""
    if "host_matrices" not in ctx.cache:
        ctx.cache["host_matrices"] = {n: w.detach().to("cpu", torch.float64).numpy() for n, w in ctx.matrices.items()}
    return ctx.cache["host_matrices"]


def flat_order(ctx: ProbeContext) -> list[str]:
    """Parameter names in the flat vector's layout order."""
    return sorted(ctx.param_slices, key=lambda n: ctx.param_slices[n].start)


def snapshot_matrix(ctx: ProbeContext) -> np.ndarray | None:
    """The recent trajectory (T x P, float64, oldest first), or None below MIN_SNAPSHOTS."""
    if len(ctx.snapshots) < MIN_SNAPSHOTS:
        return None
    if "snapshot_matrix" not in ctx.cache:
        ctx.cache["snapshot_matrix"] = torch.stack([w for _, w in ctx.snapshots]).to("cpu", torch.float64).numpy()
    return ctx.cache["snapshot_matrix"]


def _finite(d: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in d.items() if v is not None and math.isfinite(float(v))}


# -- the probes --------------------------------------------------------------------


@register("effective_rank")
def effective_rank(ctx: ProbeContext) -> dict[str, float]:
    """``effective_rank/<matrix>``: exp of the Shannon entropy of the normalized
    singular values (observables.rank.effective_rank; Roy & Vetterli 2007)."""
    from observables.rank import effective_rank as erank

    return _finite({f"effective_rank/{n}": erank(w) for n, w in host_matrices(ctx).items()})


@register("htsr")
def htsr(ctx: ProbeContext) -> dict[str, float]:
    """``htsr_alpha/<matrix>`` (power-law exponent of the ESD tail),
    ``htsr_sigma/<matrix>`` (its standard error), ``htsr_ks/<matrix>`` (KS
    distance of the fit) and ``htsr_n_tail/<matrix>`` (eigenvalues in the
    tail): an alarm on alpha can demand a small KS distance and enough tail
    eigenvalues (observables.htsr.fit_alpha; WeightWatcher conventions)."""
    from observables.htsr import fit_alpha

    out: dict[str, float] = {}
    for n, w in host_matrices(ctx).items():
        fit = fit_alpha(w)
        if fit.ok:
            out.update(
                {
                    f"htsr_alpha/{n}": fit.alpha,
                    f"htsr_sigma/{n}": fit.sigma,
                    f"htsr_ks/{n}": fit.ks_distance,
                    f"htsr_n_tail/{n}": float(fit.n_tail),
                    f"htsr_n_evals/{n}": float(fit.n_evals),
                }
            )
    return _finite(out)


@register("htsr_traps")
def htsr_traps(ctx: ProbeContext) -> dict[str, float]:
    """``htsr_traps/<matrix>``: correlation traps, eigenvalues of the shuffled
    matrix beyond the Marchenko-Pastur edge plus a Tracy-Widom margin
    (observables.htsr.correlation_traps; an undefined count is left out)."""
    from observables.htsr import correlation_traps

    seed = probe_seed(ctx, "htsr_traps")
    out = {}
    for n, w in host_matrices(ctx).items():
        c = correlation_traps(w, seed=seed)
        if c >= 0:
            out[f"htsr_traps/{n}"] = float(c)
    return out


@register("h0")
def h0(ctx: ProbeContext) -> dict[str, float]:
    """``h0_total``, ``h0_effective_count``, ``h0_median``, ``h0_entropy``: H0
    persistence summaries of a G x G slice of the training loss along two
    filter-normalized random directions (observables.topology; "Grokking
    Topology"). G = SETTINGS["h0"]["grid"]: G^2 full-batch forward passes.
    The filtration is the run's ``h0_construction`` (a "construction" option
    overrides it): "rips" by default, chosen on real runs (docs/topology.md);
    "sublevel" is the seed study's, degenerate on real runs."""
    from observables.topology import h0_diagram, h0_summaries, loss_slice

    s = settings(ctx, "h0")
    loss_of, params = train_loss_of(ctx)
    vec = s.get("vectorize", "auto")
    vec = torch.device(ctx.device).type == "cuda" if vec == "auto" else bool(vec)
    with torch.no_grad():
        img = loss_slice(
            loss_of,
            params,
            grid=int(s["grid"]),
            span=float(s["span"]),
            seed=probe_seed(ctx, "h0"),
            chunk=int(s["chunk"]),
            vectorize=vec,
        )
    construction = s.get("construction") or getattr(ctx.config, "h0_construction", None) or "rips"
    summ = h0_summaries(h0_diagram(img, construction, float(s["span"])))
    return _finite(
        {
            "h0_total": summ.total,
            "h0_effective_count": summ.effective_count,
            "h0_median": summ.median,
            "h0_entropy": summ.entropy,
        }
    )


@register("commutator")
def commutator(ctx: ProbeContext) -> dict[str, float]:
    """``commutator_defect``: |theta_AB - theta_BA| / (eta^2 |g_A| |g_B|) for the
    two halves A, B of the (already shuffled) training set and eta = this
    step's lr, in float64 (eta^2-small differences); ``defect_transverse_frac``:
    the share of the defect outside the top-k PCA subspace of the recent
    probe-step snapshots (observables.commutator)."""
    from torch.func import functional_call

    from observables.commutator import defect, transverse_fraction

    s = settings(ctx, "commutator")
    order = flat_order(ctx)
    theta = {n: ctx.params[n].detach().to(torch.float64) for n in order}
    n = ctx.train_x.shape[0] // 2
    a = (ctx.train_x[:n], ctx.train_y[:n])
    b = (ctx.train_x[n : 2 * n], ctx.train_y[n : 2 * n])

    def loss_fn(p, batch):
        return _cross_entropy(functional_call(ctx.model, p, (batch[0],)), batch[1])

    eta = float(ctx.lr) if ctx.lr else float(ctx.config.lr)
    res = defect(loss_fn, theta, a, b, eta)
    out = {"commutator_defect": res.defect}
    X = snapshot_matrix(ctx)
    if X is not None and res.delta.size == X.shape[1]:
        out["defect_transverse_frac"] = transverse_fraction(res.delta, X, k=int(s["k"]))
    return _finite(out)


@register("hessian")
def hessian(ctx: ProbeContext) -> dict[str, float]:
    """``hessian_lambda_max``, ``hessian_lambda_min``: extreme eigenvalues of
    the training-loss Hessian by Lanczos on Hessian-vector products
    (SETTINGS["hessian"]["iters"] steps); ``hessian_ratio`` = |min| / max
    (observables.curvature.hessian_extremes; Notsawo et al. 2023)."""
    from observables.curvature import hessian_extremes

    s = settings(ctx, "hessian")
    loss_of, params = train_loss_of(ctx)
    r = hessian_extremes(loss_of, params, iters=int(s["iters"]), seed=probe_seed(ctx, "hessian"))
    return _finite({"hessian_lambda_max": r.lambda_max, "hessian_lambda_min": r.lambda_min, "hessian_ratio": r.ratio})


@register("hessian_trace")
def hessian_trace(ctx: ProbeContext) -> dict[str, float]:
    """``hessian_trace``: Hutchinson estimate with SETTINGS["hessian_trace"]["samples"]
    Rademacher vectors, the same ones at every step (observables.curvature)."""
    from observables.curvature import hutchinson_trace

    s = settings(ctx, "hessian_trace")
    loss_of, params = train_loss_of(ctx)
    return _finite(
        {
            "hessian_trace": hutchinson_trace(
                loss_of, params, n_samples=int(s["samples"]), seed=probe_seed(ctx, "hessian_trace")
            )
        }
    )


@register("update_cosine")
def update_cosine(ctx: ProbeContext) -> dict[str, float]:
    """``update_cosine``: cos(u_{t-1}, u_t) of the last update and the one this
    step applies (Thilak et al. 2022; observables.trajectory.update_cosine).
    u_t is AdamW's update computed from the optimizer's state and this step's
    full-batch gradient, without applying it (one forward and backward pass).
    Needs the live optimizer: nothing post hoc."""
    from observables.trajectory import update_cosine as cosine

    if ctx.optimizer is None or ctx.last_update is None:
        return {}
    u = next_adamw_update(ctx)
    if u is None:
        return {}
    return _finite({"update_cosine": cosine(ctx.last_update, u)})


def next_adamw_update(ctx: ProbeContext) -> torch.Tensor | None:
    """The update theta_{t+1} - theta_t that ``ctx.optimizer`` (AdamW on the one
    flat parameter, as the trainer builds it) is about to apply at this step:
    theta <- theta (1 - lr wd) - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps),
    m, v the moment estimates after this step's gradient. None for any other
    optimizer setup."""
    opt = ctx.optimizer
    if not isinstance(opt, torch.optim.AdamW) or len(opt.param_groups) != 1:
        return None
    group = opt.param_groups[0]
    if len(group["params"]) != 1 or group.get("amsgrad") or group.get("maximize"):
        return None
    flat = group["params"][0]
    order = flat_order(ctx)
    leaves = [ctx.params[n] for n in order]
    with torch.enable_grad():
        loss = ctx.loss_fn(ctx.model, ctx.train_x, ctx.train_y)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    g = torch.cat([(torch.zeros_like(p) if gi is None else gi).reshape(-1) for gi, p in zip(grads, leaves)])
    if g.numel() != flat.numel():
        return None
    g = g.to(torch.float64)
    theta = flat.detach().to(torch.float64)
    lr, wd, eps = float(group["lr"]), float(group["weight_decay"]), float(group["eps"])
    beta1, beta2 = (float(b) for b in group["betas"])
    st = opt.state.get(flat, {})
    step = float(st["step"]) + 1.0 if "step" in st else 1.0
    m = g * (1.0 - beta1)
    v = g * g * (1.0 - beta2)
    if "exp_avg" in st:
        m = m + beta1 * st["exp_avg"].to(torch.float64)
        v = v + beta2 * st["exp_avg_sq"].to(torch.float64)
    bc1, bc2 = 1.0 - beta1**step, 1.0 - beta2**step
    return -lr * wd * theta - (lr / bc1) * m / (v.sqrt() / math.sqrt(bc2) + eps)


@register("pca2")
def pca2(ctx: ProbeContext) -> dict[str, float]:
    """``pca2_variance_share``: share of the recent trajectory's variance (the
    probe-step snapshots, at most trainer.checkpoint.SNAPSHOTS_KEPT) in its top-2
    PCA modes (observables.trajectory.pca_variance_share; Notsawo et al.
    2023). Left out below three snapshots."""
    from observables.trajectory import pca_variance_share

    X = snapshot_matrix(ctx)
    if X is None:
        return {}
    return _finite({"pca2_variance_share": pca_variance_share(X, k=int(settings(ctx, "pca2")["k"]))})
