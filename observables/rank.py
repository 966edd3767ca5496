"""Effective rank of a weight matrix.

Source: O. Roy & M. Vetterli, "The effective rank: a measure of effective
dimensionality", EUSIPCO 2007. numpy only.
"""

from __future__ import annotations

import numpy as np

from observables._arrays import to_numpy


def effective_rank(W) -> float:
    """Effective rank of ``W`` (numpy array or torch tensor; Roy & Vetterli 2007):

        erank(W) = exp(H(p)),  p_i = s_i / sum_j s_j,  H(p) = -sum_i p_i ln p_i

    over the singular values s of W (0 ln 0 = 0), computed in float64.
    Between 1 (rank one) and min(rows, cols) (all singular values equal).
    NaN (no exception) for an all-zero, empty or non-finite matrix.
    """
    W = to_numpy(W)
    if W.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {W.shape}")
    if W.size == 0 or not np.all(np.isfinite(W)):
        return float("nan")
    s = np.linalg.svd(W, compute_uv=False)
    total = float(np.sum(s))
    if total <= 0:
        return float("nan")
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))
