"""Hjorth parameters and the early-loss spectral energy against closed forms."""

import math

import numpy as np
import pytest

from observables import spectral


@pytest.mark.parametrize("amp, omega", [(3.0, 0.3), (0.5, 0.05), (1.0, 2.0)])
def test_hjorth_of_a_sinusoid(amp, omega):
    t = np.arange(20_000)
    h = spectral.hjorth(amp * np.sin(omega * t + 0.4))
    assert h.activity == pytest.approx(amp**2 / 2, rel=2e-3)
    assert h.mobility == pytest.approx(2 * math.sin(omega / 2), rel=2e-3)  # -> omega for small omega
    assert h.complexity == pytest.approx(1.0, abs=2e-3)


def test_hjorth_of_white_noise():
    """var(dx) = 2 s^2, var(d2x) = 6 s^2: mobility sqrt(2), complexity sqrt(3/2)."""
    x = 0.7 * np.random.default_rng(0).standard_normal(400_000)
    h = spectral.hjorth(x)
    assert h.activity == pytest.approx(0.49, rel=1e-2)
    assert h.mobility == pytest.approx(math.sqrt(2), rel=1e-2)
    assert h.complexity == pytest.approx(math.sqrt(1.5), rel=1e-2)


def test_hjorth_degenerate_inputs_are_nan():
    assert all(math.isnan(v) for v in spectral.hjorth([1.0, 2.0]).as_dict().values())
    h = spectral.hjorth(np.ones(10))
    assert h.activity == 0.0 and math.isnan(h.mobility) and math.isnan(h.complexity)


def test_spectral_energy_parseval_and_bands():
    t = np.arange(400)
    rng = np.random.default_rng(1)
    y = 0.3 * np.sin(2 * np.pi * t / 50) + 0.1 * np.sin(2 * np.pi * t / 4) + 0.01 * rng.standard_normal(400)
    e = spectral.spectral_energy(y, n=400, log=False)
    coef = np.polyfit(t, y, 1)
    r = y - np.polyval(coef, t)
    assert e.total == pytest.approx(np.mean(r**2), rel=1e-9)  # Parseval
    # the 50-step tone (f = 0.02) is low, the 4-step tone (f = 0.25) high: 0.045 vs 0.005
    assert e.low == pytest.approx(0.3**2 / 2, rel=0.05)
    assert e.high == pytest.approx(0.1**2 / 2, rel=0.1)
    assert e.low_fraction == pytest.approx(e.low / e.total)
    assert e.n == 400


def test_pure_exponential_decay_has_no_energy_in_log():
    loss = 4.6 * np.exp(-np.arange(1000) / 80.0)
    e = spectral.spectral_energy(loss, n=400)
    assert e.n == 400 and e.total < 1e-20


def test_signature_keys_and_first_window():
    rng = np.random.default_rng(2)
    loss = np.exp(-np.arange(3000) / 300) * (1 + 0.05 * rng.standard_normal(3000)) + 1e-3
    sig = spectral.signature(loss, first=400)
    assert set(sig) == {
        "activity",
        "mobility",
        "complexity",
        "energy_total",
        "energy_low",
        "energy_high",
        "energy_low_fraction",
    }
    assert sig["activity"] == pytest.approx(np.var(loss[:400]))
    assert sig == spectral.signature(loss[:400], first=400)
    assert math.isnan(spectral.spectral_energy(loss[:10]).total)
