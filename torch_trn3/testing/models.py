"""The small decoder-only transformer the tests and benchmarks train.

One definition, so a test, a distributed scenario and a benchmark that say
"the decoder" measure the same model. It has what a language model's step
exercises on the device: an embedding, a learned position table, pre-norm
blocks of causal SDPA attention and a GELU MLP, dropout, LayerNorm and a
vocabulary head.

The attention has separate ``q``, ``k``, ``v``, ``o`` projections and views
heads as ``-1``: tensor parallelism shards ``q/k/v`` column-wise and ``o``
row-wise (``tests/distributed/training.py``), so each rank holds only its
heads. Attention projections and the head have no bias (as in most current
decoders); the MLP has one, so ``addmm`` and its backward are exercised too.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    """Causal multi-head self-attention through ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        # -1 heads: under tensor parallelism q/k/v hold this rank's heads only
        q, k, v = (p(x).view(b, t, -1, self.head_dim).transpose(1, 2) for p in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.w1(x)))


class Block(nn.Module):
    """Pre-norm residual block; ``dropout`` on both branches (0: no dropout op)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, 4 * dim)
        # Identity, not Dropout(0): no op at all, so runs without dropout
        # charge and draw exactly what a model without the layer would.
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class TinyDecoder(nn.Module):
    """Decoder-only transformer: ``tokens [batch, <= seq]`` -> logits ``[batch, len, vocab]``.

    The defaults are the tests' size (runs in milliseconds on the host);
    :data:`BENCHMARK_DECODER` is the benchmarks'.
    """

    def __init__(self, vocab: int = 64, dim: int = 32, heads: int = 4, layers: int = 2,
                 seq: int = 16, dropout: float = 0.0):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(seq, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


#: The benchmarks' decoder (``benchmarks/common.py``): 4 layers, d_model 256.
BENCHMARK_DECODER = dict(vocab=512, dim=256, heads=4, layers=4, seq=128, dropout=0.1)


def lm_loss(model, idx: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of ``model`` on ``idx [batch, len + 1]``
    (logits upcast to fp32, as mixed-precision training does)."""
    logits = model(idx[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), idx[:, 1:].reshape(-1))
