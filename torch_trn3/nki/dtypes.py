"""NKI data types as torch dtypes (and the packed MX element types).

Why torch dtypes: a tile's values live in a torch tensor of that dtype, so
writing a result into a tile *is* the hardware's rounding to the tile dtype
(bf16/fp16 round to nearest even; fp8 as torch casts, see TRN3_FACTS) and
``t.dtype == nl.bfloat16`` holds for kernel inputs and tiles alike.

The 4-packed FP8 types ``float8_e4m3fn_x4`` / ``float8_e5m2_x4`` (MXFP8 data
for ``nc_matmul_mx`` / ``quantize_mx``) are 32-bit containers of four FP8
values along the free dim; a tile of them keeps its four elements in a
hidden trailing dim of the element dtype.
"""
from __future__ import annotations

import torch


class PackedDtype:
    """Four ``element`` values per 32-bit element, packed along the free dim."""

    __slots__ = ("name", "element", "pack")

    def __init__(self, name: str, element: torch.dtype, pack: int = 4):
        self.name = name
        self.element = element
        self.pack = pack

    @property
    def itemsize(self) -> int:
        return self.pack * torch.empty((), dtype=self.element).element_size()

    def __repr__(self) -> str:
        return f"nl.{self.name}"


bfloat16 = torch.bfloat16
float16 = torch.float16
float32 = torch.float32
tfloat32 = torch.float32  # stored as float32; nc_matmul takes it like float32
float8_e4m3 = torch.float8_e4m3fn
float8_e4m3fn = torch.float8_e4m3fn
float8_e5m2 = torch.float8_e5m2
float8_e8m0fnu = torch.float8_e8m0fnu
int8 = torch.int8
int16 = torch.int16
int32 = torch.int32
uint8 = torch.uint8
bool_ = torch.bool
float8_e4m3fn_x4 = PackedDtype("float8_e4m3fn_x4", torch.float8_e4m3fn)
float8_e5m2_x4 = PackedDtype("float8_e5m2_x4", torch.float8_e5m2)

#: Float dtypes the compute engines take (they compute in fp32 and round on write).
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float8_e4m3fn, torch.float8_e5m2)
INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.uint8, torch.bool)
#: Dtypes ``nc_matmul`` multiplies [NKI docs: fp8 e4m3/e5m2, bf16, fp16, tf32, fp32].
MATMUL_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2, torch.bfloat16, torch.float16, torch.float32)
#: Dtypes a PSUM matmul result may have (FP32 accumulation; v4 can write BF16).
PSUM_MATMUL_DTYPES = (torch.float32, torch.bfloat16)

_HW_NAMES = {
    torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16",
    torch.float8_e4m3fn: "fp8", torch.float8_e5m2: "fp8", torch.float8_e8m0fnu: "uint8",
    torch.int8: "int8", torch.int16: "int16", torch.int32: "int32", torch.uint8: "uint8",
    torch.bool: "bool",
}


def itemsize(dtype) -> int:
    """Bytes per element of ``dtype`` (a packed type counts its 32-bit container)."""
    if isinstance(dtype, PackedDtype):
        return dtype.itemsize
    return torch.empty((), dtype=dtype).element_size()


def hw_name(dtype) -> str:
    """The chip model's name for ``dtype`` ("bf16", "fp32", "fp8", ...)."""
    if isinstance(dtype, PackedDtype):
        return "fp8"
    return _HW_NAMES.get(dtype, "fp32")


def dtype_name(dtype) -> str:
    if isinstance(dtype, PackedDtype):
        return dtype.name
    return str(dtype).replace("torch.", "")


def check_dtype(dtype, where: str):
    """``dtype`` if NKI has it, else :class:`NkiDtypeError`."""
    from .errors import NkiDtypeError

    if isinstance(dtype, PackedDtype) or dtype in _HW_NAMES:
        return dtype
    raise NkiDtypeError(where, f"unsupported dtype {dtype!r}",
                        limit="one of nl.float32, nl.bfloat16, nl.float16, nl.float8_e4m3, "
                              "nl.float8_e5m2, nl.int8/16/32, nl.uint8, nl.float8_e4m3fn_x4, ...")
