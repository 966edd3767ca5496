"""Array conversion shared by the observables (no torch import: duck-typed)."""

from __future__ import annotations

import numpy as np


def to_numpy(x, dtype=np.float64) -> np.ndarray:
    """Return ``x`` as a numpy array of ``dtype``.

    Torch tensors are recognised by their ``detach`` method and converted on
    the host in double precision first (so bfloat16/half tensors survive);
    anything else goes through ``np.asarray``.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=dtype)


def flatten_params(params) -> np.ndarray:
    """Concatenate a dict (in its own order) or sequence of arrays/tensors into
    one flat float64 vector; a single array is just flattened."""
    if isinstance(params, dict):
        parts = list(params.values())
    elif isinstance(params, (list, tuple)):
        parts = list(params)
    else:
        return to_numpy(params).ravel()
    if not parts:
        return np.zeros(0)
    return np.concatenate([to_numpy(p).ravel() for p in parts])
