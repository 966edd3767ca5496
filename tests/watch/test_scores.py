"""Watcher-side scores: incremental equals full recomputation, exactly."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from grokwatch.runs.phases import phase_of
from grokwatch.sim.simulate import generate, plan_sweep
from grokwatch.watch.scores import (
    PhaseTracker,
    ScoreConfig,
    _gai_zscore,
    gai_function,
    gai_tail,
    htsr_summary,
    robust_z_tail,
)


def _chunks(n: int, rng) -> list[tuple[int, int]]:
    cuts = np.unique(np.concatenate(([0, n], rng.integers(1, n, size=12))))
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))


def test_gai_incremental_equals_full():
    rng = np.random.default_rng(0)
    x = 5 + np.cumsum(rng.normal(size=6000)) * 0.01
    x[4000] += 1.0
    x[100:130] = np.nan
    cfg = ScoreConfig()
    full = gai_function()(x, cfg.gai_window, cfg.gai_baseline)
    inc = np.concatenate([gai_tail(x[:b], a, cfg) for a, b in _chunks(len(x), rng)])
    assert np.array_equal(np.isnan(inc), np.isnan(full))
    np.testing.assert_allclose(inc[~np.isnan(inc)], full[~np.isnan(full)], rtol=1e-9, atol=1e-9)


def test_private_gai_follows_the_observables_contract():
    rng = np.random.default_rng(1)
    x = 1 + 0.01 * rng.normal(size=3000)
    z = _gai_zscore(x, 20, 200)
    assert np.isnan(z[: 20 + 1 + 200]).all() and np.isfinite(z[230:]).all()
    if importlib.util.find_spec("observables.gai") is None:
        pytest.skip("observables.gai not present")
    from observables.gai import gai_zscore

    ref = gai_zscore(x, 20, 200)
    np.testing.assert_allclose(z[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-6, atol=1e-6)
    assert np.array_equal(np.isnan(z), np.isnan(ref))


def test_one_step_spike_is_a_gai_spike_on_a_flat_series():
    x = np.full(1000, 2.0)
    x[700] = 6.0
    z = gai_function()(x, 20, 200)
    with np.errstate(invalid="ignore"):
        # The spike enters the 20-step moving average at 700 and leaves it at 721.
        assert np.flatnonzero(z > 3.5).tolist() == [700, 721]


def test_robust_z_incremental_and_detects_a_shift():
    rng = np.random.default_rng(2)
    x = 2.8 + 0.02 * rng.normal(size=400)
    x[300:] -= 0.35
    full = robust_z_tail(x, 0, 30, 5)
    inc = np.concatenate([robust_z_tail(x[:b], a, 30, 5) for a, b in _chunks(len(x), rng)])
    np.testing.assert_array_equal(np.isnan(full), np.isnan(inc))
    np.testing.assert_allclose(full[~np.isnan(full)], inc[~np.isnan(inc)])
    assert np.nanmin(full[300:302]) < -8
    assert np.nanmax(np.abs(full[40:300])) < 5


def test_htsr_summary_skips_unreliable_fits():
    probes = {
        "step": np.array([10, 20, 30]),
        "htsr_alpha/big": np.array([3.0, 2.5, 1.8]),
        "htsr_n_tail/big": np.array([40, 40, 40]),
        "htsr_ks/big": np.array([0.05, 0.05, 0.05]),
        "htsr_alpha/small": np.array([1.2, 1.1, 1.0]),  # too few eigenvalues
        "htsr_n_tail/small": np.array([5, 5, 5]),
        "htsr_alpha/badfit": np.array([1.5, 1.5, 1.5]),
        "htsr_ks/badfit": np.array([0.4, 0.4, 0.4]),
        "htsr_alpha/plain": np.array([np.nan, 2.2, np.nan]),  # no quality columns: trusted
        "htsr_traps/big": np.array([0, 1, 2]),
        "htsr_traps/small": np.array([np.nan, 1, 0]),
    }
    amin, traps = htsr_summary(probes, slice(0, 3), ScoreConfig())
    np.testing.assert_allclose(amin, [3.0, 2.2, 1.8])
    np.testing.assert_allclose(traps, [0, 2, 2])


@pytest.mark.parametrize("index", range(6))
def test_phase_tracker_matches_phase_of(index):
    plans = plan_sweep(6, 4000, seed=3)
    p = plans[index]
    sc, _ = generate(p, 1, p.last_step + 1, probes=False)
    rng = np.random.default_rng(index)
    tr = PhaseTracker()
    for a, b in _chunks(len(sc["step"]), rng):
        tr.update(sc["step"][a:b], sc["train_acc"][a:b], sc["val_acc"][a:b], sc["train_loss"][a:b])
        ref = phase_of({k: v[:b] for k, v in sc.items()})
        assert (tr.phase, tr.t_mem, tr.t_grok, tr.t_anti, tr.t_diverged) == (
            ref.phase,
            ref.t_mem,
            ref.t_grok,
            ref.t_anti,
            ref.t_diverged,
        )
