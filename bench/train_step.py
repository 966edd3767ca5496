"""One training step, side by side, for a preset (canonical by default).

    python bench/train_step.py [--device cpu|cuda] [--quick] [--preset P] [--ks 1,3,10,30,90] [--reps R]

1. project: the real trainer (trainer.train.train) for N steps: logits at the
   answer position only, fused AdamW over one flat parameter, every scalar of
   DESIGN section 2 recorded on the device (one copy per shard). Its loop time
   comes from status.json (first step to last flush).
2. reference: a plain loop written here, as a typical script has it: the same
   model (trainer.model.Transformer) computing logits at EVERY position (the loss
   reads the last), torch.optim.AdamW with its default implementation over the
   module's parameters, ``zero_grad`` and a ``loss.item()`` each step, no metrics.
3. packed: trainer.pack.train_pack with K runs (seeds 0..K-1, one weight decay)
   in one process, K in 1, 3, 10, 30, 90, for 2 + m steps. The steady step:
   timestamps taken in the loss call of step 2 and of step 2 + m (after a
   device sync on CUDA) give ms per run-step = their difference / (m * K), so
   neither setup nor the first step (page faults on gigabytes of fresh
   activations at K = 90 on a CPU) counts; the first step is reported apart.

The project and the reference are timed alternately, R times each, in one
process, so drift on a shared machine hits both; best of the R timings. The
packed series runs once per K. Validation, probes and mid-run checkpoints are
off (eval_every > steps): the figures are the training step's own.

FLOPs are counted analytically (:func:`step_flops`): the matmuls of the forward
over the training set, backward at twice the forward. GFLOP/s = those FLOPs /
time. On CPU: one thread, wall and process CPU time (the latter barely moves
with other load). On CUDA (--device cuda): wall time; the loops end with a
device sync. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainer.pack as tp  # noqa: E402
from grokwatch.store import read_status  # noqa: E402
from trainer import task  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.model import Transformer  # noqa: E402
from trainer.task import make_dataset  # noqa: E402
from trainer.train import train  # noqa: E402

NOT_MEASURED = "not measured"


def step_flops(cfg: TrainConfig, full: bool) -> int:
    """Matmul FLOPs of one full-batch training step (forward, plus backward at
    2x the forward). ``full``: logits at every position (the reference);
    otherwise the last block computes its query, MLP and logits at the answer
    position only (this project's model)."""
    d, dm, V, T, L = cfg.d_model, cfg.d_mlp, cfg.p + 2, 4, cfg.n_layers
    per_example = 0
    for i in range(L):
        tq = T if (full or i < L - 1) else 1
        per_example += 2 * 2 * T * d * d  # K, V at every position
        per_example += 2 * tq * d * d  # Q
        per_example += 2 * 2 * tq * T * d  # scores and attention-weighted values (all heads)
        per_example += 2 * tq * d * d  # O
        per_example += 2 * 2 * tq * d * dm  # MLP in and out
    per_example += 2 * (T if full else 1) * d * V  # unembed
    return 3 * per_example * task.n_train(cfg.op, cfg.p, cfg.train_frac)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_project(cfg: TrainConfig, root: Path, tag: str) -> tuple[float, float]:
    """(wall, CPU) ms per step of the real trainer's loop."""
    cfg = cfg.replace(root=str(root), sweep="project", run_id=tag)
    if train(cfg) != 0:
        raise SystemExit("bench: the trainer failed")
    st = read_status(cfg.run_dir)
    return 1000.0 * st["loop_seconds"] / st["loop_steps"], 1000.0 * st["loop_cpu_seconds"] / st["loop_steps"]


def time_reference(cfg: TrainConfig) -> tuple[float, float]:
    """(wall, CPU) ms per step of a plain loop: full logits, default AdamW, .item() per step."""
    device = cfg.device
    torch.manual_seed(cfg.seed)
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed).to(device)
    model = Transformer(cfg.model_config()).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)

    def logits_everywhere(x):
        h = model.embed(x) + model.pos[: x.shape[1]]
        for block in model.blocks:
            h = block(h, last_only=False)
        return model.unembed(h)  # [B, T, vocab]

    losses = []
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(1, cfg.steps + 1):
        lr = cfg.lr * min(1.0, step / cfg.warmup) if cfg.warmup else cfg.lr
        for g in opt.param_groups:
            g["lr"] = lr
        logits = logits_everywhere(data.train_x)
        loss = F.cross_entropy(logits[:, -1].to(torch.float64), data.train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())  # the host sync a logging script does every step
    sync(device)
    n = cfg.steps
    return 1000.0 * (time.perf_counter() - t0) / n, 1000.0 * (time.process_time() - c0) / n


def time_packed(cfg: TrainConfig, K: int, m: int, root: Path) -> tuple[float, float, float]:
    """trainer.pack with K runs for 2 + m steps: (wall, CPU) ms per pack step
    from step 2 to step 2 + m, and the wall ms of the first step."""
    marks: list[tuple[float, float]] = []
    real = tp.packed_loss_and_acc

    def marked(logits, y):  # called once per training step (validation is off)
        if len(marks) in (0, 1, 1 + m):
            sync(cfg.device)
            marks.append((time.perf_counter(), time.process_time()))
        else:
            marks.append(marks[-1])
        return real(logits, y)

    cfgs = [cfg.replace(root=str(root), sweep=f"pack{K}", run_id=f"s{k:02d}", seed=k, steps=2 + m) for k in range(K)]
    tp.packed_loss_and_acc = marked
    try:
        if tp.train_pack(cfgs) != 0:
            raise SystemExit(f"bench: the packed trainer (K={K}) failed")
    finally:
        tp.packed_loss_and_acc = real
    (w1, _), (w2, c2), (w3, c3) = marks[0], marks[1], marks[1 + m]
    return 1000.0 * (w3 - w2) / m, 1000.0 * (c3 - c2) / m, 1000.0 * (w2 - w1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (default; one thread) or cuda[:N]")
    ap.add_argument("--preset", default="canonical")
    ap.add_argument("--ks", default=None, help="pack sizes (default 1,3,10,30,90; --quick: 1,3,10)")
    ap.add_argument("--reps", type=int, default=None, help="project/reference timings each (default 3; --quick 1)")
    ap.add_argument("--steps", type=int, default=None, help="steps of the project and reference loops")
    ap.add_argument("--quick", action="store_true", help="fewer K values and steps (a smoke run, not a measurement)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the project's and the packed forward")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("bench: --device cuda but no CUDA device here")
    torch.set_num_threads(1)
    ks = [int(k) for k in (args.ks or ("1,3,10" if args.quick else "1,3,10,30,90")).split(",")]
    reps = args.reps or (1 if args.quick else 3)
    steps = args.steps or ((200 if cuda else 20) // (4 if args.quick else 1))
    target = (3000 if cuda else 60) // (4 if args.quick else 1)  # run-steps per pack size
    base = TrainConfig.from_preset(
        args.preset,
        steps=steps,
        device=args.device,
        threads=1,
        compile=args.compile,
        eval_every=10**9,
        probe_every=0,
        checkpoint_every=10**9,
        keep_every=0,
        flush_steps=10**6,
        flush_seconds=1e9,
    )
    flops = {"project": step_flops(base, full=False), "reference": step_flops(base, full=True)}
    clocks = ("wall",) if cuda else ("wall", "cpu")
    out = {
        "bench": "train_step",
        "device": args.device,
        "threads": 1,
        "torch": torch.__version__,
        "preset": args.preset,
        "n_params": base.n_params,
        "steps": steps,
        "reps": reps,
        "gflop_per_step": {k: round(v / 1e9, 3) for k, v in flops.items()},
    }
    if cuda:
        out["gpu_name"] = torch.cuda.get_device_name(torch.device(args.device))

    with tempfile.TemporaryDirectory(prefix="train-step-") as tmp:
        root = Path(tmp)
        # warm caches, the allocator (and CUDA's context and kernels)
        time_project(base.replace(steps=3), root, "warm")
        time_reference(base.replace(steps=3))
        t = {"project": [], "reference": []}
        for rep in range(reps):
            for kind in ("project", "reference") if rep % 2 == 0 else ("reference", "project"):
                t[kind].append(time_project(base, root, f"p{rep}") if kind == "project" else time_reference(base))
            print(
                f"  rep {rep + 1}/{reps}: project {t['project'][-1][0]:.2f} ms/step (cpu {t['project'][-1][1]:.2f}), "
                f"reference {t['reference'][-1][0]:.2f} ms/step (cpu {t['reference'][-1][1]:.2f})",
                file=sys.stderr,
                flush=True,
            )
        for kind in ("project", "reference"):
            r = {}
            for i, clock in enumerate(clocks):
                best = min(x[i] for x in t[kind])
                r[f"ms_per_step_{clock}"] = round(best, 3)
                r[f"gflops_{clock}"] = round(flops[kind] / best / 1e6, 2)
            # the reference's rate on the FLOPs this project needs (its useful work)
            r["useful_gflops_wall"] = round(flops["project"] / r["ms_per_step_wall"] / 1e6, 2)
            out[kind] = r
        out["speedup_vs_reference"] = {
            clock: round(out["reference"][f"ms_per_step_{clock}"] / out["project"][f"ms_per_step_{clock}"], 2)
            for clock in clocks
        }
        out["speedup_vs_reference_median_pair"] = round(
            statistics.median(r[0] / p[0] for p, r in zip(t["project"], t["reference"])), 2
        )

        packed = []
        for K in ks:
            n = max(20 if cuda else 2, math.ceil(target / K))
            wall, cpu, first = time_packed(base, K, n, root)
            row = {
                "K": K,
                "steps": n,
                "first_step_ms_wall": round(first, 1),
                "ms_per_pack_step_wall": round(wall, 2),
                "ms_per_run_step_wall": round(wall / K, 3),
                "gflops_wall": round(flops["project"] * K / wall / 1e6, 2),
            }
            if not cuda:
                row.update(ms_per_run_step_cpu=round(cpu / K, 3), gflops_cpu=round(flops["project"] * K / cpu / 1e6, 2))
            packed.append(row)
            print(f"  packed K={K}: {n} steps, {wall / K:.2f} ms per run-step", file=sys.stderr, flush=True)
        out["packed"] = packed
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if not cuda:
        out["cuda"] = NOT_MEASURED
    out["check_project_2x_faster_than_reference"] = out["speedup_vs_reference"]["wall"] >= 2.0

    print()
    print(
        f"{args.preset} ({base.n_params:,} parameters), {args.device}, 1 thread, torch {torch.__version__}; "
        f"GFLOP per step: project {out['gflop_per_step']['project']}, reference {out['gflop_per_step']['reference']}"
    )
    print(f"{'':>24} " + " ".join(f"{c + ' ms/step':>14} {c + ' GFLOP/s':>14}" for c in clocks))
    for kind in ("project", "reference"):
        r = out[kind]
        print(
            f"{kind + ' (1 run)':>24} "
            + " ".join(f"{r[f'ms_per_step_{c}']:>14.2f} {r[f'gflops_{c}']:>14.1f}" for c in clocks)
        )
    print(
        "speedup of the project's step over the reference: "
        + ", ".join(f"{c} {out['speedup_vs_reference'][c]:.2f}x" for c in clocks)
        + f" (check >= 2x: {'PASS' if out['check_project_2x_faster_than_reference'] else 'FAIL'})"
    )
    print(
        f"{'packed K':>10} {'steps':>6} " + " ".join(f"{c + ' ms/run-step':>18} {c + ' GFLOP/s':>14}" for c in clocks)
    )
    for r in out["packed"]:
        print(
            f"{r['K']:>10} {r['steps']:>6} "
            + " ".join(f"{r[f'ms_per_run_step_{c}']:>18.2f} {r[f'gflops_{c}']:>14.1f}" for c in clocks)
        )
    if not cuda:
        print(f"GPU: {NOT_MEASURED} (run with --device cuda on a GPU)")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
