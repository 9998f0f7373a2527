"""NVFP4: a storage-only format on Trainium3, with a software dequantize path.

NVFP4 (NVIDIA Blackwell) stores E2M1 elements in blocks of 16 with an E4M3
block scale and one float32 per-tensor scale: value = e * s_block * s_tensor.
Trainium3's Tensor Engine has no NVFP4 mode (only OCP MX: E8M0 scales,
block 32), so NVFP4 tensors here can be stored, dequantized, or converted to
MX in software; asking an MX matmul to consume one raises
``NVFP4ComputeError``.
"""

from __future__ import annotations

import torch

from . import _checks, fp4
from .elements import zero_rows
from .formats import F4E2M1_MAX, F8E4M3_MAX, MX_BLOCK_SIZE, NVFP4_BLOCK_SIZE
from .mx_tensor import MXTensor, to_mx
from .rounding import narrow_to_float32, round_once

NO_NVFP4_HARDWARE = (
    "Trainium3 has no NVFP4 hardware: its Tensor Engine only runs OCP MX formats "
    "(MXFP8/MXFP4, E8M0 scales, block 32). NVFP4 is a storage format here; call "
    ".dequantize() or .to_mx() first (software dequantize to MXFP8, as W4A8 does).")


class NVFP4ComputeError(TypeError):
    """Raised when NVFP4 data reaches a compute path (the message says why)."""


class NVFP4Tensor:
    """NVFP4 data: packed E2M1 ``elements`` (..., K/2), ``float8_e4m3fn``
    ``scales`` (..., K/16) and a float32 0-dim ``tensor_scale``."""

    def __init__(self, elements: torch.Tensor, scales: torch.Tensor, tensor_scale: torch.Tensor):
        _checks.check_tensor("elements", elements)
        if elements.dtype == torch.uint8:
            elements = elements.view(torch.float4_e2m1fn_x2)
        if elements.dtype != torch.float4_e2m1fn_x2 or elements.ndim == 0:
            raise TypeError(
                f"NVFP4 elements must be packed FP4 (torch.float4_e2m1fn_x2 or uint8) with "
                f"at least one dim, got {elements.dtype} of shape {tuple(elements.shape)}")
        shape = torch.Size((*elements.shape[:-1], 2 * elements.shape[-1]))
        _checks.check_divisible("elements", shape[-1], NVFP4_BLOCK_SIZE)
        _checks.check_scale_tensor("scales", scales, torch.float8_e4m3fn,
                                   (*shape[:-1], shape[-1] // NVFP4_BLOCK_SIZE))
        _checks.check_tensor("tensor_scale", tensor_scale)
        if tensor_scale.dtype != torch.float32 or tensor_scale.numel() != 1:
            raise TypeError("tensor_scale must be a one-element float32 tensor")
        _checks.check_same_device(elements=elements, scales=scales, tensor_scale=tensor_scale)
        self.elements = elements
        self.scales = scales
        self.tensor_scale = tensor_scale.reshape(())
        self.shape = shape

    @property
    def device(self) -> torch.device:
        return self.elements.device

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Software dequantize, rounded once to ``dtype``.

        e * s_block is exact in float32 (2 + 4 significant bits); the product
        with the float32 tensor scale is exact in float64, then rounded once.
        """
        values = fp4.decode_e2m1(fp4.unpack_fp4(self.elements))
        blocks = values.reshape(*self.shape[:-1], -1, NVFP4_BLOCK_SIZE)
        exact = (blocks * self.scales.to(torch.float32).unsqueeze(-1)).to(torch.float64)
        return round_once(exact * self.tensor_scale.to(torch.float64), dtype).reshape(self.shape)

    def to_mx(self, elem_dtype: torch.dtype = torch.float8_e4m3fn,
              block_size: int = MX_BLOCK_SIZE, scale_mode: str = "floor") -> MXTensor:
        """Dequantize in software and requantize as an MX tensor (for compute)."""
        return to_mx(self.dequantize(torch.float32), elem_dtype, block_size, scale_mode)

    def __repr__(self) -> str:
        return f"NVFP4Tensor(shape={tuple(self.shape)}, device={self.device})"


def to_nvfp4(x: torch.Tensor, tensor_scale: torch.Tensor | float | None = None) -> NVFP4Tensor:
    """Quantize ``x`` along its last dim to NVFP4 (the usual software recipe).

    ``tensor_scale`` defaults to amax(|x|) / (6 * 448), so the largest block
    scale lands at E4M3's max. Block scale = E4M3(amax_block / 6 / tensor_scale)
    (nearest even, saturating); elements = E2M1(x / (s_block * tensor_scale)),
    computed in float32. As for MX, blocks with NaN or Inf get a NaN scale and
    zero elements; all-zero blocks get scale 0 and zero elements.
    """
    _checks.check_quantizable("x", x)
    _checks.check_divisible("x", x.shape[-1], NVFP4_BLOCK_SIZE)
    rows = narrow_to_float32(x).reshape(-1, NVFP4_BLOCK_SIZE)
    amax = rows.abs().amax(dim=-1)
    finite = amax.isfinite()
    if tensor_scale is None:
        top = torch.where(finite, amax, 0.0).amax() / (F4E2M1_MAX * F8E4M3_MAX)
        tensor_scale = torch.where(top > 0, top, 1.0)
    tensor_scale = torch.as_tensor(tensor_scale, dtype=torch.float32, device=x.device).reshape(())
    block_scale = (amax / F4E2M1_MAX / tensor_scale).clamp(max=F8E4M3_MAX)
    block_scale = torch.where(finite, block_scale, float("nan")).to(torch.float8_e4m3fn)
    divisor = (block_scale.to(torch.float32) * tensor_scale).unsqueeze(-1)
    scaled = torch.where(divisor > 0, rows / divisor, 0.0)
    packed = fp4.pack_fp4(fp4.encode_e2m1(scaled))   # saturates to +-6
    zero_rows(packed, ~finite)
    lead = x.shape[:-1]
    return NVFP4Tensor(packed.view(*lead, x.shape[-1] // 2),
                       block_scale.view(*lead, x.shape[-1] // NVFP4_BLOCK_SIZE), tensor_scale)


def reject_nvfp4(name: str, value) -> None:
    """Raise ``NVFP4ComputeError`` if ``value`` is NVFP4 data headed for compute."""
    if isinstance(value, NVFP4Tensor):
        raise NVFP4ComputeError(f"{name} is an NVFP4Tensor. {NO_NVFP4_HARDWARE}")
