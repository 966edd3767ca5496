"""Will the run grok within its budget? From the spectral signature of its
first few hundred training-loss values (Notsawo et al., "Predicting Grokking
Long Before It Happens", 2023), learned across the sweep's finished runs.

Features: ``observables.spectral.signature`` of the first ``signature_steps``
training losses: log Hjorth activity, mobility, complexity, log total
band energy, low-frequency share. Model: L2-regularized logistic regression
(Newton's method, numpy) on standardized features, trained at step t on
the runs whose outcome is known at t: grokked by t (1), or over by t without
grokking -- completed, diverged, or at its step budget (0). It answers only
with at least ``min_per_class`` runs of each outcome, else
``insufficient-data``; within one sweep that is often until the first
runs finish, so it is most useful in long sweeps, or re-run as a replay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import FATE_METHOD, INSUFFICIENT, WILL_GROK, PredictConfig, Prediction
from .series import RunSeries

FEATURES = ("log_activity", "mobility", "complexity", "log_energy_total", "energy_low_fraction")


def features(run: RunSeries, t: int, cfg: PredictConfig) -> np.ndarray | None:
    """The signature of the first ``signature_steps`` losses, if all are in by step t and finite."""
    from observables.spectral import signature

    n = cfg.signature_steps
    if run.rows_upto(t) < n:
        return None
    loss = np.asarray(run.cols["train_loss"][:n], dtype=np.float64)
    if not np.all(np.isfinite(loss)):
        return None
    s = signature(loss, first=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.array(
            [
                np.log(s["activity"]),
                s["mobility"],
                s["complexity"],
                np.log(s["energy_total"]),
                s["energy_low_fraction"],
            ],
            dtype=np.float64,
        )
    return x if np.all(np.isfinite(x)) else None


class FeatureCache:
    """A run's signature depends only on its first rows: computed once."""

    def __init__(self) -> None:
        self._f: dict[str, np.ndarray | None] = {}

    def get(self, run: RunSeries, t: int, cfg: PredictConfig) -> np.ndarray | None:
        if run.rows_upto(t) < cfg.signature_steps:
            return None  # not all in by t (whatever a later step knew)
        if run.run_id in self._f:
            return self._f[run.run_id]
        x = self._f[run.run_id] = features(run, t, cfg)  # settled: all its first rows are in
        return x


def fit_logistic(
    X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(weights, bias, mean, scale): ridge logistic regression on standardized X."""
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    Z = np.column_stack([(X - mu) / sd, np.ones(len(X))])
    w = np.zeros(Z.shape[1])
    reg = np.full(Z.shape[1], float(l2))
    reg[-1] = 0.0  # no penalty on the bias
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(Z @ w, -35, 35)))
        g = Z.T @ (p - y) + reg * w
        H = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w[:-1], float(w[-1]), mu, sd


@dataclass(frozen=True)
class FateModel:
    """The classifier as trained at one step: on ``runs`` with outcomes ``y``."""

    runs: tuple[str, ...]
    y: tuple[float, ...]
    w: np.ndarray | None  # None: too few of one outcome
    b: float = 0.0
    mu: np.ndarray | None = None
    sd: np.ndarray | None = None

    @property
    def key(self) -> tuple:
        return (self.runs, self.y)

    def p_grok(self, x: np.ndarray) -> float | None:
        if self.w is None:
            return None
        z = float(((x - self.mu) / self.sd) @ self.w + self.b)
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -35, 35))))


def training_set(runs, t: int, cfg: PredictConfig, cache: FeatureCache | None = None):
    """(run ids, X, y) of the runs whose outcome is known at step t and whose signature is in."""
    pool = runs.values() if isinstance(runs, dict) else runs
    ids, X, y = [], [], []
    for r in sorted(pool, key=lambda r: r.run_id):
        out = r.outcome_at(t)
        if out is None:
            continue
        f = cache.get(r, t, cfg) if cache is not None else features(r, t, cfg)
        if f is None:
            continue
        ids.append(r.run_id)
        X.append(f)
        y.append(1.0 if out else 0.0)
    return ids, np.asarray(X).reshape(len(X), len(FEATURES)), np.asarray(y)


def fit_fate(
    runs,
    t: int,
    cfg: PredictConfig = PredictConfig(),
    cache: FeatureCache | None = None,
    previous: FateModel | None = None,
) -> FateModel:
    """The classifier at step t (``previous`` is reused when its training set is the same)."""
    ids, X, y = training_set(runs, t, cfg, cache)
    key = (tuple(ids), tuple(float(v) for v in y))
    if previous is not None and previous.key == key:
        return previous
    if len(y) == 0 or min(int(y.sum()), int(len(y) - y.sum())) < cfg.min_per_class:
        return FateModel(key[0], key[1], None)
    w, b, mu, sd = fit_logistic(X, y, cfg.l2)
    return FateModel(key[0], key[1], w, b, mu, sd)


def predict_fate(
    target: RunSeries,
    runs,
    t: int,
    cfg: PredictConfig = PredictConfig(),
    cache: FeatureCache | None = None,
    model: FateModel | None = None,
) -> Prediction | None:
    """P(grok within budget) for ``target`` at step t; None when it is not open
    at t (its outcome is known, or its first losses are not all in yet).
    ``model``: the classifier fitted at t (:func:`fit_fate`), shared by all
    targets at t (an open target is never in its own training set)."""
    last = target.last_step
    if last is None or last < t or target.outcome_at(t) is not None:
        return None
    x = cache.get(target, t, cfg) if cache is not None else features(target, t, cfg)
    if x is None:
        return None
    if model is None:
        model = fit_fate(runs, t, cfg, cache)
    p = model.p_grok(x)
    if p is None:
        return Prediction(target.run_id, t, WILL_GROK, INSUFFICIENT, n_calib=len(model.y))
    return Prediction(target.run_id, t, WILL_GROK, FATE_METHOD, p_grok=p, n_calib=len(model.y))
