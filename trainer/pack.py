# Over 400 lines: the batched forward, the batched AdamW and their engine change together (bit for bit with alone).
"""Many runs in one process: K independent runs trained as one batched model.

``python -m trainer --pack --runs wd0.3-s00:0.3:0,wd1.0-s01:1.0:1`` (or
``--seeds 0-29 --weight-decays 0.1,0.3,1.0``, weight-decay major) trains the
runs side by side on one device. They share the preset (task, model, lr,
cadences); each has its own seed and weight decay. The loop (cadences,
recording, stops, checkpoints) is trainer.loop's, the same as a lone run's;
this module is what packing adds: the batched forward, the batched AdamW and
the engine (:class:`Pack`) that keeps K runs on the device. Its command line
is in trainer.cli.

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

import ctypes
import dataclasses
import math
import sys
import warnings

import torch
import torch.nn.functional as F

from grokwatch.store import CHECKPOINT, SNAPSHOTS_DIR

from .checkpoint import save_checkpoint, save_snapshot
from .config import ConfigError, TrainConfig, check_fresh_run
from .loop import Run, open_run, run_loop
from .model import ModelConfig, Transformer
from .probes import probe_context, run_probes
from .task import Split, make_dataset
from .train import compile_or_eager, flatten_parameters, make_optimizer, rebind_views

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


# -- the pack --------------------------------------------------------------------


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
    # each run exactly as trainer.train starts it, on the CPU; stacked on the device by Pack
    runs, rows = [], {}
    for cfg in cfgs:
        run, ckpt = open_run(cfg, torch.device("cpu"), device)
        runs.append(run)
        rows[id(run)] = initial_rows(cfg, ckpt)
    meta = {"pack": {"size": len(runs), "runs": [r.cfg.run_id for r in runs]}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_LAYOUT_WARNING)
        return run_loop(
            runs, lambda live: Pack(c0, [rows[id(r)] for r in live], [r.cfg for r in live], device), c0, meta
        )


def initial_rows(cfg: TrainConfig, ckpt: dict | None) -> dict[str, torch.Tensor]:
    """Run ``cfg``'s start on the CPU, as trainer.train starts it (seed, split,
    model): its flat weights, AdamW moments and step count, last update, data."""
    torch.manual_seed(cfg.seed)
    split = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    model = Transformer(cfg.model_config())
    flat, _, _ = flatten_parameters(model)
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
    out = {
        "flat": flat.detach(),
        "exp_avg": state["exp_avg"],
        "exp_avg_sq": state["exp_avg_sq"],
        "n": torch.as_tensor(state["step"], dtype=torch.float32).reshape(()),
        "delta": delta,
    }
    return out | {k: getattr(split, k) for k in ("train_x", "train_y", "val_x", "val_y")}


class Pack:
    """K runs on the device, stacked along a leading run axis in ``T``: flat
    weights, grads, AdamW moments and step counts, data. A scratch single model
    shows one run at a time to probes, checkpoints and snapshots."""

    def __init__(self, c0: TrainConfig, rows: list[dict[str, torch.Tensor]], cfgs: list[TrainConfig], device):
        self.c0, self.cfgs, self.mc = c0, cfgs, c0.model_config()
        self.T = {k: torch.stack([r[k] for r in rows]).to(device) for k in rows[0]}
        T = self.T
        T["joined"] = torch.zeros(len(rows), dtype=torch.bool, device=device)
        T["alive"] = torch.ones(len(rows), dtype=torch.bool, device=device)
        T["grad"] = torch.zeros_like(T["flat"])
        T["prev"] = torch.empty_like(T["flat"])
        T["skip"] = torch.zeros_like(T["n"])
        self.scratch = Transformer(self.mc).to(device)
        self.scratch_flat, self.slices, self.group_slices = flatten_parameters(self.scratch)
        self.shapes = {name: p.shape for name, p in self.scratch.named_parameters()}
        self.groups = list(self.group_slices)
        # the single-run trainer's optimizer choice: its fused kernel where it has one
        fused = bool(make_optimizer(self.scratch_flat, c0).defaults.get("fused"))
        self.fused = fused and hasattr(torch, "_fused_adamw_")
        self.bind()
        self.fwd = packed_logits
        if c0.compile:
            self.fwd = compile_or_eager(packed_logits, self._trial, T["grad"].zero_)

    def bind(self) -> None:
        """Each parameter a [K, ...] leaf viewing its columns of T["flat"] (its
        ``.grad`` the same of T["grad"]), and what depends on the pack's runs."""
        self.params, self.norm_views = bind_params(self.T, self.slices, self.shapes, self.group_slices)
        self.rows_adam, self.wds = adam_rows(self.T), [c.weight_decay for c in self.cfgs]

    def _trial(self, fwd) -> None:
        T = self.T
        loss, _ = packed_loss_and_acc(fwd(self.params, T["train_x"], self.mc), T["train_y"])
        loss.sum().backward()
        with torch.no_grad():
            fwd(self.params, T["val_x"], self.mc)

    def validate(self) -> tuple[torch.Tensor, torch.Tensor]:
        return packed_loss_and_acc(self.fwd(self.params, self.T["val_x"], self.mc), self.T["val_y"])

    def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The step of every run at once; each run's loss depends on its own parameters only."""
        T, c0 = self.T, self.c0
        T["grad"].zero_()
        loss, acc = packed_loss_and_acc(self.fwd(self.params, T["train_x"], self.mc), T["train_y"])
        loss.sum().backward()
        T["prev"].copy_(T["flat"])
        T["alive"] &= torch.isfinite(loss)  # a diverged run stops here, on the device
        adamw_step(T, T["alive"] & T["joined"], lr, self.wds, c0.beta1, c0.beta2, self.fused, self.rows_adam)
        torch.sub(T["flat"], T["prev"], out=T["delta"])
        return loss.detach(), acc

    def join(self, i: int) -> None:
        self.T["joined"][i] = True  # a fill on the device, no sync

    def drop(self, keep: list[int]) -> None:
        sel = torch.tensor(keep, device=self.T["flat"].device)
        self.T.update({k: t.index_select(0, sel) for k, t in self.T.items()})
        self.cfgs = [self.cfgs[i] for i in keep]
        self.bind()

    def weights(self, i: int) -> torch.Tensor:
        return self.T["flat"][i].clone()

    def show(self, i: int) -> None:
        """Run i's weights into the scratch model."""
        self.scratch_flat.data.copy_(self.T["flat"][i])

    def optimizer(self, i: int, lr: float) -> torch.optim.Optimizer:
        """The single-run trainer's AdamW over the scratch model, holding run i's
        moments and step count: its state_dict is what trainer.train checkpoints."""
        T, flat = self.T, self.scratch_flat
        opt = make_optimizer(flat, self.cfgs[i])
        for g in opt.param_groups:
            g["lr"] = lr
        on_device = bool(opt.defaults.get("fused"))  # fused AdamW keeps its step on the device, the others on the CPU
        opt.state[flat] = {
            "step": T["n"][i].to(torch.float32).to(flat.device if on_device else "cpu").clone(),
            "exp_avg": T["exp_avg"][i].clone(),
            "exp_avg_sq": T["exp_avg_sq"][i].clone(),
        }
        return opt

    def probe(self, i: int, run: Run, step: int, lr: float) -> dict[str, float]:
        """The probes on a copy of run i (the scratch model): a probe sees, and
        can disturb, only that copy."""
        self.show(i)
        self.scratch_flat.grad.zero_()
        T = self.T
        data = Split(T["train_x"][i], T["train_y"][i], T["val_x"][i], T["val_y"][i])
        ctx = probe_context(
            step,
            self.scratch,
            self.scratch_flat,
            self.slices,
            data,
            run.cfg,
            lr,
            optimizer=self.optimizer(i, lr),
            last_update=T["delta"][i].clone(),
            snapshots=run.snapshots,
        )
        values = run_probes(run.cfg.probes, ctx)
        rebind_views(self.scratch, self.scratch_flat, self.slices)  # in case a probe replaced a .data or a .grad
        return values

    def save(self, i: int, run: Run, step: int, lr: float, names: list[str]) -> None:
        """Run i's checkpoint, in trainer.train's format (it resumes alone or packed)."""
        self.show(i)
        opt = self.optimizer(i, lr)
        delta = self.T["delta"][i].clone()
        save_checkpoint(
            run.cfg.run_dir / CHECKPOINT, step, run.cfg, self.scratch, opt, run.metrics, names, delta, run.snapshots
        )

    def save_weights(self, i: int, run: Run, step: int) -> None:
        self.show(i)
        save_snapshot(run.cfg.run_dir / SNAPSHOTS_DIR, step, self.scratch)


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
