"""Write the simulator's prior, ``grokwatch/priors/sim.{arrow,json}``.

The simulator (``grokwatch simulate``) is a preset of its own (run.json
``preset = "sim"``): its plateaus are about 6x shorter in lr x weight decay
than real training's, so the real presets' priors would mislead it. This
prior is simulated runs of another sweep seed than the tests use (seed 1;
30 runs x 20,000 steps) -- a fixture for the simulator's sweeps, never
evidence about real training.

    python bench/sim_prior.py [--dest grokwatch/priors]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evidence_report import write_priors  # noqa: E402

from grokwatch.sim.simulate import simulate_sweep  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "grokwatch" / "priors")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = simulate_sweep(Path(tmp), "sim-prior", runs=30, steps=20_000, seed=args.seed)
        facts = write_priors(sweep, args.dest, f"python bench/sim_prior.py --seed {args.seed}", stride=50)
    facts["source"] = "simulated (grokwatch simulate, sweep seed 1): a fixture for simulated sweeps, not evidence"
    (args.dest / "sim.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(
        json.dumps({"preset": facts["preset"], "n_runs": facts["n_runs"], "plateau_x_lr_wd": facts["plateau_x_lr_wd"]})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
