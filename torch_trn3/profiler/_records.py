"""Profiled ops as Python objects, and their cost breakdown from the chip model.

The C++ core hands back one plain tuple per op (``_C._drain_records()``);
:func:`from_raw` turns it into an :class:`OpRecord`. The core keeps only the
totals it schedules (engine, start, end, FLOPs, HBM bytes); the breakdown
(compute / memory / issue overhead / inter-core seconds, array fill, notes)
is re-derived here with the same function the core memoized,
:func:`torch_trn3.chip_model.cost_of`, once per distinct op signature.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Tuple

from ..chip_model import _DTYPES, cost_of
from ..hw.cost import Engine, OpCost
from ..hw.lnc import LogicalDeviceSpec

#: ``((sizes...), c10 dtype name)``, e.g. ``((64, 64), "BFloat16")``.
TensorDesc = Tuple[Tuple[int, ...], str]

#: Lane names as the trace, the summary and the picture show them.
ENGINE_NAMES = {
    Engine.TENSOR: "Tensor",
    Engine.VECTOR: "Vector",
    Engine.SCALAR: "Scalar",
    Engine.GPSIMD: "GpSimd",
    Engine.DMA: "DMA",
    Engine.COLLECTIVE: "Collective",
}

#: Suffixes the scope tracker appends to a module path (see ``_scopes``).
BACKWARD_SUFFIX = " (backward)"
RECOMPUTE_SUFFIX = " (recompute)"

#: Ops whose backward re-runs part of the forward on the Tensor Engine: the
#: share of their FLOPs that is recompute (flash-attention backward recomputes
#: S = QK^T: 1 of the 5 matmuls the chip model charges).
_RECOMPUTE_SHARE = {
    "_scaled_dot_product_flash_attention_for_cpu_backward": 1 / 5,
    "_scaled_dot_product_flash_attention_backward": 1 / 5,
    "_scaled_dot_product_fused_attention_overrideable_backward": 1 / 5,
}


def base_name(op: str) -> str:
    """``"mm"`` from ``"aten::mm.out"`` (namespace and overload dropped)."""
    return op.partition("::")[2].partition(".")[0] if "::" in op else op.partition(".")[0]


def matmul_dtype(inputs: Tuple[TensorDesc, ...]) -> str:
    """The Tensor Engine mode of a matmul-class op, as the chip model picks it."""
    names = {d[1] for d in inputs}
    if "Float4_e2m1fn_x2" in names:
        return "mxfp4"
    if "Float8_e8m0fnu" in names:
        return "mxfp8"
    if not inputs:
        return "bf16"
    return _DTYPES.get(inputs[0][1], ("uint8", 1))[0]


#: Prefix of the names compiled (inductor) kernels are charged under.
COMPILED_PREFIX = "compiled::"


def is_compiled(op: str) -> bool:
    """True for a kernel torch.compile generated (alone, or as a matmul's epilogue)."""
    return op.startswith(COMPILED_PREFIX) or f"+{COMPILED_PREFIX}" in op


def fused_ops(op: str) -> Tuple[str, ...]:
    """The ATen ops fused into a compiled kernel (empty for other ops)."""
    if not is_compiled(op):
        return ()
    from ..compiler.kernel_info import KERNELS

    matmul, _, kernel = op.rpartition("+")
    record = KERNELS.get(kernel)
    return ((matmul,) if matmul else ()) + (record.ops if record else ())


def _cost(dev: LogicalDeviceSpec, op: str, inputs: tuple, outputs: tuple) -> Optional[OpCost]:
    if is_compiled(op):  # priced from its kernel record when it ran
        from ..compiler.runtime import last_cost

        found = last_cost(op)
        return found[0] if found else None
    return _cost_of_aten(dev, op, inputs, outputs)


@lru_cache(maxsize=None)
def _cost_of_aten(dev: LogicalDeviceSpec, op: str, inputs: tuple, outputs: tuple) -> Optional[OpCost]:
    try:
        return cost_of(dev, op, list(inputs), list(outputs))
    except (ValueError, IndexError, KeyError, TypeError):
        return None  # an op the model cannot price again; the record's totals still stand


@dataclass(frozen=True)
class OpRecord:
    """One op as the chip model ran it: when, where, and what it cost."""

    #: ATen name with overload, e.g. ``"aten::mm.out"``.
    name: str
    #: Module path while the op ran (``"GPT.blocks.0.attn.qkv"``), ``""`` when
    #: unknown; backward ops carry ``" (backward)"``, activation-checkpoint
    #: recompute ``" (recompute)"``.
    scope: str
    device: int
    stream: int
    engine: Engine
    #: Modelled seconds on the device's clock.
    start_s: float
    end_s: float
    #: Arithmetic operations (matmul: 2*m*n*k; lane engines: elements).
    flops: float
    hbm_bytes: float
    inputs: Tuple[TensorDesc, ...]
    outputs: Tuple[TensorDesc, ...]
    #: Index of the profiler step the op ran in (``profile.step()``).
    step: int = 0
    #: Modelled seconds of the op's duration spent waiting for HBM bandwidth
    #: that ops on other engines of the device held (shared HBM).
    hbm_stall_s: float = 0.0
    #: Background layout work (a transpose made contiguous, a row gather)
    #: that cost nothing because the Tensor Engine op named here did it while
    #: loading its operand ("" for every other op).
    folded_into: str = ""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def base(self) -> str:
        return base_name(self.name)

    @property
    def fused_ops(self) -> Tuple[str, ...]:
        """For a compiled kernel, the ATen ops fused into it."""
        return fused_ops(self.name)

    @property
    def is_backward(self) -> bool:
        return self.scope.endswith(BACKWARD_SUFFIX)

    @property
    def is_recompute(self) -> bool:
        return self.scope.endswith(RECOMPUTE_SUFFIX)

    @property
    def dtype(self) -> str:
        """The chip-model dtype: the matmul mode for Tensor Engine ops, else
        that of the largest tensor."""
        if self.engine is Engine.TENSOR:
            return matmul_dtype(self.inputs)
        descs = self.inputs + self.outputs
        if not descs:
            return "uint8"
        largest = max(descs, key=lambda d: _numel(d[0]))
        return _DTYPES.get(largest[1], ("uint8", 1))[0]

    @property
    def model_flops(self) -> float:
        """FLOPs the model needs: Tensor Engine FLOPs minus recompute (checkpoint
        re-runs of the forward; the QK^T that flash-attention backward redoes).
        Zero for other engines. See :attr:`profile.mfu`."""
        if self.engine is not Engine.TENSOR or self.is_recompute:
            return 0.0
        return self.flops * (1.0 - _RECOMPUTE_SHARE.get(self.base, 0.0))

    @property
    def hardware_flops(self) -> float:
        """Tensor Engine FLOPs executed, recompute included (zero for other engines)."""
        return self.flops if self.engine is Engine.TENSOR else 0.0

    def cost(self, dev: LogicalDeviceSpec) -> Optional[OpCost]:
        """The chip model's breakdown of this op on ``dev`` (None if it cannot
        be re-derived, e.g. a collective priced elsewhere, or it was folded
        into a matmul and cost nothing)."""
        if self.folded_into:
            return None
        return _cost(dev, self.name, self.inputs, self.outputs)


def _numel(sizes: Tuple[int, ...]) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n


def _descs(raw) -> Tuple[TensorDesc, ...]:
    return tuple((tuple(int(s) for s in sizes), str(dtype)) for sizes, dtype in raw)


def from_raw(raw: tuple, step: int) -> OpRecord:
    """An :class:`OpRecord` from one ``_C._drain_records()`` tuple."""
    (name, scope, device, stream, engine, start, end, flops, nbytes, inputs, outputs,
     stall, folded_into) = raw
    return OpRecord(str(name), str(scope), int(device), int(stream), Engine(int(engine)),
                    float(start), float(end), float(flops), float(nbytes),
                    _descs(inputs), _descs(outputs), step, float(stall), str(folded_into))


def shapes_text(descs: Tuple[TensorDesc, ...]) -> str:
    """``"[64, 128] bf16, [128, 128] bf16"`` for a table cell."""
    parts = []
    for sizes, dtype in descs:
        short = _DTYPES.get(dtype, (dtype, 1))[0]
        parts.append(f"[{', '.join(map(str, sizes))}] {short}")
    return ", ".join(parts)
