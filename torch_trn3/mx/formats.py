"""Named constants and enums for the OCP MX formats Trainium3 runs natively.

Every number the MX numerics use lives here with the rule it comes from, so
the arithmetic modules read names, not literals. Sources: OCP Microscaling
Formats (MX) v1.0 spec, and ``TRN3_FACTS.md`` (NKI ``quantize_mx``).
"""

from __future__ import annotations

import enum

import torch

from ..hw.specs import MX_BLOCK_SIZE

# --- E8M0 shared scale (OCP MX v1.0, section 5.4) ---------------------------
#: E8M0 stores the unbiased exponent plus this bias; no sign, no mantissa.
E8M0_EXPONENT_BIAS = 127
#: Smallest representable scale exponent: byte 0x00 encodes 2^-127.
E8M0_MIN_EXPONENT = -127
#: Largest representable scale exponent: byte 0xFE encodes 2^127.
E8M0_MAX_EXPONENT = 127
#: Byte 0xFF is the only NaN; E8M0 has no Inf and no zero.
E8M0_NAN = 0xFF

#: ``MX_BLOCK_SIZE`` (imported above from hw/specs.py, where the number
#: lives): the only block size the Trainium3 Tensor Engine runs, one scale
#: per 32 contraction elements; ``to_mx`` accepts others for experiments.

# --- element formats ---------------------------------------------------------
#: Largest finite magnitude of each element format ("max normal").
F8E4M3_MAX = 448.0
F8E5M2_MAX = 57344.0
F4E2M1_MAX = 6.0
#: floor(log2(max normal)): the ``emax_elem`` of the OCP scale rule.
F8E4M3_EMAX = 8
F8E5M2_EMAX = 15
F4E2M1_EMAX = 2
#: Explicit mantissa bits of each element format.
F8E4M3_MANTISSA_BITS = 3
F8E5M2_MANTISSA_BITS = 2
F4E2M1_MANTISSA_BITS = 1

#: The 8 non-negative E2M1 magnitudes, indexed by the 3 low bits of a code
#: (bit 3 is the sign). Element 0 of a packed byte sits in the low nibble.
F4E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)

# --- NVFP4 (storage only on Trainium3) ---------------------------------------
#: NVFP4 blocks are 16 elements with an E4M3 (not E8M0) scale.
NVFP4_BLOCK_SIZE = 16


class ElemFormat(enum.Enum):
    """Element formats of the OCP MX family, keyed by their torch storage dtype.

    Each member carries ``(torch dtype, emax, max normal, mantissa bits)``.
    """

    E4M3 = (torch.float8_e4m3fn, F8E4M3_EMAX, F8E4M3_MAX, F8E4M3_MANTISSA_BITS)
    """MXFP8 E4M3: bias 7, no Inf, NaN = S.1111.111; max normal 448 = 1.75 * 2^8.
    Rounds to nearest even; finite overflow saturates to +-448."""

    E5M2 = (torch.float8_e5m2, F8E5M2_EMAX, F8E5M2_MAX, F8E5M2_MANTISSA_BITS)
    """MXFP8 E5M2: bias 15, IEEE-like with Inf; max normal 57344 = 1.75 * 2^15.
    Rounds to nearest even; MX conversion clamps finite overflow to +-57344
    (torch's own cast would overflow to Inf, so we clamp first)."""

    E2M1 = (torch.float4_e2m1fn_x2, F4E2M1_EMAX, F4E2M1_MAX, F4E2M1_MANTISSA_BITS)
    """MXFP4 E2M1: bias 1, no Inf/NaN, values {0, .5, 1, 1.5, 2, 3, 4, 6};
    max normal 6 = 1.5 * 2^2. Rounds to nearest even, saturates to +-6.
    Stored two per byte (``torch.float4_e2m1fn_x2``), element 0 in the low
    nibble, because torch has no 4-bit dtype with casts."""

    @property
    def dtype(self) -> torch.dtype:
        return self.value[0]

    @property
    def emax(self) -> int:
        return self.value[1]

    @property
    def max_normal(self) -> float:
        return self.value[2]

    @property
    def mantissa_bits(self) -> int:
        return self.value[3]

    @property
    def is_packed(self) -> bool:
        """True when two elements share one storage byte (FP4)."""
        return self is ElemFormat.E2M1

    @classmethod
    def from_dtype(cls, dtype) -> "ElemFormat":
        """The format stored as ``dtype``; TypeError for anything else."""
        for fmt in cls:
            if fmt.dtype == dtype:
                return fmt
        names = ", ".join(str(f.dtype) for f in cls)
        raise TypeError(
            f"unsupported MX element dtype {dtype}; supported: {names}")


class ScaleMode(enum.Enum):
    """How a block's E8M0 scale is chosen from its absolute maximum (amax)."""

    FLOOR = "floor"
    """OCP MX v1.0: scale = 2^(floor(log2(amax)) - emax_elem). The largest
    element may land above max normal and is then clamped (saturates)."""

    RCEIL = "rceil"
    """NVIDIA's round-up rule: scale = 2^ceil(log2(amax / max_normal)), the
    smallest power of two that keeps amax / scale <= max normal."""

    TRN3 = "trn3"
    """Trainium3 ``quantize_mx``: scale = 2^(floor(log2(amax)) - (emax_elem - 1)),
    one power of two above FLOOR, so amax / scale < 2^emax_elem and elements
    never saturate (at the cost of one bit of range at the bottom)."""

    @classmethod
    def parse(cls, mode) -> "ScaleMode":
        """Accept a member or its string name; ValueError names the choices."""
        if isinstance(mode, cls):
            return mode
        try:
            return cls(mode)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ValueError(
                f"unknown MX scale_mode {mode!r}; choose one of {choices}") from None
