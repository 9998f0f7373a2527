"""Called by inductor's generated wrappers at run time: charges each fused
kernel to the chip model as one op on its device's timeline.

The cost depends only on the kernel and the sizes of this call, so it is
memoized per (kernel, sizes): a training loop pays one dict lookup and one
C++ call per kernel launch. The last full cost of each kernel is kept for
the profiler and the compile report (:func:`last_cost`).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from .. import _C, chip_model, machine
from ..hw.cost import OpCost
from ..hw.fused import KernelWork, fused_kernel_cost, matmul_epilogue_cost
from .kernel_info import KERNELS, WORK_KINDS

_charges: Dict[Tuple, Tuple[int, float, float, float]] = {}
_last: Dict[str, Tuple[OpCost, int]] = {}


def _nbytes(tensors: Sequence) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def kernel_cost(op_name: str, reads: Sequence, writes: Sequence, sizes: Sequence[int]) -> OpCost:
    """The :class:`~torch_trn3.hw.cost.OpCost` of one call of a kernel."""
    *counts, working_set = (int(v) for v in sizes)
    work = KernelWork(**dict(zip(WORK_KINDS, counts)))
    cost = fused_kernel_cost(machine.logical, work, KERNELS[op_name].dtype,
                             _nbytes(reads) + _nbytes(writes), working_set)
    _last[op_name] = (cost, working_set)
    return cost


def last_cost(op_name: str) -> Optional[Tuple[OpCost, int]]:
    """(cost, SBUF working-set bytes) of the latest call of a compiled kernel."""
    return _last.get(op_name)


def _charge(op_name: str, key: Tuple, price, reads: tuple, writes: tuple) -> None:
    charge = _charges.get(key)
    if charge is None:
        cost = price()
        charge = _charges[key] = chip_model.timeline_charge(cost)
    tensors = writes or reads
    device = tensors[0].device.index if tensors else _C._current_device()
    engine, seconds, flops, nbytes, memory_s, compute_s = charge
    _C._charge(op_name, device, engine, seconds, flops, nbytes, list(reads), list(writes),
               memory_s, compute_s)


def charge_kernel(op_name: str, reads: tuple, writes: tuple, sizes: tuple) -> None:
    if _C._model_enabled():
        _charge(op_name, (op_name, sizes), lambda: kernel_cost(op_name, reads, writes, sizes),
                reads, writes)


def charge_matmul(op: str, inputs: tuple, outputs: tuple) -> None:
    """Charges an extern matmul (run uncharged) as eager would."""
    if _C._model_enabled():
        chip_model.charge(op, inputs, outputs)


def charge_matmul_epilogue(op: str, operands: tuple, product_kept: bool, op_name: str,
                           reads: tuple, writes: tuple, sizes: tuple) -> None:
    """Charges a matmul (``operands``: its inputs, then its product) and the
    element-wise kernel that consumes its product as one Tensor Engine
    kernel (``backend="trn3"``)."""
    if not _C._model_enabled():
        return
    *mm_inputs, mm_out = operands
    name = f"{op}+{op_name}"

    def price() -> OpCost:
        describe = chip_model.describe
        matmul = chip_model.cost_of(machine.logical, op, [describe(t) for t in mm_inputs],
                                    [describe(mm_out)])
        epilogue = kernel_cost(op_name, reads, writes, sizes)
        cost = matmul_epilogue_cost(machine.logical, matmul, _nbytes([mm_out]), epilogue,
                                    product_kept)
        _last[name] = (cost, _last[op_name][1])
        return cost

    shapes = tuple(tuple(t.shape) for t in mm_inputs)
    _charge(name, (name, shapes, sizes), price, tuple(mm_inputs) + tuple(reads), writes)
