"""H0 persistence of hand-built images, the summaries' identities, and the
loss slice against direct evaluation."""

import math
import warnings

import numpy as np
import pytest

from observables import topology


def finite_lifetimes(dgm):
    life = dgm[:, 1] - dgm[:, 0]
    return np.sort(life[np.isfinite(life) & (life > 0)])


def test_summaries_of_k_equal_bars():
    for k in (1, 2, 5, 17):
        s = topology.h0_summaries(np.column_stack([np.zeros(k), np.full(k, 2.5)]))
        assert s.total == pytest.approx(2.5 * k)
        assert s.effective_count == pytest.approx(k)
        assert s.entropy == pytest.approx(math.log(k), abs=1e-12)
        assert s.median == pytest.approx(2.5)


def test_summaries_ignore_infinite_and_zero_bars_and_empty_is_zero():
    dgm = np.array([[0.0, np.inf], [1.0, 5.0], [2.0, 3.0], [4.0, 4.0]])
    s = topology.h0_summaries(dgm)
    assert s.total == pytest.approx(5.0)
    assert s.effective_count == pytest.approx(25.0 / 17.0)
    assert s.median == pytest.approx(2.5)
    assert s.entropy == pytest.approx(-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)))
    zero = topology.H0Summary(0.0, 0.0, 0.0, 0.0)
    assert topology.h0_summaries(np.zeros((0, 2))) == zero
    assert topology.h0_summaries(np.array([[0.0, np.inf]])) == zero
    assert s.as_dict() == {
        "total": s.total,
        "effective_count": s.effective_count,
        "median": s.median,
        "entropy": s.entropy,
    }


def test_profile_with_three_basins_and_two_saddles():
    # minima 0, 1, 2; saddles 5 (between 0 and 1) and 3 (between 1 and 2)
    img = np.array([[0.0, 5.0, 1.0, 3.0, 2.0]])
    dgm = topology.landscape_h0(img)
    assert np.sum(np.isinf(dgm[:, 1])) == 1 and dgm[np.isinf(dgm[:, 1]), 0][0] == 0.0
    finite = {tuple(r) for r in dgm[np.isfinite(dgm[:, 1])] if r[1] > r[0]}
    assert finite == {(1.0, 5.0), (2.0, 3.0)}  # elder rule: the younger basin dies
    s = topology.h0_summaries(dgm)
    assert (s.total, s.median) == (5.0, 2.5)


def test_isolated_pits_in_a_plateau():
    # four separated one-pixel pits (8-neighbours apart) of depths 0, 2, 4, 4 in a plateau at 10
    img = np.full((7, 9), 10.0)
    img[1, 1], img[1, 6], img[5, 2], img[4, 7] = 0.0, 2.0, 4.0, 4.0
    dgm = topology.landscape_h0(img)
    np.testing.assert_allclose(finite_lifetimes(dgm), [6.0, 6.0, 8.0])
    s = topology.h0_summaries(dgm)
    assert s.total == pytest.approx(20.0)
    assert s.effective_count == pytest.approx(400.0 / 136.0)


def test_k_equal_basins_give_ln_k_and_k():
    k = 6
    img = np.ones((5, 4 * (k + 1)))
    img[2, 2::4] = 0.0  # k + 1 equal pits: k finite bars of lifetime 1, one infinite
    s = topology.h0_summaries(topology.landscape_h0(img))
    assert s.effective_count == pytest.approx(k)
    assert s.entropy == pytest.approx(math.log(k))
    assert s.total == pytest.approx(k)


def test_pass_pixel_is_its_own_basin():
    # two basins (minima 0 and 1) separated by a wall of 9 with a pass at 3,
    # surrounded by terrain at 5: the pass is a local minimum born at 3; all
    # three components meet when the terrain at 5 enters.
    img = np.full((5, 9), 5.0)
    img[:, 4] = 9.0
    img[2, 4] = 3.0
    img[2, 2], img[2, 6] = 0.0, 1.0
    np.testing.assert_allclose(finite_lifetimes(topology.landscape_h0(img)), [2.0, 4.0])


def test_non_finite_pixels_are_high_terrain():
    img = np.array([[0.0, np.nan, 1.0, np.inf, 2.0]])
    # -> [0, 2, 1, 2, 2]: basins 0 and 1 meet at 2
    np.testing.assert_allclose(finite_lifetimes(topology.landscape_h0(img)), [1.0])
    assert topology.landscape_h0(np.full((3, 3), np.nan)).shape == (0, 2)


# ---------------------------------------------------------------- loss slice

torch = pytest.importorskip("torch")


def test_filter_normalized_direction():
    params = {"w": torch.randn(5, 3, 2), "b": torch.randn(5)}
    d = topology.filter_normalized_direction(params, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(d["w"].flatten(1).norm(dim=1), params["w"].flatten(1).norm(dim=1), rtol=1e-5)
    assert torch.count_nonzero(d["b"]) == 0


def quadratic_setup():
    g = torch.Generator().manual_seed(1)
    params = {
        "w": torch.randn(4, 3, generator=g, dtype=torch.float64),
        "b": torch.randn(4, generator=g, dtype=torch.float64),
    }
    A = torch.randn(12, 12, generator=g, dtype=torch.float64)
    H = A @ A.T + torch.eye(12, dtype=torch.float64)

    def loss_of(p):
        w = p["w"].reshape(-1)
        return 0.5 * w @ H @ w + p["b"].sum()

    return loss_of, params


def test_loss_slice_matches_direct_evaluation():
    loss_of, params = quadratic_setup()
    img = topology.loss_slice(loss_of, params, grid=7, span=0.5, seed=3, chunk=5)
    gen = torch.Generator().manual_seed(3)
    d1 = topology.filter_normalized_direction(params, gen)
    d2 = topology.filter_normalized_direction(params, gen)
    coords = np.linspace(-0.5, 0.5, 7)
    for i, j in [(0, 0), (3, 3), (6, 1), (2, 5)]:
        p = {k: params[k] + float(coords[i]) * d1[k] + float(coords[j]) * d2[k] for k in params}
        assert img[i, j] == pytest.approx(float(loss_of(p)), rel=1e-6)
    assert img[3, 3] == pytest.approx(float(loss_of(params)), rel=1e-9)
    looped = topology.loss_slice(loss_of, params, grid=7, span=0.5, seed=3, vectorize=False)
    np.testing.assert_allclose(img, looped, rtol=1e-6)


def test_loss_slice_falls_back_when_loss_cannot_be_vmapped():
    loss_of, params = quadratic_setup()

    def unvmappable(p):
        value = loss_of(p)
        if value.item() > 1e9:  # data-dependent Python control flow
            return value * 0
        return value

    with pytest.warns(UserWarning, match="point by point"):
        img = topology.loss_slice(unvmappable, params, grid=5, span=0.5, seed=2)
    np.testing.assert_allclose(img, topology.loss_slice(loss_of, params, grid=5, span=0.5, seed=2), rtol=1e-9)


def test_loss_slice_with_a_module():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    loss_of, params = topology.module_loss(model, torch.nn.functional.cross_entropy, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the batched (vmap) path must work for a plain module
        img = topology.loss_slice(loss_of, params, grid=5, span=1.0, seed=0)
    assert img.shape == (5, 5) and np.all(np.isfinite(img))
    with torch.no_grad():
        assert img[2, 2] == pytest.approx(float(torch.nn.functional.cross_entropy(model(x), y)), rel=1e-5)
    s = topology.h0_of_model(loss_of, params, grid=9, span=1.0, seed=0)
    assert isinstance(s, topology.H0Summary) and s.total >= 0


def test_convex_slice_has_one_basin():
    loss_of, params = quadratic_setup()
    params = {"w": params["w"], "b": torch.zeros(4, dtype=torch.float64)}
    sub = topology.h0_of_model(loss_of, params, grid=11, span=2.0, seed=1, construction="sublevel")
    assert sub == topology.H0Summary(0, 0, 0, 0)
    # the default (Rips) construction still has bars on one basin: its lifetimes follow the bowl's slope
    assert topology.h0_of_model(loss_of, params, grid=11, span=2.0, seed=1).total > 0
