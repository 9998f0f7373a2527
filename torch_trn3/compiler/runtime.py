"""Called by inductor's generated wrappers at run time: charges each fused
kernel to the chip model as one op on its device's timeline.

The cost depends only on the kernel and the sizes of this call, so it is
memoized per (kernel, sizes): a training loop pays one dict lookup and one
C++ call per kernel launch.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

from .. import _C, machine
from ..hw.fused import KernelWork, fused_kernel_cost
from .kernel_info import KERNELS, WORK_KINDS

_costs: Dict[Tuple, Tuple[int, float, float, float]] = {}


def _nbytes(tensors: Sequence) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def kernel_cost(op_name: str, reads: Sequence, writes: Sequence, sizes: Sequence[int]):
    """The :class:`~torch_trn3.hw.cost.OpCost` of one call of a kernel."""
    info = KERNELS[op_name]
    *counts, working_set = (int(v) for v in sizes)
    work = KernelWork(**dict(zip(WORK_KINDS, counts)))
    return fused_kernel_cost(machine.logical, work, info.dtype,
                             _nbytes(reads) + _nbytes(writes), working_set)


def charge_kernel(op_name: str, reads: tuple, writes: tuple, sizes: tuple) -> None:
    if not _C._model_enabled():
        return
    key = (op_name, sizes)
    charge = _costs.get(key)
    if charge is None:
        cost = kernel_cost(op_name, reads, writes, sizes)
        charge = _costs[key] = (cost.engine.value, cost.time_s, cost.flops, float(cost.hbm_bytes))
    tensors = writes or reads
    device = tensors[0].device.index if tensors else _C._current_device()
    _C._charge(op_name, device, *charge, list(reads), list(writes))
