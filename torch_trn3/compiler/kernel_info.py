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


#: Ops that only re-describe memory: free inside a kernel.
_VIEW_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "transpose", "t", "permute", "expand", "expand_as",
    "squeeze", "unsqueeze", "slice", "select", "as_strided", "alias", "detach", "unbind",
    "split", "split_with_sizes", "chunk", "narrow", "flatten", "unflatten", "view_as",
    "lift_fresh_copy", "_reshape_alias",
})


def _node_ops(node) -> List[str]:
    """The user-level ATen ops fused into ``node`` (before inductor's
    decompositions: a GELU backward, not its erf, exp and multiplies), the
    granularity at which eager charges ops too, so eager and compiled price
    the same op alike and differ only in what fusion saves."""
    origins = [o for o in (getattr(node.node, "origins", ()) or ()) if o.op == "call_function"]
    return sorted({_aten_name(o.meta.get("original_aten") or o.target) for o in origins})


def _is_view(op: str) -> bool:
    return op.partition("::")[2] in _VIEW_OPS


def graph_label() -> str:
    """"graph 3 (backward)" for the graph inductor is generating."""
    from torch._inductor.virtualized import V

    graph = V.graph
    kind = "backward" if graph.is_backward else "inference" if graph.is_inference else "forward"
    return f"graph {graph.graph_id if graph.graph_id is not None else '?'} ({kind})"


def _work_by_engine(elems: Dict[str, sympy.Expr], reduced) -> Dict[str, sympy.Expr]:
    """Element counts per work kind: each user-level op once, over the most
    elements it touches in the kernel, on the engine eager would charge it
    to. Copies, concatenations and views only move or re-describe data: the
    kernel's HBM bytes cover them."""
    work = {kind: sympy.Integer(0) for kind in WORK_KINDS}
    for op, count in elems.items():
        engine = engine_for_op(op)
        if _is_view(op) or engine is Engine.DMA:
            continue
        if engine is Engine.GPSIMD:
            work["gpsimd_elems"] += count
        elif engine is Engine.VECTOR or (engine is Engine.TENSOR and op in reduced):
            work["vector_elems"] += count      # a reduction, or a tiny matmul inductor inlined
        elif is_transcendental(op):
            work["transcendental_elems"] += count
        else:
            work["scalar_elems"] += count
    return work


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


def _read_outside(buffer: str, kernel_nodes) -> bool:
    """Whether anything outside the kernel (another node, the graph's
    outputs) reads ``buffer``."""
    from torch._inductor.virtualized import V

    if buffer in V.graph.get_output_names() or buffer in V.graph.graph_inputs:
        return True
    buf = V.graph.scheduler.name_to_buf.get(buffer)
    if buf is None:
        return True
    return any(user.node is None or user.get_name() not in kernel_nodes for user in buf.users)


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
    from torch._inductor.utils import sympy_product
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

    # inductor's C++ kernels store some results that only the kernel itself
    # reads (a softmax's row max and sum); a Neuron kernel keeps them in SBUF.
    node_names = {node.get_name() for node in nodes}
    writes = [b for b in writes if b in reads or _read_outside(b, node_names)]

    elems: Dict[str, sympy.Expr] = {}  # per user-level op: the most elements it streams
    reduced: set = set()  # ops that appear in a reduction node
    ops: List[str] = []
    internal: List[str] = []
    row_reductions = []  # (rows, row length) of per-row reductions
    pointwise_sizes = []
    itemsizes = []
    dtype = "fp32"
    for node in nodes:
        sizes, reduction_sizes = node.get_ranges()
        numel = sympy_product(sizes)
        rnumel = sympy_product(reduction_sizes)
        if node.is_reduction():
            if numel != 1:
                row_reductions.append((numel, rnumel))
        else:
            pointwise_sizes.append(numel)
        for op in _node_ops(node):
            if op not in ops:
                ops.append(op)
            elems[op] = sympy.Max(elems.get(op, 0), numel * rnumel)
            if node.is_reduction():
                reduced.add(op)
        for buf in node.get_outputs():
            buf_name = buf.get_name()
            node_dtype = V.graph.get_dtype(buf_name)
            itemsizes.append(node_dtype.itemsize)
            dtype = _HW_DTYPES.get(str(node_dtype), dtype) if node_dtype.is_floating_point else dtype
            if buf_name not in writes:
                internal.append(buf_name)
    work = _work_by_engine(elems, reduced)
    working_set = _working_set(row_reductions, pointwise_sizes, sbuf_tile_elems, partitions,
                               max(itemsizes, default=4), len(internal) + len(reads) + len(writes))
    record = KernelRecord(name, tuple(ops), dtype, tuple(reads), tuple(writes), tuple(internal),
                          graph_label())
    return KernelInfo(record, {k: sympy.expand(v) for k, v in work.items()}, working_set,
                      tuple(node.get_name() for node in nodes), aliases)
