"""Hessian extremes (Lanczos) and Hutchinson trace against exact Hessians."""

import numpy as np
import pytest

from observables import curvature

torch = pytest.importorskip("torch")


def quadratic(eigs, seed=0):
    rng = np.random.default_rng(seed)
    n = len(eigs)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    H = Q @ np.diag(eigs) @ Q.T
    Ht = torch.tensor(H)
    theta0 = {"a": torch.tensor(rng.standard_normal(n // 2)), "b": torch.tensor(rng.standard_normal(n - n // 2))}

    def loss_of(p):
        x = torch.cat([p["a"], p["b"]])
        return 0.5 * x @ Ht @ x

    return loss_of, theta0, H


def test_extremes_of_a_quadratic_with_known_spectrum():
    eigs = np.r_[np.linspace(-0.5, 3.0, 298), [-2.0, 12.0]]
    loss_of, params, _ = quadratic(eigs)
    res = curvature.hessian_extremes(loss_of, params, iters=40, seed=0)
    assert res.iters == 40
    assert res.lambda_max == pytest.approx(12.0, rel=1e-2)
    assert res.lambda_min == pytest.approx(-2.0, rel=1e-2)
    assert res.ratio == pytest.approx(2.0 / 12.0, rel=2e-2)


def test_lanczos_is_exact_with_as_many_steps_as_dimensions():
    eigs = np.array([-1.0, 0.5, 2.0, 3.0, 7.0, 7.5])
    loss_of, params, _ = quadratic(eigs, seed=3)
    res = curvature.hessian_extremes(loss_of, params, iters=100, seed=1)
    assert res.iters <= 6
    assert (res.lambda_max, res.lambda_min) == pytest.approx((7.5, -1.0), rel=1e-9)


def small_model_loss(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    for p in model.parameters():
        p.data = torch.randn(p.shape, generator=g, dtype=torch.float64)
    from torch.func import functional_call

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_of(p):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

    names = list(params)
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]

    def flat_loss(v):
        parts = torch.split(v, sizes)
        return loss_of({k: t.reshape(s) for k, t, s in zip(names, parts, shapes)})

    flat = torch.cat([params[k].reshape(-1) for k in names])
    H = torch.autograd.functional.hessian(flat_loss, flat).numpy()
    return loss_of, params, H


def test_extremes_of_a_small_model_match_the_full_hessian():
    loss_of, params, H = small_model_loss()
    evals = np.linalg.eigvalsh(H)
    assert H.shape == (67, 67) and evals[0] < 0 < evals[-1]
    res = curvature.hessian_extremes(loss_of, params, iters=20, seed=0)  # fewer steps than the 67 dims
    assert res.lambda_max == pytest.approx(evals[-1], rel=1e-2)
    assert res.lambda_min == pytest.approx(evals[0], rel=1e-2)


def test_hutchinson_trace():
    # diagonal Hessian: Rademacher probes are exact
    diag = np.linspace(-1.0, 4.0, 10)
    params = {"x": torch.tensor(np.ones(10))}
    d = torch.tensor(diag)
    est = curvature.hutchinson_trace(lambda p: 0.5 * (d * p["x"] ** 2).sum(), params, 3, seed=0)
    assert est == pytest.approx(diag.sum(), rel=1e-12)
    # general: within 4 standard errors, sqrt(2 sum_{i!=j} H_ij^2 / S)
    loss_of, params, H = small_model_loss(seed=1)
    S = 300
    est = curvature.hutchinson_trace(loss_of, params, n_samples=S, seed=0)
    se = np.sqrt(2 * (np.sum(H**2) - np.sum(np.diag(H) ** 2)) / S)
    assert abs(est - np.trace(H)) < 4 * se
    assert est == curvature.hutchinson_trace(loss_of, params, n_samples=S, seed=0)


def test_attention_models_get_hessian_vector_products():
    """Fused SDPA kernels have no double backward; the probes force the math kernel."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, 3, 4, generator=g)  # batch, heads, tokens, head dim
    params = {"wq": torch.randn(4, 4, generator=g), "wk": torch.randn(4, 4, generator=g)}

    def loss_of(p):
        out = F.scaled_dot_product_attention(x @ p["wq"], x @ p["wk"], x, is_causal=True)
        return (out**2).mean()

    res = curvature.hessian_extremes(loss_of, params, iters=32, seed=0)
    flat = torch.cat([params["wq"].reshape(-1), params["wk"].reshape(-1)]).double()

    def flat_loss(v):
        q, k = v[:16].reshape(4, 4), v[16:].reshape(4, 4)
        out = F.scaled_dot_product_attention(x.double() @ q, x.double() @ k, x.double(), is_causal=True)
        return (out**2).mean()

    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        evals = np.linalg.eigvalsh(torch.autograd.functional.hessian(flat_loss, flat).numpy())
    assert res.lambda_max == pytest.approx(evals[-1], rel=1e-2)
    assert res.lambda_min == pytest.approx(evals[0], rel=1e-2, abs=1e-4 * evals[-1])


def test_top_eigvecs_of_a_diagonal_hessian_are_its_largest_axes():
    from observables.curvature import hessian_top_eigvecs

    a = torch.diag(torch.tensor([5.0, 3.0, 1.0, 0.5], dtype=torch.float64))
    vecs = hessian_top_eigvecs(
        lambda p: 0.5 * p["w"] @ a @ p["w"], {"w": torch.ones(4, dtype=torch.float64)}, k=2, iters=4
    )
    assert len(vecs) == 2
    for v, axis in zip(vecs, (0, 1)):
        expect = torch.zeros(4, dtype=torch.float64)
        expect[axis] = 1.0
        assert torch.allclose(v["w"].abs(), expect, atol=1e-8)
