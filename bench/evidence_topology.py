"""H0 constructions compared on real runs, from their kept weight snapshots.

For every snapshot (every ``--every`` steps) of every run in a sweep, one loss
slice per (direction kind, direction seed, span) and, on each slice, every H0
construction of ``observables.topology`` (sublevel: the seed's; superlevel;
rips). Writes ``<run>/topology.npz``-free JSON rows to ``OUT/topology-<sweep>.json``:

    {"runs": {run_id: {"steps": [...], "weight_norm": [...],
                       "<dirs>-s<seed>-x<span>-<construction>": {"n_bars": [...], "total": [...],
                                                           "effective_count": [...], "median": [...],
                                                           "entropy": [...]}}}}

Direction kinds: ``random`` (two filter-normalised random directions, Li et
al. 2018, as the live probe) and ``hessian`` (the top-2 eigenvectors of the
training-loss Hessian by Lanczos on Hessian-vector products, scaled to
span x |theta|, as Xie, Geniesse et al. 2024 slice along). Usage:

    python bench/evidence_topology.py SWEEP_DIR --out OUT [--every 200] [--grid 15]

Reruns skip runs already in the output file. The last line printed is one
JSON object (runs done, slices computed, seconds).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: (direction kind, direction seed, span) of each slice; the first is the live probe's.
SLICES = (("random", 0, 1.0), ("random", 1, 1.0), ("hessian", 0, 0.05), ("hessian3d", 0, 0.05))
GRID_3D = 7  # 7^3 = 343 losses per 3-D Hessian-subspace grid
CONSTRUCTION_NAMES = ("sublevel", "superlevel", "rips")
STATS = ("n_bars", "total", "effective_count", "median", "entropy")


def _hessian_directions(loss_of, params, iters: int = 20, seed: int = 0):
    """Top-2 Hessian eigenvectors (Lanczos on HVPs, observables.curvature), as a params-shaped pair."""
    from observables.curvature import hessian_top_eigvecs

    return hessian_top_eigvecs(loss_of, params, k=2, iters=iters, seed=seed)


def slice_along(loss_of, params, d1, d2, grid: int, span: float) -> np.ndarray:
    import torch

    c = np.linspace(-span, span, grid)
    img = np.empty((grid, grid))
    with torch.no_grad():
        for i, a in enumerate(c):
            for j, b in enumerate(c):
                img[i, j] = float(loss_of({k: p + float(a) * d1[k] + float(b) * d2[k] for k, p in params.items()}))
    return img


def run_topology(
    run_dir: Path, every: int, grid: int, dense_every: int = 100, dense_until: int = 3000, hessian_every: int = 1000
) -> dict:
    import torch

    from grokwatch.store import read_run_config
    from observables.topology import h0_diagram, h0_summaries, loss_slice, module_loss
    from trainer.config import TrainConfig
    from trainer.model import Transformer
    from trainer.probe_offline import list_snapshots
    from trainer.probes import _cross_entropy
    from trainer.task import make_dataset

    saved = read_run_config(run_dir)
    cfg = TrainConfig.from_dict({k: v for k, v in saved.items() if k != "meta"})
    data = make_dataset(cfg.op, cfg.p, cfg.train_frac, cfg.seed)
    model = Transformer(cfg.model_config())
    out: dict = {"steps": [], "weight_norm": []}
    for step, path in list_snapshots(run_dir):
        # dense early (tiny plateaus at high weight decay last a few hundred steps), sparse after
        if step % (every if step >= dense_until else dense_every):
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        model.load_state_dict(state)
        model.eval()
        loss_of, params = module_loss(model, _cross_entropy, data.train_x, data.train_y)
        out["steps"].append(step + 1)  # a snapshot of step s is the row of step s + 1 (probe_offline)
        out["weight_norm"].append(float(torch.sqrt(sum((p.double() ** 2).sum() for p in params.values()))))
        for kind, seed, span in SLICES:
            if kind.startswith("hessian") and (step % hessian_every or float(cfg.weight_decay) != 1.0):
                for cons in ("sublevel",) if kind == "hessian3d" else CONSTRUCTION_NAMES:  # keep columns aligned
                    col = out.setdefault(f"{kind}-s{seed}-x{span:g}-{cons}", {k: [] for k in STATS})
                    for k in STATS:
                        col[k].append(float("nan"))
                continue
            if kind == "random":
                img = loss_slice(loss_of, params, grid=grid, span=span, seed=seed, vectorize=False)
            elif kind == "hessian3d":
                # the merge tree of the sublevel sets on a 3-D grid along the top-3 Hessian
                # eigenvectors (Landscaper; Xie, Geniesse et al. 2024): only "sublevel" applies
                from observables.curvature import hessian_top_eigvecs
                from observables.topology import grid_sublevel_h0

                dirs = hessian_top_eigvecs(loss_of, params, k=3, iters=20, seed=seed)
                theta = float(torch.sqrt(sum((p.double() ** 2).sum() for p in params.values())))
                c = np.linspace(-span * theta, span * theta, GRID_3D)
                vol = np.empty((GRID_3D,) * 3)
                with torch.no_grad():
                    for i, a in enumerate(c):
                        for j, b in enumerate(c):
                            for k, e in enumerate(c):
                                vol[i, j, k] = float(
                                    loss_of(
                                        {
                                            n: p + float(a) * dirs[0][n] + float(b) * dirs[1][n] + float(e) * dirs[2][n]
                                            for n, p in params.items()
                                        }
                                    )
                                )
                diag = grid_sublevel_h0(vol)
                life = diag[:, 1] - diag[:, 0]
                col = out.setdefault(f"{kind}-s{seed}-x{span:g}-sublevel", {k: [] for k in STATS})
                col["n_bars"].append(int(np.sum(np.isfinite(life) & (life > 0))))
                for k, v in h0_summaries(diag).as_dict().items():
                    col[k].append(v)
                continue
            else:
                d1, d2 = _hessian_directions(loss_of, params, seed=seed)
                theta = float(torch.sqrt(sum((p.double() ** 2).sum() for p in params.values())))
                d1 = {k: v * theta for k, v in d1.items()}
                d2 = {k: v * theta for k, v in d2.items()}
                img = slice_along(loss_of, params, d1, d2, grid, span)
            for cons in CONSTRUCTION_NAMES:
                key = f"{kind}-s{seed}-x{span:g}-{cons}"
                diag = h0_diagram(img, cons, span)
                life = diag[:, 1] - diag[:, 0]
                n_bars = int(np.sum(np.isfinite(life) & (life > 0)))
                summ = h0_summaries(diag).as_dict()
                col = out.setdefault(key, {k: [] for k in STATS})
                col["n_bars"].append(n_bars)
                for k, v in summ.items():
                    col[k].append(v)
    return out


def _finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "status.json").read_text()).get("state") in ("completed", "diverged", "failed")
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--every", type=int, default=500, help="snapshot cadence to probe (steps) after --dense-until")
    p.add_argument("--dense-every", type=int, default=100, help="snapshot cadence before --dense-until")
    p.add_argument("--dense-until", type=int, default=3000)
    p.add_argument(
        "--hessian-every",
        type=int,
        default=2000,
        help="cadence of the Hessian-direction slices (2-D and 3-D), on weight decay 1 runs only",
    )
    p.add_argument("--grid", type=int, default=15)
    p.add_argument("--runs", help="comma-separated run ids (default: all)")
    args = p.parse_args(argv)
    import torch

    from grokwatch.store import list_runs

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    dest = args.out / f"topology-{args.sweep_dir.name}.json"
    doc = (
        json.loads(dest.read_text())
        if dest.exists()
        else {"every": args.every, "grid": args.grid, "slices": [list(s) for s in SLICES], "runs": {}}
    )
    want = set(args.runs.split(",")) if args.runs else None
    t0 = time.perf_counter()
    n = 0
    for d in list_runs(args.sweep_dir):
        if d.name in doc["runs"] or (want and d.name not in want):
            continue
        t1 = time.perf_counter()
        if not _finished(d):
            continue
        doc["runs"][d.name] = run_topology(
            d, args.every, args.grid, args.dense_every, args.dense_until, args.hessian_every
        )
        n += len(doc["runs"][d.name]["steps"])
        tmp = dest.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, dest)
        print(
            f"topology: {d.name}: {len(doc['runs'][d.name]['steps'])} snapshots in {time.perf_counter() - t1:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    print(json.dumps({"runs": len(doc["runs"]), "snapshots_done": n, "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
