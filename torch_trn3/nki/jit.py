"""``@nki.jit``: call an NKI kernel on torch tensors.

Why: the kernel body is ordinary Python that issues NKI instructions; a call
wraps each tensor argument as a read-only HBM tensor (a zero-copy view of
the ``trn`` memory), opens the kernel context (device, chip, on-chip
memory, charges), runs the body, and hands back the HBM tensors it returns
as the device tensors they are. Inputs are never written, so a failing
kernel leaves device memory outside its (fresh) outputs untouched.
"""
from __future__ import annotations

import functools
import itertools
from typing import Optional

import torch

from . import language as _nl
from .context import KernelContext
from .errors import NkiUsageError
from .report import KernelReport
from .tensor import NkiTensor

_LAST_REPORT: Optional[KernelReport] = None


def last_kernel_report() -> Optional[KernelReport]:
    """The :class:`KernelReport` of the last ``@nki.jit`` call in this process."""
    return _LAST_REPORT


def _device_of(args, name: str) -> Optional[torch.device]:
    devices = {a.device for a in args if isinstance(a, torch.Tensor)}
    if len(devices) > 1:
        raise NkiUsageError(f"nki.jit({name})", f"tensor arguments on several devices: {sorted(map(str, devices))}")
    if devices:
        return devices.pop()
    from .. import DEVICE_NAME

    return torch.device(DEVICE_NAME, torch.accelerator.current_device_index()) \
        if torch.accelerator.is_available() else None


def _unwrap(value):
    if isinstance(value, NkiTensor):
        if not value.alloc.buffer.is_hbm or value.alloc.device_tensor is None:
            raise NkiUsageError("nki.jit", f"a kernel returns HBM tensors; {value.describe()} is on chip")
        t = value.alloc.device_tensor
        if value.data.data_ptr() != value.alloc.data.data_ptr() or value.data.shape != value.alloc.data.shape:
            raise NkiUsageError("nki.jit", f"return whole HBM tensors, not slices ({value.describe()})")
        return t
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v) for v in value)
    return value


class Kernel:
    """An ``@nki.jit`` kernel. ``kernel(*args)`` runs it; ``kernel[grid](*args)``
    runs every instance of an SPMD launch grid (``nl.program_id``)."""

    def __init__(self, func, platform_target: Optional[str] = None, grid=()):
        self.func = func
        self.__wrapped__ = func
        self.platform_target = platform_target
        self.grid = tuple(grid)
        self.last_report: Optional[KernelReport] = None
        functools.update_wrapper(self, func)

    def __getitem__(self, grid) -> "Kernel":
        grid = grid if isinstance(grid, tuple) else (grid,)
        launcher = Kernel(self.func, self.platform_target, tuple(int(g) for g in grid))
        return launcher

    def _chip(self):
        from .. import machine
        from ..hw.specs import get_chip

        if self.platform_target is None:
            return machine.chip
        return get_chip(str(self.platform_target).lower())

    def __call__(self, *args, **kwargs):
        global _LAST_REPORT
        from .. import machine

        name = getattr(self.func, "__name__", "kernel")
        device = _device_of(list(args) + list(kwargs.values()), name)
        ctx = KernelContext(name, device, self._chip(), machine.lnc)
        previous_chip = _nl._current_chip
        _nl._current_chip = ctx.chip
        try:
            with torch.no_grad(), ctx:
                names = iter(f"arg{i}" for i in itertools.count())
                params = list(_param_names(self.func))

                def wrap(a, pname):
                    return ctx.wrap_input(a, pname) if isinstance(a, torch.Tensor) else a

                wargs = [wrap(a, params[i] if i < len(params) else next(names)) for i, a in enumerate(args)]
                wkwargs = {k: wrap(v, k) for k, v in kwargs.items()}
                if self.grid:
                    ctx.grid = self.grid
                    result = None
                    for pid in itertools.product(*(range(g) for g in self.grid)):
                        ctx.pid = pid
                        ctx.shared_index = -1
                        out = self.func(*wargs, **wkwargs)
                        result = out if result is None else result
                else:
                    result = self.func(*wargs, **wkwargs)
                out = _unwrap(result)
        finally:
            _nl._current_chip = previous_chip
        self.last_report = _LAST_REPORT = ctx.report()
        return out


def _param_names(func):
    import inspect

    try:
        return [p for p in inspect.signature(func).parameters]
    except (TypeError, ValueError):
        return []


def jit(func=None, *, platform_target: Optional[str] = None, mode: Optional[str] = None, **options):
    """Decorator making ``func`` an NKI kernel callable on torch tensors.

    ``platform_target`` ("trn3", "trn2") picks the chip whose limits and
    costs apply (default: the emulated machine's chip). Other options of
    the real ``nki.jit`` (``mode``, ...) are accepted and have no effect.
    """
    if func is None:
        return lambda f: Kernel(f, platform_target)
    return Kernel(func, platform_target)
