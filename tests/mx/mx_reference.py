"""Independent MX reference written from the spec text, in numpy + ml_dtypes.

Deliberately slow and literal: Python floats (exact float64 arithmetic on
exactly representable values), one block and one element at a time, and
ml_dtypes for the element encodings. It shares no code with torch_trn3.mx.

Spec (OCP MX v1.0 and the issue):
- scale exponent s per block from amax = max |x|:
  floor: floor(log2(amax)) - emax; rceil: ceil(log2(amax / max_normal));
  trn3: floor(log2(amax)) - (emax - 1); clamped to [-127, 127].
- all-zero block: s = -127. NaN or +-Inf anywhere: scale byte 0xFF and
  (our documented choice) all element bytes 0.
- element = RNE(x / 2^s), finite overflow clamped to +-max_normal.
- FP4 packs two codes per byte, element 0 in the low nibble.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class Fmt:
    name: str
    ml_dtype: type
    emax: int          # floor(log2(max_normal))
    max_normal: float
    mantissa_bits: int
    emin: int          # exponent of the smallest normal
    packed: bool


FORMATS = {
    "e4m3": Fmt("e4m3", ml_dtypes.float8_e4m3fn, 8, 448.0, 3, -6, False),
    "e5m2": Fmt("e5m2", ml_dtypes.float8_e5m2, 15, 57344.0, 2, -14, False),
    "e2m1": Fmt("e2m1", ml_dtypes.float4_e2m1fn, 2, 6.0, 1, 0, True),
}


def floor_log2(a: float) -> int:
    """Exact floor(log2(a)) for a finite a > 0 (frexp: a = m * 2^e, m in [0.5, 1))."""
    return math.frexp(a)[1] - 1


def scale_exponent(amax: float, fmt: Fmt, mode: str):
    """The block's scale exponent, or None for a NaN scale."""
    if not math.isfinite(amax):
        return None
    if amax == 0.0:
        return -127
    if mode == "floor":
        s = floor_log2(amax) - fmt.emax
    elif mode == "trn3":
        s = floor_log2(amax) - (fmt.emax - 1)
    elif mode == "rceil":
        # smallest integer s with amax / 2^s <= max_normal, i.e. ceil(log2(amax/max))
        s = floor_log2(amax) - fmt.emax - 2
        while amax > math.ldexp(fmt.max_normal, s):
            s += 1
    else:
        raise ValueError(mode)
    return max(-127, min(127, s))


def rne_exact(v: float, fmt: Fmt) -> float:
    """Round a finite float64 to the format's grid, nearest-even, by hand."""
    a = abs(v)
    if a == 0.0:
        return v
    e = max(floor_log2(a), fmt.emin)
    quantum = math.ldexp(1.0, e - fmt.mantissa_bits)
    return math.copysign(round(a / quantum) * quantum, v)  # round(): ties to even


def element_code(v: float, fmt: Fmt) -> int:
    """Element byte/nibble for the (exact) scaled value v: clamp, then RNE."""
    v = max(-fmt.max_normal, min(fmt.max_normal, v))
    if float(np.float32(v)) == v:
        rounded = np.float32(v)          # ml_dtypes rounds this (RNE)
    else:
        rounded = np.float32(rne_exact(v, fmt))   # below float32 precision: round by hand
    return int(np.array(rounded).astype(fmt.ml_dtype).view(np.uint8))


def quantize(x: np.ndarray, fmt_name: str, block: int, mode: str):
    """Reference MX quantization along the last dim.

    Returns (scale bytes uint8 (..., K/block), element bytes uint8: (..., K)
    for FP8, packed (..., K/2) for FP4).
    """
    fmt = FORMATS[fmt_name]
    lead, k = x.shape[:-1], x.shape[-1]
    rows = np.asarray(x).reshape(-1, block)
    scales = np.zeros(rows.shape[0], np.uint8)
    codes = np.zeros(rows.shape, np.uint8)
    for i, row in enumerate(rows):
        values = [float(v) for v in row]
        amax = max(abs(v) for v in values) if not any(math.isnan(v) for v in values) else math.nan
        s = scale_exponent(amax, fmt, mode)
        if s is None:
            scales[i] = 0xFF
            continue
        scales[i] = s + 127
        codes[i] = [element_code(math.ldexp(v, -s), fmt) for v in values]
    codes = codes.reshape(*lead, k)
    if fmt.packed:
        codes = (codes[..., 0::2] & 0xF) | ((codes[..., 1::2] & 0xF) << 4)
    return scales.reshape(*lead, k // block), codes


def dequantize(scales: np.ndarray, elements: np.ndarray, fmt_name: str, block: int) -> np.ndarray:
    """float64 values of reference-encoded MX data."""
    fmt = FORMATS[fmt_name]
    if fmt.packed:
        codes = np.stack([elements & 0xF, elements >> 4], axis=-1).reshape(*elements.shape[:-1], -1)
    else:
        codes = elements
    values = codes.astype(np.uint8).view(fmt.ml_dtype).astype(np.float64)
    exps = scales.astype(np.float64) - 127.0
    scale = np.where(scales == 0xFF, np.nan, np.exp2(exps))
    return values * np.repeat(scale, block, axis=-1)
