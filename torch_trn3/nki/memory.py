"""Where NKI tensors live: HBM, SBUF and PSUM, and what each allocation costs.

Why: a kernel must fit its live tiles in one core's SBUF (32 MiB on
Trainium3, 24 MiB on Trainium2, 128 partitions) and PSUM (8 banks of 2 KiB
per partition); the compiler rejects a kernel that does not. Each on-chip
allocation is counted per partition while it is alive (a tile allocated in
a loop body is released when the next iteration rebinds its name, which is
how the compiler double-buffers) and the kernel fails at the allocation that
overflows, naming it and the kernel line.

Each allocation is also what the device timeline (``_C._charge``) tracks by
data pointer (its storage; the device tensor for HBM), so an instruction
reading a tile waits for the instruction that wrote it, and the profiler
shows the tiles' shapes and dtypes. A new tile may reuse a dead tile's host
address: its first write never waits on that address (it only sets its
ready time), and nothing reads a tile before it is written (checked).
"""
from __future__ import annotations

import enum
from typing import Optional

import torch


class MemoryRegion(enum.Enum):
    """The buffers ``nl.ndarray(..., buffer=)`` takes."""

    sbuf = "sbuf"
    psum = "psum"
    hbm = "hbm"
    shared_hbm = "shared_hbm"
    private_hbm = "private_hbm"

    @property
    def on_chip(self) -> bool:
        return self in (MemoryRegion.sbuf, MemoryRegion.psum)

    @property
    def is_hbm(self) -> bool:
        return not self.on_chip

    def __repr__(self) -> str:
        return f"nl.{self.value}"


#: Element states of an on-chip allocation (one uint8 per element).
UNWRITTEN, WRITTEN, MATMUL_WRITTEN = 0, 1, 2


class Allocation:
    """One ``nl.ndarray`` (or one kernel argument): its storage, state and accounting.

    ``data`` holds the values (a contiguous CPU tensor; for HBM a zero-copy
    view of the device tensor ``device_tensor``). On-chip allocations track
    what was written: ``full`` (every element written) and ``all_mm`` (every
    element last written by a matmul) while writes cover the whole
    allocation, and ``state``, one byte per element (unwritten / written /
    written by a matmul), from the first write that covers only part of it,
    so reading memory nothing wrote and PSUM accumulation are checked per
    element.
    ``dep`` is what the timeline tracks this allocation by.
    """

    __slots__ = ("buffer", "name", "dtype", "data", "state", "dep", "device_tensor", "read_only",
                 "written_once", "timeline_written", "full", "all_mm", "ctx", "pp_bytes", "banks", "__weakref__")

    def __init__(self, buffer: MemoryRegion, name: str, dtype, data: torch.Tensor, *,
                 device_tensor: Optional[torch.Tensor] = None, read_only: bool = False,
                 ctx=None, pp_bytes: int = 0, banks: int = 0):
        self.buffer = buffer
        self.name = name
        self.dtype = dtype
        self.data = data
        self.device_tensor = device_tensor
        self.read_only = read_only
        self.ctx = ctx
        self.pp_bytes = pp_bytes
        self.banks = banks
        # Per-element states are made only when a write covers part of the
        # allocation; whole-allocation writes are tracked by the flags below.
        self.state = None
        if buffer.on_chip:
            self.dep = data
            self.full = False
            self.written_once = False
        else:
            self.dep = device_tensor if device_tensor is not None else data
            # HBM holds whatever it holds (kernel inputs are initialised).
            self.full = True
            self.written_once = read_only
        self.all_mm = False
        #: True once an instruction writing this allocation was scheduled: later
        #: writes wait for it (so the ready time only moves forward).
        self.timeline_written = False

    def __del__(self):
        try:
            if self.buffer.on_chip and self.ctx is not None:
                self.ctx.release(self)
        except Exception:  # interpreter shutdown
            pass


def state_view(alloc: Allocation, data: torch.Tensor) -> torch.Tensor:
    """The per-element states of the view ``data`` of ``alloc`` (same strides:
    ``alloc.data`` and ``alloc.state`` are contiguous tensors of one shape)."""
    return alloc.state.as_strided(data.size(), data.stride(), data.storage_offset())


def ensure_state(alloc: Allocation) -> torch.Tensor:
    """``alloc.state``, made from the whole-allocation flags if it did not exist."""
    if alloc.state is None:
        initial = MATMUL_WRITTEN if alloc.all_mm else (WRITTEN if alloc.full else UNWRITTEN)
        alloc.state = torch.full(alloc.data.shape, initial, dtype=torch.uint8)
    return alloc.state
