"""Commutator defect on quadratics (closed form) and a non-quadratic loss
(small-eta expansion), and the transverse fraction on planted trajectories."""

import numpy as np
import pytest

from observables import commutator

torch = pytest.importorskip("torch")
D = 6


def rotation(eps, n=D):
    """Rotation by eps in the (0, 1) and (2, 3) planes."""
    R = np.eye(n)
    c, s = np.cos(eps), np.sin(eps)
    for i in (0, 2):
        R[i : i + 2, i : i + 2] = [[c, -s], [s, c]]
    return R


def quadratic_loss(H, c):
    """L_X(theta) = 1/2 (theta - c_X)^T H_X (theta - c_X); batch is the key X."""
    H = {k: torch.tensor(v) for k, v in H.items()}
    c = {k: torch.tensor(v) for k, v in c.items()}

    def loss_fn(p, batch):
        r = p["theta"] - c[batch]
        return 0.5 * r @ H[batch] @ r

    return loss_fn


def setup(eps, shared_center=True, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    H_a = Q @ np.diag(rng.uniform(0.5, 3.0, D)) @ Q.T
    H_b = Q @ rotation(eps) @ np.diag(rng.uniform(0.5, 3.0, D)) @ rotation(eps).T @ Q.T
    c_a = rng.standard_normal(D)
    c_b = c_a if shared_center else rng.standard_normal(D)
    theta = rng.standard_normal(D)
    return H_a, H_b, c_a, c_b, theta


def run(H_a, H_b, c_a, c_b, theta, eta):
    loss_fn = quadratic_loss({"A": H_a, "B": H_b}, {"A": c_a, "B": c_b})
    return commutator.defect(loss_fn, {"theta": torch.tensor(theta)}, "A", "B", eta)


@pytest.mark.parametrize("eta", [1e-3, 0.1, 0.5])
def test_commuting_hessians_with_a_shared_minimum_give_zero(eta):
    H_a, H_b, c_a, c_b, theta = setup(0.0)
    assert np.linalg.norm(H_a @ H_b - H_b @ H_a) < 1e-12
    res = run(H_a, H_b, c_a, c_b, theta, eta)
    assert res.defect < 1e-12 / eta
    assert res.grad_a_norm > 0.1 and res.grad_b_norm > 0.1


@pytest.mark.parametrize("eta", [1e-3, 0.1, 0.5])
def test_quadratic_defect_is_the_commutator(eta):
    """For quadratics delta = eta^2 (H_B g_A - H_A g_B) = eta^2 [H_B, H_A](theta - c), at any eta."""
    H_a, H_b, c_a, c_b, theta = setup(0.3)
    res = run(H_a, H_b, c_a, c_b, theta, eta)
    g_a, g_b = H_a @ (theta - c_a), H_b @ (theta - c_b)
    expected = eta**2 * (H_b @ g_a - H_a @ g_b)
    np.testing.assert_allclose(res.delta, expected, rtol=1e-8, atol=1e-12 * eta)
    comm = (H_b @ H_a - H_a @ H_b) @ (theta - c_a)
    assert res.defect == pytest.approx(np.linalg.norm(comm) / (np.linalg.norm(g_a) * np.linalg.norm(g_b)), rel=1e-8)


def test_defect_grows_like_the_commutator():
    defects, comms = [], []
    for eps in (1e-3, 2e-3, 4e-3, 8e-3):
        H_a, H_b, c_a, c_b, theta = setup(eps)
        defects.append(run(H_a, H_b, c_a, c_b, theta, 0.05).defect)
        comms.append(np.linalg.norm(H_a @ H_b - H_b @ H_a))
    ratios = np.array(defects) / np.array(comms)
    np.testing.assert_allclose(ratios, ratios[0], rtol=0.02)
    np.testing.assert_allclose(np.array(defects[1:]) / defects[:-1], 2.0, rtol=0.02)


def test_general_quadratic_with_different_minima():
    H_a, H_b, c_a, c_b, theta = setup(0.7, shared_center=False, seed=4)
    eta = 0.2
    res = run(H_a, H_b, c_a, c_b, theta, eta)
    g_a, g_b = H_a @ (theta - c_a), H_b @ (theta - c_b)
    np.testing.assert_allclose(res.delta, eta**2 * (H_b @ g_a - H_a @ g_b), rtol=1e-8)
    # the same by composing the steps literally
    th_ab = theta - eta * g_a
    th_ab = th_ab - eta * H_b @ (th_ab - c_b)
    th_ba = theta - eta * g_b
    th_ba = th_ba - eta * H_a @ (th_ba - c_a)
    np.testing.assert_allclose(res.delta, th_ab - th_ba, rtol=1e-6)


def test_small_eta_matches_hessian_expansion_for_a_nonquadratic_loss():
    g = torch.Generator().manual_seed(0)
    X = {k: torch.randn(20, 5, generator=g, dtype=torch.float64) for k in "AB"}
    Y = {k: torch.randn(20, generator=g, dtype=torch.float64) for k in "AB"}
    params = {"w": torch.randn(5, generator=g, dtype=torch.float64), "b": torch.tensor([0.3], dtype=torch.float64)}

    def loss_fn(p, batch):
        return torch.log(torch.cosh(torch.tanh(X[batch] @ p["w"] + p["b"]) * 2.0 - Y[batch])).mean()

    def flat_loss(batch):
        return lambda v: loss_fn({"w": v[:5], "b": v[5:]}, batch)

    theta = torch.cat([params["w"], params["b"]])
    H = {k: torch.autograd.functional.hessian(flat_loss(k), theta).numpy() for k in "AB"}
    grad = {k: torch.autograd.functional.jacobian(flat_loss(k), theta).numpy() for k in "AB"}
    first_order = H["B"] @ grad["A"] - H["A"] @ grad["B"]
    errors = []
    for eta in (1e-2, 1e-3):
        res = commutator.defect(loss_fn, params, "A", "B", eta)
        errors.append(np.linalg.norm(res.delta / eta**2 - first_order) / np.linalg.norm(first_order))
    assert errors[1] < 1e-2
    assert errors[1] < errors[0] / 5  # the remainder is O(eta)


def test_transverse_fraction_on_a_planted_plane():
    rng = np.random.default_rng(0)
    P = 50
    u, v, w = np.linalg.qr(rng.standard_normal((P, 3)))[0].T
    t = np.linspace(0, 1, 12)[:, None]
    snaps = 3.0 + 5.0 * t * u + 2.0 * t**2 * v  # the trajectory spans {u, v}
    assert commutator.transverse_fraction(0.7 * u - 0.2 * v, snaps, k=2) == pytest.approx(0.0, abs=1e-10)
    assert commutator.transverse_fraction(w, snaps, k=2) == pytest.approx(1.0, abs=1e-10)
    assert commutator.transverse_fraction(u + w, snaps, k=2) == pytest.approx(0.5, abs=1e-10)
    # top-1 subspace: along the dominant direction of the (centered) path
    X = snaps - snaps.mean(0)
    top = np.linalg.svd(X, full_matrices=False)[2][0]
    d = u + v
    assert commutator.transverse_fraction(d, snaps, k=1) == pytest.approx(1 - (top @ d) ** 2 / (d @ d), abs=1e-10)
    # list-of-dicts snapshots flatten like the delta dict
    as_dicts = [{"a": s[:20], "b": s[20:]} for s in snaps]
    assert commutator.transverse_fraction({"a": w[:20], "b": w[20:]}, as_dicts, k=2) == pytest.approx(1.0, abs=1e-10)


def test_transverse_fraction_degenerate_cases():
    snaps = np.ones((5, 4))
    assert commutator.transverse_fraction(np.array([1.0, 0, 0, 0]), snaps, k=2) == 1.0
    assert np.isnan(commutator.transverse_fraction(np.zeros(4), snaps, k=2))
