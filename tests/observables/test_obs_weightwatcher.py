"""Cross-check against WeightWatcher itself (a dev dependency).

Skipped, with the reason printed by ``-ra``, where ``weightwatcher`` is not
installed. WeightWatcher 0.7.7 is what this was checked against.
"""

import warnings

import numpy as np
import pytest

from observables import htsr

pytestmark = pytest.mark.slow  # importing weightwatcher (pandas, sklearn, matplotlib) takes seconds

torch = pytest.importorskip("torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ww = pytest.importorskip(
        "weightwatcher",
        reason="weightwatcher not installed (pip install weightwatcher): cannot cross-check HTSR",
    )

# matrices of several shapes and tails: (shape, generator of entries)
CASES = [
    ((64, 64), lambda rng, s: rng.standard_t(3, size=s)),
    ((256, 128), lambda rng, s: rng.standard_t(3, size=s)),
    ((100, 300), lambda rng, s: rng.standard_t(2, size=s)),
    ((40, 50), lambda rng, s: rng.standard_normal(s)),
    ((200, 200), lambda rng, s: rng.standard_cauchy(s) * 0.01),
    ((128, 512), lambda rng, s: rng.standard_normal(s) @ np.diag(np.linspace(0.1, 3.0, s[1]))),
]


@pytest.fixture(scope="module")
def ww_frame():
    rng = np.random.default_rng(2024)
    layers, weights = [], []
    for shape, draw in CASES:
        W = draw(rng, shape).astype(np.float32)
        layer = torch.nn.Linear(shape[1], shape[0], bias=False)
        layer.weight.data = torch.from_numpy(W)
        layers.append(layer)
        weights.append(W)
    model = torch.nn.Sequential(*layers)  # never run forward: only its weights matter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = ww.WeightWatcher(model=model).analyze(randomize=False, mp_fit=False, plot=False)
    assert len(df) == len(CASES)
    return df.sort_values("layer_id").reset_index(drop=True), weights


def test_alpha_xmin_ks_match_weightwatcher(ww_frame):
    df, weights = ww_frame
    for row, W in zip(df.itertuples(), weights):
        fit = htsr.fit_alpha(W)
        assert fit.alpha == pytest.approx(row.alpha, rel=1e-9), W.shape
        assert fit.xmin == pytest.approx(row.xmin, rel=1e-9), W.shape
        assert fit.ks_distance == pytest.approx(row.D, rel=1e-9, abs=1e-12), W.shape
        assert fit.sigma == pytest.approx(row.sigma, rel=1e-9), W.shape
        assert fit.n_tail == row.num_pl_spikes, W.shape


def test_fit_power_law_matches_wwfit_on_raw_eigenvalues():
    from weightwatcher.WW_powerlaw import WWFit

    rng = np.random.default_rng(5)
    for n in (20, 57, 300):  # WW uses a different small-sample rule below 20
        x = rng.pareto(1.5, n) + 1.0
        ref = WWFit(x)
        fit = htsr.fit_power_law(x)
        assert (fit.alpha, fit.xmin) == pytest.approx((ref.alpha, ref.xmin), rel=1e-9)
        assert fit.ks_distance == pytest.approx(ref.D, rel=1e-9)


@pytest.mark.parametrize("shape, df_t", [((64, 64), 3), ((256, 128), 3), ((300, 100), 2.5), ((50, 40), 4)])
def test_marchenko_pastur_spike_count_matches_weightwatcher(shape, df_t):
    rng = np.random.default_rng(sum(shape))
    W = rng.standard_t(df_t, size=shape)
    m, n = sorted(shape)
    evals = htsr.shuffled_esd(W, seed=3)
    mine = htsr.marchenko_pastur_fit(evals, n, m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        num_spikes, _, _, _, bulk_max, wscale = ww.WeightWatcher().mp_fit(
            evals, n, m, 1, "x", 0, 0, False, False, "/tmp", "b", 0.5, True, evals, randomize=True
        )
    assert mine.num_spikes == num_spikes
    assert mine.bulk_max == pytest.approx(bulk_max * wscale**2, rel=1e-9)
