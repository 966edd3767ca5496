"""Small torch helpers for the observables that evaluate a model (imported
only from inside functions, so ``import observables`` never loads torch)."""

from __future__ import annotations

import contextlib


def math_attention():
    """Context in which ``F.scaled_dot_product_attention`` uses its plain
    "math" kernel. The fused kernels (flash, memory-efficient) have neither
    a double backward (needed for Hessian-vector products) nor a vmap
    batching rule (needed for batched loss slices); the math kernel is made
    of ordinary ops that have both. A no-op where torch lacks
    ``torch.nn.attention``."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)
