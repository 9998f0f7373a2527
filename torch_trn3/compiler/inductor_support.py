"""The one place torch 2.13's inductor is adapted for a CPU-codegen device
that is not "cpu".

inductor generates C++ kernels for ``device.type == "cpu"`` and GPU code for
the devices in ``torch._inductor.utils.GPU_TYPES``. trn runs inductor's C++
kernels (its memory is host memory), but inductor's lowering and scheduling
decide many things by asking "is this device cpu?"; a C++ device by another
name falls into GPU-only paths. Each adaptation below is named, explains the
check it answers, and is installed once, when inductor first asks the trn
device module for its code generation. Written against torch 2.13.0;
re-check each when torch is upgraded.
"""
from __future__ import annotations

import functools

from .. import DEVICE_NAME


def _is_host_codegen(device) -> bool:
    return device is not None and device.type in ("cpu", DEVICE_NAME)


def _answer_backend_for_trn() -> None:
    """``utils.get_current_backend()`` names the kernel language of the
    current device; every device that is not cpu/mps/xpu/tpu gets
    ``config.cuda_backend`` ("triton"). trn's kernels are C++: answer
    ``config.cpu_backend``. The function is imported by name into three
    modules, so each binding is replaced."""
    import torch._inductor.codegen.common as common
    import torch._inductor.kernel.mm_common as mm_common
    import torch._inductor.scheduler as scheduler
    import torch._inductor.utils as utils
    from torch._inductor import config

    upstream = utils.get_current_backend

    def get_current_backend(device_type=None):
        from torch._inductor.virtualized import V

        if (device_type or V.graph.get_current_device_or_throw().type) == DEVICE_NAME:
            return config.cpu_backend
        return upstream(device_type)

    for module in (utils, common, scheduler, mm_common):
        module.get_current_backend = get_current_backend


def _schedule_trn_nodes_as_cpu() -> None:
    """``BaseSchedulerNode.is_cpu()`` keeps the loop re-indexing and
    re-ordering fusions, which are written for GPU (SIMD) kernels, away from
    C++ kernels; on trn they crash (``_try_reindex_pointwise_for_reduction``).
    trn nodes are C++ kernels, so they answer True."""
    from torch._inductor.scheduler import BaseSchedulerNode

    BaseSchedulerNode.is_cpu = lambda self: _is_host_codegen(self.get_device())


@functools.cache
def codegen_module():
    """Imports :mod:`.codegen` and installs what inductor needs for trn."""
    from torch._inductor.codegen.common import register_device_op_overrides
    from torch._inductor.codegen.cpu_device_op_overrides import CpuDeviceOpOverrides

    from . import codegen

    # Device-side helpers in generated code (set device, stream, sync) are
    # the CPU's: the kernels run on the host.
    register_device_op_overrides(DEVICE_NAME, CpuDeviceOpOverrides())
    _answer_backend_for_trn()
    _schedule_trn_nodes_as_cpu()
    return codegen
