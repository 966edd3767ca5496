"""Watcher signals chosen on the evidence sweep: htsr_alpha_cross and weight_norm_ratio."""

from __future__ import annotations

import json

import numpy as np

from grokwatch.runs import presets
from grokwatch.watch.scores import AlphaCrossing, ScoreConfig


def _probes(alpha, n_tail=20.0, n_evals=64.0, ks=0.05):
    n = len(alpha)
    return {
        "step": np.arange(1, n + 1) * 100,
        "htsr_alpha/mlp.W_in": np.asarray(alpha, dtype=float),
        "htsr_n_tail/mlp.W_in": np.full(n, n_tail),
        "htsr_n_evals/mlp.W_in": np.full(n, n_evals),
        "htsr_ks/mlp.W_in": np.full(n, ks),
    }


def test_alpha_cross_fires_on_a_fall_below_2_after_reliable_fits_above():
    pr = _probes([2.6, 2.5, 2.4, 1.8, 1.7, 2.2])
    out = AlphaCrossing(ScoreConfig()).update(pr, slice(0, 6))
    # from the fall on while it stays below 2 (the alarm stays active), NaN once alpha recovers
    assert np.isnan(out[:3]).all() and out[3] == 1.8 and out[4] == 1.7 and np.isnan(out[5])


def test_alpha_cross_is_silent_when_alpha_was_never_above_2():
    # the evidence sweep's small matrices: alpha < 2 from the first probe on
    out = AlphaCrossing(ScoreConfig()).update(_probes([1.6, 1.5, 1.4, 1.3]), slice(0, 4))
    assert np.isnan(out).all()


def test_alpha_cross_ignores_fits_of_the_whole_spectrum_or_a_poor_ks():
    for bad in (dict(n_tail=60.0), dict(ks=0.18), dict(n_tail=5.0)):
        out = AlphaCrossing(ScoreConfig()).update(_probes([2.6, 2.5, 2.4, 1.8], **bad), slice(0, 4))
        assert np.isnan(out).all(), bad


def test_alpha_cross_incremental_equals_one_pass():
    pr = _probes([2.6, 2.5, 2.4, 1.8, 2.1, 2.2, 2.3, 1.9])
    once = AlphaCrossing(ScoreConfig()).update(pr, slice(0, 8))
    inc = AlphaCrossing(ScoreConfig())
    parts = np.concatenate([inc.update(pr, slice(0, 2)), inc.update(pr, slice(2, 5)), inc.update(pr, slice(5, 8))])
    np.testing.assert_array_equal(np.isnan(once), np.isnan(parts))
    assert np.nanmin(once) == 1.8 and np.isnan(once[4]) and once[7] == 1.9


def test_critical_norm_reads_the_shipped_facts(tmp_path, monkeypatch):
    facts = {
        "w_crit": {
            "all": {"median": 27.5, "n": 9},
            "by_weight_decay": {"1.0": {"median": 27.1, "n": 4}, "0.3": {"median": 30.0, "n": 2}},
        }
    }
    (tmp_path / "mine.json").write_text(json.dumps(facts))
    monkeypatch.setattr(presets, "PRIORS_DIR", tmp_path)
    presets.preset_facts.cache_clear()
    try:
        assert presets.critical_norm("mine", 1.0) == 27.1
        assert presets.critical_norm("mine", 0.3) == 27.5  # too few of that weight decay: all runs
        assert presets.critical_norm("mine", None) == 27.5
        assert presets.critical_norm("other", 1.0) is None
        assert presets.critical_norm("../etc", 1.0) is None
    finally:
        presets.preset_facts.cache_clear()
