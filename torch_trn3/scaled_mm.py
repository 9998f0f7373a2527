"""``torch._scaled_mm`` / ``torch.nn.functional.scaled_mm`` on trn tensors.

CPU PyTorch refuses block-scaled (MX) and FP4 operands; the Trainium3 Tensor
Engine runs them natively, so on ``trn`` they work: each operand is
dequantized per 32-element block (E8M0 scales), multiplied with FP32
accumulation and rounded once to the output dtype (torch_trn3.mx.mx_mm).
Tensor-wise and row-wise FP8 scaling (fp32 scales) work the same way. The
whole op is charged once, as one MX matmul on the Tensor Engine. The
``_scaled_mm.out`` overload has the same kernel: inductor lowers
``_scaled_mm`` and ``_scaled_mm_v2`` to it.

Scales must be in plain row-major layout (one per block along K):
``scale_a`` (M, K/32), ``scale_b`` (N, K/32) for ``mat2`` given column-major
(K, N) as PyTorch requires. Swizzled (32x4x4 blocked) scales, a CUDA layout,
are refused with an error that says so.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from . import _aten_kernels, chip_model
from .hw.specs import MX_BLOCK_SIZE
from .mx import MXTensor, mx_grouped_mm, mx_mm

_TENSORWISE, _ROWWISE, _BLOCK1X16, _BLOCK1X32 = 0, 1, 2, 3
_NO_SWIZZLE = 0
_FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


def _operand(mat: torch.Tensor, scale: torch.Tensor, name: str) -> MXTensor:
    """``mat`` (rows, K) with E8M0 block scales as an MXTensor."""
    rows = mat.shape[0]
    packed = mat.dtype == torch.float4_e2m1fn_x2
    k = mat.shape[1] * (2 if packed else 1)
    if k % MX_BLOCK_SIZE:
        raise ValueError(f"{name}: K={k} is not a multiple of the MX block size {MX_BLOCK_SIZE}")
    if scale.numel() != rows * (k // MX_BLOCK_SIZE):
        raise ValueError(
            f"{name}: expected {rows * (k // MX_BLOCK_SIZE)} E8M0 scales ({rows} x {k // MX_BLOCK_SIZE}, one per "
            f"32-element block along K, unswizzled), got shape {tuple(scale.shape)}"
        )
    return MXTensor(mat.contiguous(), scale.reshape(rows, k // MX_BLOCK_SIZE).contiguous(), MX_BLOCK_SIZE,
                    elem_dtype=torch.float4_e2m1fn_x2 if packed else None)


def _check_inputs(a: torch.Tensor, b: torch.Tensor, scales: List[torch.Tensor]) -> None:
    for t in (a, b, *scales):
        if t.device.type != a.device.type or t.device != a.device:
            raise RuntimeError(
                f"Expected all tensors to be on the same device, but found at least two devices, "
                f"{a.device} and {t.device}!"
            )
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"_scaled_mm expects 2-D operands, got {a.dim()}-D and {b.dim()}-D")


def _dequantized_fp8(mat: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    if scale.dtype != torch.float32:
        raise TypeError(f"tensor-wise/row-wise scales must be float32, got {scale.dtype}")
    return mat.to(torch.float32) * scale


def _scaled_mm_values(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                      bias: Optional[torch.Tensor], scale_result: Optional[torch.Tensor],
                      out_dtype: Optional[torch.dtype]) -> torch.Tensor:
    """The product, computed uncharged (the callers charge it once)."""
    _check_inputs(a, b, [scale_a, scale_b])
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"_scaled_mm: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied")
    out_dtype = out_dtype or a.dtype
    if scale_result is not None:
        raise NotImplementedError("_scaled_mm on trn: scale_result (fp8 output) is not supported")
    block_scaled = scale_a.dtype == torch.float8_e8m0fnu or scale_b.dtype == torch.float8_e8m0fnu
    if scale_a.dtype == torch.float8_e4m3fn or a.dtype == torch.float4_e2m1fn_x2 and not block_scaled:
        raise TypeError(
            "NVFP4 (block 16, E4M3 scales) is not a Trainium3 compute format: the Tensor Engine has no "
            "NVFP4 hardware. Dequantize it (torch_trn3.mx.to_nvfp4(...).dequantize() or .to_mx()) first."
        )
    with chip_model.uncharged():
        if block_scaled:
            out = mx_mm(_operand(a, scale_a, "mat_a"), _operand(b.t(), scale_b, "mat_b"),
                        out_dtype=torch.float32, bias=None)
        else:
            if a.dtype not in _FP8 or b.dtype not in _FP8:
                raise TypeError(f"_scaled_mm expects float8 operands, got {a.dtype} and {b.dtype}")
            out = _dequantized_fp8(a, scale_a) @ _dequantized_fp8(b, scale_b)
        if bias is not None:
            out = out + bias.to(torch.float32)
        return out.to(out_dtype)


def scaled_mm(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
              bias: Optional[torch.Tensor] = None, scale_result: Optional[torch.Tensor] = None,
              out_dtype: Optional[torch.dtype] = None, use_fast_accum: bool = False) -> torch.Tensor:
    """The ``aten::_scaled_mm`` kernel for trn (see the module docstring)."""
    out = _scaled_mm_values(a, b, scale_a, scale_b, bias, scale_result, out_dtype)
    chip_model.charge("aten::_scaled_mm", [a, b, scale_a, scale_b], [out])
    return out


def scaled_mm_out(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor,
                  bias: Optional[torch.Tensor] = None, scale_result: Optional[torch.Tensor] = None,
                  out_dtype: Optional[torch.dtype] = None, use_fast_accum: bool = False, *,
                  out: torch.Tensor) -> torch.Tensor:
    """The ``aten::_scaled_mm.out`` kernel for trn: what inductor's lowering of
    ``_scaled_mm`` (and of ``_scaled_mm_v2``) calls into its own buffer.
    Without it the device's fallback would run the CPU kernel, which refuses
    MX operands. Same values as :func:`scaled_mm`, charged once."""
    _check_inputs(a, b, [out])
    result = _scaled_mm_values(a, b, scale_a, scale_b, bias, scale_result, out_dtype or out.dtype)
    if out.dtype != result.dtype:
        raise RuntimeError(f"_scaled_mm.out: out has dtype {out.dtype}, the result is {result.dtype}")
    with chip_model.uncharged():
        if out.shape != result.shape:
            out.resize_(result.shape)
        out.copy_(result)
    chip_model.charge("aten::_scaled_mm.out", [a, b, scale_a, scale_b], [out])
    return out


def scaled_mm_v2(a, b, scale_a, recipe_a, swizzle_a, scale_b, recipe_b, swizzle_b, bias=None,
                 out_dtype=None, contraction_dim=(), use_fast_accum=False):
    """The ``aten::_scaled_mm_v2`` kernel (what ``F.scaled_mm`` calls)."""
    if len(scale_a) != 1 or len(scale_b) != 1:
        raise NotImplementedError("scaled_mm on trn: one scale tensor per operand is supported")
    if any(s != _NO_SWIZZLE for s in list(swizzle_a) + list(swizzle_b)):
        raise ValueError("scaled_mm on trn: swizzled scales (SWIZZLE_32_4_4, a CUDA layout) are not "
                         "supported; pass scales unswizzled (NO_SWIZZLE), one per block along K")
    recipes = set(recipe_a) | set(recipe_b)
    if _BLOCK1X16 in recipes:
        raise TypeError("BlockWise1x16 (NVFP4) is not a Trainium3 compute format: the Tensor Engine "
                        "has no NVFP4 hardware; use BlockWise1x32 (MX) scales")
    if recipes - {_TENSORWISE, _ROWWISE, _BLOCK1X32}:
        raise ValueError(f"scaled_mm on trn: unsupported scaling recipes {sorted(recipes)}")
    return scaled_mm(a, b, scale_a[0], scale_b[0], bias=bias, out_dtype=out_dtype,
                     use_fast_accum=use_fast_accum)


def scaled_grouped_mm(a, b, scale_a, scale_b, offs=None, bias=None, scale_result=None,
                      out_dtype=None, use_fast_accum=False):
    """The ``aten::_scaled_grouped_mm`` kernel for trn (MoE experts).

    ``a`` (M, K) x ``b`` (G, K, N) with int32 ``offs`` (group ends over M), or
    3-D x 3-D. MX: E8M0 scales, ``scale_a`` (M, K/32) and ``scale_b``
    (G, N, K/32), unswizzled. Row-wise FP8: float32 ``scale_a`` (M,) and
    ``scale_b`` (G, N). Charged once, as one MX matmul per output element.
    """
    _check_inputs(a, b.flatten(0, 1) if b.dim() == 3 else b, [scale_a, scale_b])
    if bias is not None or scale_result is not None:
        raise NotImplementedError("_scaled_grouped_mm on trn: bias and scale_result are not supported")
    out_dtype = out_dtype or torch.bfloat16
    with chip_model.uncharged():
        if scale_a.dtype == torch.float8_e8m0fnu:
            b_nk = b.transpose(-2, -1)
            k_blocks = a.shape[-1] * (2 if a.dtype == torch.float4_e2m1fn_x2 else 1) // MX_BLOCK_SIZE
            fp4 = torch.float4_e2m1fn_x2 if a.dtype == torch.float4_e2m1fn_x2 else None
            ma = MXTensor(a.contiguous(), scale_a.reshape(*a.shape[:-1], k_blocks).contiguous(), MX_BLOCK_SIZE,
                          elem_dtype=fp4)
            mb = MXTensor(b_nk.contiguous(), scale_b.reshape(*b_nk.shape[:-1], k_blocks).contiguous(),
                          MX_BLOCK_SIZE, elem_dtype=fp4)
            out = mx_grouped_mm(ma, mb, offs, out_dtype=torch.float32)
        else:
            if a.dtype not in _FP8 or b.dtype not in _FP8:
                raise TypeError(f"_scaled_grouped_mm expects float8 operands, got {a.dtype} and {b.dtype}")
            fa = _dequantized_fp8(a, scale_a.reshape(*a.shape[:-1], 1))
            fb = _dequantized_fp8(b, scale_b.reshape(*b.shape[:-2], 1, b.shape[-1]))
            out = torch._grouped_mm(fa, fb, offs=offs)
        out = out.to(out_dtype)
    n = out.shape[-1]
    k = b.shape[-2]
    chip_model.charge_matmul("aten::_scaled_grouped_mm", [a, b, scale_a, scale_b], [out],
                             out.numel() // n, n, k,
                             dtype="mxfp4" if a.dtype == torch.float4_e2m1fn_x2 else "mxfp8")
    return out


_lib = None


def register(device_key: str = "PrivateUse1") -> None:
    """Registers the kernels for the trn dispatch key (once)."""
    global _lib
    if _lib is not None:
        return
    _lib = _aten_kernels.register({
        "_scaled_mm": scaled_mm, "_scaled_mm.out": scaled_mm_out,
        "_scaled_mm_v2": scaled_mm_v2, "_scaled_grouped_mm": scaled_grouped_mm,
    }, device_key)
