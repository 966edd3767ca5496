"""Onset prediction (DESIGN section 6): when will a run on its plateau grok,
and will it grok within its budget at all. Headless: numpy + pyarrow.

Two predictions, both made *at a step t* from rows <= t only, and only from
runs whose outcome was known by t (the preset's prior, earlier sweeps under
the root, the sweep's own grokked runs):

- kind ``t_grok``: for a run that has memorized and not grokked, the
  predicted t_grok with an 80% interval, the method that made it and whose
  runs did (``source``). The growth model (:mod:`grokwatch.predict.growth`:
  ``growth``, or ``plateau-prior`` when no extrapolation answers) first;
  the sweep-calibrated methods of :mod:`grokwatch.predict.onset`
  (``wnorm-analog``, ``wnorm-extrapolation``, ``plateau-ratio``) when it has
  no calibrators; ``insufficient-data`` and no number when none can answer.
- kind ``will_grok``: P(groks within budget); on the plateau from the growth
  model (``plateau-survival``), before it from the spectral signature of the
  first 400 training losses (:mod:`grokwatch.predict.fate`,
  ``spectral-logistic``).

Live use (the watcher, in its thread, once per refresh cycle, after the runs
were refreshed and before the snapshot is published)::

    from grokwatch.predict import PredictionLog, SweepPredictor, read_predictions, onset_signal_batches

    pred = SweepPredictor(log=PredictionLog(sweep_dir), resume=read_predictions(sweep_dir))
    new = pred.update_runstates(watcher.runs)   # RunState by id; or update_views(snapshot.runs),
                                                 # or update({rid: RunSeries.from_reader(reader)})
    pred.latest(run_id)                          # newest t_grok Prediction, for the table
    pred.latest(run_id, "will_grok")             # newest P(groks within budget)
    for b in onset_signal_batches(new):          # the rule hook: signal "predicted_onset_in"
        events += engine.evaluate(b.run, b.steps, b.signals, now=now, gates=b.gates)

Only one process should log (the alert daemon, say); the log tolerates two
(identical rows are deduplicated on read). Cost (bench/predict_replay.py): a
simulated 90-run x 20K-step sweep replays in about 5 s on a 2-core VM, so a
live update (a few cadence steps) is milliseconds.

A reader that only has the files (the dashboard without a predictor):
``latest_predictions(sweep_dir)`` -> {run: Prediction}. A finished sweep:
``replay(load_sweep(sweep_dir))`` -> every prediction the live watcher would
have made, in step order (``grokwatch predict SOURCE --replay``).

Alarm rule on the prediction (TOML)::

    [rules.onset_soon]
    signal = "predicted_onset_in"   # steps from now to the predicted t_grok
    comparison = "<="
    threshold = 2000
    when = "memorized"
    severity = "info"
"""

from .config import FATE_METHOD, INSUFFICIENT, LEGACY_METHODS, METHODS, T_GROK, WILL_GROK, PredictConfig, Prediction
from .fate import FateModel, fit_fate, predict_fate
from .log import PredictionLog, latest_predictions, predictions_path, read_predictions, write_predictions
from .onset import Calibrator, CalibratorCache, calibrators_at, plateau_at, predict_onset
from .series import PriorRun, RunSeries, load_sweep
from .sweep import ONSET_SIGNAL, SignalBatch, SweepPredictor, onset_signal_batches, onset_within, replay, steps_to_onset

__all__ = [
    "FATE_METHOD",
    "INSUFFICIENT",
    "LEGACY_METHODS",
    "METHODS",
    "ONSET_SIGNAL",
    "T_GROK",
    "WILL_GROK",
    "Calibrator",
    "CalibratorCache",
    "FateModel",
    "PredictConfig",
    "Prediction",
    "PredictionLog",
    "PriorRun",
    "RunSeries",
    "SignalBatch",
    "SweepPredictor",
    "calibrators_at",
    "fit_fate",
    "latest_predictions",
    "load_sweep",
    "onset_signal_batches",
    "onset_within",
    "plateau_at",
    "predict_fate",
    "predict_onset",
    "predictions_path",
    "read_predictions",
    "replay",
    "steps_to_onset",
    "write_predictions",
]
