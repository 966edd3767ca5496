"""A synthetic grokking sweep, written through the real :class:`RunWriter`.

One module: the plan, the planted signals and the live writer share RunPlan
and its fixed noise blocks (the same seed gives the same sweep, at once or in
real time).

Weight decays x seeds (default 3 x 30 = 90 runs). Each run memorizes, sits on
a plateau whose length grows as 1/weight_decay (times a seed-dependent
log-normal factor), then groks -- or never does within the budget. One run
anti-groks (validation accuracy collapses after grokking, HTSR alpha drops
below 2 and correlation traps appear first), one diverges (NaN loss), one
stalls (status stays running, heartbeat stops) and one is preempted and
resumed from an earlier checkpoint (its later shards repeat steps).

Signals behave like the real ones around onset: grad_norm accelerates (a GAI
spike) before validation accuracy rises; weight norm decays during the
plateau and crosses a critical value at onset (run.json carries its mean,
``critical_weight_norm``); H0 persistence entropy falls on the plateau and
turns up before onset (as the Rips construction does on real runs); HTSR
alpha drops before onset; val_acc follows a sigmoid. docs/evidence/
sim_vs_real.md says how far each default rule's behaviour on a simulated
sweep is from the real runs'. Every scalar and
probe column of DESIGN section 2 is written, probes at probe cadence.

Each run's ground truth is in run.json under ``simulated``: ``fate``,
``t_mem``, ``t_grok`` (null if it never groks), and the steps where its planted
signals change. The same seed gives the same sweep, bit for bit, whether it
is written at once or in real time (noise is drawn per fixed block of steps).
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grokwatch.runs.phases import phase_of
from grokwatch.store import ContractError, RunConfig, RunStatus, RunWriter, atomic_write_json, check_run_id
from grokwatch.store.layout import STATUS_JSON, run_id_for

WEIGHT_DECAYS = (0.1, 0.3, 1.0)
LAYERS = ("embed", "attn", "mlp", "unembed")
LAYER_SHARE = np.sqrt(np.array([0.3, 0.2, 0.35, 0.15]))  # squares sum to 1
MATRICES = ("embed", "attn.qk", "attn.ov", "mlp.in", "mlp.out", "unembed")
SMALL_MATRIX = "attn.qk"  # few eigenvalues, poor fits: its alpha is unreliable
RANK_MATRICES = ("mlp.out", "unembed")
P = 97
N_TRAIN = 2822  # 30% of 97^2 pairs
N_VAL = P * P - N_TRAIN
BLOCK = 1000  # noise is drawn per block of steps: chunking never changes the data
W_CRIT = 22.0  # mean weight norm at onset
_NOISE = (
    (
        "train_acc val_acc train_loss val_loss grad weight update h0 h0_total h0_median "
        "hess_max hess_min hess_tr defect transverse cosine pca rank_a rank_b"
    ).split()
    + [f"alpha/{m}" for m in MATRICES]
    + [f"ks/{m}" for m in MATRICES]
    + [f"ntail/{m}" for m in MATRICES]
)
_ROW = {name: i for i, name in enumerate(_NOISE)}


@dataclass
class RunPlan:
    run_id: str
    index: int
    weight_decay: float
    seed: int
    steps: int
    eval_every: int
    probe_every: int
    fate: str  # groks | never | anti_grok | diverge | stall
    t_mem_c: float  # memorization midpoint
    w_mem: float
    t_on: float  # val_acc sigmoid midpoint
    w_val: float
    t_gai: float  # centre of the grad-norm surge
    w_gai: float
    t_h0: float  # H0 entropy shift midpoint
    t_alpha: float  # HTSR alpha drop midpoint (at onset)
    w_crit: float  # weight norm at onset
    t_anti: float | None = None
    t_alpha_below_2: float | None = None
    t_traps: float | None = None
    t_diverge: int | None = None
    t_stall: int | None = None
    preempt_at: int | None = None
    resume_from: int | None = None
    alpha_final: dict = field(default_factory=dict)
    n_tail: dict = field(default_factory=dict)
    e0: float = 2.8
    phase: float = 0.0
    sweep_seed: int = 0

    @property
    def last_step(self) -> int:
        """The last step this run writes."""
        if self.t_diverge is not None:
            return min(self.steps, self.t_diverge + 2 * self.eval_every)
        if self.t_stall is not None:
            return self.t_stall
        return self.steps


def _sig(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def plan_sweep(runs: int = 90, steps: int = 100_000, seed: int = 0, weight_decays=WEIGHT_DECAYS) -> list[RunPlan]:
    """The runs of a sweep, their fates and planted signal times (no I/O)."""
    if runs < 1 or steps < 200:
        raise ValueError("need at least 1 run and 200 steps")
    rng = np.random.default_rng(seed)
    T = steps
    eval_every = max(1, T // 2000)
    probe_every = max(10, T // 400)
    n_wd = len(weight_decays)
    plans = []
    for i in range(runs):
        wd = float(weight_decays[i % n_wd])
        s = i // n_wd
        t_mem_c = T * rng.uniform(0.006, 0.014) + 60
        w_mem = max(10.0, 0.08 * t_mem_c)
        plateau = T * min(2.0, 0.06 / wd) * float(np.exp(rng.normal(0, 0.35)))
        t_on = t_mem_c + 6 * w_mem + plateau
        w_val = max(8.0, 0.03 * plateau + 0.002 * T)
        w_gai = max(8.0, min(60.0, 0.003 * T))
        lead = rng.uniform(0.5, 2.0) * w_val + 5 * w_gai
        plans.append(
            RunPlan(
                run_id=run_id_for(wd, s),
                index=i,
                weight_decay=wd,
                seed=s,
                steps=T,
                eval_every=eval_every,
                probe_every=probe_every,
                fate="groks",
                t_mem_c=t_mem_c,
                w_mem=w_mem,
                t_on=t_on,
                w_val=w_val,
                t_gai=t_on - lead,
                w_gai=w_gai,
                t_h0=t_on - rng.uniform(1.0, 3.0) * w_val - 3 * probe_every,
                t_alpha=t_on,
                w_crit=float(rng.normal(W_CRIT, 0.6)),
                alpha_final={m: float(rng.uniform(3.0, 3.5)) for m in MATRICES},
                n_tail={m: (6 if m == SMALL_MATRIX else int(rng.integers(20, 60))) for m in MATRICES},
                e0=float(2.8 + 0.1 * rng.standard_normal()),
                phase=float(rng.uniform(0, 2 * np.pi)),
                sweep_seed=seed,
            )
        )
    for p in plans:
        if p.t_on + 4 * p.w_val > T:
            p.fate = "never"
    # Special fates, on distinct runs (as many as the sweep has room for).
    order = [int(k) for k in rng.permutation(runs)]
    taken: set[int] = set()

    def pick(pred) -> RunPlan | None:
        for k in order:
            if k not in taken and pred(plans[k]):
                taken.add(k)
                return plans[k]
        return None

    if runs >= 4 and not any(p.fate == "never" for p in plans):
        q = pick(lambda p: p.weight_decay == min(weight_decays))
        if q is not None:
            q.t_on = 1.5 * T
            q.t_gai, q.t_h0, q.t_alpha = q.t_on - 3 * q.w_val, q.t_on - 3 * q.w_val, q.t_on
            q.fate = "never"
    for p in plans:
        if p.fate == "never":
            taken.add(p.index)
    if runs >= 2:
        q = pick(lambda p: p.t_on + 6 * p.w_val < 0.55 * T)
        if q is not None:
            q.fate = "anti_grok"
            q.t_anti = q.t_on + 6 * q.w_val + 0.4 * (T - q.t_on - 6 * q.w_val)
            q.t_alpha_below_2 = q.t_anti - max(0.05 * T, 10 * q.probe_every)
            q.t_traps = q.t_alpha_below_2 + 2 * q.probe_every
    if runs >= 3:
        q = pick(lambda p: True)
        if q is not None:
            q.fate = "diverge"
            q.t_diverge = int(rng.uniform(0.3, 0.7) * T)
    if runs >= 4:
        q = pick(lambda p: True)
        if q is not None:
            q.fate = "stall"
            q.t_stall = int(rng.uniform(0.3, 0.7) * T) // 10 * 10
    if runs >= 5:
        q = pick(lambda p: p.fate in ("groks", "never"))
        if q is not None:
            q.preempt_at = int(rng.uniform(0.3, 0.6) * T)
            q.resume_from = max(1, q.preempt_at - min(1000, T // 20))
    return plans


# -- the curves -------------------------------------------------------------------------


def _noise(p: RunPlan, a: int, b: int) -> np.ndarray:
    """Standard normals (len(_NOISE), b - a) for steps a .. b-1, drawn per fixed block."""
    blocks = range(a // BLOCK, (b - 1) // BLOCK + 1)
    parts = [
        np.random.default_rng([p.sweep_seed, p.index, k]).standard_normal((len(_NOISE), BLOCK), dtype=np.float32)
        for k in blocks
    ]
    z = np.concatenate(parts, axis=1)
    off = a - blocks[0] * BLOCK
    return z[:, off : off + (b - a)]


def generate(p: RunPlan, a: int, b: int, probes: bool = True) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Scalar and probe columns of run ``p`` for steps a .. b-1 (steps start at 1)."""
    steps = np.arange(a, b, dtype=np.int64)
    t = steps.astype(np.float64)
    z = _noise(p, a, b)
    nz = lambda name: z[_ROW[name]]  # noqa: E731
    sc = _scalars(p, t, nz)
    sc = {"step": steps, **sc}
    keep = steps % p.probe_every == 0
    if probes and keep.any():
        pz = lambda name: z[_ROW[name]][keep]  # noqa: E731
        pr = {"step": steps[keep], **_probes(p, t[keep], pz)}
    else:
        pr = {}
    if p.t_diverge is not None:
        for cols in (sc, pr):
            if not cols:
                continue
            bad = cols["step"] >= p.t_diverge
            for k, v in cols.items():
                if k not in ("step", "lr") and bad.any():
                    cols[k] = np.where(bad, np.nan, v)
    return sc, pr


def _scalars(p: RunPlan, t: np.ndarray, nz) -> dict[str, np.ndarray]:
    c = 1.0 / P
    m = _sig((t - p.t_mem_c) / p.w_mem)  # memorization
    g = _sig((t - p.t_on) / p.w_val)  # generalization
    if p.t_anti is not None:
        g_eff = g * (1 - 0.85 * _sig((t - p.t_anti) / p.w_val))
    else:
        g_eff = g
    train_acc = c + (1 - c) * m + 0.002 * (1 - m) * nz("train_acc")
    train_acc = np.round(np.clip(train_acc, 0, 1) * N_TRAIN) / N_TRAIN
    v0 = 0.015
    val_acc = v0 + (0.998 - v0) * g_eff + 0.004 * (1 - g_eff) * nz("val_acc") * m
    val_acc = np.round(np.clip(val_acc, 0, 1) * N_VAL) / N_VAL
    train_loss = np.exp(np.log(4.57) * (1 - m) + np.log(2e-3) * m) * (1 - 0.7 * g) * (1 + 0.02 * nz("train_loss"))
    val_loss = ((4.6 * (1 - m) + 16.0 * m) * (1 - g_eff) + 0.02 * g_eff) * (1 + 0.01 * nz("val_loss"))
    evals = (t.astype(np.int64) % p.eval_every) == 0
    val_acc = np.where(evals, val_acc, np.nan)
    val_loss = np.where(evals, val_loss, np.nan)
    # Weight norm: grows while memorizing, decays on the plateau, crosses w_crit at onset.
    # A run that never groks stalls above the critical norm, as real ones do (docs/evidence).
    w_i, w_0, w_f = 28.0, 40.0, 10.0
    if p.fate == "never":
        w_f = 1.2 * p.w_crit
        tau = max(1.0, 0.5 * (p.steps - p.t_mem_c))
    else:
        tau = max(1.0, (p.t_on - p.t_mem_c) / math.log((w_0 - w_f) / (p.w_crit - w_f)))
    decay = np.exp(-np.maximum(t - p.t_mem_c, 0.0) / tau)
    weight = w_f + (w_i + (w_0 - w_i) * m - w_f) * decay
    weight = weight * (1 + 1e-4 * nz("weight"))
    # Grad norm: large while memorizing, small on the plateau, a surge before onset.
    g_plateau = 0.02 * weight / w_0
    base = g_plateau + (1.5 - g_plateau) * (1 - m)
    # Fast exponential rise into the surge, slower relaxation after it.
    x = t - p.t_gai
    surge = 1.5 * np.exp(np.where(x < 0, x / (0.4 * p.w_gai), -x / (2.5 * p.w_gai)))
    wobble = 1 + 0.03 * np.sin(2 * np.pi * t / 2500.0 + p.phase)
    grad = base * (1 + surge) * (1 - 0.5 * g) * wobble * (1 + 1e-4 * nz("grad"))
    lr = 1e-3 * np.minimum(1.0, t / 10.0)
    update = lr * (60.0 * (1 - m) + 8.0 + 20 * surge) * (1 + 0.01 * nz("update"))
    out = {
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "grad_norm": grad,
        "weight_norm": weight,
        "update_norm": update,
        "lr": lr,
    }
    for layer, share in zip(LAYERS, LAYER_SHARE):
        out[f"grad_norm/{layer}"] = grad * share
        out[f"weight_norm/{layer}"] = weight * share
    return out


def _probes(p: RunPlan, t: np.ndarray, nz) -> dict[str, np.ndarray]:
    g = _sig((t - p.t_on) / p.w_val)
    shift = _sig((t - p.t_h0) / p.probe_every)
    early = _sig((t - p.t_mem_c + 4 * p.w_mem) / p.w_mem)  # the landscape settles while memorizing
    # As the Rips H0 of real runs (docs/evidence): the entropy falls while the landscape
    # sharpens on the plateau, then turns up before onset (about 0.1 nats).
    plateau = 1 - np.exp(-np.maximum(t - p.t_mem_c, 0.0) / max(1.0, 0.25 * max(p.t_on - p.t_mem_c, 1.0)))
    # the turn's size varies by run (0.02-0.15 nats; from the run's phase draw, so no other draw moves)
    rise = 0.02 + 0.13 * (p.phase / (2 * np.pi))
    h0 = p.e0 + 0.3 * (1 - early) - 0.2 * plateau + rise * shift + 0.01 * nz("h0")
    out: dict[str, np.ndarray] = {
        "h0_entropy": h0,
        "h0_total": 12.0 * (1 - 0.3 * shift) * (1 + 0.02 * nz("h0_total")),
        "h0_effective_count": 0.9 * np.exp(h0),
        "h0_median": 0.05 * (1 + 0.2 * np.abs(nz("h0_median"))),
    }
    drop = _sig((t - p.t_alpha) / p.w_val)
    below = _sig((t - p.t_alpha_below_2) / p.probe_every) if p.t_alpha_below_2 is not None else 0.0
    for mat in MATRICES:
        a_f = p.alpha_final[mat]
        alpha = a_f + (6.0 - a_f) * np.exp(-t / (0.1 * p.steps)) - 0.6 * drop + 0.04 * nz(f"alpha/{mat}")
        ks = 0.04 + 0.02 * np.abs(nz(f"ks/{mat}"))
        n_tail = np.maximum(3, np.round(p.n_tail[mat] + 2 * nz(f"ntail/{mat}")))
        if mat == SMALL_MATRIX:  # noisy, badly fitted: crosses 2 often, must not alarm
            alpha = 2.4 + 0.5 * nz(f"alpha/{mat}")
            ks = 0.25 + 0.05 * np.abs(nz(f"ks/{mat}"))
            n_tail = np.full(len(t), 6.0)
        if mat in ("mlp.in", "mlp.out"):
            alpha = alpha - 1.4 * below
        traps = np.zeros(len(t))
        if p.t_traps is not None and mat == "mlp.out":
            traps = np.where(t >= p.t_traps, 2.0, 0.0)
        out[f"htsr_alpha/{mat}"] = alpha
        out[f"htsr_ks/{mat}"] = ks
        out[f"htsr_n_tail/{mat}"] = n_tail
        out[f"htsr_traps/{mat}"] = traps
    for mat, key in zip(RANK_MATRICES, ("rank_a", "rank_b")):
        out[f"effective_rank/{mat}"] = (90.0 - 50.0 * g) * (1 + 0.01 * nz(key))
    out["hessian_lambda_max"] = 40.0 * (1 - 0.6 * g) * (1 + 0.05 * nz("hess_max"))
    out["hessian_lambda_min"] = -0.5 * (1 - g) * (1 + 0.1 * nz("hess_min"))
    out["hessian_trace"] = 300.0 * (1 - 0.5 * g) * (1 + 0.03 * nz("hess_tr"))
    bump = np.exp(-0.5 * ((t - p.t_on) / (3 * p.w_val)) ** 2)
    out["commutator_defect"] = (0.02 + 0.3 * bump) * (1 + 0.05 * nz("defect"))
    out["defect_transverse_frac"] = np.clip(0.2 + 0.5 * bump + 0.02 * nz("transverse"), 0, 1)
    out["update_cosine"] = np.clip(
        0.9 - 0.6 * np.exp(-0.5 * ((t - p.t_gai) / (5 * p.w_gai)) ** 2) + 0.01 * nz("cosine"), -1, 1
    )
    out["pca2_variance_share"] = np.clip(0.6 + 0.3 * g + 0.01 * nz("pca"), 0, 1)
    return out


# -- ground truth and config ------------------------------------------------------------


def truth(p: RunPlan) -> dict:
    """What the run.json ``simulated`` block says: fate and planted steps."""
    end = p.last_step
    sc, _ = generate(p, 1, end + 1, probes=False)
    info = phase_of(sc)
    r = lambda x: None if x is None else int(round(x))  # noqa: E731
    in_run = lambda x: r(x) if x is not None and 0 < x <= end else None  # noqa: E731
    return {
        "fate": p.fate,
        "t_mem": info.t_mem,
        "t_grok": info.t_grok,
        "t_anti": info.t_anti,
        "t_diverge": p.t_diverge,
        "t_stall": p.t_stall,
        "preempt_at": p.preempt_at,
        "resume_from": p.resume_from,
        "signals": {
            "gai_surge": in_run(p.t_gai),
            "h0_entropy_shift": in_run(p.t_h0),
            "htsr_alpha_drop": in_run(p.t_alpha),
            "htsr_alpha_below_2": in_run(p.t_alpha_below_2),
            "correlation_traps": in_run(p.t_traps),
            "val_acc_midpoint": in_run(p.t_on),
            "weight_norm_at_onset": round(p.w_crit, 3),
        },
    }


SIM_PRESET = "sim"


def run_config(p: RunPlan, sweep: str) -> RunConfig:
    return RunConfig(
        run_id=p.run_id,
        sweep=sweep,
        # the simulator is a preset of its own: its prior (grokwatch/priors/sim.*) is simulated too
        preset=SIM_PRESET,
        weight_decay=p.weight_decay,
        lr=1e-3,
        seed=p.seed,
        steps=p.steps,
        # the critical weight norm the simulator plants (its mean; each run draws around it),
        # which the watcher's weight_norm_ratio reads as a real run reads its preset's prior
        critical_weight_norm=W_CRIT,
        extra={
            "task": "modular_addition",
            "p": P,
            "train_fraction": 0.3,
            "model": {"n_layers": 1, "d_model": 128, "n_heads": 4, "d_mlp": 512, "n_params": 302_208},
            "optimizer": "adamw",
            "betas": [0.9, 0.98],
            "eval_every": p.eval_every,
            "probe_every": p.probe_every,
            "simulated": truth(p),
        },
    )


# -- writing ------------------------------------------------------------------------------


class _RunSim:
    """Writes one planned run through RunWriter, chunk by chunk."""

    def __init__(self, plan: RunPlan, sweep_dir: Path, sweep: str, shard_steps: int):
        self.plan = plan
        self.dir = sweep_dir / plan.run_id
        self.sweep = sweep
        self.shard_steps = shard_steps
        self.writer: RunWriter | None = None
        self.next_step = 1  # first step not written yet
        self.done = False
        self.resumed = False

    def open(self) -> None:
        self.writer = RunWriter(self.dir, run_config(self.plan, self.sweep), heartbeat_seconds=1.0).open()

    def advance(self, target: int, now: float) -> None:
        """Write steps up to ``target`` (inclusive) in shards of at most shard_steps."""
        p, w = self.plan, self.writer
        if self.done or w is None:
            return
        target = min(target, p.last_step)
        if p.preempt_at is not None and not self.resumed:
            target = min(target, p.preempt_at)
        while self.next_step <= target:
            b = min(target, self.next_step + self.shard_steps - 1)
            sc, pr = generate(p, self.next_step, b + 1)
            w.write_shard("scalars", sc)
            if pr:
                w.write_shard("probes", pr)
            self.next_step = b + 1
        if p.t_stall is not None and self.next_step > p.t_stall:
            self.done = True  # stalls: status stays "running", no more heartbeats
            w.write_status(force=True)
            return
        if p.preempt_at is not None and not self.resumed and self.next_step > p.preempt_at:
            assert p.resume_from is not None  # planned together with preempt_at
            w.close("preempted", message="simulated preemption (SIGTERM)")
            self.resumed = True
            self.writer = RunWriter(
                self.dir, run_config(p, self.sweep), heartbeat_seconds=1.0, resume=True, start_step=p.resume_from
            ).open()
            self.next_step = p.resume_from + 1
            return
        if self.next_step > p.last_step:
            if p.t_diverge is not None:
                w.close("diverged", message=f"non-finite loss at step {p.t_diverge}")
            else:
                w.close("completed")
            self.done = True
            return
        w.write_status(force=False)


def simulate_sweep(
    root: Path | str,
    sweep: str = "sim",
    runs: int = 90,
    steps: int = 100_000,
    seed: int = 0,
    speed: float | None = None,
    *,
    shard_steps: int = 1000,
    flush_seconds: float = 1.0,
    stop: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a synthetic sweep to ``root/sweep`` and return its path.

    ``speed=None`` writes everything at once (the stalled run's heartbeat is
    backdated an hour, as if the sweep had run in the past). With ``speed``
    every run advances ``speed`` steps per second of wall time, a shard per
    run every ``flush_seconds``, until done or ``stop`` is set.
    """
    sweep_dir = Path(root) / check_run_id(sweep)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plans = plan_sweep(runs, steps, seed)
    sims = [_RunSim(p, sweep_dir, sweep, shard_steps) for p in plans]
    for s in sims:
        s.open()
    if speed is None:
        for k, s in enumerate(sims):
            while not s.done:
                s.advance(steps, time.time())
            if on_progress:
                on_progress(k + 1, len(sims))
        for s in sims:
            if s.plan.t_stall is not None:
                _backdate_heartbeat(s.dir, 3600.0)
        return sweep_dir
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop = stop or threading.Event()
    start = time.monotonic()
    while not all(s.done for s in sims) and not stop.is_set():
        now = time.time()
        target = int((time.monotonic() - start) * speed)
        for s in sims:
            s.advance(target, now)
        if on_progress:
            on_progress(sum(s.done for s in sims), len(sims))
        stop.wait(flush_seconds)
    return sweep_dir


def _backdate_heartbeat(run_dir: Path, seconds: float) -> None:
    try:
        status = RunStatus.read(run_dir)
    except ContractError:
        return
    if status is not None:
        beat = (status.heartbeat_unix if status.heartbeat_unix is not None else time.time()) - seconds
        status = status.replace(
            heartbeat_unix=beat, heartbeat=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(beat))
        )
        atomic_write_json(run_dir / STATUS_JSON, status.to_json())


__all__ = ["RunPlan", "generate", "plan_sweep", "run_config", "simulate_sweep", "truth"]


@contextmanager
def live_simulation(root: Path | str, *, runs: int, steps: int, speed: float, sweep: str = "live"):
    """``grokwatch simulate --speed`` in another process, as trainers are (the
    benchmarks and the terminal tests watch it); yields the sweep directory and
    stops the writer on exit (SIGINT, then SIGKILL after 30 s)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grokwatch",
            "simulate",
            str(root),
            "--runs",
            str(runs),
            "--steps",
            str(steps),
            "--speed",
            str(speed),
            "--sweep",
            sweep,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None  # stdout=PIPE
    try:
        line = proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"grokwatch simulate printed no sweep path (exit {proc.poll()})")
        yield Path(line)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
