"""The evidence sweep: real training runs on the CPU, then the report that every
default alarm, the H0 construction and the simulator's calibration are chosen on.

    python bench/evidence.py --out DIR            # train (resumable), then report
    python bench/evidence.py --out DIR --no-train # report only, on runs already there
    python bench/evidence.py --out DIR --write-docs docs/evidence   # and copy the small outputs

The packs run side by side, one CPU thread each (``python -m trainer --pack``):

- tiny: modular addition mod 47 (56K parameters), weight decays 0.3, 1, 3 x
  seeds 0-7, up to 20,000 steps, stopping 2,000 steps after grokking; probes
  every 100 steps (Hessian every 500, the seed's H0 slice every 1,000) and a
  weight snapshot every 100 steps, for the post-hoc H0 constructions.
- canonical: mod 97 (302K parameters), weight decay 1 x seeds 0-2, up to
  30,000 steps, stopping 1,500 steps after grokking; probes every 250 steps,
  snapshots every 250.
- canonical-wd3: the same at weight decay 3 x seeds 0-2, up to 20,000 steps
  (lighter probes). With canonical it makes the canonical preset's prior.
- canonical-b: canonical seeds 3-4 at weight decay 1 (lighter probes);
  canonical-c: seeds 3-4 at weight decay 3; canonical-d: seeds 5-6 at 1.
  First scored held out against the 6-run canonical prior, then joined to
  it (12 runs). canonical-e: seeds 7-10 at weight decay 3, held out from
  that 12-run prior.
- tiny-b, tiny-b-wd0.3: held-out tiny runs of new seeds (8-15 at weight
  decays 1 and 3, 8-13 at 0.3), lighter probes: the predictor's test set.

All are resumable: rerunning the command continues each pack from its
checkpoints. On a 2-core VM the tiny pack takes about an hour and the
canonical one one to two hours (they overlap). Then
``bench/evidence_topology.py`` compares the H0 constructions on the tiny
runs' snapshots (every 500 steps), and ``bench/evidence_report.py`` reads the
shards and writes report.md, report.json and the figures into ``DIR/report``.
The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grokwatch.store.layout import run_id_for  # noqa: E402


def _light(preset: str, seeds: str, weight_decays: str, steps: int, stop_after: int, probe_every: int) -> list[str]:
    """A pack with the lighter probes and no weight snapshots (every pack after the first three)."""
    return [
        *("--preset", preset, "--seeds", seeds, "--weight-decays", weight_decays),
        *("--steps", str(steps), "--stop-after-grok", str(stop_after), "--probe-every", str(probe_every)),
        *("--probes", "effective_rank,htsr,commutator,update_cosine,pca2"),
    ]


# The packs. Changing any of these changes the evidence: keep them with the report.
PACKS: dict[str, list[str]] = {
    "tiny": [
        "--preset",
        "tiny",
        "--seeds",
        "0-7",
        "--weight-decays",
        "0.3,1.0,3.0",
        "--steps",
        "20000",
        "--stop-after-grok",
        "2000",
        "--probe-every",
        "100",
        "--keep-every",
        "100",
        "--probes",
        "effective_rank,htsr,htsr_traps,commutator,update_cosine,pca2,hessian@5,hessian_trace@5,h0@10",
    ],
    "canonical": [
        "--preset",
        "canonical",
        "--seeds",
        "0-2",
        "--weight-decays",
        "1.0",
        "--steps",
        "30000",
        "--stop-after-grok",
        "1500",
        "--probe-every",
        "250",
        "--keep-every",
        "250",
        "--probes",
        "effective_rank,htsr,htsr_traps,commutator,update_cosine,pca2,hessian@4,hessian_trace@4,h0@10",
    ],
    # The canonical preset at a second weight decay: is plateau x lr x wd one constant there too,
    # and how are runs of a weight decay the canonical prior lacked predicted? (about 25 min on one
    # busy core; lighter probes)
    "canonical-wd3": [
        "--preset",
        "canonical",
        "--seeds",
        "0-2",
        "--weight-decays",
        "3.0",
        "--steps",
        "20000",
        "--stop-after-grok",
        "1500",
        "--probe-every",
        "250",
        "--keep-every",
        "250",
        "--probes",
        "effective_rank,htsr,commutator,update_cosine,pca2",
    ],
    # Two more canonical seeds at weight decay 1 (the canonical prior's wd-1 runs: 3 -> 5).
    "canonical-b": _light("canonical", "3-4", "1.0", 30000, 1500, 250),
    # Two more canonical seeds at weight decay 3, held out beside canonical-b (seventh session).
    "canonical-c": _light("canonical", "3-4", "3.0", 20000, 1500, 250),
    # And two more at weight decay 1 (seventh session; held out too).
    "canonical-d": _light("canonical", "5-6", "1.0", 30000, 1500, 250),
    # Four canonical seeds at weight decay 3, held out from the 12-run canonical prior (seventh session).
    "canonical-e": _light("canonical", "7-10", "3.0", 20000, 1500, 250),
    # Held out: tiny-preset runs of new seeds, trained after the tiny prior and the predictor were
    # fixed (bench/evidence_report.py HELD_OUT scores them as one new sweep). Weight decays 1 and 3
    # here, 0.3 in the next pack (two processes: two cores); lighter probes, no snapshots.
    "tiny-b": _light("tiny", "8-15", "1.0,3.0", 20000, 2000, 100),
    "tiny-b-wd0.3": _light("tiny", "8-13", "0.3", 20000, 2000, 100),
}
# Each preset's shipped prior (grokwatch/priors/<preset>.arrow) is made of these packs' runs.
PRIORS: dict[str, list[str]] = {
    "tiny": ["tiny"],
    # canonical-b/c/d joined in the seventh session, after their held-out figures were taken (BENCHMARKS.md)
    "canonical": ["canonical", "canonical-wd3", "canonical-b", "canonical-c", "canonical-d"],
}


# The post-hoc H0 comparison: 20 of the 24 tiny runs (every run of weight decays 3 and 1, seeds 0-3
# of 0.3), a snapshot every 200 steps up to step 3000 and every 1000 after (on 2 busy cores the
# slices cost about 10 s a snapshot).
TOPOLOGY_ARGS = [
    "--dense-every",
    "200",
    "--every",
    "1000",
    "--runs",
    ",".join(
        [run_id_for(3.0, i) for i in range(8)]
        + [run_id_for(1.0, i) for i in range(8)]
        + [run_id_for(0.3, i) for i in range(4)]
    ),
]


def train(out: Path, packs: list[str]) -> None:
    """Start (or resume) each pack as its own process and wait for all of them."""
    procs = {}
    for name in packs:
        log = open(out / f"train-{name}.log", "a")
        cmd = [
            sys.executable,
            "-m",
            "trainer",
            "--pack",
            "--root",
            str(out),
            "--sweep",
            name,
            "--threads",
            "1",
            "--device",
            "cpu",
            *PACKS[name],
        ]
        if (out / name).is_dir():
            cmd.append("--resume")
        print(f"evidence: {' '.join(cmd)}", file=sys.stderr, flush=True)
        procs[name] = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    failed = []
    for name, proc in procs.items():
        rc = proc.wait()
        print(f"evidence: pack {name} exited {rc} after {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        raise SystemExit(f"evidence: pack(s) {', '.join(failed)} failed; see {out}/train-<pack>.log")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--out", required=True, type=Path, help="where the runs and the report go")
    p.add_argument("--no-train", action="store_true", help="only write the report, from the runs already in --out")
    p.add_argument(
        "--packs",
        default=",".join(PACKS),
        help=f"which packs to train (default: all, {','.join(PACKS)})",
    )
    p.add_argument(
        "--write-priors",
        type=Path,
        metavar="DIR",
        help="also write each preset's prior (<preset>.arrow and <preset>.json) into DIR (grokwatch/priors ships them)",
    )
    p.add_argument(
        "--write-docs",
        type=Path,
        metavar="DIR",
        help="also copy report.md, report.json and the figures into DIR (e.g. docs/evidence)",
    )
    args = p.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    packs = [s for s in args.packs.split(",") if s]
    unknown = [s for s in packs if s not in PACKS]
    if unknown:
        p.error(f"--packs: unknown pack {', '.join(unknown)}; choose from {', '.join(PACKS)}")
    if not args.no_train:
        train(out, packs)
    sys.path.insert(0, str(REPO / "bench"))
    from evidence_report import build_report, write_priors  # after training: the report reads the shards

    if not args.no_train or not (out / "topology").exists():
        # the post-hoc H0 comparison (docs/topology.md) on the tiny sweep's snapshots
        for name in packs if not args.no_train else [d.name for d in out.iterdir() if d.name in PACKS]:
            if name == "tiny":
                subprocess.run(
                    [
                        sys.executable,
                        str(REPO / "bench" / "evidence_topology.py"),
                        str(out / name),
                        "--out",
                        str(out / "topology"),
                        *TOPOLOGY_ARGS,
                    ],
                    check=True,
                )

    report_dir = out / "report"
    summary = build_report(out, report_dir, command=" ".join(["python", "bench/evidence.py", *(argv or sys.argv[1:])]))
    if args.write_priors:
        for name, packs_of in PRIORS.items():
            dirs = [out / p for p in packs_of if (out / p).is_dir()]
            if dirs:
                facts = write_priors(dirs, args.write_priors, "python bench/evidence.py --out DIR")
                summary.setdefault("priors", {})[name] = facts["w_crit"].get("all")
    if args.write_docs:
        dest = args.write_docs
        dest.mkdir(parents=True, exist_ok=True)
        for f in report_dir.iterdir():
            if f.name == "topology.md":  # docs/topology.md, beside docs/evidence/
                shutil.copy2(f, dest.parent / f.name)
            elif f.suffix in (".md", ".json", ".png"):
                shutil.copy2(f, dest / f.name)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
