"""The task's examples and split, and the model's last-position shortcut and init."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.config import TrainConfig
from trainer.model import ModelConfig, Transformer, count_params
from trainer.task import loss_and_acc, make_dataset


@pytest.mark.parametrize(
    "op, fn",
    [
        ("add", lambda a, b, p: (a + b) % p),
        ("sub", lambda a, b, p: (a - b) % p),
        ("mul", lambda a, b, p: (a * b) % p),
        ("div", lambda a, b, p: (a * pow(b, -1, p)) % p),
    ],
)
def test_examples_are_right(op, fn):
    p = 11
    s = make_dataset(op, p, 0.5, seed=3)
    x = torch.cat([s.train_x, s.val_x])
    y = torch.cat([s.train_y, s.val_y])
    n = p * (p - 1) if op == "div" else p * p
    assert len(x) == n and len({tuple(r) for r in x.tolist()}) == n  # every pair once
    assert (x[:, 1] == p).all() and (x[:, 3] == p + 1).all()  # a, op, b, =
    for (a, _, b, _), c in zip(x.tolist(), y.tolist()):
        assert c == fn(a, b, p)
    if op == "div":
        assert (x[:, 2] != 0).all()
    assert len(s.train_x) == int(0.5 * n)


def test_split_depends_on_seed_only():
    a, b, c = (make_dataset("add", 13, 0.3, seed) for seed in (0, 0, 1))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.train_x, c.train_x)


def test_last_position_logits_match_the_full_model():
    """The shortcut (query, MLP and unembed at the last position only) gives the
    same logits as computing every position, and so the same gradients."""
    torch.manual_seed(0)
    for n_layers in (1, 2):
        m = Transformer(ModelConfig(vocab_size=13, n_layers=n_layers, d_model=32, n_heads=4, d_mlp=64)).double()
        x = make_dataset("add", 11, 0.5, 0).train_x[:40]
        fast = m(x)
        h = m.embed(x) + m.pos
        for block in m.blocks:
            h = block(h, last_only=False)
        full = m.unembed(h)[:, -1]
        assert torch.allclose(fast, full, atol=1e-12)


def test_init_follows_nanda():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=99, d_model=128, n_heads=4, d_mlp=820)
    m = Transformer(cfg)
    assert math.isclose(m.embed.weight.std().item(), 1 / math.sqrt(128), rel_tol=0.05)
    assert math.isclose(m.pos.std().item(), 1 / math.sqrt(128), rel_tol=0.25)  # only 512 entries
    b = m.blocks[0]
    assert math.isclose(b.mlp.W_out.weight.std().item(), 1 / math.sqrt(820), rel_tol=0.05)  # fan_in = d_mlp
    assert math.isclose(b.attn.W_Q.weight.std().item(), 1 / math.sqrt(128), rel_tol=0.05)
    assert b.mlp.W_in.bias.abs().sum() == 0 and b.mlp.W_out.bias.abs().sum() == 0
    assert not any("ln" in n or "norm" in n for n, _ in m.named_parameters())  # no LayerNorm
    assert count_params(cfg) == sum(p.numel() for p in m.parameters()) == TrainConfig.from_preset("canonical").n_params


def test_layer_groups_cover_every_parameter_once():
    m = Transformer(ModelConfig(vocab_size=49, n_layers=2, d_model=16, n_heads=2, d_mlp=32))
    groups = m.layer_groups()
    assert list(groups) == ["embed", "pos", "attn0", "mlp0", "attn1", "mlp1", "unembed"]
    names = [n for ns in groups.values() for n in ns]
    assert sorted(names) == sorted(n for n, _ in m.named_parameters())
    assert list(Transformer(ModelConfig(vocab_size=49, d_model=16, n_heads=2, d_mlp=32)).layer_groups()) == [
        "embed",
        "pos",
        "attn",
        "mlp",
        "unembed",
    ]


def test_loss_and_accuracy_on_the_answer():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    loss, acc = loss_and_acc(logits, torch.tensor([0, 2]))
    assert acc.item() == 0.5 and loss.dtype == torch.float64 and loss.item() > 0
