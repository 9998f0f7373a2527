"""E8M0 block scales: decoding scale bytes to floats.

Encoding happens in the ``torch_trn3::quantize_mx`` C++ op
(``csrc/aten/MxQuantize.cpp``, called by ``to_mx``): the byte is built from
the float exponent bits of the block's ``amax``, never by casting to
``torch.float8_e8m0fnu``, because that cast rounds to the *nearest* power of
two (3 -> 4) while every MX rule needs floor(log2(amax)) (or an exact ceil).

Special blocks (all element formats):
- all zeros -> the smallest scale, byte 0x00 = 2^-127;
- any NaN or any +-Inf -> NaN scale, byte 0xFF (see ``README.md``: an MX
  block has no way to carry an Inf, so the block is poisoned instead of
  silently turning Inf into a large finite number);
- scale exponents are clamped to E8M0's range [-127, 127].
"""

from __future__ import annotations

import torch

from .formats import E8M0_NAN


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
