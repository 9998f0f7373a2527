"""The Tensor Engine's BF16 accumulation mode for matmuls on trn.

By default the Tensor Engine accumulates over K in FP32 (PSUM) and rounds
the result once: that is what the CPU kernels compute, so trn matmuls equal
CPU matmuls. The hardware also offers a cheaper mode (TRN3_FACTS: "an option
accumulates 128 elements in FP32 and then downcasts to BF16"): each
128-element chunk of K is summed in FP32, rounded to BF16, and the chunks
are added into a BF16 accumulator (rounding after every add). Users who run
that mode on the chip can reproduce its numerics here:

    torch_trn3.set_matmul_accumulation("bf16")   # "fp32" (default) restores

It applies to bfloat16 matmuls (mm, addmm, bmm, baddbmm) on trn; other
dtypes keep FP32 accumulation. The chip model charges the same Tensor Engine
time either way.
"""
from __future__ import annotations

import torch

from . import _aten_kernels, chip_model

#: K elements summed in FP32 before the downcast (one pass of the 128-row array).
CHUNK_K = 128
MODES = ("fp32", "bf16")

_lib = None


def _bf16_accumulated(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (..., M, K) @ b (..., K, N) in bf16: FP32 sums per 128-element K chunk, BF16 adds between."""
    k = a.shape[-1]
    acc = None
    for start in range(0, k, CHUNK_K):
        part = a[..., start:start + CHUNK_K].float() @ b[..., start:start + CHUNK_K, :].float()
        part = part.to(torch.bfloat16)
        acc = part if acc is None else (acc.float() + part.float()).to(torch.bfloat16)
    if acc is None:  # K == 0
        acc = torch.zeros(*a.shape[:-1], b.shape[-1], dtype=torch.bfloat16, device=a.device)
    return acc


def _is_bf16(*tensors: torch.Tensor) -> bool:
    return all(t.dtype == torch.bfloat16 for t in tensors)


def _fp32_default(op, *args, **kwargs) -> torch.Tensor:
    """Non-bf16 matmuls keep FP32 accumulation: the CPU kernel on zero-copy
    CPU views of the operands (this module's kernels replace the default
    trn kernel while the mode is on)."""
    from . import _C

    views = [_C._cpu_view(t) if isinstance(t, torch.Tensor) else t for t in args]
    return op(*views, **kwargs).to(args[0].device)


def _matmul_kernel(name: str, n_operands: int):
    """The trn kernel of aten::``name`` in BF16-accumulation mode."""
    op = getattr(torch.ops.aten, name).default

    def kernel(*args, beta=1, alpha=1):
        tensors = args[:n_operands]
        scaled = n_operands == 3
        extra = {"beta": beta, "alpha": alpha} if scaled else {}
        with chip_model.uncharged():
            if not _is_bf16(*tensors):
                out = _fp32_default(op, *tensors, **extra)
            else:
                prod = _bf16_accumulated(*tensors[-2:])
                if scaled:  # beta * bias + alpha * product, rounded once to bf16
                    bias = tensors[0].float() * beta if beta != 0 else 0.0
                    prod = (bias + alpha * prod.float()).to(torch.bfloat16)
                out = prod
        chip_model.charge(f"aten::{name}", list(tensors), [out])
        return out

    return kernel


_KERNELS = {"mm": 2, "bmm": 2, "addmm": 3, "baddbmm": 3}


def set_matmul_accumulation(mode: str) -> None:
    """Selects the Tensor Engine accumulation for bf16 matmuls on trn: "fp32"
    (default, equals the CPU) or "bf16" (FP32 per 128-element K chunk, BF16
    between chunks)."""
    global _lib
    if mode not in MODES:
        raise ValueError(f"matmul accumulation {mode!r} is not supported: allowed values are {MODES}")
    if mode == "fp32":
        if _lib is not None:
            _lib._destroy()
            _lib = None
        return
    if _lib is None:
        _lib = _aten_kernels.register(
            {name: _matmul_kernel(name, n) for name, n in _KERNELS.items()})


def get_matmul_accumulation() -> str:
    return "fp32" if _lib is None else "bf16"
