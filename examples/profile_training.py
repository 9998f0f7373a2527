"""Profile one training step of a small decoder-only transformer on trn.

Runs a GPT-style model (token + position embeddings, pre-norm blocks of
causal self-attention and a GELU MLP, tied LM head) under bf16 autocast with
AdamW, profiles a few steps with ``torch_trn3.profiler`` and prints the
summary: modelled step time, MFU/HFU, engine activity, top ops and advice.
It also writes a Chrome/Perfetto trace and (if matplotlib is installed) a
PNG timeline.

    python examples/profile_training.py [--steps 3] [--out-dir trn_profile] [--compile trn3]

``--compile inductor`` or ``--compile trn3`` compiles the model first, so the
summary shows what fusion buys in modelled time and HBM traffic.
"""
from __future__ import annotations

import argparse
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_trn3  # noqa: F401  (registers "trn" if autoload is off)
import torch_trn3.profiler as tp


# A self-contained GPT (tied head, position embedding, scaled init) rather
# than torch_trn3.testing's decoder that the tests and benchmarks share: an
# example is read and copied on its own, and shows the whole model it profiles.
class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.up = nn.Linear(d_model, 4 * d_model, bias=False)
        self.down = nn.Linear(4 * d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, d_model: int, n_heads: int, n_layers: int, max_len: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied embeddings
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02 / math.sqrt(n_layers))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def train_step(model, opt, idx, targets):
    with torch.autocast("trn", dtype=torch.bfloat16):
        logits = model(idx)
        with tp.scope("loss"):
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--compile", default="", metavar="BACKEND",
                        help="torch.compile the model with this backend (inductor, trn3)")
    parser.add_argument("--out-dir", default="trn_profile",
                        help="where the trace JSON and PNG go ('' to skip)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = GPT(args.vocab, args.d_model, args.heads, args.layers, args.seq).to("trn")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=False, foreach=False)
    idx = torch.randint(0, args.vocab, (args.batch, args.seq), device="trn")
    targets = torch.randint(0, args.vocab, (args.batch, args.seq), device="trn")
    if args.compile:
        model = torch.compile(model, backend=args.compile)

    train_step(model, opt, idx, targets)  # warm-up: optimizer state, first-use costs

    with tp.profile() as prof:
        for _ in range(args.steps):
            loss = train_step(model, opt, idx, targets)
            prof.step()
    print(f"loss {loss.item():.4f} after {args.steps + 1} steps "
          f"(model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters)\n")
    print(prof.summary())

    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        trace = prof.export_chrome_trace(os.path.join(args.out_dir, "trace.json"))
        print(f"\ntrace: {trace} (open in https://ui.perfetto.dev)")
        try:
            print(f"picture: {prof.plot(os.path.join(args.out_dir, 'profile.png'))}")
        except ImportError as e:
            print(f"picture skipped: {e}")


if __name__ == "__main__":
    main()
