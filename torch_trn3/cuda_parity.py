"""trn accepts the dtypes CUDA accepts where the CPU kernel refuses them.

Libraries that take the CUDA path for any non-CPU device (Hugging Face
``transformers``: ``torch.histc`` on ``int32`` expert ids in its grouped-GEMM
MoE path) pass trn what CUDA accepts. The boxed fallback runs the CPU kernel,
so an op whose CPU kernel refuses a dtype CUDA's accepts fails on trn only.

Found by comparing OpInfo's CUDA and CPU dtypes in
``torch.testing._internal.common_methods_invocations.op_db`` and running each
op's samples on the CPU (``tests/test_cuda_parity.py`` keeps that list). The
kernels here close the gaps that are cheap to close with CUDA's semantics:

- ``histc`` on integer dtypes: CUDA's ``_histc_cuda_template`` - bounds
  converted to the input's dtype, ``min == max`` takes the data's extremes,
  equal extremes widen by one each way, bins computed in int64
  (``(x - min) * bins / (max - min)``, the last bin closed), output in the
  input's dtype;
- ``trace`` on ``bool``: CUDA's ``diagonal().sum()``, an int64 count;
- ``nansum`` on complex dtypes: CUDA's ``NanSumOps`` (an element with a NaN
  in either part counts as zero); ``nanmean`` follows, it is composite;
- Half/BFloat16 for ``avg_pool3d``, ``multi_margin_loss``,
  ``multilabel_margin_loss`` and ``_upsample_bilinear2d_aa`` (forward and
  backward): CUDA computes these in float32 (``acc_type``) and rounds once to
  the input's dtype; here the CPU float32 kernel runs and the result is
  rounded once.

Each kernel runs on zero-copy CPU views of the trn tensors, copies its
results into device memory and charges the op once to the chip model, like
the other Python kernels (:mod:`torch_trn3.attention`). Dtypes the CPU
kernel supports take the same path unchanged, so their values are the
CPU's. Ops on hot paths (``abs`` on ``bool``, ComplexHalf element-wise math)
are left to the fallback: a Python kernel would slow every dtype.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, Iterable, Tuple

import torch
from torch.utils._pytree import tree_map

from . import _C, _aten_kernels, chip_model

_HALF_TYPES = (torch.float16, torch.bfloat16)
_INT_TYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _is_trn(t) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type not in ("cpu", "meta")


def _cpu(t):
    return _C._cpu_view(t) if _is_trn(t) else t


def _tensors(tree) -> list:
    if isinstance(tree, torch.Tensor):
        return [tree]
    out = []
    tree_map(lambda t: out.append(t) if isinstance(t, torch.Tensor) else None, tree)
    return out


_costs: Dict[tuple, tuple] = {}


def _charge(op: str, inputs: list, outputs: list) -> None:
    """:func:`chip_model.charge`, with the cost memoized on the shapes and
    dtypes (as the C++ core memoizes the fallback's)."""
    from . import machine

    descs = (op, tuple(chip_model.describe(t) for t in inputs), tuple(chip_model.describe(t) for t in outputs))
    cost = _costs.get(descs)
    if cost is None:
        c = chip_model.cost_of(machine.logical, op, list(descs[1]), list(descs[2]))
        cost = _costs[descs] = chip_model.timeline_charge(c)
    engine, seconds, flops, nbytes, memory_s, compute_s = cost
    _C._charge(op, outputs[0].device.index, engine, seconds, flops, nbytes, inputs, outputs,
               memory_s, compute_s)


def _finish(op_name: str, device: torch.device, inputs, result_cpu):
    """Copies CPU results to ``device`` and charges ``aten::op_name`` once."""
    with chip_model.uncharged():
        if isinstance(result_cpu, torch.Tensor):
            result = result_cpu.to(device)
        else:
            result = tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, result_cpu)
    outs = _tensors(result)
    if outs:
        _charge(f"aten::{op_name}", [t for t in _tensors(inputs) if _is_trn(t)], outs)
    return result


def _device_of(args) -> torch.device:
    for t in _tensors(args):
        if _is_trn(t):
            return t.device
    raise RuntimeError("cuda_parity kernel called without a trn tensor")


def float32_compute(op_name: str) -> Callable:
    """A trn kernel for ``op_name`` that, for Half/BFloat16 inputs, runs the
    CPU float32 kernel and rounds the floating outputs once to the input's
    dtype (CUDA's ``acc_type`` computation); other dtypes run as on CPU."""
    packet, _, overload = op_name.partition(".")
    op = getattr(getattr(torch.ops.aten, packet), overload or "default")

    def kernel(*args, **kwargs):
        device = _device_of((args, kwargs))
        low = next((t.dtype for t in _tensors((args, kwargs)) if t.dtype in _HALF_TYPES), None)
        widen = (lambda t: t.float() if isinstance(t, torch.Tensor) and t.dtype == low else t)
        with chip_model.uncharged():
            cargs, ckwargs = tree_map(_cpu, (args, kwargs))
            if low is not None:
                cargs, ckwargs = tree_map(widen, (cargs, ckwargs))
            result = op(*cargs, **ckwargs)
            if low is not None:
                result = tree_map(
                    lambda t: t.to(low) if isinstance(t, torch.Tensor) and t.dtype == torch.float32 else t,
                    result)
        return _finish(op_name, device, (args, kwargs), result)

    kernel.__name__ = f"{packet}_float32_compute"
    return kernel


def out_variant(functional: Callable, out_names: Tuple[str, ...]) -> Callable:
    """The kernel of an ``out=`` overload: the functional kernel, then its
    results resized into and copied to the ``out`` tensors."""

    def kernel(*args, **kwargs):
        outs = [kwargs.pop(name) for name in out_names]
        result = functional(*args, **kwargs)
        results = (result,) if isinstance(result, torch.Tensor) else tuple(result)
        with chip_model.uncharged():
            for out, value in zip(outs, results):
                if out.dtype != value.dtype:
                    raise RuntimeError(f"Expected out tensor to have dtype {value.dtype}, but got {out.dtype} instead")
                if out.shape != value.shape:
                    out.resize_(value.shape)
                out.copy_(value)
        return outs[0] if len(outs) == 1 else tuple(outs)

    kernel.__name__ = f"{functional.__name__}_out"
    return kernel


def _wrap_to(value: int, dtype: torch.dtype) -> int:
    """``value`` converted to ``dtype`` as C++ converts an int64 (wrapping)."""
    bits = torch.iinfo(dtype).bits
    value &= (1 << bits) - 1
    return value - (1 << bits) if dtype.is_signed and value >= 1 << (bits - 1) else value


def _histc_int(x: torch.Tensor, bins: int, min, max) -> torch.Tensor:
    """CUDA's histc of an integer CPU tensor (``_histc_cuda_template``)."""
    if bins <= 0:
        raise RuntimeError("bins must be > 0")
    lo_acc, hi_acc = int(min), int(max)  # Scalar -> acc_type (int64): truncates
    lo, hi = _wrap_to(lo_acc, x.dtype), _wrap_to(hi_acc, x.dtype)  # -> input_t
    if lo_acc == hi_acc and x.numel() > 0:
        lo, hi = (int(v) for v in torch.aminmax(x))
    if lo == hi:
        lo, hi = _wrap_to(lo - 1, x.dtype), _wrap_to(hi + 1, x.dtype)
    if not lo < hi:
        raise RuntimeError("max must be larger than min")
    v = x.reshape(-1).to(torch.int64)
    # bin = (x - min) * bins / (max - min) in int64; x == max lands in the last
    # bin (closed); values outside [min, max] go to a spare bin, dropped.
    index = ((v - lo) * bins).div_(hi - lo, rounding_mode="trunc").clamp_(max=bins - 1)
    index.masked_fill_((v < lo) | (v > hi), bins)
    return torch.bincount(index, minlength=bins + 1)[:bins].to(x.dtype)


def histc(self, bins=100, min=0, max=0):
    """trn kernel of ``aten::histc``: CUDA's semantics for integer inputs."""
    with chip_model.uncharged():
        x = _cpu(self)
        if x.dtype in _INT_TYPES:
            result = _histc_int(x, bins, min, max)
        else:
            result = torch.ops.aten.histc.default(x, bins, min, max)
    return _finish("histc", self.device, (self,), result)


def trace(self):
    """trn kernel of ``aten::trace``: ``bool`` as CUDA (``diagonal().sum()``)."""
    with chip_model.uncharged():
        x = _cpu(self)
        if x.dtype == torch.bool:
            if x.dim() != 2:
                raise RuntimeError("trace: expected a matrix, but got tensor with dim " + str(x.dim()))
            result = x.diagonal().sum()
        else:
            result = torch.ops.aten.trace.default(x)
    return _finish("trace", self.device, (self,), result)


def _nansum_cpu(x, dim, keepdim, dtype):
    if x.is_complex():
        x = torch.where(torch.isnan(x.real) | torch.isnan(x.imag), torch.zeros((), dtype=x.dtype), x)
        return torch.ops.aten.sum.dim_IntList(x, dim, keepdim, dtype=dtype)
    return torch.ops.aten.nansum.default(x, dim, keepdim, dtype=dtype)


def nansum(self, dim=None, keepdim=False, *, dtype=None):
    """trn kernel of ``aten::nansum``: complex as CUDA (NaN in either part -> 0)."""
    with chip_model.uncharged():
        result = _nansum_cpu(_cpu(self), dim, keepdim, dtype)
    return _finish("nansum", self.device, (self,), result)


FLOAT32_COMPUTE_OPS = (
    "avg_pool3d", "avg_pool3d_backward",
    "multi_margin_loss", "multi_margin_loss_backward",
    "multilabel_margin_loss_forward", "multilabel_margin_loss_backward",
    "_upsample_bilinear2d_aa", "_upsample_bilinear2d_aa_backward",
)

# What trn accepts beyond the CPU kernel, as CUDA does: OpInfo name -> dtypes.
FIXED: Dict[str, Tuple[torch.dtype, ...]] = {
    "histc": _INT_TYPES,
    "trace": (torch.bool,),
    "nansum": (torch.complex64, torch.complex128),
    "nanmean": (torch.complex64, torch.complex128),
    "nn.functional.avg_pool3d": _HALF_TYPES,
    "nn.functional.multi_margin_loss": _HALF_TYPES,
    "nn.functional.multilabel_margin_loss": _HALF_TYPES,
    "_upsample_bilinear2d_aa": _HALF_TYPES,
}


# The out= overloads of FLOAT32_COMPUTE_OPS: overload name -> the out arguments.
_OUT_OVERLOADS = {
    "avg_pool3d.out": ("out",), "avg_pool3d_backward.grad_input": ("grad_input",),
    "multi_margin_loss.out": ("out",), "multi_margin_loss_backward.grad_input": ("grad_input",),
    "multilabel_margin_loss_forward.output": ("output", "is_target"),
    "multilabel_margin_loss_backward.grad_input": ("grad_input",),
    "_upsample_bilinear2d_aa.out": ("out",), "_upsample_bilinear2d_aa_backward.grad_input": ("grad_input",),
}


def kernels() -> Dict[str, Callable]:
    table: Dict[str, Callable] = {name: float32_compute(name) for name in FLOAT32_COMPUTE_OPS}
    for name, out_names in _OUT_OVERLOADS.items():
        table[name] = out_variant(table[name.partition(".")[0]], out_names)
    table.update({"histc": histc, "histc.out": out_variant(histc, ("out",)), "trace": trace,
                  "nansum": nansum, "nansum.out": out_variant(nansum, ("out",))})
    return table


_lib = None


def register(device_key: str = "PrivateUse1") -> None:
    """Registers the kernels for the trn dispatch key (once). Some of these
    ops already route to the fallback from C++ (they have composite kernels
    that would shadow it); the Python kernel replaces that route."""
    global _lib
    if _lib is not None:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="(?s).*Overriding a previously registered kernel")
        _lib = _aten_kernels.register(kernels(), device_key)
