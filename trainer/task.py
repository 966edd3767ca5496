"""The grokking task: ``a op b mod p`` (Power et al. 2022; Nanda et al. 2023).

Every pair (a, b) is one example, the sequence ``a, op, b, =`` with the answer
``c`` read at the '=' position. Tokens 0..p-1 are the numbers, ``p`` the op and
``p + 1`` the '='. For div, b ranges over 1..p-1 and ``a / b = a * b^(p-2)``
(p prime). The pairs are shuffled with the run's seed and the first
``train_frac`` of them train; the rest validate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The task's arithmetic, shared with the config's checks (which run without torch).
from grokwatch.runs.training import OPS, is_prime, n_examples, n_train, vocab_size

__all__ = ["OPS", "Split", "is_prime", "loss_and_acc", "make_dataset", "n_examples", "n_train", "vocab_size"]


@dataclass
class Split:
    train_x: torch.Tensor  # [n_train, 4] int64
    train_y: torch.Tensor  # [n_train] int64
    val_x: torch.Tensor
    val_y: torch.Tensor

    def to(self, device: torch.device | str) -> Split:
        return Split(*(t.to(device) for t in (self.train_x, self.train_y, self.val_x, self.val_y)))


def make_dataset(op: str, p: int, train_frac: float, seed: int) -> Split:
    """All examples of ``a op b mod p``, split by ``train_frac`` with ``seed``."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    if op == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
    if op == "add":
        c = (a + b) % p
    elif op == "sub":
        c = (a - b) % p
    elif op == "mul":
        c = (a * b) % p
    else:
        inv = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])  # Fermat: b^(p-2) = 1/b
        c = (a * inv[b]) % p
    x = torch.stack([a, torch.full_like(a, p), b, torch.full_like(a, p + 1)], dim=1)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    k = int(train_frac * len(x))
    tr, va = perm[:k], perm[k:]
    return Split(x[tr], c[tr], x[va], c[va])


def loss_and_acc(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and accuracy of the answer logits [B, vocab] (on device, no sync).

    The loss is computed in float64, as Nanda et al. do: once the training loss
    is near zero, float32 softmax rounds its gradient away ("softmax collapse")."""
    loss = F.cross_entropy(logits.to(torch.float64), y)
    acc = (logits.argmax(dim=-1) == y).to(logits.dtype).mean()
    return loss, acc
