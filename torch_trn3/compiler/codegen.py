"""Inductor code generation for the trn device.

Device memory is host memory, so inductor's C++ (CPU) kernels run on trn
buffers as they are: the wrapper passes each kernel the data pointers of the
trn tensors, and buffers are allocated with ``empty_strided(...,
device="trn")`` from the device's allocator (counted against its HBM). No
tensor is copied to or from the CPU around a kernel. Extern kernels (mm,
convolution, SDPA, collectives) are ATen calls on trn tensors, charged by the
eager path.

What trn adds to the CPU code generation is the chip model: after each fused
kernel the wrapper charges it as one op (:mod:`.runtime`), from a
:class:`~.kernel_info.KernelInfo` gathered here.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Dict, Optional, Tuple

from torch._inductor.codegen.cpp import CppScheduling, KernelGroup
from torch._inductor.codegen.cpp_wrapper_cpu import CppWrapperCpu
from torch._inductor.codegen.wrapper import (
    PythonWrapperCodegen,
    SubgraphPythonWrapperCodegen,
    WrapperLine,
)
from torch._inductor.codegen.wrapper_fxir import WrapperFxCodegen  # noqa: F401 (device module's)
from torch._inductor.virtualized import V

from .. import DEVICE_NAME, machine
from ..hw.specs import SBUF_STREAM_TILE_ELEMS
from . import config
from .kernel_info import WORK_KINDS, describe_kernel


#: inductor's extern matmul kernels -> the ATen op the chip model prices.
_EXTERN_MATMULS = {
    "extern_kernels.mm": "aten::mm",
    "extern_kernels.addmm": "aten::addmm",
    "extern_kernels.bmm": "aten::bmm",
    "extern_kernels.baddbmm": "aten::baddbmm",
}


def _tuple(names) -> str:
    return "(" + "".join(f"{n}, " for n in names) + ")"


class EnterUnchargedLine(WrapperLine):
    """Opens ``with trn_uncharged():`` (the extern matmul inside it is
    charged by a :class:`MatmulChargeLine` instead)."""

    def codegen(self, code) -> None:
        code.writeline("with trn_uncharged():")
        code.do_indent()


class ExitUnchargedLine(WrapperLine):
    def codegen(self, code) -> None:
        code.do_unindent()


@dataclasses.dataclass
class MatmulChargeLine(WrapperLine):
    """Under ``neuron_fusion``: charges an extern matmul that ran uncharged,
    unless a later kernel took it as its epilogue's producer and charges
    both at once."""

    op: str
    inputs: Tuple[str, ...]
    out: str
    fused_into: str = ""

    @property
    def operands(self) -> str:
        """The wrapper variable holding the matmul's operands and product
        until the epilogue charge (the wrapper may free or rename the
        buffers before that)."""
        return f"trn_operands_{self.out}"

    def codegen(self, code) -> None:
        if self.fused_into:
            code.writeline(f"{self.operands} = {_tuple(self.inputs + (self.out,))}"
                           f"  # charged with {self.fused_into}")
        else:
            code.writeline(f"trn_charge_matmul({self.op!r}, {_tuple(self.inputs)}, ({self.out}, ))")


def _root(wrapper):
    while getattr(wrapper, "parent_wrapper", None) is not None:
        wrapper = wrapper.parent_wrapper
    return wrapper


def _epilogue_producer(wrapper, info) -> Tuple[Optional[MatmulChargeLine], bool]:
    """The matmul whose product this element-wise kernel consumes, if any, and
    whether the product must still be stored (another consumer needs it, or
    it is a graph output such as an activation saved for backward)."""
    if not config.neuron_fusion or info.work["vector_elems"] != 0:
        return None, False
    lines = getattr(_root(wrapper), "trn_matmul_lines", {})
    for name in (n for read in info.record.reads for n in info.names_of(read)):
        line = lines.get(name)
        if line is None or line.fused_into:
            continue
        users = V.graph.scheduler.name_to_buf[name].users
        elsewhere = any(user.node is None or user.node.get_name() not in info.node_names
                        for user in users)
        return line, elsewhere or name in V.graph.get_output_names()
    return None, False


class TrnKernelGroup(KernelGroup):
    """A CPU kernel group whose call is followed by its chip-model charge."""

    def call_kernel(self, wrapper, kernel_name):
        super().call_kernel(wrapper, kernel_name)
        info = describe_kernel(kernel_name, self.scheduled_nodes, self.args,
                               SBUF_STREAM_TILE_ELEMS, machine.chip.core_memory.partitions)
        exprs = [info.work[kind] for kind in WORK_KINDS] + [info.working_set]
        for expr in exprs:
            for symbol in expr.free_symbols:
                wrapper.ensure_size_computed(symbol)
        sizes = ", ".join(wrapper.codegen_python_sizevar(e) for e in exprs)
        record = info.record
        root = _root(wrapper)
        handle = f"trn_kernel_{next(root.trn_kernel_ids)}"
        root.header.writeline(
            f"{handle} = trn_register_kernel({record.name!r}, {record.ops!r}, {record.dtype!r}, "
            f"{record.reads!r}, {record.writes!r}, {record.internal!r}, {record.graph!r})")
        producer, product_kept = _epilogue_producer(wrapper, info)
        if producer is None:
            wrapper.writeline(f"trn_charge_kernel({handle}, {_tuple(record.reads)}, "
                              f"{_tuple(record.writes)}, ({sizes}))")
            return
        producer.fused_into = kernel_name
        reads = [b for b in record.reads if producer.out not in info.names_of(b)]
        wrapper.writeline(
            f"trn_charge_matmul_epilogue({producer.op!r}, {producer.operands}, {product_kept}, "
            f"{handle}, {_tuple(reads)}, {_tuple(record.writes)}, ({sizes}))")
        wrapper.writeline(f"del {producer.operands}")


class TrnScheduling(CppScheduling):
    """inductor's C++ scheduling, with kernel groups that charge the chip model."""

    def reset_kernel_group(self):
        self.kernel_group = TrnKernelGroup()


class _HostKernelCalls:
    """Wrapper mixin: C++ kernels on trn run on the host, synchronously, as
    on "cpu" (PythonWrapperCodegen knows only cpu and mps for that)."""

    def _generate_kernel_call_helper(self, kernel_name, call_args, *, device=None, triton=True,
                                     **kwargs):
        device = device or V.graph.get_current_device_or_throw()
        if device.type == DEVICE_NAME and not triton:
            # The C++ kernel runs on the host, synchronously, as on "cpu".
            self.writeline(self.wrap_kernel_call(kernel_name, call_args))
            return
        super()._generate_kernel_call_helper(kernel_name, call_args, device=device,
                                             triton=triton, **kwargs)


class TrnSubgraphWrapperCodegen(_HostKernelCalls, SubgraphPythonWrapperCodegen):
    """Wrapper of a subgraph (flex attention's score_mod, invoke_subgraph)."""


class TrnPythonWrapperCodegen(_HostKernelCalls, PythonWrapperCodegen):
    """The Python wrapper: calls the C++ kernels directly on trn buffers and
    charges each to the chip model."""

    @staticmethod
    def create(is_subgraph, subgraph_name, parent_wrapper, partition_signatures=None):
        if is_subgraph:
            return TrnSubgraphWrapperCodegen(subgraph_name, parent_wrapper, partition_signatures)
        return TrnPythonWrapperCodegen()

    def __init__(self, *args, **kwargs):
        self.trn_kernel_ids = itertools.count()  # names of kernel records in the module
        self.trn_matmul_lines: Dict[str, MatmulChargeLine] = {}  # by output buffer
        super().__init__(*args, **kwargs)

    def generate_extern_kernel_out(self, node) -> None:
        op = _EXTERN_MATMULS.get(node.get_kernel_name())
        device = node.get_device()
        if op is None or not config.neuron_fusion or device is None or device.type != DEVICE_NAME:
            super().generate_extern_kernel_out(node)
            return
        self.writeline(EnterUnchargedLine())
        super().generate_extern_kernel_out(node)
        self.writeline(ExitUnchargedLine())
        line = MatmulChargeLine(op, tuple(i.codegen_reference() for i in node.inputs),
                                node.get_name())
        self.trn_matmul_lines[node.get_name()] = line
        self.writeline(line)

    def write_header(self) -> None:
        super().write_header()
        self.imports.writeline(
            "from torch_trn3.compiler.runtime import charge_kernel as trn_charge_kernel")
        self.imports.writeline(
            "from torch_trn3.compiler.runtime import charge_matmul as trn_charge_matmul, "
            "charge_matmul_epilogue as trn_charge_matmul_epilogue")
        self.imports.writeline("from torch_trn3.chip_model import uncharged as trn_uncharged")
        self.imports.writeline(
            "from torch_trn3.compiler.kernel_info import register_kernel as trn_register_kernel")


class TrnCppWrapperCodegen(CppWrapperCpu):
    """inductor's C++ wrapper (``cpp_wrapper=True``) for trn: the CPU one.
    Its kernels run on trn memory but are not charged to the chip model."""

    @staticmethod
    def create(is_subgraph, subgraph_name, parent_wrapper, partition_signatures=None):
        return TrnCppWrapperCodegen()
