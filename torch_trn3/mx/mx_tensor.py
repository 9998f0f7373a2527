"""``MXTensor`` and the conversions ``to_mx`` / ``from_mx``.

An MX tensor is a pair of plain tensors: the elements (FP8, or FP4 packed two
per byte) and one E8M0 scale per block of ``block_size`` consecutive elements
along the last dim. Value = element * 2^(scale byte - 127). Quantizing is one
C++ op, ``torch.ops.torch_trn3.quantize_mx`` (``csrc/aten/MxQuantize.cpp``; trn
tensors reach its CPU kernel through the device's fallback, and a Meta kernel
lets torch.compile trace it); dequantizing is pure torch ops. Both run on
whatever device the tensors live on.
"""

from __future__ import annotations

import torch

from . import _checks
from .elements import decode_elements, decode_table, storage_last_dim
from .formats import MX_BLOCK_SIZE, ElemFormat, ScaleMode
from .scales import e8m0_to_float


#: Elements dequantized per step. Slices of a few MB keep the float32
#: temporaries cache-resident and let the host allocator reuse them (whole-
#: tensor temporaries were dominated by page faults: about 3x slower).
CHUNK_ELEMENTS = 1 << 20

#: ``scale_mode`` argument of ``torch.ops.torch_trn3.quantize_mx``.
_SCALE_MODE_CODES = {ScaleMode.FLOOR: 0, ScaleMode.RCEIL: 1, ScaleMode.TRN3: 2}


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (its values do not fit float32); all else is
    exact in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _row_chunks(n_rows: int, row_len: int):
    """Slices covering ``n_rows`` rows, about CHUNK_ELEMENTS elements each."""
    step = max(1, CHUNK_ELEMENTS // max(row_len, 1))
    return [slice(start, start + step) for start in range(0, n_rows, step)]


class MXTensor:
    """Block-scaled tensor in an OCP MX format (logical shape ``shape``).

    Args:
        elements: FP8 (``float8_e4m3fn``/``float8_e5m2``) of the logical
            shape, or packed FP4 (``float4_e2m1fn_x2``, or ``uint8`` with
            ``elem_dtype=torch.float4_e2m1fn_x2``) with half the last dim.
        scales: ``float8_e8m0fnu`` of shape ``shape[:-1] + (K // block_size,)``.
        block_size: elements per scale along the last dim.
    """

    def __init__(self, elements: torch.Tensor, scales: torch.Tensor,
                 block_size: int = MX_BLOCK_SIZE, *, elem_dtype: torch.dtype | None = None):
        _checks.check_tensor("elements", elements)
        if elements.dtype == torch.uint8:
            if elem_dtype != torch.float4_e2m1fn_x2:
                raise TypeError(
                    "uint8 elements are ambiguous: pass elem_dtype=torch.float4_e2m1fn_x2 "
                    "for packed FP4 (FP8 elements have their own dtypes)")
            elements = elements.view(torch.float4_e2m1fn_x2)
        fmt = ElemFormat.from_dtype(elements.dtype)
        if elem_dtype is not None and elem_dtype != fmt.dtype:
            raise TypeError(f"elements have dtype {elements.dtype} but elem_dtype is {elem_dtype}")
        if elements.ndim == 0:
            raise ValueError("elements must have at least one dim")
        _checks.check_block_size(block_size, fmt.is_packed)
        last = elements.shape[-1] * (2 if fmt.is_packed else 1)
        shape = torch.Size((*elements.shape[:-1], last))
        _checks.check_divisible("elements", last, block_size)
        _checks.check_scale_tensor("scales", scales, torch.float8_e8m0fnu,
                                   (*shape[:-1], last // block_size))
        _checks.check_same_device(elements=elements, scales=scales)
        self.elements = elements
        self.scales = scales
        self.block_size = block_size
        self.elem_format = fmt
        self.shape = shape

    @property
    def elem_dtype(self) -> torch.dtype:
        return self.elem_format.dtype

    @property
    def device(self) -> torch.device:
        return self.elements.device

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The represented values as ``dtype``, rounded once.

        element * scale is exact in float32 (a <= 4-bit significand times a
        power of two, never below float32's subnormal range), so the only
        rounding is the final cast. NaN-scale blocks decode to NaN.
        """
        if not dtype.is_floating_point:
            raise TypeError(f"dequantize needs a floating dtype, got {dtype}")
        work = _working_dtype(dtype)
        stored = self.elements.reshape(-1, storage_last_dim(self.block_size, self.elem_format))
        scales = e8m0_to_float(self.scales.reshape(-1), work).unsqueeze(-1)
        out = torch.empty((stored.shape[0], self.block_size), dtype=dtype, device=self.device)
        table = None if self.elem_format.is_packed else decode_table(self.elem_format, self.device)
        for part in _row_chunks(stored.shape[0], self.block_size):
            values = decode_elements(stored[part], self.elem_format, table).to(work)
            if dtype == work:
                torch.mul(values, scales[part], out=out[part])
            else:
                out[part] = values * scales[part]
        return out.view(self.shape)

    def to(self, device) -> "MXTensor":
        """The same MX data on another device."""
        return MXTensor(self.elements.to(device), self.scales.to(device), self.block_size)

    def __repr__(self) -> str:
        return (f"MXTensor(shape={tuple(self.shape)}, elem_dtype={self.elem_dtype}, "
                f"block_size={self.block_size}, device={self.device})")


def to_mx(x: torch.Tensor, elem_dtype: torch.dtype, block_size: int = MX_BLOCK_SIZE,
          scale_mode: str | ScaleMode = "floor") -> MXTensor:
    """Quantize ``x`` along its last dim into an ``MXTensor``.

    Scale per block from its amax under ``scale_mode`` ("floor" = OCP,
    "rceil" = round-up, "trn3" = Trainium3 quantize_mx; see ``ScaleMode``);
    elements = x / scale rounded to nearest even and clamped to the max
    normal. All-zero blocks get scale 2^-127; blocks holding NaN or +-Inf get
    the NaN scale (0xFF) and all-zero elements.

    Rounds once from the input's own precision: bfloat16/float16 widen to
    float32 exactly, float64 narrows by round-to-odd (see ``rounding``).
    """
    fmt = ElemFormat.from_dtype(elem_dtype)
    mode = ScaleMode.parse(scale_mode)
    _checks.check_quantizable("x", x)
    _checks.check_block_size(block_size, fmt.is_packed)
    _checks.check_divisible("x", x.shape[-1], block_size)
    # One pass in C++: per block the amax (sign-cleared bits), the E8M0 byte
    # from its exponent, x * 2^-s (exact), clamp and round to nearest even;
    # NaN/Inf blocks poisoned. Outputs carry no gradient, hence detach().
    elements, scale_bytes = torch.ops.torch_trn3.quantize_mx(
        x.detach(), fmt.dtype, block_size, _SCALE_MODE_CODES[mode])
    return MXTensor(elements, scale_bytes.view(torch.float8_e8m0fnu), block_size)


def from_mx(mx: MXTensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Functional form of ``MXTensor.dequantize``."""
    if not isinstance(mx, MXTensor):
        raise TypeError(f"from_mx expects an MXTensor, got {type(mx).__name__}")
    return mx.dequantize(dtype)
