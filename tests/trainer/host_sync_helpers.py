"""Counting device-to-host transfers in a training loop (the zero-transfer tests).

``record_host_syncs`` wraps the functions that may sync on their own cadence
(flushes, probes, checkpoints, snapshots) so they appear as ``("start", name)``
/ ``("end", name)`` events, and counts every ``.item()``, ``.cpu()``,
``.tolist()``, ``.numpy()``, ``float()``/``int()``/``index``/``bool`` on a
tensor made outside them as a ``("sync", "name from file:function")`` event.
"""

from __future__ import annotations

import sys

import torch

SYNC_METHODS = ("item", "cpu", "tolist", "numpy", "__float__", "__int__", "__index__", "__bool__")


def record_host_syncs(monkeypatch, module, fenced) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    depth = [0]

    def fence(fn, label):
        def wrapped(*a, **k):
            events.append(("start", label))
            depth[0] += 1
            try:
                return fn(*a, **k)
            finally:
                depth[0] -= 1
                events.append(("end", label))

        return wrapped

    for name in fenced:
        monkeypatch.setattr(module, name, fence(getattr(module, name), name))

    def counted(name, orig):
        def wrapped(self, *a, **k):
            caller = sys._getframe(1).f_code
            # the foreach AdamW (no fused kernel) reads its step counter, a CPU tensor even on CUDA
            host_counter = caller.co_name == "_get_value" and "optim" in caller.co_filename
            if depth[0] == 0 and not host_counter:
                events.append(("sync", f"{name} from {caller.co_filename}:{caller.co_name}"))
            return orig(self, *a, **k)

        return wrapped

    for name in SYNC_METHODS:
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    return events
