"""``torch_trn3.nki.language`` (``nl``): tensors, buffers, dtypes, loops, constants, operators.

Why: NKI kernels are written against ``nki.language`` (Neuron 2.33); this
module has the names they use with the same meaning, so a kernel ports by
changing its imports. Loops are plain Python ranges (each iteration runs
its instructions; the device timeline, not the loop kind, decides what
overlaps), and ``tile_size`` reads the limits from the chip spec.
"""
from __future__ import annotations

from ..hw import isa_cost
from .context import current
from .dtypes import (PackedDtype, bfloat16, bool_, float8_e4m3, float8_e4m3fn, float8_e4m3fn_x4, float8_e5m2,
                     float8_e5m2_x4, float8_e8m0fnu, float16, float32, int8, int16, int32, tfloat32, uint8)
from .memory import MemoryRegion
from .ops import *  # noqa: F401,F403  the operators: nl.add, nl.exp, ...
from .ops import ALL as _OPS
from .tensor import DynSlice, NkiTensor, ds

sbuf = MemoryRegion.sbuf
psum = MemoryRegion.psum
hbm = MemoryRegion.hbm
shared_hbm = MemoryRegion.shared_hbm
private_hbm = MemoryRegion.private_hbm


def _chip():
    from .. import machine

    if _current_chip is not None:
        return _current_chip
    return machine.chip


_current_chip = None


class _TileSizeMeta(type):
    """Class attributes computed from the chip spec (``nl.tile_size.pmax``)."""

    def _limits(cls):
        return isa_cost.limits(_chip())

    @property
    def pmax(cls) -> int:
        return cls._limits().pmax

    @property
    def psum_fmax(cls) -> int:
        return cls._limits().psum_bank_fmax

    @property
    def psum_bank_fmax(cls) -> int:
        return cls._limits().psum_bank_fmax

    @property
    def psum_bank_fmax_bytes(cls) -> int:
        return cls._limits().psum_bank_bytes

    @property
    def psum_num_banks(cls) -> int:
        return cls._limits().psum_banks

    @property
    def gemm_stationary_fmax(cls) -> int:
        return cls._limits().gemm_stationary_fmax

    @property
    def gemm_moving_fmax(cls) -> int:
        return cls._limits().gemm_moving_fmax

    @property
    def bn_stats_fmax(cls) -> int:
        return cls._limits().lane_fmax

    @property
    def sbuf_size_bytes(cls) -> int:
        return _chip().core_memory.sbuf_bytes

    @property
    def sbuf_fmax_bytes(cls) -> int:
        return cls._limits().sbuf_bytes_per_partition

    @property
    def sbuf_fmax(cls) -> int:
        return cls._limits().sbuf_bytes_per_partition // 4

    @property
    def total_available_sbuf_size(cls) -> int:
        return cls._limits().sbuf_bytes_per_partition


class tile_size(metaclass=_TileSizeMeta):
    """Hardware tile size constants of the chip the kernel runs on (pmax, psum_fmax, ...)."""


# ------------------------------------------------------------------ tensors
def ndarray(shape, dtype, buffer=sbuf, name: str = "", address=None) -> NkiTensor:
    """A new tensor of ``shape`` and ``dtype`` in ``buffer`` (default SBUF).

    SBUF/PSUM tensors count against the core's capacity while alive; HBM
    tensors (``nl.shared_hbm``/``nl.hbm``) are device tensors a kernel may
    return as its outputs.
    """
    if not isinstance(buffer, MemoryRegion):
        from .errors import NkiUsageError

        raise NkiUsageError("nki.language.ndarray", f"buffer={buffer!r} is not nl.sbuf, nl.psum, "
                            "nl.hbm, nl.shared_hbm or nl.private_hbm")
    if isinstance(shape, int):
        shape = (shape,)
    return current("nki.language.ndarray").allocate(shape, dtype, buffer, name, "nki.language.ndarray")


def zeros(shape, dtype, buffer=sbuf, name: str = "") -> NkiTensor:
    """:func:`ndarray` filled with zeros (on chip: one ``memset``)."""
    t = ndarray(shape, dtype, buffer=buffer, name=name)
    _fill(t, 0)
    return t


def full(shape, fill_value, dtype, buffer=sbuf, name: str = "") -> NkiTensor:
    t = ndarray(shape, dtype, buffer=buffer, name=name)
    _fill(t, fill_value)
    return t


def ones(shape, dtype, buffer=sbuf, name: str = "") -> NkiTensor:
    return full(shape, 1, dtype, buffer=buffer, name=name)


def zeros_like(x, dtype=None, buffer=None, name: str = "") -> NkiTensor:
    return zeros(x.shape, dtype or x.dtype, buffer=buffer or x.buffer, name=name)


def ndarray_like(x, dtype=None, buffer=None, name: str = "") -> NkiTensor:
    return ndarray(x.shape, dtype or x.dtype, buffer=buffer or x.buffer, name=name)


def _fill(t: NkiTensor, value) -> None:
    from . import isa

    if t.buffer.on_chip:
        isa.memset(t, value)
    else:
        t.data.fill_(value)
        t.alloc.written_once = True


def load(src: NkiTensor, dtype=None, name: str = "") -> NkiTensor:
    """An SBUF copy of ``src`` (``nisa.dma_copy`` into a new tile)."""
    from . import isa

    t = ndarray(src.shape, dtype or src.dtype, buffer=sbuf, name=name)
    isa.dma_copy(dst=t, src=src)
    return t


def store(dst: NkiTensor, value: NkiTensor) -> None:
    """``dst = value`` (``nisa.dma_copy``; a PSUM value goes through an SBUF copy first)."""
    from . import isa

    if value.buffer is psum:
        staged = ndarray(value.shape, dst.dtype, buffer=sbuf)
        isa.tensor_copy(staged, value)
        value = staged
    isa.dma_copy(dst=dst, src=value)


def copy(src: NkiTensor, dtype=None) -> NkiTensor:
    """An SBUF copy of an on-chip tile (``nisa.tensor_copy``)."""
    from . import isa

    t = ndarray(src.shape, dtype or src.dtype, buffer=sbuf)
    isa.tensor_copy(t, src)
    return t


# -------------------------------------------------------------------- loops
def affine_range(start, stop=None, step: int = 1):
    """Loop whose iterations are independent (the compiler may reorder/pipeline them)."""
    return range(start, stop, step) if stop is not None else range(start)


def sequential_range(start, stop=None, step: int = 1):
    """Loop whose iterations depend on each other (run in order)."""
    return range(start, stop, step) if stop is not None else range(start)


def static_range(start, stop=None, step: int = 1):
    """Loop unrolled at trace time."""
    return range(start, stop, step) if stop is not None else range(start)


# ------------------------------------------------------------ SPMD launch grid
def program_id(axis: int = 0) -> int:
    """Index of this program instance along ``axis`` of the launch grid."""
    return current("nki.language.program_id").program_id(axis)


def num_programs(axis: int = 0) -> int:
    return current("nki.language.num_programs").num_programs(axis)


def program_ndim() -> int:
    return len(current("nki.language.program_ndim").grid)


def device_dtype_of(x):
    return x.dtype
