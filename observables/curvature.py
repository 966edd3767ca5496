"""Curvature of the training loss: extreme Hessian eigenvalues and trace,
from Hessian-vector products only (the Hessian is never formed).

Sources: P. J. Tikeng Notsawo et al., "Predicting Grokking Long Before It
Happens" (2023), who track the Hessian's extreme eigenvalues through grokking;
H. Li et al., "Visualizing the Loss Landscape of Neural Nets" (NeurIPS 2018)
for |lambda_min / lambda_max| as a measure of non-convexity; C. Lanczos (1950)
with full reorthogonalisation (Golub & Van Loan, Matrix Computations, 9.1);
M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix
for Laplacian smoothing splines" (1989). The "scalar curvature" comparator of
"Grokking Topology".

``loss_of(params) -> scalar tensor`` is a function of a dict name -> tensor
(see ``observables.topology.module_loss`` for an ``nn.Module``). torch is
imported inside the functions. The loss is evaluated with
``scaled_dot_product_attention`` forced to its math kernel, since the fused
kernels have no double backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HessianExtremes:
    """``lambda_max``, ``lambda_min``: extreme Ritz values of the Hessian;
    ``ratio`` = |lambda_min| / lambda_max (NaN unless lambda_max > 0);
    ``iters``: Lanczos steps actually taken."""

    lambda_max: float
    lambda_min: float
    ratio: float
    iters: int


def _hvp_operator(loss_of, params: dict):
    """Return (hvp, n, template) where hvp(v_flat) = H v_flat by double
    backward, reusing one graph of the gradient."""
    import torch

    from observables._torchutil import math_attention

    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    values = list(leaves.values())
    with math_attention():  # fused attention kernels have no double backward
        loss = loss_of(leaves)
        grads = torch.autograd.grad(loss, values, create_graph=True, allow_unused=True)
    filled = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, values)]
    flat_g = torch.cat([g.reshape(-1) for g in filled])
    template = torch.cat([p.detach().reshape(-1) for p in values])
    n = template.numel()

    def hvp(v):
        if not flat_g.requires_grad:  # loss at most linear in params
            return torch.zeros_like(v)
        hv = torch.autograd.grad(flat_g, values, grad_outputs=v, retain_graph=True, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if h is None else h).reshape(-1) for h, p in zip(hv, values)])

    return hvp, n, template


def _random_vector(n: int, generator, template, rademacher: bool):
    import torch

    if rademacher:
        v = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64).to(torch.float64) * 2 - 1
    else:
        v = torch.randn(n, generator=generator, dtype=torch.float64)
    return v.to(device=template.device, dtype=template.dtype)


def _lanczos(hvp, n: int, template, m: int, seed: int):
    """``m`` Lanczos steps on ``hvp`` with full reorthogonalisation (twice),
    from a Gaussian start vector seeded with ``seed``; stops early on an
    invariant subspace. Returns the tridiagonal's diagonal and off-diagonal
    (numpy) and the orthonormal basis vectors (torch), one per step taken."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    q = _random_vector(n, gen, template, rademacher=False)
    basis = [q / q.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    with torch.no_grad():
        for j in range(m):
            with torch.enable_grad():
                w = hvp(basis[j]).detach()
            alpha = float(torch.dot(w, basis[j]))
            alphas.append(alpha)
            w = w - alpha * basis[j]
            if j > 0:
                w = w - betas[-1] * basis[j - 1]
            Q = torch.stack(basis)
            for _ in range(2):  # full reorthogonalisation, twice is enough
                w = w - Q.T @ (Q @ w)
            beta = float(w.norm())
            if j == m - 1 or beta <= 1e-10 * max(1.0, abs(alpha)):
                break
            betas.append(beta)
            basis.append(w / beta)
    d = np.asarray(alphas)
    return d, np.asarray(betas[: len(alphas) - 1]), basis[: d.size]


def hessian_extremes(loss_of, params: dict, iters: int = 40, seed: int = 0) -> HessianExtremes:
    """Largest and smallest eigenvalues of the Hessian of ``loss_of`` at
    ``params`` by the Lanczos method on Hessian-vector products (double
    backward), with full reorthogonalisation.

    ``iters`` Lanczos steps (capped at the number of parameters; stops early
    on an invariant subspace) from a Gaussian start vector drawn from a CPU
    ``torch.Generator`` seeded with ``seed``; the extreme eigenvalues of the
    tridiagonal matrix (Ritz values) estimate lambda_max and lambda_min, which
    converge first. Cost: ``iters`` Hessian-vector products (about two
    backward passes each) and ``iters`` vectors of storage.
    ratio = |lambda_min| / lambda_max (Li et al. 2018: near 0 for a locally
    convex point). Sources: Notsawo et al. 2023; Lanczos 1950.
    """
    from scipy.linalg import eigh_tridiagonal

    hvp, n, template = _hvp_operator(loss_of, params)
    d, e, _ = _lanczos(hvp, n, template, max(1, min(int(iters), n)), seed)
    ritz = eigh_tridiagonal(d, e, eigvals_only=True) if d.size > 1 else d
    lmax, lmin = float(ritz[-1]), float(ritz[0])
    ratio = abs(lmin) / lmax if lmax > 0 else float("nan")
    return HessianExtremes(lmax, lmin, ratio, int(d.size))


def hessian_top_eigvecs(loss_of, params: dict, k: int = 2, iters: int = 20, seed: int = 0) -> list[dict]:
    """The ``k`` eigenvectors of the training-loss Hessian with the largest
    eigenvalues, as Ritz vectors of ``iters`` Lanczos steps (as
    :func:`hessian_extremes`, full reorthogonalisation), each a unit-norm
    direction shaped like ``params`` (dict name -> tensor). The loss-landscape
    slices of Xie, Geniesse et al. 2024 ("Evaluating loss landscapes from a
    topology perspective") run along these directions.
    """
    import torch
    from scipy.linalg import eigh_tridiagonal

    hvp, n, template = _hvp_operator(loss_of, params)
    d, e, basis = _lanczos(hvp, n, template, max(k, min(int(iters), n)), seed)
    with torch.no_grad():
        if d.size > 1:
            _, vecs = eigh_tridiagonal(d, e)
        else:
            vecs = np.ones((1, 1))
        Q = torch.stack(basis)
        out = []
        for col in range(min(k, d.size)):
            v = Q.T @ torch.as_tensor(vecs[:, -1 - col], dtype=Q.dtype, device=Q.device)
            v = v / v.norm()
            parts, i = {}, 0
            for name, p in params.items():
                parts[name] = v[i : i + p.numel()].reshape(p.shape).to(p.dtype)
                i += p.numel()
            out.append(parts)
    return out


def hutchinson_trace(loss_of, params: dict, n_samples: int = 16, seed: int = 0) -> float:
    """Hutchinson estimate of the Hessian trace: tr(H) ~ (1/S) sum_s v_s^T H v_s
    with S = ``n_samples`` Rademacher vectors v_s (entries +-1, drawn from a
    CPU ``torch.Generator`` seeded with ``seed``). Unbiased; its standard error
    is about sqrt(2 sum_{i != j} H_ij^2 / S). Hutchinson 1989."""
    import torch

    hvp, n, template = _hvp_operator(loss_of, params)
    gen = torch.Generator().manual_seed(int(seed))
    total = 0.0
    for _ in range(max(1, int(n_samples))):
        v = _random_vector(n, gen, template, rademacher=True)
        total += float(torch.dot(v, hvp(v).detach()))
    return total / max(1, int(n_samples))
