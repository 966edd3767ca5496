"""The H0 constructions of observables.topology on loss slices."""

import numpy as np
import pytest

from observables.topology import CONSTRUCTIONS, h0_diagram, h0_summaries, rips_h0


def _bowl(g=15, noise=0.0, seed=0):
    c = np.linspace(-1, 1, g)
    a, b = np.meshgrid(c, c, indexing="ij")
    img = 0.01 + 5.0 * (a**2 + b**2)
    if noise:
        img = img * np.exp(noise * np.random.default_rng(seed).standard_normal(img.shape))
    return img


def test_rips_h0_equals_ripser_on_the_same_point_cloud():
    ripser = pytest.importorskip("ripser")
    img = _bowl(9, noise=0.3)
    c = np.linspace(-1, 1, 9)
    a, b = np.meshgrid(c, c, indexing="ij")
    pts = np.column_stack([a.ravel(), b.ravel(), np.log(img).ravel()])
    ref = ripser.ripser(pts, maxdim=0)["dgms"][0]
    ours = rips_h0(img, span=1.0)
    fin_ref = np.sort(ref[np.isfinite(ref[:, 1]), 1])
    fin_ours = np.sort(ours[np.isfinite(ours[:, 1]), 1])
    assert len(fin_ours) == 80 and np.isinf(ours[:, 1]).sum() == 1
    np.testing.assert_allclose(fin_ours, fin_ref, rtol=1e-5, atol=1e-6)


def test_a_single_bowl_is_dead_for_sublevel_and_alive_for_rips():
    # the degenerate case measured on real runs: one basin, no finite sublevel bar
    img = _bowl()
    assert h0_summaries(h0_diagram(img, "sublevel")).total == 0.0
    rips = h0_summaries(h0_diagram(img, "rips"))
    assert rips.total > 0 and rips.entropy > 0 and 1 < rips.effective_count <= 15 * 15 - 1


def test_rips_sees_a_steeper_bowl_as_fewer_effective_features():
    flat = h0_summaries(rips_h0(0.5 + 0.01 * _bowl()))
    steep = h0_summaries(rips_h0(_bowl() ** 4))
    assert steep.effective_count < flat.effective_count


def test_rips_is_independent_of_the_span_and_clamps_bad_pixels():
    img = _bowl(noise=0.2)
    np.testing.assert_allclose(rips_h0(img, 1.0), rips_h0(img, 0.05))
    bad = img.copy()
    bad[0, 0] = np.nan
    bad[1, 1] = 0.0
    d = rips_h0(bad)
    assert np.isfinite(d[:-1, 1]).all()


def test_unknown_construction_is_a_clear_error():
    assert set(CONSTRUCTIONS) == {"rips", "sublevel", "superlevel"}
    with pytest.raises(ValueError, match="unknown H0 construction"):
        h0_diagram(_bowl(), "alpha")


def test_grid_sublevel_h0_matches_ripser_lower_star_in_2d_and_counts_basins_in_3d():
    from observables.topology import grid_sublevel_h0, landscape_h0

    rng = np.random.default_rng(3)
    img = rng.standard_normal((9, 9))
    ours = grid_sublevel_h0(img)
    ref = landscape_h0(img)
    life = lambda d: np.sort((d[:, 1] - d[:, 0])[np.isfinite(d[:, 1]) & (d[:, 1] > d[:, 0])])  # noqa: E731
    np.testing.assert_allclose(life(ours), life(ref), atol=1e-6)  # ripser works in float32
    # two separated wells in 3-D: one finite bar, dying at the ridge between them
    c = np.linspace(-1, 1, 7)
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    f = np.minimum((x + 0.6) ** 2, (x - 0.6) ** 2 + 0.1) + y**2 + z**2
    d = grid_sublevel_h0(f)
    fin = d[np.isfinite(d[:, 1]) & (d[:, 1] > d[:, 0])]
    assert len(fin) == 1 and np.isinf(d[:, 1]).sum() == 1
