"""What the chip model needs to know of one fused kernel inductor generated.

Gathered at code-generation time from the scheduler nodes fused into the
kernel (their ATen origins and iteration ranges) and from the kernel's
arguments (which buffers it reads and writes outside itself). Element counts
are sympy expressions of the graph's size symbols, so dynamic shapes are
priced with the sizes of each call.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import sympy

from ..hw.cost import Engine, engine_for_op, is_transcendental

#: Work kinds a kernel's element counts are split into (hw.fused.KernelWork fields).
WORK_KINDS = ("scalar_elems", "transcendental_elems", "vector_elems", "gpsimd_elems")

_ids = itertools.count()


@dataclass(frozen=True)
class KernelRecord:
    """What a generated module declares about one of its kernel calls; the
    chip model prices the call from it and the profiler and compile report
    show it. Generated code builds these with :func:`register_kernel` when
    it is loaded (also from inductor's on-disk cache, in a later process)."""

    #: Inductor's kernel name, e.g. "cpp_fused_add_relu_sin_sum_0".
    name: str
    #: The ATen ops fused into the kernel, as "aten::sin" (before decomposition).
    ops: Tuple[str, ...]
    #: Compute dtype of the kernel's engines (hw dtype name: "fp32", "bf16").
    dtype: str
    #: Buffers the kernel reads / writes outside itself, and those it keeps
    #: inside (wrapper names).
    reads: Tuple[str, ...] = ()
    writes: Tuple[str, ...] = ()
    internal: Tuple[str, ...] = ()
    #: The graph the kernel belongs to, e.g. "graph 0 (forward)".
    graph: str = ""
    #: A process-wide unique number (kernel names repeat across graphs).
    uid: int = -1

    @property
    def op_name(self) -> str:
        """The name the kernel is charged and profiled under."""
        return f"compiled::{self.name}#{self.uid}"


#: Every kernel record loaded in this process, by op_name.
KERNELS: Dict[str, KernelRecord] = {}


def register_kernel(name: str, ops, dtype: str, reads=(), writes=(), internal=(),
                    graph: str = "") -> str:
    """Called by generated code at load time; returns the kernel's op name."""
    record = KernelRecord(name, tuple(ops), dtype, tuple(reads), tuple(writes), tuple(internal),
                          graph, uid=next(_ids))
    KERNELS[record.op_name] = record
    return record.op_name


@dataclass
class KernelInfo:
    """One kernel call at code-generation time: its record, plus its element
    counts per work kind and its on-chip working set (bytes) as sympy
    expressions of the graph's size symbols."""

    record: KernelRecord
    work: Dict[str, sympy.Expr]
    working_set: sympy.Expr
    #: Names of the scheduler nodes fused into the kernel.
    node_names: Tuple[str, ...] = ()
    #: For buffers updated in place: every name the buffer had (the last is
    #: the one passed to the kernel).
    aliases: Dict[str, Tuple[str, ...]] = field(default_factory=dict)

    def names_of(self, buffer: str) -> Tuple[str, ...]:
        return self.aliases.get(buffer, (buffer,))

_HW_DTYPES = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16",
              "torch.float64": "fp64"}


def _aten_name(target) -> str:
    """"aten::sin" for an FX node's target."""
    packet = getattr(target, "_overloadpacket", None)
    if packet is not None:
        return f"aten::{packet.__name__}"
    return str(getattr(target, "__name__", target))


def _node_ops(node) -> Tuple[List[str], List[str]]:
    """(the user-level ATen ops fused into ``node``, the decomposed ops it
    computes). The first names the kernel; the second prices it (a softmax
    is an amax, a sub, an exp, a sum and a div)."""
    origins = [o for o in (getattr(node.node, "origins", ()) or ()) if o.op == "call_function"]
    user = {_aten_name(o.meta.get("original_aten") or o.target) for o in origins}
    computed = {_aten_name(o.target) for o in origins}
    return sorted(user), sorted(computed)


def _product(values) -> sympy.Expr:
    out = sympy.Integer(1)
    for v in values:
        out *= v
    return out


def graph_label() -> str:
    """"graph 3 (backward)" for the graph inductor is generating."""
    from torch._inductor.virtualized import V

    graph = V.graph
    kind = "backward" if graph.is_backward else "inference" if graph.is_inference else "forward"
    return f"graph {graph.graph_id if graph.graph_id is not None else '?'} ({kind})"


def _working_set(row_reductions, pointwise_sizes, tile_elems: int, partitions: int,
                 itemsize: int, buffers: int) -> sympy.Expr:
    """Bytes a kernel keeps in SBUF at once: for each of its ``buffers``, one
    row per partition. A row is a whole reduction row when the kernel
    reduces rows and then reads them again element-wise (a softmax keeps its
    row between the max, the sum and the normalise; a row that is only
    summed streams); otherwise one streaming tile of ``tile_elems``."""
    rows, row = sympy.Integer(partitions), sympy.Integer(tile_elems)
    for numel, rnumel in row_reductions:
        if any(sympy.simplify(size - numel * rnumel) == 0 for size in pointwise_sizes):
            rows, row = sympy.Min(partitions, numel), sympy.Max(tile_elems, rnumel)
    return rows * row * itemsize * buffers


def _unique(values):
    seen = []
    for value in values:
        if not any(value is s for s in seen):
            seen.append(value)
    return seen


def describe_kernel(name: str, nodes, args, sbuf_tile_elems: int, partitions: int) -> KernelInfo:
    """Builds the :class:`KernelInfo` of kernel ``name`` from its scheduler
    ``nodes`` and its inductor ``args`` (a ``KernelArgs``)."""
    from torch._inductor.codegen.common import InplacedBuffer, RemovedArg
    from torch._inductor.virtualized import V

    reads, writes = [], []
    aliases: Dict[str, Tuple[str, ...]] = {}
    for inplaced in _unique(args.inplace_buffers.values()):
        if isinstance(inplaced, InplacedBuffer):
            reads.append(inplaced.other_names[-1])
            writes.append(inplaced.other_names[-1])
            aliases[inplaced.other_names[-1]] = tuple(inplaced.other_names)
    reads += [b for b in args.input_buffers if b not in args.inplace_buffers]
    writes += [b for b, inner in args.output_buffers.items()
               if b not in args.inplace_buffers and not isinstance(inner, RemovedArg)]

    work = {kind: sympy.Integer(0) for kind in WORK_KINDS}
    ops: List[str] = []
    internal: List[str] = []
    row_reductions = []  # (rows, row length) of per-row reductions
    pointwise_sizes = []
    itemsizes = []
    dtype = "fp32"
    for node in nodes:
        sizes, reduction_sizes = node.get_ranges()
        numel = _product(sizes)
        rnumel = _product(reduction_sizes)
        if node.is_reduction():
            if numel != 1:
                row_reductions.append((numel, rnumel))
        else:
            pointwise_sizes.append(numel)
        user_ops, computed_ops = _node_ops(node)
        ops += [op for op in user_ops if op not in ops]
        for op in computed_ops:
            engine = engine_for_op(op)
            if engine is Engine.VECTOR and node.is_reduction():
                work["vector_elems"] += numel * rnumel
            elif engine is Engine.GPSIMD:
                work["gpsimd_elems"] += numel * rnumel
            elif engine in (Engine.SCALAR, Engine.VECTOR):
                kind = "transcendental_elems" if is_transcendental(op) else "scalar_elems"
                work[kind] += numel * rnumel
            # DMA-class origins (copies, cat, pad) only move data: HBM bytes.
        for buf in node.get_outputs():
            buf_name = buf.get_name()
            node_dtype = V.graph.get_dtype(buf_name)
            itemsizes.append(node_dtype.itemsize)
            dtype = _HW_DTYPES.get(str(node_dtype), dtype) if node_dtype.is_floating_point else dtype
            if buf_name not in writes:
                internal.append(buf_name)
    working_set = _working_set(row_reductions, pointwise_sizes, sbuf_tile_elems, partitions,
                               max(itemsizes, default=4), len(internal) + len(reads) + len(writes))
    record = KernelRecord(name, tuple(ops), dtype, tuple(reads), tuple(writes), tuple(internal),
                          graph_label())
    return KernelInfo(record, {k: sympy.expand(v) for k, v in work.items()}, working_set,
                      tuple(node.get_name() for node in nodes), aliases)
