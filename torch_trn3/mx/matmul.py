"""MX matrix multiplies with Tensor Engine numerics.

The Tensor Engine multiplies MX operands block by block and accumulates in
FP32 PSUM; the output is rounded once. Here each operand is dequantized to
float32 (exact: element * power-of-two scale), multiplied in float32 and
rounded once to ``out_dtype``. Products of two dequantized elements are exact
in float32 too, so only the accumulation order can differ from the chip.

Layout: both operands are blocked along the contraction dim K, which is
their *last* dim, so ``b`` is given as (N, K) and the result is ``a @ b.T``
(the ``F.linear`` convention). This is also how ``torch._scaled_mm`` lays out
MX operands: its column-major ``b`` (K, N) is a row-major (N, K) whose scales
run along K, i.e. ``MXTensor(b.t(), scale_b)``.
"""

from __future__ import annotations

import torch

from .. import chip_model
from ..hw.specs import dtype_bytes
from . import _checks
from .formats import ElemFormat, MX_BLOCK_SIZE
from .mx_tensor import MXTensor, to_mx
from .nvfp4 import NVFP4Tensor, reject_nvfp4


def _check_mx_operand(name: str, value) -> MXTensor:
    reject_nvfp4(name, value)
    if not isinstance(value, MXTensor):
        raise TypeError(
            f"{name} must be an MXTensor (quantize it with to_mx first), got {type(value).__name__}")
    return value


def _check_pair(a: MXTensor, b: MXTensor) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"contraction dims differ: a has K={a.shape[-1]}, b has K={b.shape[-1]} "
            f"(b is (N, K): both operands are blocked along K)")
    if a.block_size != b.block_size:
        raise ValueError(f"block sizes differ: a {a.block_size}, b {b.block_size}")
    _checks.check_same_device(a=a.elements, b=b.elements)


def _mode(*operands: MXTensor) -> str:
    """The Tensor Engine mode: MXFP4 when every operand is E2M1, else MXFP8."""
    return "mxfp4" if all(x.elem_format is ElemFormat.E2M1 for x in operands) else "mxfp8"


def _finish(out: torch.Tensor, bias, out_dtype: torch.dtype) -> torch.Tensor:
    """Add an optional bias in float32 and round once to ``out_dtype``."""
    if bias is not None:
        _checks.check_tensor("bias", bias)
        _checks.check_same_device(out=out, bias=bias)
        out = out + bias.to(torch.float32)
    return out.to(out_dtype)


def mx_mm(a: MXTensor, b: MXTensor, *, out_dtype: torch.dtype = torch.float32,
          bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T`` for MX operands ``a`` (..., K) and ``b`` (N, K).

    Dequantize per block, multiply, accumulate in FP32, add ``bias`` (N,) in
    FP32 if given, round once to ``out_dtype``. NVFP4 operands raise
    ``NVFP4ComputeError``.
    """
    _check_mx_operand("a", a)
    _check_mx_operand("b", b)
    if b.ndim != 2:
        raise ValueError(f"b must be 2-D (N, K), got shape {tuple(b.shape)}")
    _check_pair(a, b)
    with chip_model.uncharged():
        out = a.dequantize(torch.float32) @ b.dequantize(torch.float32).mT
        out = _finish(out, bias, out_dtype)
    m = out.numel() // max(1, b.shape[0])
    chip_model.charge_matmul("torch_trn3::mx_mm", [a.elements, b.elements], [out], m, b.shape[0],
                             a.shape[-1], dtype=_mode(a, b))
    return out


def mx_grouped_mm(a: MXTensor, b: MXTensor, offs: torch.Tensor | None = None, *,
                  out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Grouped ``a @ b.T`` for MoE, with ``torch._grouped_mm``'s offsets.

    Shapes (``offs`` int32, cumulative group ends, like ``torch._grouped_mm``):
    - a (M, K), b (G, N, K), offs (G,) over M -> (M, N): rows of group g use b[g];
    - a (G, M, K), b (G, N, K), no offs -> (G, M, N);
    - a (M, K), b (N, K), offs (G,) over K -> (G, M, N): the weight-gradient
      form; every offset must be a multiple of the block size, because an MX
      scale cannot straddle two groups.
    """
    _check_mx_operand("a", a)
    _check_mx_operand("b", b)
    _check_pair(a, b)
    dims = (a.ndim, b.ndim)
    if dims not in ((2, 3), (3, 3), (2, 2)):
        raise ValueError(f"unsupported grouped shapes a {tuple(a.shape)}, b {tuple(b.shape)}")
    if dims == (3, 3):
        if offs is not None:
            raise ValueError("3-D x 3-D grouped mm takes no offs")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"group counts differ: a {a.shape[0]}, b {b.shape[0]}")
    else:
        _check_offsets(offs, a)
        if dims == (2, 2) and bool((offs % a.block_size != 0).any()):
            raise ValueError(
                f"K offsets {offs.tolist()} must be multiples of the block size {a.block_size}")
        if dims == (2, 3) and offs.shape[0] != b.shape[0]:
            raise ValueError(f"offs has {offs.shape[0]} groups but b has {b.shape[0]}")
    with chip_model.uncharged():
        out = torch._grouped_mm(a.dequantize(torch.float32),
                                b.dequantize(torch.float32).transpose(-2, -1), offs=offs)
    # Every output element costs K multiply-adds whichever grouping made it.
    n = b.shape[-2] if dims != (2, 2) else b.shape[0]
    chip_model.charge_matmul("torch_trn3::mx_grouped_mm", [a.elements, b.elements], [out],
                             out.numel() // max(1, n), n,
                             a.shape[-1] if dims != (2, 2) else a.shape[-1] // max(1, offs.shape[0]),
                             dtype=_mode(a, b))
    return out.to(out_dtype)


def _check_offsets(offs, a: MXTensor) -> None:
    if offs is None:
        raise ValueError("offs (int32 cumulative group ends) is required for 2-D a")
    _checks.check_tensor("offs", offs)
    if offs.dtype != torch.int32 or offs.ndim != 1:
        raise TypeError(f"offs must be a 1-D int32 tensor, got {offs.dtype} of dim {offs.ndim}")
    _checks.check_same_device(a=a.elements, offs=offs)


def w4a8_linear(x: torch.Tensor, weight, bias: torch.Tensor | None = None, *,
                act_elem_dtype: torch.dtype = torch.float8_e4m3fn,
                block_size: int = MX_BLOCK_SIZE, scale_mode: str = "trn3") -> torch.Tensor:
    """``F.linear`` with 4-bit stored weights and MXFP8 compute (W4A8).

    ``weight`` (N, K) is an MXFP4 ``MXTensor`` or an ``NVFP4Tensor``; it is
    dequantized (what Trainium3's on-chip dequantizer does for MXFP4, and
    software does for NVFP4) and requantized to MXFP8 E4M3, which is lossless
    for MXFP4 (2-bit significands, range 12 per block). ``x`` is quantized to
    ``act_elem_dtype``; the result has ``x``'s dtype.
    """
    _checks.check_quantizable("x", x)
    is_fp4 = isinstance(weight, MXTensor) and weight.elem_format is ElemFormat.E2M1
    if not (is_fp4 or isinstance(weight, NVFP4Tensor)):
        raise TypeError(
            "w4a8_linear needs an MXFP4 MXTensor or an NVFP4Tensor weight, got "
            + (repr(weight) if isinstance(weight, MXTensor) else type(weight).__name__))
    _checks.check_same_device(x=x, weight=weight.elements)
    with chip_model.uncharged():
        w8 = to_mx(weight.dequantize(torch.float32), torch.float8_e4m3fn, block_size, scale_mode)
        x8 = to_mx(x, act_elem_dtype, block_size, scale_mode)
        out = mx_mm(x8, w8, bias=bias, out_dtype=x.dtype)
    # The weights cross HBM as 4-bit (dequantized on chip), compute is MXFP8.
    chip_model.charge_matmul("torch_trn3::w4a8_linear", [x, weight.elements], [out],
                             x.numel() // x.shape[-1], weight.shape[0], x.shape[-1],
                             dtype="mxfp8", weight_bytes_per_element=dtype_bytes("mxfp4"))
    return out
