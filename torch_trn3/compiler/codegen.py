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

import itertools

from torch._inductor.codegen.cpp import CppScheduling, KernelGroup
from torch._inductor.codegen.cpp_wrapper_cpu import CppWrapperCpu
from torch._inductor.codegen.wrapper import PythonWrapperCodegen, SubgraphPythonWrapperCodegen
from torch._inductor.codegen.wrapper_fxir import WrapperFxCodegen  # noqa: F401 (device module's)
from torch._inductor.virtualized import V

from .. import DEVICE_NAME, machine
from ..hw.specs import SBUF_STREAM_TILE_ELEMS
from .kernel_info import WORK_KINDS, describe_kernel


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
        root = wrapper
        while getattr(root, "parent_wrapper", None) is not None:
            root = root.parent_wrapper
        handle = f"trn_kernel_{next(root.trn_kernel_ids)}"
        root.header.writeline(
            f"{handle} = trn_register_kernel({record.name!r}, {record.ops!r}, {record.dtype!r}, "
            f"{record.reads!r}, {record.writes!r}, {record.internal!r})")
        reads = "".join(f"{b}, " for b in record.reads)
        writes = "".join(f"{b}, " for b in record.writes)
        wrapper.writeline(f"trn_charge_kernel({handle}, ({reads}), ({writes}), ({sizes}))")


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
        super().__init__(*args, **kwargs)

    def write_header(self) -> None:
        super().write_header()
        self.imports.writeline(
            "from torch_trn3.compiler.runtime import charge_kernel as trn_charge_kernel")
        self.imports.writeline(
            "from torch_trn3.compiler.kernel_info import register_kernel as trn_register_kernel")


class TrnCppWrapperCodegen(CppWrapperCpu):
    """inductor's C++ wrapper (``cpp_wrapper=True``) for trn: the CPU one.
    Its kernels run on trn memory but are not charged to the chip model."""

    @staticmethod
    def create(is_subgraph, subgraph_name, parent_wrapper, partition_signatures=None):
        return TrnCppWrapperCodegen()
