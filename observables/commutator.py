"""Commutator defect of two half-batch gradient steps, and its share outside
the trajectory's execution subspace.

Source: "Low-Dimensional and Transversely Curved Optimization Dynamics in
Grokking": with two disjoint halves A and B of the training set, a step on A
then B and a step on B then A end at different points; the gap, normalised by
eta^2 |g_A| |g_B|, measures how much the two gradient fields fail to commute
(for small eta, theta_AB - theta_BA = eta^2 (H_B g_A - H_A g_B) + O(eta^3), the
Lie bracket of the two gradient fields), and its part outside the top-k PCA
subspace of the recent weight trajectory is the "transverse" curvature.

torch is imported inside :func:`defect` only; :func:`transverse_fraction` is
numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from observables._arrays import flatten_params


@dataclass(frozen=True)
class CommutatorDefect:
    """``defect`` = |delta| / (eta^2 |g_A| |g_B|); ``delta`` = theta_AB -
    theta_BA flattened (float64, in the parameter dict's order);
    ``grad_a_norm``, ``grad_b_norm`` = |g_A(theta)|, |g_B(theta)|."""

    defect: float
    delta: np.ndarray
    grad_a_norm: float
    grad_b_norm: float


def _grad(loss_fn, params: dict, batch) -> dict:
    import torch

    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss = loss_fn(leaves, batch)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {k: (torch.zeros_like(leaves[k]) if g is None else g.detach()) for k, g in zip(leaves, grads)}


def defect(loss_fn, params: dict, batch_a, batch_b, eta: float) -> CommutatorDefect:
    """Commutator defect at ``params`` (dict name -> tensor) for the training
    halves ``batch_a``, ``batch_b`` and step size ``eta``.

    ``loss_fn(params_dict, batch) -> scalar tensor``; for an ``nn.Module``:
    ``lambda p, b: F.cross_entropy(torch.func.functional_call(model, p,
    (b[0],)), b[1])``.

    Definition (each gradient at its own point, the earlier step detached):

        theta_A  = theta - eta g_A(theta),    theta_AB = theta_A - eta g_B(theta_A)
        theta_B  = theta - eta g_B(theta),    theta_BA = theta_B - eta g_A(theta_B)
        delta    = theta_AB - theta_BA
        defect   = |delta| / (eta^2 |g_A(theta)| |g_B(theta)|)

    delta is computed in the algebraically identical form
    eta [(g_A(theta_B) - g_A(theta)) - (g_B(theta_A) - g_B(theta))], which
    avoids subtracting two nearly equal parameter vectors (it is O(eta^2)).
    Four gradient evaluations. Precision follows the parameters' dtype: use
    float64 parameters (and data) for very small eta. For a quadratic loss,
    delta = eta^2 (H_B g_A - H_A g_B) exactly. NaN defect if a gradient is
    zero.
    """
    theta = {k: v.detach() for k, v in params.items()}
    g_a = _grad(loss_fn, theta, batch_a)
    g_b = _grad(loss_fn, theta, batch_b)
    theta_a = {k: theta[k] - eta * g_a[k] for k in theta}
    theta_b = {k: theta[k] - eta * g_b[k] for k in theta}
    g_b_at_a = _grad(loss_fn, theta_a, batch_b)
    g_a_at_b = _grad(loss_fn, theta_b, batch_a)
    delta = {k: eta * ((g_a_at_b[k] - g_a[k]) - (g_b_at_a[k] - g_b[k])) for k in theta}

    delta_flat = flatten_params(delta)
    na = float(np.linalg.norm(flatten_params(g_a)))
    nb = float(np.linalg.norm(flatten_params(g_b)))
    den = eta * eta * na * nb
    value = float(np.linalg.norm(delta_flat) / den) if den > 0 else float("nan")
    return CommutatorDefect(value, delta_flat, na, nb)


def transverse_fraction(delta, snapshots, k: int = 2) -> float:
    """Share of |delta|^2 outside the top-``k`` PCA subspace of a window of
    recent weight snapshots (the "execution subspace").

    ``delta``: flat vector (or dict/list of arrays/tensors, flattened in
    order); ``snapshots``: (T, P) array of flattened weight vectors, or a
    sequence of T vectors/dicts flattened the same way as delta. With X the
    snapshots minus their time mean and V_k its top-k right singular vectors
    (components with zero variance are dropped),

        fraction = |delta - V_k V_k^T delta|^2 / |delta|^2   in [0, 1].

    NaN if delta is zero; 1 if the window does not move.
    """
    d = flatten_params(delta)
    if isinstance(snapshots, np.ndarray) and snapshots.ndim == 2:
        X = snapshots.astype(np.float64, copy=False)
    else:
        X = np.stack([flatten_params(s) for s in snapshots])
    if X.shape[1] != d.size:
        raise ValueError(f"delta has {d.size} entries, snapshots have {X.shape[1]}")
    dd = float(d @ d)
    if not dd > 0:
        return float("nan")
    X = X - X.mean(axis=0, keepdims=True)
    ev, U = np.linalg.eigh(X @ X.T)  # T x T Gram matrix, ascending
    order = np.argsort(ev)[::-1][:k]
    ev, U = ev[order], U[:, order]
    keep = ev > max(float(ev[0]) if ev.size else 0.0, 0.0) * 1e-12
    if not keep.any():
        return 1.0
    V = (X.T @ U[:, keep]) / np.sqrt(ev[keep])  # P x k', orthonormal columns
    proj = V.T @ d
    return float(min(1.0, max(0.0, 1.0 - float(proj @ proj) / dd)))
