"""Effective rank, trajectory helpers, and import hygiene of the package."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from observables import rank, trajectory

REPO = Path(__file__).resolve().parents[2]


def test_effective_rank_closed_forms():
    assert rank.effective_rank(np.eye(7)) == pytest.approx(7.0)
    assert rank.effective_rank(np.outer(np.arange(1.0, 6.0), np.ones(4))) == pytest.approx(1.0)
    # singular values 3, 1 -> p = (3/4, 1/4)
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((6, 2)))
    V, _ = np.linalg.qr(rng.standard_normal((5, 2)))
    W = U @ np.diag([3.0, 1.0]) @ V.T
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert rank.effective_rank(W) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(rank.effective_rank(np.zeros((3, 3))))
    assert math.isnan(rank.effective_rank(np.full((3, 3), np.nan)))


def test_effective_rank_accepts_torch():
    torch = pytest.importorskip("torch")
    assert rank.effective_rank(torch.eye(5, dtype=torch.bfloat16)) == pytest.approx(5.0)


def test_update_cosine():
    u = np.array([1.0, 2.0, -1.0])
    assert trajectory.update_cosine(u, 3 * u) == pytest.approx(1.0)
    assert trajectory.update_cosine(u, -u) == pytest.approx(-1.0)
    assert trajectory.update_cosine(u, np.array([2.0, -1.0, 0.0])) == pytest.approx(0.0)
    a = {"w": np.array([[1.0, 0.0]]), "b": np.array([1.0])}
    b = {"w": np.array([[1.0, 1.0]]), "b": np.array([0.0])}
    assert trajectory.update_cosine(a, b) == pytest.approx(1 / (math.sqrt(2) * math.sqrt(2)))
    assert math.isnan(trajectory.update_cosine(u, np.zeros(3)))


def test_pca_variance_share_closed_form():
    # centred, mutually orthogonal time courses along orthonormal directions
    T, P = 64, 30
    t = 2 * np.pi * np.arange(T) / T
    courses = [5 * np.cos(t), 2 * np.sin(t), 1 * np.cos(2 * t)]
    dirs = np.linalg.qr(np.random.default_rng(1).standard_normal((P, 3)))[0].T
    X = 7.0 + sum(np.outer(c, d) for c, d in zip(courses, dirs))
    energy = [np.sum(c**2) for c in courses]
    assert trajectory.pca_variance_share(X, k=2) == pytest.approx((energy[0] + energy[1]) / sum(energy), rel=1e-9)
    assert trajectory.pca_variance_share(X, k=1) == pytest.approx(energy[0] / sum(energy), rel=1e-9)
    assert trajectory.pca_variance_share(list(X), k=3) == pytest.approx(1.0)
    assert math.isnan(trajectory.pca_variance_share(X[:1]))


def test_weight_norms():
    params = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert trajectory.weight_norm(params) == pytest.approx(5.0)
    assert trajectory.layer_norms(params) == {"a": 3.0, "b": 4.0}


def test_import_is_light():
    """A fresh interpreter importing every observables module loads no torch,
    ripser or sklearn (they are imported inside the functions that need them)."""
    code = (
        "import sys, observables\n"
        "from observables import htsr, topology, gai, spectral, commutator, rank, curvature, trajectory\n"
        "heavy = [m for m in ('torch', 'ripser', 'sklearn', 'weightwatcher') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('grokwatch', 'trainer', 'slurm')]\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
