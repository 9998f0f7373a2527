"""``nl.exp(x)``, ``nl.add(a, b)``: NKI's value-returning spellings of the operators.

Why: older kernels (and many tutorials) write ``y = nl.exp(x)``; these
allocate an SBUF tile for the result and issue the ISA instruction that
computes it (``activation`` for a function, ``tensor_tensor`` /
``tensor_scalar`` for a binary operator), so they are checked and charged
exactly like the explicit ISA calls.
"""
from __future__ import annotations

from .tensor import NkiTensor


def call_op(op, *args, dtype=None, **kwargs):
    from . import isa, language as nl

    if op.unary is not None and len(args) == 1:
        (x,) = args
        out = nl.ndarray(x.shape, dtype or x.dtype, buffer=nl.sbuf)
        isa.activation(out, op, x)
        return out
    if op.binary is not None and len(args) == 2:
        a, b = args
        if isinstance(a, NkiTensor) and isinstance(b, NkiTensor):
            out = nl.ndarray(a.shape, dtype or a.dtype, buffer=nl.sbuf)
            isa.tensor_tensor(out, a, b, op)
            return out
        if isinstance(a, NkiTensor):
            out = nl.ndarray(a.shape, dtype or a.dtype, buffer=nl.sbuf)
            isa.tensor_scalar(out, a, op, b)
            return out
        if isinstance(b, NkiTensor):
            out = nl.ndarray(b.shape, dtype or b.dtype, buffer=nl.sbuf)
            isa.tensor_scalar(out, b, op, a, reverse0=True)
            return out
    if op.reduce is not None and len(args) == 1 and "axis" in kwargs:
        (x,) = args
        axis = kwargs.pop("axis")
        keepdims = kwargs.pop("keepdims", False)
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        shape = [s for i, s in enumerate(x.shape) if i not in axes] if not keepdims else \
            [1 if i in axes else s for i, s in enumerate(x.shape)]
        if len(shape) == 1:
            shape.append(1)
        out = nl.ndarray(tuple(shape), dtype or x.dtype, buffer=nl.sbuf)
        isa.tensor_reduce(out, op, x, axis=axis, keepdims=keepdims)
        return out
    from .errors import NkiUsageError

    raise NkiUsageError(f"nki.language.{op.name}", f"cannot call {op!r} with {len(args)} argument(s) "
                        f"{sorted(kwargs)}; pass it as op= to an nki.isa instruction")
