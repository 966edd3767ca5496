"""Spectral signature of the training-loss curve.

Source: P. J. Tikeng Notsawo, H. Zhou, M. Pezeshki, I. Rish & G. Dumas,
"Predicting Grokking Long Before It Happens: A look into the loss landscape of
models which grok" (2023): oscillations of the training loss in the first few
hundred steps, seen in its Fourier spectrum and quantified by Hjorth
parameters, herald later grokking. Hjorth parameters: B. Hjorth, "EEG analysis
based on time domain properties", Electroencephalography and Clinical
Neurophysiology 29 (1970). numpy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from observables._arrays import to_numpy


@dataclass(frozen=True)
class Hjorth:
    """Hjorth activity, mobility and complexity (see :func:`hjorth`)."""

    activity: float
    mobility: float
    complexity: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def hjorth(x) -> Hjorth:
    """Hjorth parameters of a series x (Hjorth 1970), with dx the first
    difference (np.diff) and var the population variance (ddof = 0):

    - activity   = var(x)
    - mobility   = sqrt(var(dx) / var(x))
    - complexity = mobility(dx) / mobility(x)

    For a sampled sinusoid A sin(w t): activity A^2/2, mobility 2 sin(w/2)
    (-> w for slow sinusoids), complexity 1. NaN (no exception) for fewer than
    3 points or a constant series; NaNs in x propagate.
    """
    x = to_numpy(x).ravel()
    nan = float("nan")
    if x.size < 3:
        return Hjorth(nan, nan, nan)
    dx = np.diff(x)
    ddx = np.diff(dx)
    v0, v1, v2 = np.var(x), np.var(dx), np.var(ddx)
    with np.errstate(divide="ignore", invalid="ignore"):
        mobility = np.sqrt(v1 / v0) if v0 > 0 else np.float64(nan)
        mobility_dx = np.sqrt(v2 / v1) if v1 > 0 else np.float64(nan)
        complexity = mobility_dx / mobility if mobility > 0 else np.float64(nan)
    return Hjorth(float(v0), float(mobility), float(complexity))


@dataclass(frozen=True)
class SpectralEnergy:
    """Band energies of the detrended early loss (see :func:`spectral_energy`).
    ``n`` is the number of steps actually used."""

    total: float
    low: float
    high: float
    low_fraction: float
    n: int


def spectral_energy(train_loss, n: int = 400, cutoff: float = 0.05, log: bool = True) -> SpectralEnergy:
    """Fourier energy of the first ``n`` training-loss values, split into a
    low and a high band; our operationalisation of Notsawo et al.'s spectral
    signature ("the amplitude of the low-frequency components" of the early
    learning curve).

    Definition: y = ln(max(loss[:n], 1e-12)) (``log=False``: the raw loss);
    r = y minus its least-squares line (removes the overall decay); R = rfft(r);
    the energy of frequency f_k = k/n (cycles per step) is |R_k|^2 / n^2,
    doubled for 0 < k < n/2, so that the energies sum to mean(r^2) (Parseval).
    ``low`` = energy at 0 < f <= ``cutoff`` (default 0.05: periods of 20 steps
    or more), ``high`` = energy at f > cutoff, ``total`` = low + high,
    ``low_fraction`` = low / total. Fewer than 16 finite values: NaN.
    """
    y = to_numpy(train_loss).ravel()[:n]
    nan = float("nan")
    if y.size < 16 or not np.all(np.isfinite(y)):
        return SpectralEnergy(nan, nan, nan, nan, int(y.size))
    if log:
        y = np.log(np.maximum(y, 1e-12))
    t = np.arange(y.size, dtype=np.float64)
    slope, intercept = np.polyfit(t, y, 1)
    r = y - (slope * t + intercept)
    m = r.size
    power = np.abs(np.fft.rfft(r)) ** 2 / (m * m)
    k = np.arange(power.size)
    power[(k > 0) & (2 * k < m)] *= 2.0
    freqs = np.fft.rfftfreq(m)
    low = float(np.sum(power[(freqs > 0) & (freqs <= cutoff)]))
    high = float(np.sum(power[freqs > cutoff]))
    total = low + high
    return SpectralEnergy(total, low, high, low / total if total > 0 else nan, int(m))


def signature(train_loss, first: int = 400, cutoff: float = 0.05) -> dict[str, float]:
    """Small feature dict of the early training loss (Notsawo et al. 2023):
    Hjorth parameters of the raw loss over the first ``first`` steps
    (``activity``, ``mobility``, ``complexity``) and its band energies
    (:func:`spectral_energy` on the log loss: ``energy_total``,
    ``energy_low``, ``energy_high``, ``energy_low_fraction``). For the
    trailing-window variant call ``hjorth(loss[-window:])``."""
    x = to_numpy(train_loss).ravel()[:first]
    h = hjorth(x)
    e = spectral_energy(x, n=first, cutoff=cutoff)
    return {
        "activity": h.activity,
        "mobility": h.mobility,
        "complexity": h.complexity,
        "energy_total": e.total,
        "energy_low": e.low,
        "energy_high": e.high,
        "energy_low_fraction": e.low_fraction,
    }
