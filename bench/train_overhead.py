"""What recording costs the training loop, per step, on CPU with one thread.

"with": the real trainer (``trainer.train.train``) for N steps: metrics into the
device buffer every step, a shard per flush, status heartbeats, the default
probe cadence (probes at steps 500, 1000, 1500 for tiny). Its loop time comes from
status.json (``loop_seconds``: first step to last flush, setup and the final
checkpoint excluded).
"without": the same loop without any recording: the same model, flat-parameter
AdamW (trainer.train.make_optimizer), lr warm-up and validation forward every ``eval_every`` steps (a training
loop evaluates anyway), and nothing else.

The two are timed alternately, R times each, in one process, so drift on a
shared machine hits both. Reported per clock (wall, and process CPU time, which
other load on a shared machine barely moves): the best of the R timings of
each kind and their ratio, and the median of the per-pair ratios.
Usage: python bench/train_overhead.py [--reps R] [--quick]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokwatch.store import read_status  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.model import Transformer  # noqa: E402
from trainer.task import loss_and_acc, make_dataset  # noqa: E402
from trainer.train import flatten_parameters, make_optimizer, train  # noqa: E402


def time_with_recording(cfg: TrainConfig, root: Path, tag: str) -> tuple[float, float]:
    """(wall, CPU) ms/step of the real trainer's loop."""
    cfg = cfg.replace(root=str(root), sweep="bench", run_id=tag)
    code = train(cfg)
    if code != 0:
        raise SystemExit(f"bench: the trainer exited {code}")
    st = read_status(cfg.run_dir)
    n = st["loop_steps"]
    return 1000.0 * st["loop_seconds"] / n, 1000.0 * st["loop_cpu_seconds"] / n


def time_without_recording(cfg: TrainConfig) -> tuple[float, float]:
    """(wall, CPU) ms/step of the same loop with no metrics at all."""
    torch.manual_seed(cfg.seed)
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    model = Transformer(cfg.model_config())
    flat, _, _ = flatten_parameters(model)
    opt = make_optimizer(flat, cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(1, cfg.steps + 1):
        lr = cfg.lr * min(1.0, step / cfg.warmup) if cfg.warmup else cfg.lr
        for g in opt.param_groups:
            g["lr"] = lr
        if step % cfg.eval_every == 0:
            with torch.no_grad():
                loss_and_acc(model(data.val_x), data.val_y)
        flat.grad.zero_()
        loss, _ = loss_and_acc(model(data.train_x), data.train_y)
        loss.backward()
        opt.step()
    return 1000.0 * (time.perf_counter() - t0) / cfg.steps, 1000.0 * (time.process_time() - c0) / cfg.steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timings of each kind per preset (default 5)")
    ap.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, not a measurement)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    plans = {"tiny": 1500, "canonical": 150}
    if args.quick:
        plans = {k: max(20, v // 10) for k, v in plans.items()}
    results = {}
    with tempfile.TemporaryDirectory(prefix="train-overhead-") as tmp:
        for preset, steps in plans.items():
            cfg = TrainConfig.from_preset(preset, steps=steps, threads=1, device="cpu")
            time_without_recording(cfg.replace(steps=min(steps, 20)))  # warm caches and the allocator
            t = {"with": [], "without": []}  # (wall, cpu) per rep
            for rep in range(args.reps):
                order = ("with", "without") if rep % 2 == 0 else ("without", "with")
                for kind in order:
                    if kind == "with":
                        t[kind].append(time_with_recording(cfg, Path(tmp), f"{preset}-{rep}"))
                    else:
                        t[kind].append(time_without_recording(cfg))
                print(
                    f"  {preset} rep {rep + 1}/{args.reps}: with {t['with'][-1][0]:.2f} ms "
                    f"(cpu {t['with'][-1][1]:.2f}), "
                    f"without {t['without'][-1][0]:.2f} ms (cpu {t['without'][-1][1]:.2f})",
                    file=sys.stderr,
                    flush=True,
                )
            r = {"steps": steps, "reps": args.reps, "n_params": cfg.n_params}
            for i, clock in enumerate(("wall", "cpu")):
                w = [x[i] for x in t["with"]]
                b = [x[i] for x in t["without"]]
                ratios = [x / y for x, y in zip(w, b)]
                r[clock] = {
                    "ms_per_step_with": round(min(w), 3),
                    "ms_per_step_without": round(min(b), 3),
                    "overhead_pct": round(100.0 * (min(w) / min(b) - 1.0), 2),
                    "overhead_pct_median_pair": round(100.0 * (statistics.median(ratios) - 1.0), 2),
                }
            results[preset] = r
    print()
    print(
        f"{'preset':<10} {'params':>8} {'steps':>6} {'clock':>5} {'with ms/step':>13} {'without ms/step':>16} "
        f"{'overhead':>9} {'median pair':>12}"
    )
    for preset, r in results.items():
        for clock in ("wall", "cpu"):
            c = r[clock]
            print(
                f"{preset:<10} {r['n_params']:>8,} {r['steps']:>6} {clock:>5} {c['ms_per_step_with']:>13.2f} "
                f"{c['ms_per_step_without']:>16.2f} {c['overhead_pct']:>8.1f}% {c['overhead_pct_median_pair']:>11.1f}%"
            )
    print("CPU, 1 thread. ms/step: best of the reps; overhead: best with / best without - 1 (median pair: median of")
    print("the per-pair ratios). 'cpu' is process CPU time: robust to other load, blind to fsync waits. Target <= 5%.")
    print(
        json.dumps(
            {"bench": "train_overhead", "device": "cpu", "threads": 1, "torch": torch.__version__, "presets": results}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
