"""``NkiTensor``: a view of an allocation, as a kernel sees tensors and tiles.

Why views: slicing a tile must not copy (an instruction writing ``t[:, 0:128]``
writes into ``t``), so an ``NkiTensor`` is a torch view of its allocation's
values plus the same view of its per-element state. Slices are checked
against the tensor they select from (Python would silently clip
``t[0:200]`` of a 128-row tile; the compiler rejects it).
"""
from __future__ import annotations

from typing import Tuple

import torch

from .dtypes import PackedDtype, dtype_name
from .errors import NkiIndexError, NkiShapeError
from .memory import Allocation, MemoryRegion, state_view


class DynSlice:
    """``nl.ds(start, size)``: ``size`` elements from ``start`` (step ``step``)."""

    __slots__ = ("start", "size", "step")

    def __init__(self, start: int, size: int, step: int = 1):
        self.start = int(start)
        self.size = int(size)
        self.step = int(step)

    def __repr__(self) -> str:
        return f"nl.ds({self.start}, {self.size})"


def ds(start, size, step: int = 1) -> DynSlice:
    return DynSlice(start, size, step)


def _index_text(key) -> str:
    def one(k):
        if isinstance(k, slice):
            a = "" if k.start is None else k.start
            b = "" if k.stop is None else k.stop
            return f"{a}:{b}" + ("" if k.step in (None, 1) else f":{k.step}")
        return repr(k)
    return "[" + ", ".join(one(k) for k in key) + "]"


class NkiTensor:
    """A tensor in HBM, SBUF or PSUM (``nl.ndarray`` / a kernel argument), or a slice of one.

    ``shape`` and ``dtype`` are NKI's (dim 0 of an on-chip tensor is the
    partition dim); ``buffer`` is its :class:`MemoryRegion`.
    """

    __slots__ = ("data", "alloc", "_key")

    def __init__(self, alloc: Allocation, data: torch.Tensor, state=None, key=None):
        self.alloc = alloc
        self.data = data
        self._key = key

    @property
    def state(self):
        """Per-element write states of this view (None while the allocation has none)."""
        if self.alloc.state is None:
            return None
        return state_view(self.alloc, self.data)

    @property
    def whole(self) -> bool:
        """True if this view covers its whole allocation."""
        return self.data.numel() == self.alloc.data.numel()

    # --------------------------------------------------------------- metadata
    @property
    def shape(self) -> Tuple[int, ...]:
        shape = tuple(self.data.shape)
        return shape[:-1] if isinstance(self.alloc.dtype, PackedDtype) else shape

    @property
    def dtype(self):
        return self.alloc.dtype

    @property
    def buffer(self) -> MemoryRegion:
        return self.alloc.buffer

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def name(self) -> str:
        return self.alloc.name

    def describe(self) -> str:
        """``name[slice] (shape, dtype, buffer)`` for error messages."""
        where = self.alloc.name + ("" if self._key is None else _index_text(self._key))
        return f"{where} {list(self.shape)} {dtype_name(self.dtype)} in {self.alloc.buffer.value}"

    def __repr__(self) -> str:
        return f"NkiTensor({self.describe()})"

    def __len__(self) -> int:
        return self.shape[0]

    # ---------------------------------------------------------------- slicing
    def __getitem__(self, key) -> "NkiTensor":
        if not isinstance(key, tuple):
            key = (key,)
        shape = self.shape
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = len(shape) - (len(key) - 1)
            key = key[:at] + (slice(None),) * fill + key[at + 1:]
        if len(key) > len(shape):
            raise NkiIndexError("indexing", f"{len(key)} indices for a {len(shape)}-d tensor",
                                tile=self.describe())
        index = []
        for dim, k in enumerate(key):
            size = shape[dim]
            if isinstance(k, DynSlice):
                k = slice(k.start, k.start + k.size * k.step, k.step)
            if isinstance(k, slice):
                step = 1 if k.step is None else int(k.step)
                start = 0 if k.start is None else int(k.start)
                stop = size if k.stop is None else int(k.stop)
                if step <= 0:
                    raise NkiIndexError("indexing", f"slice step {step} on dim {dim} must be positive",
                                        tile=self.describe())
                if start < 0 or stop > size or start > stop:
                    raise NkiIndexError("indexing", f"slice {start}:{stop} out of bounds on dim {dim}",
                                        tile=self.describe(), limit=f"0 <= start <= stop <= {size}")
                index.append(slice(start, stop, step))
            elif isinstance(k, (int,)) or (hasattr(k, "__index__") and not isinstance(k, NkiTensor)):
                i = int(k)
                if not 0 <= i < size:
                    raise NkiIndexError("indexing", f"index {i} out of bounds on dim {dim}",
                                        tile=self.describe(), limit=f"0 <= index < {size}")
                index.append(i)
            else:
                raise NkiIndexError("indexing", f"unsupported index {k!r} on dim {dim} "
                                    "(ints, slices and nl.ds are supported)", tile=self.describe())
        index = tuple(index)
        return NkiTensor(self.alloc, self.data[index], None, key)

    # -------------------------------------------------------------- reshaping
    def reshape(self, *shape) -> "NkiTensor":
        """A view with another shape (same elements, contiguous tensors only)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(s) for s in shape)
        extra = (self.data.shape[-1],) if isinstance(self.alloc.dtype, PackedDtype) else ()
        try:
            data = self.data.view(shape + extra)
        except RuntimeError as error:
            raise NkiShapeError("reshape", f"cannot view {list(self.shape)} as {list(shape)} ({error})",
                                tile=self.describe()) from None
        return NkiTensor(self.alloc, data, None, self._key)

    # Python operators build nothing on NKI tensors: say so instead of failing deep inside torch.
    def __bool__(self):
        raise TypeError("an NKI tensor has no truth value inside a kernel; compare with nisa.tensor_tensor")

    @property
    def is_hbm(self) -> bool:
        return self.alloc.buffer.is_hbm

    @property
    def is_psum(self) -> bool:
        return self.alloc.buffer is MemoryRegion.psum

    @property
    def is_sbuf(self) -> bool:
        return self.alloc.buffer is MemoryRegion.sbuf
