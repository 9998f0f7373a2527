"""Typed errors for NKI kernels, each pointing at the kernel line.

Why: the Neuron compiler rejects a bad kernel at compile time with the
instruction, the operand and the limit; an emulator that only failed deep in
a torch op (or silently clipped a slice) would teach kernel authors nothing.
Every check in :mod:`torch_trn3.nki` raises a subclass of :class:`NkiError`
whose message names the instruction, the tile, the limit and the
``file:line`` of the kernel statement that issued it.
"""
from __future__ import annotations

import os
import sys
from typing import Optional

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def kernel_site() -> str:
    """``file:line`` of the innermost frame outside this package (the kernel line).

    Called only when an error is raised, so the stack walk costs nothing on
    the fast path.
    """
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


class NkiError(Exception):
    """Base of every error an NKI kernel raises on ``trn``.

    ``instruction`` is the NKI call (``"nki.isa.nc_matmul"``), ``tile`` the
    operand at fault, ``limit`` the rule it broke and ``site`` the kernel's
    ``file:line``.
    """

    def __init__(self, instruction: str, problem: str, *, tile: Optional[str] = None,
                 limit: Optional[str] = None, site: Optional[str] = None):
        self.instruction = instruction
        self.problem = problem
        self.tile = tile
        self.limit = limit
        self.site = site if site is not None else kernel_site()
        parts = [f"{instruction}: {problem}"]
        if tile is not None:
            parts.append(f"tile: {tile}")
        if limit is not None:
            parts.append(f"limit: {limit}")
        parts.append(f"at {self.site}")
        super().__init__("; ".join(parts))


class NkiShapeError(NkiError, ValueError):
    """Operand shapes that do not match (partition sizes, element counts, matmul K)."""


class NkiTileLimitError(NkiError, ValueError):
    """A tile larger than an instruction or a buffer takes (partitions > 128, N > 512, ...)."""


class NkiCapacityError(NkiError, MemoryError):
    """On-chip memory exhausted: SBUF bytes per partition or PSUM banks."""


class NkiBufferError(NkiError, TypeError):
    """An operand in a memory the instruction cannot read or write (HBM, SBUF, PSUM)."""


class NkiDtypeError(NkiError, TypeError):
    """A dtype the instruction does not take."""


class NkiEngineError(NkiError, ValueError):
    """An engine asked for something it cannot do (GpSimd reading PSUM, ...)."""


class NkiIndexError(NkiError, IndexError):
    """A slice or index outside the tensor it selects from."""


class NkiUninitializedReadError(NkiError, RuntimeError):
    """Reading on-chip memory nothing wrote (PSUM before any matmul, SBUF before any load)."""


class NkiUsageError(NkiError, RuntimeError):
    """An NKI call made outside a kernel, or an argument of the wrong kind."""
