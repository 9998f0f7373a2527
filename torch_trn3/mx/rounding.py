"""Narrowing between float widths without double rounding.

A value must be rounded once, from the precision it really has, into its final
format. torch casts float64 to float8/bfloat16 through float32, so a float64
value can round twice (e.g. 1.0625 + 2^-40 -> 1.0625 -> 1.0 in E4M3 instead
of 1.125). Rounding the float32 step *to odd* fixes that: with at least two
spare bits, round-to-odd followed by round-to-nearest-even equals one direct
round-to-nearest-even (Boldo & Melquiond, "Emulation of FMA and correctly
rounded sums: proved algorithms using rounding to odd", 2008).

bfloat16 and float16 inputs need none of this: widening them to float32 is
exact, and so is scaling by a power of two, which is why the MX code works
in float32 for them.
"""

from __future__ import annotations

import torch

_ODD_NARROWING = {torch.float64: (torch.float32, torch.int32)}


def narrow_to_float32(x: torch.Tensor) -> torch.Tensor:
    """Convert to float32 rounding to odd (exact values stay exact).

    float32/bfloat16/float16 inputs are widened exactly; float64 is cast
    (round-to-nearest-even), stepped one ulp toward zero where that cast went
    up in magnitude, and given an odd last bit where it was inexact. NaN and
    Inf pass through; finite values beyond float32 become +-max float32 (odd),
    which later saturating conversions treat like the overflow they are.
    """
    if x.dtype not in _ODD_NARROWING:
        return x.to(torch.float32)
    nearest = x.to(torch.float32)
    widened = nearest.to(x.dtype)
    inexact = widened != x
    overshot = widened.abs() > x.abs()
    bits = nearest.view(torch.int32)
    bits = (bits - overshot.to(torch.int32)) | inexact.to(torch.int32)
    return torch.where(x.isnan(), nearest, bits.view(torch.float32))


def round_once(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round ``x`` (float32 or float64) to ``dtype`` with a single rounding."""
    if x.dtype == dtype:
        return x
    if dtype in (torch.float32, torch.float64):
        return x.to(dtype)
    return narrow_to_float32(x).to(dtype)
