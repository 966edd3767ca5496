"""Heavy-Tailed Self-Regularization (HTSR) metrics of a weight matrix.

Sources: C. H. Martin & M. W. Mahoney, "Implicit Self-Regularization in Deep
Neural Networks" (JMLR 2021) and "Heavy-Tailed Universality Predicts Trends in
Test Accuracies" (Nature Comms 2021); the grokking use of alpha < 2 and of
correlation traps is from Prakash & Martin, "Grokking and Generalization
Collapse: Insights from HTSR theory" (2025). The conventions follow the
reference implementation, WeightWatcher 0.7.x (``weightwatcher/WW_powerlaw.py``
``WWFit.fit_power_law_standard`` for the default ``pl_package='ww'`` fit, and
``WeightWatcher.mp_fit`` / ``random_eigenvalues`` for ``rand_num_spikes``);
the power-law fit itself is Clauset, Shalizi & Newman, "Power-law
distributions in empirical data" (SIAM Review 2009).

Only numpy and scipy; torch tensors are accepted and converted by duck typing.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from observables._arrays import to_numpy

#: eigenvalues at or below this are dropped before the fit (WW ``EVALS_THRESH``).
EVALS_THRESH = 1e-5
#: fewer eigenvalues than this give no fit (WW ``MIN_NUM_EVALS``).
MIN_EVALS = 8
#: WeightWatcher pools this many shuffles when the matrix has < 100 eigenvalues.
SMALL_MATRIX_REPLICAS = 5

_CHUNK_ELEMENTS = 1 << 22  # bound on the (candidates x eigenvalues) KS block


@dataclass(frozen=True)
class PowerLawFit:
    """Result of :func:`fit_alpha` / :func:`fit_power_law`.

    ``alpha``: power-law exponent of the ESD tail; ``sigma``: (alpha - 1) /
    sqrt(n_tail), WeightWatcher's standard error; ``xmin``: start of the tail;
    ``ks_distance``: Kolmogorov-Smirnov distance of the winning fit (WW's
    ``D``); ``n_tail``: eigenvalues in the tail; ``n_evals``: eigenvalues above
    1e-5 that entered the fit; ``reason``: None when the fit is defined, else
    why every float field is NaN.
    """

    alpha: float
    sigma: float
    xmin: float
    ks_distance: float
    n_tail: int
    n_evals: int
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _failed(reason: str, n_evals: int = 0) -> PowerLawFit:
    nan = float("nan")
    return PowerLawFit(nan, nan, nan, nan, 0, n_evals, reason)


def esd(W) -> np.ndarray:
    """Empirical spectral density of ``W`` as WeightWatcher computes it: the
    squared singular values svd(W)**2 (min(rows, cols) of them, NOT divided by
    the matrix size), ascending, computed in float64."""
    W = to_numpy(W)
    if W.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {W.shape}")
    sv = np.linalg.svd(W, compute_uv=False)
    return np.sort(sv * sv)


def fit_power_law(evals) -> PowerLawFit:
    """Fit a power law p(x) ~ x^-alpha to the tail of the eigenvalues ``evals``.

    Definition (WeightWatcher 0.7.x ``WWFit.fit_power_law_standard``, the
    default ``pl_package='ww'``; Clauset et al. 2009):

    - keep eigenvalues > 1e-5 and sort them, x_1 <= ... <= x_N;
    - every x_i but the largest is a candidate xmin; its tail is x_i..x_N,
      n_i = N - i + 1 values (the xmin itself included);
    - alpha_i = 1 + n_i / sum_{j>=i} ln(x_j / x_i) (maximum likelihood);
    - D_i = max_{j>=i} | 1 - (x_j/x_i)^(1-alpha_i) - (j-i)/n_i |, the KS distance
      between the fitted power-law CDF and the empirical tail CDF (WW's
      left-continuous empirical CDF, 0, 1/n, ..., (n-1)/n); D_i = 1 when
      alpha_i <= 1;
    - the candidate with the smallest D wins (first one on ties);
      sigma = (alpha - 1) / sqrt(n_tail).

    The scan over candidates is vectorised (chunks of candidates x eigenvalues).
    Difference from WW 0.7.7: WW switches to a bias-corrected small-sample
    objective below 20 eigenvalues; this function applies the standard rule
    down to 8. Fewer than 8 eigenvalues, or non-finite ones, give NaN with a
    ``reason`` (never an exception).
    """
    x = to_numpy(evals).ravel()
    if not np.all(np.isfinite(x)):
        return _failed("non-finite eigenvalues")
    x = np.sort(x[x > EVALS_THRESH])
    n_total = x.size
    if n_total < MIN_EVALS:
        return _failed(
            f"{n_total} eigenvalues above {EVALS_THRESH:g}; need at least {MIN_EVALS}",
            n_total,
        )

    log_x = np.log(x)
    n_cand = n_total - 1
    idx = np.arange(n_cand)
    n_tail = (n_total - idx).astype(np.float64)
    suffix = np.cumsum(log_x[::-1])[::-1]  # suffix[i] = sum_{j>=i} ln x_j
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + n_tail / (suffix[:n_cand] - n_tail * log_x[:n_cand])

    ds = np.ones(n_cand)
    j = np.arange(n_total)
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // n_total)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, n_cand, rows_per_chunk):
            i = idx[start : start + rows_per_chunk]
            a = alphas[i][:, None]
            n = n_tail[i][:, None]
            fitted = 1.0 - (x[None, :] / x[i][:, None]) ** (1.0 - a)
            empirical = (j[None, :] - i[:, None]) / n
            gap = np.abs(fitted - empirical)
            gap[j[None, :] < i[:, None]] = 0.0  # only the tail j >= i counts
            d = gap.max(axis=1)
            ds[i] = np.where((alphas[i] > 1.0) & np.isfinite(d), d, 1.0)

    best = int(np.argmin(ds))
    alpha = float(alphas[best])
    if not math.isfinite(alpha):
        return _failed("degenerate spectrum (tail of equal eigenvalues)", n_total)
    tail = int(n_total - best)
    return PowerLawFit(
        alpha=alpha,
        sigma=(alpha - 1.0) / math.sqrt(tail),
        xmin=float(x[best]),
        ks_distance=float(ds[best]),
        n_tail=tail,
        n_evals=n_total,
    )


def fit_alpha(W) -> PowerLawFit:
    """HTSR alpha of the weight matrix ``W`` (numpy array or torch tensor).

    The ESD is svd(W)**2 (see :func:`esd`; WeightWatcher convention, not
    divided by N), computed in float64 (half/bfloat16 tensors are upcast
    first); its tail is fitted by :func:`fit_power_law` (maximum-likelihood
    alpha, xmin by the smallest KS distance; Clauset et al. 2009 as
    implemented by WeightWatcher 0.7.x, Martin & Mahoney 2021). alpha < 2
    marks an over-correlated layer; a small matrix or a large KS distance
    makes alpha unreliable.

    Never raises for bad values: NaN/inf entries, an all-zero matrix or fewer
    than 8 eigenvalues above 1e-5 give NaN fields and a ``reason``. A W that
    is not 2-D is a programming error and raises ValueError.
    """
    W = to_numpy(W)
    if W.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {W.shape}")
    if W.size == 0:
        return _failed("empty matrix")
    if not np.all(np.isfinite(W)):
        return _failed("non-finite entries in W")
    return fit_power_law(esd(W))


# --------------------------------------------------------------------------
# Correlation traps (WeightWatcher rand_num_spikes)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class MarchenkoPasturFit:
    """Result of :func:`marchenko_pastur_fit`: ``num_spikes`` eigenvalues above
    ``bulk_max_tw``; ``sigma`` the fitted MP scale; ``bulk_max`` the MP bulk
    edge (sigma (1 + 1/sqrt(Q)))^2; ``bulk_max_tw`` the edge plus the
    Tracy-Widom margin; ``q`` = N/M; all on the mean-1 rescaled eigenvalues."""

    num_spikes: int
    sigma: float
    bulk_max: float
    bulk_max_tw: float
    q: float


def _linear_kde(samples: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Density of a linear (triangular) kernel estimate, the kernel WeightWatcher
    uses (sklearn ``KernelDensity(kernel='linear')``): (1/h) max(0, 1 - |u|/h)."""
    u = np.abs(grid[:, None] - samples[None, :]) / bandwidth
    return np.clip(1.0 - u, 0.0, None).sum(axis=1) / (samples.size * bandwidth)


def marchenko_pastur_fit(evals, n: int, m: int, bandwidth: float = 0.1) -> MarchenkoPasturFit:
    """Fit a Marchenko-Pastur density to ``evals`` and count the spikes beyond
    its bulk edge plus a Tracy-Widom margin (WeightWatcher ``mp_fit``).

    Definition (WW 0.7.x, with ``rescale=True``): Q = n/m (n >= m the matrix
    dims); the eigenvalues are rescaled to mean 1; a linear-kernel density
    estimate (bandwidth 0.1, on 1000 points over [0, max + 0.5], keeping the
    points of density > 0.01) is matched in least squares by the MP density
    of scale sigma (by the quarter-circle law on sqrt(evals) when Q = 1),
    sigma found by ``scipy.optimize.brute`` over [0.05, 2) x sigma0 in steps of
    0.01 x sigma0, sigma0 = sqrt(lambda_max) / (1 + 1/sqrt(Q)), MP candidates
    whose edges miss the density's mode or range being penalised; then
    bulk_max = (sigma (1 + 1/sqrt(Q)))^2, TW = Q^(-1/2) bulk_max^(2/3) m^(-2/3),
    and spikes are the eigenvalues > bulk_max + sqrt(TW).
    """
    from scipy import optimize

    ev = np.sort(to_numpy(evals).ravel())
    q = float(n) / float(m)
    ev = ev * (ev.size / np.sum(ev))  # mean 1 (WW: Wscale^2 = len / sum)
    sigma0 = math.sqrt(float(np.max(ev))) / (1.0 + 1.0 / math.sqrt(q))
    to_fit = np.sqrt(ev) if q == 1.0 else ev

    xde = np.linspace(0.0, float(np.max(to_fit)) + 0.5, 1000)
    yde = _linear_kde(to_fit, xde, bandwidth)
    good = yde > 0.01
    xde, yde = xde[good], yde[good]
    mode = xde[np.argmax(yde)]
    top = np.max(xde)
    penalty = 1000.0**2 * xde.size

    def objective(p):
        s = float(np.asarray(p).ravel()[0])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            if q == 1.0:
                ymp = np.nan_to_num((1.0 / (np.pi * s * s)) * np.sqrt(4.0 - xde**2))
            else:
                b = (s * (1.0 + math.sqrt(1.0 / q))) ** 2
                a = (s * (1.0 - math.sqrt(1.0 / q))) ** 2
                if b < mode or b > top or a > mode:
                    return penalty
                ymp = np.nan_to_num((1.0 / (2.0 * np.pi * s * s * xde * (1.0 / q))) * np.sqrt((b - xde) * (xde - a)))
            return float(np.sum((ymp - yde) ** 2))

    grid = (slice(0.05 * sigma0, 2.0 * sigma0, 0.01 * sigma0),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = float(np.asarray(optimize.brute(objective, grid, full_output=True)[0]).ravel()[0])

    bulk_max = (sigma * (1.0 + 1.0 / math.sqrt(q))) ** 2
    tw = 1.0 / math.sqrt(q) * bulk_max ** (2.0 / 3.0) * float(m) ** (-2.0 / 3.0)
    edge = bulk_max + math.sqrt(tw)
    return MarchenkoPasturFit(int(np.sum(ev > edge)), sigma, bulk_max, edge, q)


def shuffled_esd(W, seed) -> np.ndarray:
    """ESD of the element-wise shuffled ``W`` (seeded ``numpy.random.Generator``);
    like WeightWatcher, pools 5 independent shuffles when W has < 100
    eigenvalues."""
    W = to_numpy(W)
    rng = np.random.default_rng(seed)
    replicas = SMALL_MATRIX_REPLICAS if min(W.shape) < 100 else 1
    flat = W.ravel()
    out = [esd(rng.permutation(flat).reshape(W.shape)) for _ in range(replicas)]
    return np.sort(np.concatenate(out))


def correlation_traps(W, seed=0) -> int:
    """Number of correlation traps of ``W``: eigenvalues of the element-wise
    shuffled W beyond the Marchenko-Pastur bulk edge plus a Tracy-Widom margin.

    Definition: WeightWatcher's ``rand_num_spikes`` (``num_traps``) rule —
    shuffle the entries of W (destroying correlations but keeping the entry
    distribution; 5 shuffles pooled when min(W.shape) < 100, as WW does),
    take svd**2, and count with :func:`marchenko_pastur_fit` (eigenvalues
    rescaled to mean 1, MP sigma fitted to the bulk, spikes above
    bulk_max + sqrt(TW)). A spike that survives shuffling comes from a few
    abnormally large entries: a "correlation trap" (Martin & Mahoney; Prakash
    & Martin 2025). Seeded: the same ``seed`` gives the same count.

    Returns -1 (WW's failure value) when the count is undefined: non-finite
    entries, an all-zero matrix, or fewer than 8 eigenvalues (min dim < 8).
    """
    W = to_numpy(W)
    if W.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {W.shape}")
    m, n = sorted(W.shape)
    if m < MIN_EVALS or not np.all(np.isfinite(W)) or not np.any(W):
        return -1
    return marchenko_pastur_fit(shuffled_esd(W, seed), n, m).num_spikes
