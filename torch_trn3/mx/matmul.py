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

Each matmul is a torch custom op (``torch.ops.torch_trn3.mx_mm``,
``mx_grouped_mm``, ``w4a8_linear``) on plain tensors: element storage (its
dtype names the element format), E8M0 scales, block size. The public
functions check their arguments and call the op; the op's kernel computes
the product and charges it once to the chip model, so torch.compile keeps
each MX matmul as one opaque node (fake kernels give its shape) and the
compiled graph charges it exactly as eager does.
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import chip_model
from ..hw.specs import dtype_bytes
from . import _checks
from .formats import ElemFormat, MX_BLOCK_SIZE
from .mx_tensor import MXTensor, to_mx
from .nvfp4 import NVFP4Tensor, reject_nvfp4

#: ``weight_format`` argument of ``torch_trn3::w4a8_linear``.
_MXFP4, _NVFP4 = "mxfp4", "nvfp4"


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


def _check_bias(bias, device_of: torch.Tensor) -> None:
    if bias is not None:
        _checks.check_tensor("bias", bias)
        _checks.check_same_device(out=device_of, bias=bias)


def _mode(*operands: MXTensor) -> str:
    """The Tensor Engine mode: MXFP4 when every operand is E2M1, else MXFP8."""
    return "mxfp4" if all(x.elem_format is ElemFormat.E2M1 for x in operands) else "mxfp8"


def _logical_k(elements: torch.Tensor) -> int:
    """K of an MX operand from its element storage (FP4 packs two per byte)."""
    return elements.shape[-1] * (2 if elements.dtype == torch.float4_e2m1fn_x2 else 1)


def _bias_backward(ctx, grad: torch.Tensor):
    """Gradient of ``(product + bias.float()).to(out_dtype)`` for ``bias``, as
    autograd computes it: grad to float32, summed to bias's shape, cast back."""
    shape, dtype = ctx.bias_meta
    return grad.to(torch.float32).sum_to_size(shape).to(dtype)


def _save_bias_meta(ctx, bias: Optional[torch.Tensor]) -> None:
    ctx.bias_meta = None if bias is None else (bias.shape, bias.dtype)


# ---- mx_mm ------------------------------------------------------------------------

@torch.library.custom_op("torch_trn3::mx_mm", mutates_args=())
def _mx_mm_op(a: torch.Tensor, a_scales: torch.Tensor, b: torch.Tensor, b_scales: torch.Tensor,
              block_size: int, out_dtype: torch.dtype,
              bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``a @ b.T`` of MX operands given as element storage and E8M0 scales."""
    a_mx, b_mx = MXTensor(a, a_scales, block_size), MXTensor(b, b_scales, block_size)
    with chip_model.uncharged():
        out = a_mx.dequantize(torch.float32) @ b_mx.dequantize(torch.float32).mT
        if bias is not None:
            out = out + bias.to(torch.float32)
        out = out.to(out_dtype)
    m = out.numel() // max(1, b.shape[0])
    chip_model.charge_matmul("torch_trn3::mx_mm", chip_model.operands(a, a_scales, b, b_scales, bias),
                             [out], m, b.shape[0], a_mx.shape[-1],
                             dtype=_mode(a_mx, b_mx))
    return out


@_mx_mm_op.register_fake
def _(a, a_scales, b, b_scales, block_size, out_dtype, bias):
    return a.new_empty((*a.shape[:-1], b.shape[0]), dtype=out_dtype)


def _mx_mm_setup(ctx, inputs, output):
    _save_bias_meta(ctx, inputs[6])


def _mx_mm_backward(ctx, grad):
    grad_bias = _bias_backward(ctx, grad) if ctx.needs_input_grad[6] else None
    return None, None, None, None, None, None, grad_bias


_mx_mm_op.register_autograd(_mx_mm_backward, setup_context=_mx_mm_setup)


def mx_mm(a: MXTensor, b: MXTensor, *, out_dtype: torch.dtype = torch.float32,
          bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T`` for MX operands ``a`` (..., K) and ``b`` (N, K).

    Dequantize per block, multiply, accumulate in FP32, add ``bias`` (N,) in
    FP32 if given, round once to ``out_dtype``. NVFP4 operands raise
    ``NVFP4ComputeError``. Runs ``torch.ops.torch_trn3.mx_mm``.
    """
    _check_mx_operand("a", a)
    _check_mx_operand("b", b)
    if b.ndim != 2:
        raise ValueError(f"b must be 2-D (N, K), got shape {tuple(b.shape)}")
    _check_pair(a, b)
    _check_bias(bias, a.elements)
    return _mx_mm_op(a.elements, a.scales, b.elements, b.scales, a.block_size, out_dtype, bias)


# ---- mx_grouped_mm --------------------------------------------------------------------

@torch.library.custom_op("torch_trn3::mx_grouped_mm", mutates_args=())
def _mx_grouped_mm_op(a: torch.Tensor, a_scales: torch.Tensor, b: torch.Tensor,
                      b_scales: torch.Tensor, offs: Optional[torch.Tensor], block_size: int,
                      out_dtype: torch.dtype) -> torch.Tensor:
    """Grouped ``a @ b.T`` of MX operands (see :func:`mx_grouped_mm`)."""
    a_mx, b_mx = MXTensor(a, a_scales, block_size), MXTensor(b, b_scales, block_size)
    dims = (a_mx.ndim, b_mx.ndim)
    # Data-dependent, so checked here rather than while torch.compile traces.
    if dims == (2, 2) and bool((offs % block_size != 0).any()):
        raise ValueError(
            f"K offsets {offs.tolist()} must be multiples of the block size {block_size}")
    with chip_model.uncharged():
        out = torch._grouped_mm(a_mx.dequantize(torch.float32),
                                b_mx.dequantize(torch.float32).transpose(-2, -1), offs=offs)
        # torch._grouped_mm pads output rows to 16 bytes; the op's result is
        # contiguous, whatever N is (the layout its fake kernel promises).
        out = out.contiguous()
    # Every output element costs K multiply-adds whichever grouping made it.
    n = b_mx.shape[-2] if dims != (2, 2) else b_mx.shape[0]
    k = a_mx.shape[-1] if dims != (2, 2) else a_mx.shape[-1] // max(1, offs.shape[0])
    chip_model.charge_matmul("torch_trn3::mx_grouped_mm",
                             chip_model.operands(a, a_scales, b, b_scales, offs), [out],
                             out.numel() // max(1, n), n, k, dtype=_mode(a_mx, b_mx))
    return out.to(out_dtype)


@_mx_grouped_mm_op.register_fake
def _(a, a_scales, b, b_scales, offs, block_size, out_dtype):
    if a.ndim == 2 and b.ndim == 3:
        shape = (a.shape[0], b.shape[1])
    elif a.ndim == 3:
        shape = (a.shape[0], a.shape[1], b.shape[1])
    else:
        shape = (offs.shape[0], a.shape[0], b.shape[0])
    return a.new_empty(shape, dtype=out_dtype)


def mx_grouped_mm(a: MXTensor, b: MXTensor, offs: torch.Tensor | None = None, *,
                  out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Grouped ``a @ b.T`` for MoE, with ``torch._grouped_mm``'s offsets.

    Shapes (``offs`` int32, cumulative group ends, like ``torch._grouped_mm``):
    - a (M, K), b (G, N, K), offs (G,) over M -> (M, N): rows of group g use b[g];
    - a (G, M, K), b (G, N, K), no offs -> (G, M, N);
    - a (M, K), b (N, K), offs (G,) over K -> (G, M, N): the weight-gradient
      form; every offset must be a multiple of the block size, because an MX
      scale cannot straddle two groups.

    Runs ``torch.ops.torch_trn3.mx_grouped_mm``.
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
        if dims == (2, 3) and offs.shape[0] != b.shape[0]:
            raise ValueError(f"offs has {offs.shape[0]} groups but b has {b.shape[0]}")
    return _mx_grouped_mm_op(a.elements, a.scales, b.elements, b.scales, offs, a.block_size,
                             out_dtype)


def _check_offsets(offs, a: MXTensor) -> None:
    if offs is None:
        raise ValueError("offs (int32 cumulative group ends) is required for 2-D a")
    _checks.check_tensor("offs", offs)
    if offs.dtype != torch.int32 or offs.ndim != 1:
        raise TypeError(f"offs must be a 1-D int32 tensor, got {offs.dtype} of dim {offs.ndim}")
    _checks.check_same_device(a=a.elements, offs=offs)


# ---- W4A8 -------------------------------------------------------------------------------

@torch.library.custom_op("torch_trn3::w4a8_linear", mutates_args=())
def _w4a8_linear_op(x: torch.Tensor, weight: torch.Tensor, weight_scales: torch.Tensor,
                    weight_tensor_scale: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                    weight_format: str, weight_block_size: int, act_elem_dtype: torch.dtype,
                    block_size: int, scale_mode: str) -> torch.Tensor:
    """W4A8 ``F.linear``; ``weight_format`` "mxfp4" (E8M0 scales of
    ``weight_block_size``) or "nvfp4" (E4M3 scales and ``weight_tensor_scale``)."""
    if weight_format == _NVFP4:
        w = NVFP4Tensor(weight, weight_scales, weight_tensor_scale)
    else:
        w = MXTensor(weight, weight_scales, weight_block_size)
    with chip_model.uncharged():
        w8 = to_mx(w.dequantize(torch.float32), torch.float8_e4m3fn, block_size, scale_mode)
        x8 = to_mx(x, act_elem_dtype, block_size, scale_mode)
        out = mx_mm(x8, w8, bias=bias, out_dtype=x.dtype)
    # The weights cross HBM as 4-bit (dequantized on chip), compute is MXFP8.
    chip_model.charge_matmul("torch_trn3::w4a8_linear",
                             chip_model.operands(x, weight, weight_scales, weight_tensor_scale, bias),
                             [out],
                             x.numel() // x.shape[-1], w.shape[0], x.shape[-1],
                             dtype="mxfp8", weight_bytes_per_element=dtype_bytes("mxfp4"))
    return out


@_w4a8_linear_op.register_fake
def _(x, weight, weight_scales, weight_tensor_scale, bias, weight_format, weight_block_size,
      act_elem_dtype, block_size, scale_mode):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _w4a8_setup(ctx, inputs, output):
    _save_bias_meta(ctx, inputs[4])


def _w4a8_backward(ctx, grad):
    grad_bias = _bias_backward(ctx, grad) if ctx.needs_input_grad[4] else None
    return (None,) * 4 + (grad_bias,) + (None,) * 5


_w4a8_linear_op.register_autograd(_w4a8_backward, setup_context=_w4a8_setup)


def w4a8_linear(x: torch.Tensor, weight, bias: torch.Tensor | None = None, *,
                act_elem_dtype: torch.dtype = torch.float8_e4m3fn,
                block_size: int = MX_BLOCK_SIZE, scale_mode: str = "trn3") -> torch.Tensor:
    """``F.linear`` with 4-bit stored weights and MXFP8 compute (W4A8).

    ``weight`` (N, K) is an MXFP4 ``MXTensor`` or an ``NVFP4Tensor``; it is
    dequantized (what Trainium3's on-chip dequantizer does for MXFP4, and
    software does for NVFP4) and requantized to MXFP8 E4M3, which is lossless
    for MXFP4 (2-bit significands, range 12 per block). ``x`` is quantized to
    ``act_elem_dtype``; the result has ``x``'s dtype. Gradients reach
    ``bias`` only (``x`` is quantized). Runs ``torch.ops.torch_trn3.w4a8_linear``.
    """
    _checks.check_quantizable("x", x)
    is_fp4 = isinstance(weight, MXTensor) and weight.elem_format is ElemFormat.E2M1
    if not (is_fp4 or isinstance(weight, NVFP4Tensor)):
        raise TypeError(
            "w4a8_linear needs an MXFP4 MXTensor or an NVFP4Tensor weight, got "
            + (repr(weight) if isinstance(weight, MXTensor) else type(weight).__name__))
    _checks.check_same_device(x=x, weight=weight.elements)
    if is_fp4:
        fmt, tensor_scale, weight_block_size = _MXFP4, None, weight.block_size
    else:
        fmt, tensor_scale, weight_block_size = _NVFP4, weight.tensor_scale, 0
    # x.detach(): x is quantized, so no gradient reaches it (as before the op).
    return _w4a8_linear_op(x.detach(), weight.elements, weight.scales, tensor_scale, bias, fmt,
                           weight_block_size, act_elem_dtype, block_size, scale_mode)
