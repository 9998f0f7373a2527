"""E8M0 block scales: from a block's absolute maximum to the scale byte, and back.

Scales are built from the float exponent bits of ``amax``, never by casting to
``torch.float8_e8m0fnu``: that cast rounds to the *nearest* power of two
(3 -> 4), while every MX rule needs floor(log2(amax)) (or an exact ceil).

Special blocks (all element formats):
- all zeros -> the smallest scale, byte 0x00 = 2^-127;
- any NaN or any +-Inf -> NaN scale, byte 0xFF (see ``README.md``: an MX
  block has no way to carry an Inf, so the block is poisoned instead of
  silently turning Inf into a large finite number);
- scale exponents are clamped to E8M0's range [-127, 127].
"""

from __future__ import annotations

import torch

from .formats import (E8M0_EXPONENT_BIAS, E8M0_MAX_EXPONENT, E8M0_MIN_EXPONENT,
                      E8M0_NAN, ElemFormat, ScaleMode)


class _FloatLayout:
    """Bit layout of an IEEE binary format used as the working precision."""

    def __init__(self, int_dtype, mantissa_bits, exponent_bits):
        self.int_dtype = int_dtype
        self.magnitude_mask = (1 << (exponent_bits + mantissa_bits)) - 1
        self.mantissa_bits = mantissa_bits
        self.exponent_mask = (1 << exponent_bits) - 1
        self.bias = (1 << (exponent_bits - 1)) - 1


_LAYOUTS = {
    torch.float32: _FloatLayout(torch.int32, 23, 8),
    torch.float64: _FloatLayout(torch.int64, 52, 11),
}


def block_amax(blocks: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Absolute maximum over the last dim (float32/float64); NaN if any NaN.

    Taken as the integer max of the sign-cleared bit patterns: for IEEE
    floats that order is the order of magnitudes and NaN patterns sort above
    Inf. One elementwise op (into ``scratch`` if given, same shape/dtype as
    ``blocks``) and one reduction; on CPU (interleaved timing) it beat
    ``max(amax, -amin)`` by ~25% and ``abs().amax()``/``aminmax`` by more.
    The result's sign bit is clear.
    """
    layout = _LAYOUTS[blocks.dtype]
    out = None if scratch is None else scratch.view(layout.int_dtype)
    bits = torch.bitwise_and(blocks.view(layout.int_dtype), layout.magnitude_mask, out=out)
    return bits.amax(dim=-1).view(blocks.dtype)


def e8m0_scales(amax: torch.Tensor, fmt: ElemFormat, mode: ScaleMode):
    """Each block's E8M0 scale byte and the exact reciprocal 2^-s of its
    scale 2^s, in ``amax``'s dtype (the float32/float64 working precision).

    ``amax`` must have its sign bit clear, as ``block_amax`` guarantees. The
    byte comes back as an integer tensor (0..255) for the caller to store
    (e.g. ``uint8_out.copy_(byte)``), saving a conversion pass.

    Multiplying by the reciprocal is exact (a power of two), unlike dividing
    by the scale. The reciprocal is always normal: float32 inputs never reach
    the 2^127 scale (the largest float32 amax gives at most 2^126) and float64
    has range to spare. For NaN-scale blocks it is arbitrary (finite): the
    caller zeroes those blocks' elements. Few ops on purpose: this runs on
    n/32 values, where per-op overhead dominates.
    """
    layout = _LAYOUTS[amax.dtype]
    bits = amax.view(layout.int_dtype)
    biased_exp = bits >> layout.mantissa_bits
    # byte = floor(log2(amax)) - emax (+1 for trn3) + 127. A subnormal amax
    # reads as exponent 1 - bias or lower and clamps to 2^-127 below, exactly
    # as its true exponent would.
    offset = E8M0_EXPONENT_BIAS - layout.bias - fmt.emax + (1 if mode is ScaleMode.TRN3 else 0)
    byte = biased_exp + offset
    if mode is ScaleMode.RCEIL:
        # ceil(log2(amax / max)) is floor's exponent, plus one exactly when
        # amax's significand exceeds max normal's (1.75 for FP8, 1.5 for FP4).
        max_significand = fmt.max_normal / 2.0 ** fmt.emax - 1.0
        threshold = int(max_significand * 2 ** layout.mantissa_bits)
        byte = byte + ((bits & ((1 << layout.mantissa_bits) - 1)) > threshold)
    byte = byte.clamp_(E8M0_MIN_EXPONENT + E8M0_EXPONENT_BIAS,
                       E8M0_MAX_EXPONENT + E8M0_EXPONENT_BIAS)
    # 2^-(byte - 127) has biased exponent field bias - (byte - 127).
    reciprocal = ((layout.bias + E8M0_EXPONENT_BIAS - byte) << layout.mantissa_bits).view(amax.dtype)
    byte = byte.masked_fill_(biased_exp == layout.exponent_mask, E8M0_NAN)   # NaN or Inf
    return byte, reciprocal


def e8m0_to_float(scale_bytes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decode E8M0 bytes (uint8 or float8_e8m0fnu) exactly: 2^(b - 127), NaN for 0xFF."""
    if scale_bytes.dtype == torch.float8_e8m0fnu:
        scale_bytes = scale_bytes.view(torch.uint8)
    byte = scale_bytes.to(torch.int32)
    # float32 bits of 2^(b-127): exponent field b for b >= 1; b = 0 is the
    # subnormal 2^-127 = mantissa bit 22; b = 255 lands on Inf's exponent
    # and gets a mantissa bit, i.e. a quiet NaN.
    bits = torch.where(byte == 0, 1 << 22, byte << 23)
    bits = bits | (byte == E8M0_NAN).to(torch.int32) << 22
    return bits.view(torch.float32).to(dtype)
