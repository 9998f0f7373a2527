"""The math operators NKI instructions take as ``op=`` (``nl.add``, ``nl.exp``, ...).

Why objects and not torch functions: an instruction must know what kind of
operator it was given (a binary arithmetic op for ``tensor_tensor``, an
activation function for ``activation``, a reduction for ``tensor_reduce``),
whether it is a transcendental (the Scalar Engine's slower path) and which
engine runs it (``nl.power`` runs on GpSimd). Each operator computes in
float32 on whole tiles, as the engines do before they round to the
destination dtype.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch


class Op:
    """One NKI operator. ``binary(a, b)`` / ``unary(x)`` / ``reduce(x, dims)``
    are the float32 torch computations it stands for (None where the
    operator has no such form)."""

    __slots__ = ("name", "binary", "unary", "reduce", "transcendental", "bitvec", "gpsimd_only")

    def __init__(self, name: str, *, binary: Optional[Callable] = None, unary: Optional[Callable] = None,
                 reduce: Optional[Callable] = None, transcendental: bool = False, bitvec: bool = False,
                 gpsimd_only: bool = False):
        self.name = name
        self.binary = binary
        self.unary = unary
        self.reduce = reduce
        self.transcendental = transcendental
        self.bitvec = bitvec
        self.gpsimd_only = gpsimd_only

    def __repr__(self) -> str:
        return f"nl.{self.name}"

    def __call__(self, *args, **kwargs):
        from .language_ops import call_op

        return call_op(self, *args, **kwargs)


def _cmp(fn):
    return lambda a, b: fn(a, b).to(torch.float32)


def _sum(x, dims):
    return torch.sum(x, dim=dims, keepdim=True)


def _prod(x, dims):
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, dim=d, keepdim=True)
    return x


def _amax(x, dims):
    return torch.amax(x, dim=dims, keepdim=True)


def _amin(x, dims):
    return torch.amin(x, dim=dims, keepdim=True)


def _gelu_tanh(x):
    return torch.nn.functional.gelu(x, approximate="tanh")


# Binary arithmetic (Vector Engine), with their reductions where NKI has one.
add = Op("add", binary=torch.add, reduce=_sum)
subtract = Op("subtract", binary=torch.sub)
multiply = Op("multiply", binary=torch.mul, reduce=_prod)
divide = Op("divide", binary=torch.div)
maximum = Op("maximum", binary=torch.maximum, reduce=_amax)
minimum = Op("minimum", binary=torch.minimum, reduce=_amin)
max = Op("max", binary=torch.maximum, reduce=_amax)
min = Op("min", binary=torch.minimum, reduce=_amin)
power = Op("power", binary=torch.pow, gpsimd_only=True)
equal = Op("equal", binary=_cmp(torch.eq))
not_equal = Op("not_equal", binary=_cmp(torch.ne))
greater = Op("greater", binary=_cmp(torch.gt))
greater_equal = Op("greater_equal", binary=_cmp(torch.ge))
less = Op("less", binary=_cmp(torch.lt))
less_equal = Op("less_equal", binary=_cmp(torch.le))
logical_and = Op("logical_and", binary=_cmp(torch.logical_and))
logical_or = Op("logical_or", binary=_cmp(torch.logical_or))
logical_xor = Op("logical_xor", binary=_cmp(torch.logical_xor))
# Bit-vector operators: integer tiles, bit patterns, no casting.
bitwise_and = Op("bitwise_and", binary=torch.bitwise_and, bitvec=True)
bitwise_or = Op("bitwise_or", binary=torch.bitwise_or, bitvec=True)
bitwise_xor = Op("bitwise_xor", binary=torch.bitwise_xor, bitvec=True)
left_shift = Op("left_shift", binary=torch.bitwise_left_shift, bitvec=True)
right_shift = Op("right_shift", binary=torch.bitwise_right_shift, bitvec=True)

# Activation functions (Scalar Engine). Transcendentals take the spec's slower rate.
exp = Op("exp", unary=torch.exp, transcendental=True)
log = Op("log", unary=torch.log, transcendental=True)
tanh = Op("tanh", unary=torch.tanh, transcendental=True)
sigmoid = Op("sigmoid", unary=torch.sigmoid, transcendental=True)
gelu = Op("gelu", unary=torch.nn.functional.gelu, transcendental=True)
gelu_apprx_tanh = Op("gelu_apprx_tanh", unary=_gelu_tanh, transcendental=True)
silu = Op("silu", unary=torch.nn.functional.silu, transcendental=True)
softplus = Op("softplus", unary=torch.nn.functional.softplus, transcendental=True)
erf = Op("erf", unary=torch.erf, transcendental=True)
sin = Op("sin", unary=torch.sin, transcendental=True)
cos = Op("cos", unary=torch.cos, transcendental=True)
sqrt = Op("sqrt", unary=torch.sqrt, transcendental=True)
rsqrt = Op("rsqrt", unary=torch.rsqrt, transcendental=True)
reciprocal = Op("reciprocal", unary=torch.reciprocal, transcendental=True)
relu = Op("relu", unary=torch.relu)
square = Op("square", unary=torch.square)
abs = Op("abs", unary=torch.abs)
sign = Op("sign", unary=torch.sign)
negative = Op("negative", unary=torch.neg)
copy = Op("copy", unary=lambda x: x)
identity = Op("identity", unary=lambda x: x)

ALL = {name: obj for name, obj in globals().items() if isinstance(obj, Op)}
