"""FP4 E2M1 element codes and their two-per-byte packing.

torch's ``float4_e2m1fn_x2`` is storage-only (no casts), so rounding to E2M1
and packing are done here with plain integer/float ops that run on any device.
A code is 4 bits: sign in bit 3, then the index into ``F4E2M1_VALUES``.
Packed bytes hold element 2i in the low nibble and element 2i+1 in the high
nibble (the OCP/PyTorch convention).
"""

from __future__ import annotations

import torch

from .formats import F4E2M1_MAX, F4E2M1_VALUES

_SIGN_BIT = 0x8
_NIBBLE = 0xF
_F32_MANTISSA_BITS = 23
_F32_ONE_EXPONENT = 127   # biased exponent field of 1.0


def encode_e2m1(x: torch.Tensor) -> torch.Tensor:
    """Round float32 values to E2M1 codes (uint8, one per element).

    Round-to-nearest-even with saturation to +-6; the sign is kept, so
    negative values that round to zero give -0 (code 0x8). NaN has no E2M1
    encoding: its code is unspecified (callers zero NaN blocks).

    How: E2M1 has one mantissa bit, so the spacing (ulp) of |x| is
    2^(e - 1) for |x| in [2^e, 2^(e+1)), e >= 0, and 0.5 below 1 (subnormals).
    n = round(|x| / ulp) is exact division by a power of two followed by
    torch.round, which rounds half to even; and since code = n + 2e, an even
    n is exactly an even code (mantissa bit 0), so ties go the OCP way.
    Plain float/int ops, about 8x faster than a bucketize on CPU.
    """
    magnitude = x.abs().clamp_(max=F4E2M1_MAX)
    exponent = (magnitude.view(torch.int32) >> _F32_MANTISSA_BITS).clamp_(min=_F32_ONE_EXPONENT)
    # 1 / ulp = 2^(1 - e): float32 exponent field 127 + 1 - e = 255 - biased.
    inv_ulp = ((2 * _F32_ONE_EXPONENT + 1 - exponent) * (1 << _F32_MANTISSA_BITS)).view(torch.float32)
    code = (torch.round(magnitude * inv_ulp) + (exponent - _F32_ONE_EXPONENT) * 2.0
            + torch.signbit(x) * float(_SIGN_BIT))
    return code.to(torch.uint8)


def decode_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """E2M1 codes (uint8) to their exact float32 values."""
    table = torch.tensor(F4E2M1_VALUES, dtype=torch.float32, device=codes.device)
    table = torch.cat([table, -table])
    flat = torch.index_select(table, 0, codes.reshape(-1).to(torch.int32))
    return flat.view(codes.shape)


def pack_fp4(codes: torch.Tensor) -> torch.Tensor:
    """Pack codes (..., 2n) two per byte into uint8 (..., n), element 0 low."""
    if codes.shape[-1] % 2:
        raise ValueError(
            f"FP4 packing needs an even last dim, got {codes.shape[-1]}")
    pairs = codes.reshape(*codes.shape[:-1], codes.shape[-1] // 2, 2)
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack_fp4(packed: torch.Tensor) -> torch.Tensor:
    """Unpack uint8 (or float4_e2m1fn_x2) bytes (..., n) into codes (..., 2n)."""
    packed = packed.view(torch.uint8)
    pairs = torch.stack([packed & _NIBBLE, packed >> 4], dim=-1)
    return pairs.reshape(*packed.shape[:-1], packed.shape[-1] * 2)
