"""Train a small model on trn whose RMSNorm is the NKI kernel (NKI backward too).

Two copies of the same model (same init, same batches): one uses
``rmsnorm`` from ``rmsnorm.py`` (the forward and backward NKI kernels,
registered as torch ops with ``torch_trn3.nki.custom_op``), the other the
same RMSNorm as plain torch ops. The model computes in bf16 (its weights are
bf16; AdamW keeps them), so the two loss curves agree to bf16 tolerance. The
NKI model also trains under ``torch.compile(backend="trn3", fullgraph=True)``:
the custom ops are single graph nodes, forward and backward. Run:

    python examples/nki/train_rmsnorm.py
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import modelled_ms  # noqa: E402
from rmsnorm import rmsnorm, rmsnorm_reference  # noqa: E402


class RMSNorm(nn.Module):
    def __init__(self, dim: int, use_nki: bool, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.use_nki = use_nki
        self.eps = eps

    def forward(self, x):
        fn = rmsnorm if self.use_nki else rmsnorm_reference
        return fn(x, self.weight, self.eps)


class Block(nn.Module):
    """Pre-norm MLP block: x + W2 gelu(W1 norm(x))."""

    def __init__(self, dim: int, use_nki: bool):
        super().__init__()
        self.norm = RMSNorm(dim, use_nki)
        self.up = nn.Linear(dim, 4 * dim)
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return x + self.down(F.gelu(self.up(self.norm(x))))


class TinyModel(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int, use_nki: bool):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, use_nki) for _ in range(layers))
        self.norm = RMSNorm(dim, use_nki)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def make_model(use_nki: bool, vocab: int, dim: int, layers: int) -> TinyModel:
    torch.manual_seed(0)
    model = TinyModel(vocab, dim, layers, use_nki)
    with torch.no_grad():   # non-trivial norm weights, so dw matters from step 0
        for m in model.modules():
            if isinstance(m, RMSNorm):
                m.weight.uniform_(0.5, 1.5)
    return model.to(torch.bfloat16).to("trn")


def train(model, batches, lr: float, compile_model: bool = False):
    """Per-step (loss, modelled ms) of AdamW steps on ``batches``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    vocab = model.head.out_features
    step_model = torch.compile(model, backend="trn3", fullgraph=True) if compile_model else model

    def step(tokens, targets):
        logits = step_model(tokens)
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    out = []
    for tokens, targets in batches:
        loss, ms = modelled_ms(step, tokens, targets)
        out.append((loss.item(), ms))
    return out


def make_batches(steps: int, batch: int, seq: int, vocab: int):
    """A learnable task: predict the token after each one (t -> (3t + 1) mod vocab)."""
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(steps):
        tokens = torch.randint(0, vocab, (batch, seq), generator=g)
        batches.append((tokens.to("trn"), ((3 * tokens + 1) % vocab).to("trn")))
    return batches


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args(argv)
    batches = make_batches(args.steps, args.batch, args.seq, args.vocab)
    dims = (args.vocab, args.dim, args.layers)

    nki_run = train(make_model(True, *dims), batches, args.lr)
    torch_run = train(make_model(False, *dims), batches, args.lr)
    compiled_run = None
    if not args.no_compile:
        torch._dynamo.reset()
        compiled_run = train(make_model(True, *dims), batches, args.lr, compile_model=True)
    print(f"{'step':>4}  {'loss NKI':>9}  {'loss torch':>10}  {'rel diff':>8}"
          + ("  loss NKI compiled" if compiled_run else ""))
    max_rel = 0.0
    for i, ((ln, _), (lt, _)) in enumerate(zip(nki_run, torch_run)):
        rel = abs(ln - lt) / abs(lt)
        max_rel = max(max_rel, rel)
        extra = f"  {compiled_run[i][0]:18.4f}" if compiled_run else ""
        print(f"{i:4d}  {ln:9.4f}  {lt:10.4f}  {rel:8.2e}{extra}")
    steady = slice(1, None)   # step 0 includes compilation / first-call work
    ms = lambda run: sum(m for _, m in run[steady]) / max(1, len(run) - 1)  # noqa: E731
    print(f"max relative loss difference NKI vs torch: {max_rel:.2e} (bf16 tolerance 2e-2)")
    line = (f"modelled Trainium3 time per training step: NKI RMSNorm {ms(nki_run) * 1e3:.1f} us | "
            f"torch RMSNorm eager {ms(torch_run) * 1e3:.1f} us")
    if compiled_run:
        line += f" | NKI RMSNorm under torch.compile(trn3) {ms(compiled_run) * 1e3:.1f} us"
    print(line)
    return {"nki": nki_run, "torch": torch_run, "compiled": compiled_run, "max_rel": max_rel}


if __name__ == "__main__":
    main()
