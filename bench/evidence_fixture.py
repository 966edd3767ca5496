"""Cut a small fixture of real runs out of the evidence sweep, for the tests.

    python bench/evidence_fixture.py EVIDENCE_DIR/tiny --topology EVIDENCE_DIR/topology/topology-tiny.json \
        --runs wd1.0-s00,wd3.0-s00,... --out tests/fixtures/real_tiny

Each run keeps its run.json and status.json and one scalars shard and one
probes shard (Arrow IPC, zstd) with only the columns the alarm rules and the
predictor read. The probes shard's h0_* columns come from the post-hoc
topology file (``bench/evidence_topology.py``, slice "random-s0-x1", the
Rips construction, the live probe's default), because the evidence sweep's
own live H0 probe ran the seed's (degenerate) sublevel construction.
The last line printed is one JSON object (runs, bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCALARS = ("step", "train_loss", "train_acc", "val_loss", "val_acc", "grad_norm", "weight_norm")
PROBE_PREFIXES = ("htsr_alpha/", "htsr_ks/", "htsr_n_tail/", "htsr_n_evals/", "htsr_traps/")
TOPO_KEY = "random-s0-x1-rips"


def _write(path: Path, cols: dict[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    arrays = {k: pa.array(np.asarray(v), type=pa.int64() if k == "step" else pa.float32()) for k, v in cols.items()}
    table = pa.table(arrays)
    tmp = path.with_suffix(".tmp")
    with ipc.new_file(tmp, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)
    os.replace(tmp, path)


def cut(run_dir: Path, topo: dict | None, out: Path) -> int:
    from grokwatch.store import RunReader

    r = RunReader(run_dir)
    r.refresh()
    sc = {k: np.asarray(v) for k, v in r.scalars.items()}
    pr = {k: np.asarray(v) for k, v in r.probes.items()}
    dest = out / run_dir.name
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "shards").mkdir(parents=True)
    for name in ("run.json", "status.json"):
        shutil.copy2(run_dir / name, dest / name)
    last = int(sc["step"][-1])
    _write(dest / "shards" / f"scalars-{last:09d}.arrow", {k: sc[k] for k in SCALARS if k in sc})
    pcols = {"step": pr["step"]}
    pcols.update({k: v for k, v in pr.items() if k.startswith(PROBE_PREFIXES)})
    if topo is not None and TOPO_KEY in topo:
        # the post-hoc rows by their own steps; probe steps without one stay NaN
        idx = {int(s): i for i, s in enumerate(topo["steps"])}
        steps = [int(s) for s in pr["step"]]
        extra = sorted(set(idx) - set(steps))
        all_steps = np.array(sorted(set(steps) | set(extra)), dtype=np.int64)
        pos = {s: i for i, s in enumerate(all_steps)}
        grown = {"step": all_steps}
        for k, v in pcols.items():
            if k == "step":
                continue
            col = np.full(len(all_steps), np.nan)
            col[[pos[s] for s in steps]] = v
            grown[k] = col
        for stat in ("total", "effective_count", "median", "entropy"):
            col = np.full(len(all_steps), np.nan)
            for s, i in idx.items():
                col[pos[s]] = topo[TOPO_KEY][stat][i]
            grown[f"h0_{stat}"] = col
        pcols = grown
    _write(dest / "shards" / f"probes-{int(pcols['step'][-1]):09d}.arrow", pcols)
    return sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--runs", required=True, help="comma-separated run ids")
    p.add_argument("--topology", type=Path, help="bench/evidence_topology.py's output for this sweep")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    topo = json.loads(args.topology.read_text())["runs"] if args.topology else {}
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for rid in [s for s in args.runs.split(",") if s]:
        total += cut(args.sweep_dir / rid, topo.get(rid), args.out)
    print(json.dumps({"runs": len(args.runs.split(",")), "bytes": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
