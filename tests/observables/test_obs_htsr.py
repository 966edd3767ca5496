"""HTSR alpha and correlation traps against known spectra."""

import math

import numpy as np
import pytest

from observables import htsr


def planted_spectrum_matrix(evals, seed, shape=None):
    """W = U diag(sqrt(evals)) V^T with random orthogonal U, V: svd(W)^2 == evals."""
    rng = np.random.default_rng(seed)
    k = len(evals)
    rows, cols = shape or (k, k)
    U, _ = np.linalg.qr(rng.standard_normal((rows, k)))
    V, _ = np.linalg.qr(rng.standard_normal((cols, k)))
    return (U * np.sqrt(evals)) @ V.T


def pareto_evals(alpha, n, seed, xmin=1.0):
    """n draws from p(x) = (alpha - 1) xmin^(alpha-1) x^-alpha, x >= xmin."""
    rng = np.random.default_rng(seed)
    return xmin * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))


def pareto_quantiles(alpha, n, xmin=1.0):
    """A stratified sample of the same law: the (i + 1/2)/n quantiles."""
    q = (np.arange(n) + 0.5) / n
    return xmin * (1.0 - q) ** (-1.0 / (alpha - 1.0))


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.0])
def test_alpha_recovers_power_law_quantiles(alpha):
    W = planted_spectrum_matrix(pareto_quantiles(alpha, 500, xmin=2.0), seed=1)
    fit = htsr.fit_alpha(W)
    assert fit.ok and fit.reason is None
    assert abs(fit.alpha - alpha) < 0.02
    assert fit.xmin == pytest.approx(pareto_quantiles(alpha, 500, xmin=2.0)[0], rel=1e-6)
    assert fit.n_tail == fit.n_evals == 500
    assert fit.sigma == pytest.approx((fit.alpha - 1) / math.sqrt(fit.n_tail))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_alpha_recovers_random_power_law_draws(seed):
    """Random draws: the MLE's standard error (alpha - 1)/sqrt(n_tail) is ~0.04
    here, so 0.1 is a 2.5-sigma bound; larger alphas need more eigenvalues."""
    alpha = 2.0
    W = planted_spectrum_matrix(pareto_evals(alpha, 1000, seed), seed + 100)
    fit = htsr.fit_alpha(W)
    assert fit.ok
    assert abs(fit.alpha - alpha) < 0.1
    assert fit.n_evals == 1000 and fit.n_tail > 300
    assert 0 < fit.ks_distance < 0.1


def test_fit_matches_brute_force_definition():
    """Scan every xmin by hand (Clauset et al. / WW 'ww' rule) and compare."""
    rng = np.random.default_rng(3)
    x = np.sort(rng.lognormal(0.0, 1.0, 60) ** 2)
    best = None
    for i in range(len(x) - 1):
        tail = x[i:]
        n = len(tail)
        a = 1 + n / np.sum(np.log(tail / x[i]))
        d = np.max(np.abs(1 - (tail / x[i]) ** (1 - a) - np.arange(n) / n)) if a > 1 else 1.0
        if best is None or d < best[0]:
            best = (d, a, x[i], n)
    fit = htsr.fit_power_law(x)
    assert fit.ks_distance == pytest.approx(best[0], rel=1e-12)
    assert fit.alpha == pytest.approx(best[1], rel=1e-12)
    assert fit.xmin == best[2]
    assert fit.n_tail == best[3]


def test_eigenvalues_are_squared_singular_values_not_divided_by_n():
    evals = pareto_evals(2.5, 200, 5, xmin=3.0)
    W = planted_spectrum_matrix(evals, 6, shape=(300, 200))
    np.testing.assert_allclose(htsr.esd(W), np.sort(evals), rtol=1e-9)
    # xmin is one of the planted eigenvalues, on their own scale
    assert np.min(np.abs(np.sort(evals) - htsr.fit_alpha(W).xmin)) < 1e-6 * htsr.fit_alpha(W).xmin


@pytest.mark.parametrize(
    "W, word",
    [
        (np.random.default_rng(0).standard_normal((4, 4)), "need at least 8"),
        (np.random.default_rng(0).standard_normal((100, 5)), "need at least 8"),
        (np.zeros((50, 50)), "need at least 8"),
        (np.full((20, 20), np.nan), "non-finite"),
        (np.where(np.eye(20) > 0, np.inf, 1.0), "non-finite"),
        (np.eye(20), "degenerate"),
    ],
)
def test_undefined_fits_give_nan_and_reason(W, word):
    fit = htsr.fit_alpha(W)
    assert math.isnan(fit.alpha) and math.isnan(fit.ks_distance) and math.isnan(fit.sigma)
    assert not fit.ok
    assert word in fit.reason


def test_rank_deficient_matrix_drops_tiny_eigenvalues():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((64, 5)) @ rng.standard_normal((5, 64))  # rank 5
    fit = htsr.fit_alpha(W)
    assert math.isnan(fit.alpha) and fit.n_evals == 5


def test_accepts_torch_tensors_including_half():
    torch = pytest.importorskip("torch")
    W = torch.randn(96, 64, generator=torch.Generator().manual_seed(0)).to(torch.float16)
    fit_t = htsr.fit_alpha(W)
    fit_n = htsr.fit_alpha(W.float().numpy().astype(np.float64))
    assert fit_t.alpha == pytest.approx(fit_n.alpha, rel=1e-9)
    assert htsr.fit_alpha(W.requires_grad_(False).to(torch.bfloat16)).ok


def test_gaussian_matrix_has_no_correlation_traps():
    rng = np.random.default_rng(7)
    for shape in [(256, 128), (128, 128), (60, 90)]:
        W = rng.standard_normal(shape) / math.sqrt(shape[1])
        assert htsr.correlation_traps(W, seed=1) == 0


def test_planted_localized_rank_one_spike_is_a_trap():
    rng = np.random.default_rng(8)
    W = rng.standard_normal((256, 128))
    # a rank-one spike s e_i e_j^T concentrated in one entry survives shuffling
    W[17, 42] += 60.0
    assert htsr.correlation_traps(W, seed=1) >= 1
    assert htsr.correlation_traps(W, seed=2) >= 1


def test_dense_rank_one_spike_is_not_a_trap():
    """Shuffling destroys a spread-out correlation: it is a spike of W, not a trap."""
    rng = np.random.default_rng(9)
    u, v = rng.standard_normal(256), rng.standard_normal(128)
    W = rng.standard_normal((256, 128)) + 0.5 * np.outer(u, v) / 4
    assert htsr.marchenko_pastur_fit(htsr.esd(W), 256, 128).num_spikes >= 1
    assert htsr.correlation_traps(W, seed=1) == 0


def test_traps_are_seeded():
    rng = np.random.default_rng(10)
    W = rng.standard_t(2.5, size=(80, 70))
    counts = [htsr.correlation_traps(W, seed=s) for s in (5, 5, 6, 6)]
    assert counts[0] == counts[1] and counts[2] == counts[3]


def test_traps_undefined_cases_return_minus_one():
    assert htsr.correlation_traps(np.ones((4, 50)), seed=0) == -1
    assert htsr.correlation_traps(np.zeros((40, 50)), seed=0) == -1
    assert htsr.correlation_traps(np.full((40, 50), np.nan), seed=0) == -1
