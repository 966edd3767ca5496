"""What the default probes cost the canonical run, on CPU with one thread.

- step: the real trainer (``trainer.train.train``) for N steps with probes off;
  its loop time per step from status.json (``loop_seconds`` and
  ``loop_cpu_seconds``: recording and validation included, setup excluded).
  Best of R runs.
- each probe: ``trainer.probes.run_probes([name], ctx, cadence=False)`` on a
  context built as the trainer builds it (after W warm-up steps, with the
  trajectory window full), fresh per call (no cache shared between probes:
  slightly pessimistic); best of R calls (one for the slow ones in --quick).
- share: sum over the default probes of cost / sub-cadence (``every``), the
  average cost of one probe step, over probe_every x the step time: the
  fraction of training time the default probes add. Target <= 5%. Also the
  peak: the probe steps where every default probe runs (k = 10, 20, ...).

Both clocks are reported: wall, and process CPU time, which other load on a
shared machine barely moves (the share is judged on CPU time, wall is
reported alongside). BLAS is limited to one thread too.
Usage: python bench/probes.py [--steps N] [--reps R] [--quick]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokwatch.store import read_status  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.model import Transformer  # noqa: E402
from trainer.probes import DEFAULT_PROBES, SETTINGS, ProbeContext, probe_context, run_probes  # noqa: E402
from trainer.task import loss_and_acc, make_dataset  # noqa: E402
from trainer.train import SNAPSHOTS_KEPT, flatten_parameters, make_optimizer, train  # noqa: E402

TARGET_PCT = 5.0
SLOW = ("h0", "hessian", "hessian_trace")


def time_step(cfg: TrainConfig, root: Path, steps: int, reps: int) -> tuple[float, float]:
    """(wall, CPU) ms per training step of the real loop, probes off; best of reps."""
    best_w, best_c = float("inf"), float("inf")
    for r in range(reps):
        c = cfg.replace(root=str(root), sweep="bench", run_id=f"step{r}", steps=steps, probe_every=0, keep_every=0)
        if train(c) != 0:
            raise SystemExit("bench: the trainer failed")
        st = read_status(c.run_dir)
        n = st["loop_steps"]
        best_w = min(best_w, 1000.0 * st["loop_seconds"] / n)
        best_c = min(best_c, 1000.0 * st["loop_cpu_seconds"] / n)
    return best_w, best_c


def probe_state(cfg: TrainConfig, warm: int):
    """Model, data, optimizer and a full trajectory window after ``warm`` steps,
    as the trainer holds them at a probe step."""
    torch.manual_seed(cfg.seed)
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    model = Transformer(cfg.model_config())
    flat, slices, _ = flatten_parameters(model)
    opt = make_optimizer(flat, cfg)
    snapshots: deque = deque(maxlen=SNAPSHOTS_KEPT)
    prev = torch.empty_like(flat.detach())
    delta = torch.zeros_like(prev)
    every = max(1, warm // SNAPSHOTS_KEPT)
    for step in range(1, warm + 1):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, step / cfg.warmup) if cfg.warmup else cfg.lr
        flat.grad.zero_()
        loss, _ = loss_and_acc(model(data.train_x), data.train_y)
        loss.backward()
        prev.copy_(flat.detach())
        opt.step()
        torch.sub(flat.detach(), prev, out=delta)
        if step % every == 0:
            snapshots.append((step, flat.detach().clone()))

    def ctx(step: int) -> ProbeContext:
        return probe_context(
            step, model, flat, slices, data, cfg, cfg.lr, optimizer=opt, last_update=delta, snapshots=snapshots
        )

    return ctx, flat


def time_probe(ctx_of, name: str, reps: int) -> tuple[float, float, int]:
    """(wall, CPU) ms of one call, best of reps; and the number of columns it wrote."""
    best_w, best_c, ncols = float("inf"), float("inf"), 0
    for _ in range(reps):
        ctx = ctx_of(500)
        w, c = time.perf_counter(), time.process_time()
        out = run_probes([name], ctx, cadence=False)
        best_w = min(best_w, 1000.0 * (time.perf_counter() - w))
        best_c = min(best_c, 1000.0 * (time.process_time() - c))
        ncols = len(out)
    return best_w, best_c, ncols


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="training steps per step-time run (default 60)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions; the best counts (default 2)")
    ap.add_argument("--warm", type=int, default=40, help="training steps before the probes are timed (default 40)")
    ap.add_argument("--quick", action="store_true", help="one call of the slow probes (h0, hessian, trace)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = TrainConfig.from_preset("canonical", threads=1)
    probe_every = cfg.probe_every

    with tempfile.TemporaryDirectory(prefix="bench-probes-") as tmp:
        step_w, step_c = time_step(cfg, Path(tmp), args.steps, args.reps)
    print(f"training step: {step_w:.1f} ms wall, {step_c:.1f} ms CPU (canonical, 1 thread)", flush=True)

    ctx_of, flat = probe_state(cfg, args.warm)
    w = time.perf_counter()
    for _ in range(10):
        flat.detach().clone()
    snap_ms = 100.0 * (time.perf_counter() - w)  # the trainer's snapshot clone at each probe step
    probes: dict[str, dict] = {}
    for name in DEFAULT_PROBES:
        reps = 1 if (args.quick and name in SLOW) else args.reps
        pw, pc, ncols = time_probe(ctx_of, name, reps)
        every = int(SETTINGS[name]["every"])
        probes[name] = {"every": every, "ms_wall": round(pw, 2), "ms_cpu": round(pc, 2), "columns": ncols}
        print(f"  {name:15s} every {every:2d}: {pw:9.1f} ms wall {pc:9.1f} ms CPU  ({ncols} columns)", flush=True)

    per_step = {clk: snap_ms + sum(p[f"ms_{clk}"] / p["every"] for p in probes.values()) for clk in ("wall", "cpu")}
    peak = {clk: snap_ms + sum(p[f"ms_{clk}"] for p in probes.values()) for clk in ("wall", "cpu")}
    train_ms = {"wall": step_w * probe_every, "cpu": step_c * probe_every}
    share = {clk: 100.0 * per_step[clk] / train_ms[clk] for clk in ("wall", "cpu")}
    print(
        f"default probes at probe_every {probe_every}: {per_step['cpu']:.0f} ms CPU per probe step on average "
        f"(peak {peak['cpu']:.0f} ms) = {share['cpu']:.2f}% of training time (CPU; wall {share['wall']:.2f}%); "
        f"target <= {TARGET_PCT}%",
        flush=True,
    )
    result = {
        "bench": "probes",
        "preset": "canonical",
        "threads": 1,
        "n_params": cfg.n_params,
        "probe_every": probe_every,
        "step_ms": {"wall": round(step_w, 2), "cpu": round(step_c, 2)},
        "snapshot_ms": round(snap_ms, 2),
        "probes": probes,
        "probe_step_ms_avg": {k: round(v, 1) for k, v in per_step.items()},
        "probe_step_ms_peak": {k: round(v, 1) for k, v in peak.items()},
        "share_pct": {k: round(v, 3) for k, v in share.items()},
        "target_pct": TARGET_PCT,
        "within_target": share["cpu"] <= TARGET_PCT,
    }
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
