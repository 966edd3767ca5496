"""The grokking transformer, in one file: a config dataclass and the modules, no loop.

Decoder-only, one or more blocks, no LayerNorm, learned positional embeddings,
causal multi-head attention, a ReLU MLP and a separate unembedding: the model of
Nanda et al., "Progress measures for grokking via mechanistic interpretability"
(2023), whose initialisation it also uses (PyTorch's default init does not grok
within the step budget).

The task reads only the answer, at the last position (the '=' token), so the
last block computes its query, MLP and logits there alone: the loss and every
gradient are the same as with logits at all positions, and a CPU step is 2-3x
cheaper. Earlier blocks still compute every position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab_size: int  # p numbers + one op token + '='
    n_ctx: int = 4  # a, op, b, =
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


class Attention(nn.Module):
    mask: torch.Tensor  # a buffer (register_buffer), not a Module

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.d_model % cfg.n_heads == 0
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.W_Q = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.W_K = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.W_V = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.W_O = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        mask = torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor, last_only: bool) -> torch.Tensor:
        B, T, C = x.shape
        H, D = self.n_heads, self.d_head
        k = self.W_K(x).view(B, T, H, D).transpose(1, 2)  # B H T D
        v = self.W_V(x).view(B, T, H, D).transpose(1, 2)
        if last_only:
            # the last query sees every key: no mask needed
            q = self.W_Q(x[:, -1:]).view(B, 1, H, D).transpose(1, 2)  # B H 1 D
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
        else:
            q = self.W_Q(x).view(B, T, H, D).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
            att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, q.shape[2], C)
        return self.W_O(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_in = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.W_out = nn.Linear(cfg.d_mlp, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.W_out(F.relu(self.W_in(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        a = self.attn(x, last_only)
        x = (x[:, -1:] if last_only else x) + a
        return x + self.mlp(x)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Nanda et al.'s init: weight matrices N(0, 1/fan_in), embeddings and
        positions N(0, 1/d_model), zero biases."""
        std = 1.0 / math.sqrt(self.cfg.d_model)
        nn.init.normal_(self.embed.weight, std=std)
        nn.init.normal_(self.pos, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx [B, T] token ids -> logits [B, vocab] at the last position."""
        x = self.embed(idx) + self.pos[: idx.shape[1]]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, last_only=(i == last))
        return self.unembed(x[:, -1])

    def layer_groups(self) -> dict[str, list[str]]:
        """Parameter names by layer group (embed, pos, attn, mlp, unembed), for
        the per-layer norms. With several blocks: attn0, mlp0, attn1, ..."""
        groups: dict[str, list[str]] = {"embed": [], "pos": []}
        n = len(self.blocks)
        for i in range(n):
            groups["attn" if n == 1 else f"attn{i}"] = []
            groups["mlp" if n == 1 else f"mlp{i}"] = []
        groups["unembed"] = []
        for name, _ in self.named_parameters():
            head = name.split(".")[0]
            if head == "blocks":
                i, kind = int(name.split(".")[1]), name.split(".")[2]
                groups[kind if n == 1 else f"{kind}{i}"].append(name)
            else:
                groups[head].append(name)
        return groups

    def matrices(self) -> dict[str, torch.Tensor]:
        """The 2-D weight matrices by a short name (attn.W_Q, mlp.W_in, ...), for probes.
        Shapes as stored: nn.Linear weights are [out, in]."""
        out = {"embed": self.embed.weight}
        n = len(self.blocks)
        for i, m in enumerate(self.blocks):
            b = cast(Block, m)  # ModuleList items are typed as Module
            sfx = "" if n == 1 else str(i)
            for w in ("W_Q", "W_K", "W_V", "W_O"):
                out[f"attn{sfx}.{w}"] = getattr(b.attn, w).weight
            out[f"mlp{sfx}.W_in"] = b.mlp.W_in.weight
            out[f"mlp{sfx}.W_out"] = b.mlp.W_out.weight
        out["unembed"] = self.unembed.weight
        return out


def count_params(cfg: ModelConfig) -> int:
    """Exact parameter count, without allocating (built on the meta device)."""
    with torch.device("meta"):
        return sum(p.numel() for p in Transformer(cfg).parameters())
