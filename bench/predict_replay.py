"""Replay cost and accuracy of the onset predictor, the growth model against the
sweep-calibrated methods, side by side in one process.

    python bench/predict_replay.py SWEEP_DIR [SWEEP_DIR ...]

For each sweep: seconds to replay it (every prediction a live watcher would
have made), predictions made, and the median relative error and coverage at
25 / 50% of the plateau. The last line is one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from grokwatch.predict import LEGACY_METHODS, PredictConfig, load_sweep, replay
from grokwatch.predict.score import plateau_errors


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    out = {}
    for d in map(Path, argv):
        runs = load_sweep(d)
        for label, cfg in (("growth", PredictConfig()), ("sweep-calibrated", PredictConfig(methods=LEGACY_METHODS))):
            t0 = time.perf_counter()
            preds = replay(runs, cfg, sweep_dir=d)
            dt = time.perf_counter() - t0
            err = plateau_errors(preds, runs)
            row = {
                "seconds": round(dt, 2),
                "predictions": len(preds),
                **{
                    f"{k}%": [err[k]["n_predicted"], err[k]["n_runs"], err[k]["median_rel_error"]] for k in ("25", "50")
                },
            }
            out[f"{d.name}:{label}"] = row
            print(f"{d} {label:>16}: {row}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
