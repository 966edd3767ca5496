"""Settings of the predictors and the record they produce."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from grokwatch.runs.phases import Thresholds

from .growth import GrowthConfig

T_GROK = "t_grok"  # kind of a prediction of the grokking step
WILL_GROK = "will_grok"  # kind of a prediction of whether the run groks within its budget

INSUFFICIENT = "insufficient-data"
METHODS = ("growth", "wnorm-analog", "wnorm-extrapolation", "plateau-ratio")
# The sweep-calibrated methods alone (before the growth model): still selectable, e.g. --methods
LEGACY_METHODS = METHODS[1:]
FATE_METHOD = "spectral-logistic"


@dataclass(frozen=True)
class PredictConfig:
    """How predictions are made. The defaults are what ``grokwatch predict`` uses.

    every            predictions are made at steps that are multiples of this;
                     None: per run, max(10, total_steps // 400), or 100 when the
                     run's budget is unknown
    methods          t_grok methods tried in this order (the first that can
                     answer does; see :mod:`grokwatch.predict.onset`); "growth"
                     is the growth model (:mod:`grokwatch.predict.growth`),
                     which answers whenever it has calibrators (a prior or 3
                     grokked runs): its methods are "growth" and "plateau-prior"
    min_calibrators  grokked runs a method needs before it answers
    same_wd_first    calibrate with runs of the same weight decay when there
                     are at least min_calibrators of them
    min_points       weight-norm points on the plateau before a weight-norm
                     method answers
    level_window     the current weight norm is the mean of the trailing
                     max(5 rows, level_window x plateau-so-far)
    trend_window     the log-weight-norm trend is fitted on the trailing
                     max(10 rows, trend_window x plateau-so-far)
    analog_window    wnorm-analog compares how long the target and each
                     calibrator took to fall through the same weight-norm
                     levels: those of the trailing analog_window share of
                     the target's plateau so far
    analog_same_wd   wnorm-analog only uses calibrators of the target's weight
                     decay (see :mod:`grokwatch.predict.onset` for why)
    q_lo, q_hi       the interval: these quantiles of the calibrators' estimates,
    min_rel_width    widened to at least +-min_rel_width x the predicted time
                     left (the calibrators' spread alone understates the error:
                     on simulated sweeps it covered about half the outcomes)
    signature_steps  the will-grok classifier reads the spectral signature of
                     the first this-many training-loss values
    min_per_class    finished runs of each outcome (grokked / not) it needs
    l2               ridge penalty of its logistic regression
    """

    every: int | None = None
    methods: tuple[str, ...] = METHODS
    min_calibrators: int = 3
    same_wd_first: bool = True
    min_points: int = 10
    level_window: float = 0.02
    trend_window: float = 0.25
    analog_window: float = 0.5
    analog_same_wd: bool = True
    q_lo: float = 0.1
    q_hi: float = 0.9
    # Chosen on the evidence sweep (docs/evidence/report.md: tiny preset, 2-fold by seed with the
    # prior): at 0.3 only 22-48% of true t_grok fell inside the nominal 80% interval; at 0.9, 65-95%.
    min_rel_width: float = 0.9
    signature_steps: int = 400
    min_per_class: int = 2
    l2: float = 1.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    growth: GrowthConfig = field(default_factory=GrowthConfig)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        if self.every is not None and self.every < 1:
            raise ValueError("every must be >= 1")
        if self.min_calibrators < 1 or self.min_per_class < 1:
            raise ValueError("min_calibrators and min_per_class must be >= 1")

    def cadence(self, total_steps: int | None) -> int:
        if self.every is not None:
            return int(self.every)
        if total_steps:
            return max(10, int(total_steps) // 400)
        return 100

    def to_dict(self) -> dict:
        d = asdict(self)
        d["methods"] = list(self.methods)
        return d


@dataclass(frozen=True)
class Prediction:
    """One logged prediction, made at ``step`` from data up to ``step`` only.

    kind "t_grok": ``t_grok_pred`` with the interval [lo, hi] (None when
    method is "insufficient-data"). kind "will_grok": ``p_grok``, the
    probability that the run groks within its budget (None when
    insufficient). ``n_calib``: the finished/grokked runs that calibrated it.
    """

    run: str
    step: int
    kind: str
    method: str
    t_grok_pred: float | None = None
    lo: float | None = None
    hi: float | None = None
    p_grok: float | None = None
    n_calib: int = 0
    source: str = ""  # whose runs made it: "prior" (earlier sweeps, the preset's), "sweep" (its own), "prior+sweep"

    @property
    def ok(self) -> bool:
        return self.method != INSUFFICIENT

    def to_record(self) -> dict:
        num = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731
        return {
            "run": self.run,
            "step": int(self.step),
            "kind": self.kind,
            "method": self.method,
            "t_grok_pred": num(self.t_grok_pred),
            "lo": num(self.lo),
            "hi": num(self.hi),
            "p_grok": num(self.p_grok),
            "n_calib": int(self.n_calib),
            "source": self.source,
        }
