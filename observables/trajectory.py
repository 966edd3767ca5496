"""Geometry of the parameter trajectory.

Sources: V. Thilak, E. Littwin, S. Zhai, O. Saremi, R. Paiss & J. Susskind,
"The Slingshot Mechanism: An Empirical Study of Adaptive Optimizers and the
Grokking Phenomenon" (2022) for the cosine of successive updates; P. J.
Tikeng Notsawo et al., "Predicting Grokking Long Before It Happens" (2023),
who find more than 98% of the trajectory's variance in its top-2 PCA modes.

Parameters and updates may be numpy arrays, torch tensors, or dicts/lists of
them (flattened in order, in float64). numpy only (torch by duck typing).
"""

from __future__ import annotations

import numpy as np

from observables._arrays import flatten_params, to_numpy


def update_cosine(prev_update, update) -> float:
    """cos(u_{t-1}, u_t) = <u_{t-1}, u_t> / (|u_{t-1}| |u_t|) of two successive
    parameter updates u_t = theta_t - theta_{t-1} (Thilak et al. 2022: it
    drops at slingshots). NaN if either update is zero or the shapes differ."""
    a = flatten_params(prev_update)
    b = flatten_params(update)
    if a.shape != b.shape:
        return float("nan")
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    if not den > 0:
        return float("nan")
    return float(np.dot(a, b) / den)


def _snapshot_matrix(snapshots) -> np.ndarray:
    if isinstance(snapshots, np.ndarray) and snapshots.ndim == 2:
        return snapshots.astype(np.float64, copy=False)
    return np.stack([flatten_params(s) for s in snapshots])


def pca_variance_share(snapshots, k: int = 2) -> float:
    """Share of the variance of a window of parameter snapshots explained by
    its top-``k`` principal components (Notsawo et al. 2023: > 0.98 for k = 2
    in grokking runs).

    ``snapshots``: a (T, P) array of flattened parameter vectors, or a
    sequence of T parameter vectors/dicts. With X the snapshots minus their
    mean over time and s its singular values (descending), the share is
    sum_{i<k} s_i^2 / sum_i s_i^2. NaN for fewer than 2 snapshots or a
    motionless window.
    """
    X = _snapshot_matrix(snapshots)
    if X.shape[0] < 2 or not np.all(np.isfinite(X)):
        return float("nan")
    X = X - X.mean(axis=0, keepdims=True)
    s2 = _gram_singular_values_sq(X)
    total = float(np.sum(s2))
    if not total > 0:
        return float("nan")
    return float(np.sum(s2[:k]) / total)


def _gram_singular_values_sq(X: np.ndarray) -> np.ndarray:
    """Squared singular values of a short-wide (T x P, T << P) matrix via its
    T x T Gram matrix, descending."""
    ev = np.linalg.eigvalsh(X @ X.T)[::-1]
    return np.clip(ev, 0.0, None)


def weight_norm(params) -> float:
    """L2 norm of all parameters together, sqrt(sum over tensors of |p|^2)."""
    return float(np.sqrt(sum(float(np.sum(to_numpy(p) ** 2)) for p in _values(params))))


def layer_norms(params: dict) -> dict[str, float]:
    """L2 norm of each parameter tensor, by name."""
    return {name: float(np.linalg.norm(to_numpy(p).ravel())) for name, p in params.items()}


def _values(params):
    if isinstance(params, dict):
        return list(params.values())
    if isinstance(params, (list, tuple)):
        return list(params)
    return [params]
