"""Cost of one compiled (fused) kernel on a logical device.

A Neuron-style compiler turns a chain of element-wise ops and reductions
into one kernel: each tile is loaded from HBM once, every op of the chain
runs on it while it sits in SBUF, and only the kernel's results go back to
HBM. So a fused kernel is priced as:

- HBM traffic: the bytes of the buffers it reads from and writes to outside
  itself (the caller measures them), plus spill traffic when its on-chip
  working set does not fit the device's SBUF;
- compute: each engine's share of the work — Scalar for 1:1 element-wise
  ops (transcendentals at the exp rate), Vector for reductions, GpSimd for
  gathers — with the engines of a core running concurrently on successive
  tiles, so the kernel takes as long as its busiest engine or its HBM
  traffic, whichever is longer (the roofline of :mod:`.cost`);
- issue overhead of the busiest engine's instructions, and the inter-core
  term on LNC=8 devices.

The kernel is placed on the timeline of its busiest engine (DMA when it
computes nothing, e.g. a fused copy).
"""
from __future__ import annotations

from dataclasses import dataclass

from .cost import (
    Engine,
    OpCost,
    _roofline,
    dma_cost,
    elementwise_cost,
    gpsimd_cost,
    reduction_cost,
)
from .lnc import LogicalDeviceSpec


@dataclass(frozen=True)
class KernelWork:
    """Element counts of one fused kernel, per engine (one count per element
    an op of the kernel processes)."""

    #: Element-wise results of plain arithmetic (add, mul, relu, where, ...).
    scalar_elems: int = 0
    #: Element-wise results of transcendentals (exp, sin, tanh, gelu, ...).
    transcendental_elems: int = 0
    #: Elements streamed through reductions (sum, max, var, ...).
    vector_elems: int = 0
    #: Elements gathered or scattered by data-dependent indexing.
    gpsimd_elems: int = 0


def sbuf_capacity(dev: LogicalDeviceSpec) -> int:
    """SBUF bytes of a logical device: one SBUF per NeuronCore it owns."""
    return dev.chip.core_memory.sbuf_bytes * dev.cores


def spill_bytes(dev: LogicalDeviceSpec, working_set_bytes: int) -> int:
    """HBM traffic of a working set that does not fit SBUF: the excess is
    written out once and read back once."""
    return 2 * max(0, working_set_bytes - sbuf_capacity(dev))


def fused_kernel_cost(dev: LogicalDeviceSpec, work: KernelWork, dtype: str,
                      hbm_bytes: int, working_set_bytes: int = 0) -> OpCost:
    """The modelled cost of one fused kernel (see the module docstring).

    ``hbm_bytes`` is what the kernel reads and writes outside itself;
    ``working_set_bytes`` what it keeps on chip at once; ``dtype`` the
    element type its engines compute in.
    """
    parts = []
    if work.scalar_elems:
        parts.append(elementwise_cost(dev, work.scalar_elems, dtype))
    if work.transcendental_elems:
        parts.append(elementwise_cost(dev, work.transcendental_elems, dtype, transcendental=True))
    if work.vector_elems:
        parts.append(reduction_cost(dev, work.vector_elems, 0, dtype))
    if work.gpsimd_elems:
        parts.append(gpsimd_cost(dev, work.gpsimd_elems, dtype))
    spill = spill_bytes(dev, working_set_bytes)
    traffic = hbm_bytes + spill
    notes = []
    if spill:
        notes.append(f"working set {working_set_bytes / 2**20:.1f} MiB exceeds SBUF "
                     f"({sbuf_capacity(dev) / 2**20:.0f} MiB): {spill / 2**20:.1f} MiB spilled")
    if not parts:
        copy = dma_cost(dev, traffic // 2)
        return copy if not notes else _with_notes(copy, notes)
    busy: dict = {}
    for part in parts:  # scalar and transcendental share the Scalar Engine
        compute, overhead, flops = busy.get(part.engine, (0.0, 0.0, 0.0))
        busy[part.engine] = (compute + part.compute_s, overhead + part.overhead_s, flops + part.flops)
    engine = max(busy, key=lambda e: busy[e][0] + busy[e][1])
    compute_s, overhead_s, _ = busy[engine]
    flops = sum(f for _, _, f in busy.values())
    instructions = sum(p.instructions for p in parts if p.engine is engine)
    notes.append("fused: intermediates stay in SBUF; engines " +
                 ", ".join(e.name.lower() for e in busy))
    return _roofline(dev, engine, flops, traffic, compute_s, overhead_s,
                     hbm_bytes / 2, instructions=instructions, notes=notes)


def _with_notes(cost: OpCost, notes) -> OpCost:
    from dataclasses import replace

    return replace(cost, notes=tuple(cost.notes) + tuple(notes))


def matmul_epilogue_cost(dev: LogicalDeviceSpec, matmul: OpCost, out_bytes: int,
                         epilogue: OpCost, product_kept: bool = False) -> OpCost:
    """A matmul and its element-wise epilogue (bias, activation, residual) as
    one Tensor Engine kernel: the epilogue reads the product out of PSUM on
    the Scalar Engine while the array works on the next tile (``epilogue``
    is priced without reading it from HBM), so the product (``out_bytes``)
    is written to HBM only if something else needs it (``product_kept``:
    another consumer, or an activation saved for backward), and the kernel
    takes as long as the longer of the two engines or its HBM traffic."""
    traffic = matmul.hbm_bytes - (0 if product_kept else out_bytes) + epilogue.hbm_bytes
    compute_s = max(matmul.compute_s + matmul.overhead_s,
                    epilogue.compute_s + epilogue.overhead_s)
    notes = tuple(matmul.notes) + (
        "epilogue fused: runs on the Scalar Engine out of PSUM; the product "
        f"({out_bytes / 2**20:.2f} MiB) " + ("is also stored" if product_kept else "skips HBM"),)
    return _roofline(dev, Engine.TENSOR, matmul.flops, traffic, compute_s, 0.0,
                     traffic / 2, utilisation=matmul.utilisation,
                     instructions=matmul.instructions, notes=notes)
