"""``torch_trn3.nki``: write, run and time NKI kernels on ``trn`` without the hardware.

Why: NKI (the Neuron Kernel Interface) is how hand-written Trainium kernels
reach the fast numbers, but off the hardware its simulator checks numerics
only. Here a kernel written against the public NKI API (``nki``,
``nki.language``, ``nki.isa``; Neuron 2.33 names and argument order) runs on
``trn`` tensors with the hardware's numerics, is checked as the compiler
would check it, and charges every instruction to its engine on the device's
modelled timeline. See ``README.md`` here for the supported subset.

Usage::

    import torch_trn3.nki as nki
    import torch_trn3.nki.language as nl
    import torch_trn3.nki.isa as nisa

    @nki.jit
    def add(a, b):
        out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        ta = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
        ...
        return out
"""
from __future__ import annotations

from . import errors, isa, language  # noqa: F401
from .errors import (NkiBufferError, NkiCapacityError, NkiDtypeError, NkiEngineError, NkiError,  # noqa: F401
                     NkiIndexError, NkiShapeError, NkiTileLimitError, NkiUninitializedReadError,
                     NkiUsageError)
from .jit import jit, last_kernel_report  # noqa: F401
from .report import KernelReport  # noqa: F401
from .tensor import NkiTensor  # noqa: F401

try:  # owned by the custom-op integration (nki-apps); optional while it lands
    from .custom_op import NKIOpError, custom_op  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["jit", "language", "isa", "last_kernel_report", "KernelReport", "NkiTensor", "NkiError",
           "custom_op"]
