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


class CodegenVersion:
    """The device's custom post-grad pass: changes nothing, but its uuid (a
    hash of this package's code generation sources) enters inductor's cache
    key, so kernels cached by an older torch_trn3 are never reused."""

    def __call__(self, gm) -> None:
        pass

    @functools.cache
    def uuid(self) -> str:
        import hashlib
        from pathlib import Path

        digest = hashlib.sha256()
        for path in sorted(Path(__file__).parent.glob("*.py")):
            digest.update(path.read_bytes())
        return digest.hexdigest()


class _Lazy:
    """Stands for a wrapper-codegen class of :mod:`.codegen` before it is
    imported (importing inductor's C++ codegen takes ~1 s); every attribute
    inductor reads (``create``, ``supports_caching``) is the class's."""

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attribute: str):
        return getattr(getattr(codegen_module(), self.name), attribute)


class _SchedulingFactory:
    """Stands for :class:`.codegen.TrnScheduling` before it is imported:
    inductor wants a class here (``ir.is_triton`` asks ``issubclass``)."""

    def __new__(cls, scheduler):
        return codegen_module().TrnScheduling(scheduler)


def register_backend() -> None:
    """Registers trn's code generation with inductor (cheap: the codegen
    modules are imported when inductor first compiles a trn graph).

    torch 2.13 would also find it through the device module's
    ``Scheduling``/``PythonWrapperCodegen``/``CppWrapperCodegen`` attributes,
    but that route cannot pass the device's custom pass and config, which
    keep inductor's on-disk cache honest.
    """
    from torch._inductor.codegen.common import register_backend_for_device

    from . import config
    from torch._inductor.custom_graph_pass import CustomGraphModulePass

    CustomGraphModulePass.register(CodegenVersion)
    register_backend_for_device(
        DEVICE_NAME,
        _SchedulingFactory,
        _Lazy("TrnPythonWrapperCodegen"),
        _Lazy("TrnCppWrapperCodegen"),
        _Lazy("WrapperFxCodegen"),
        device_custom_pass=CodegenVersion(),
        device_custom_config=config,
    )


def _lower_flex_attention_on_trn() -> None:
    """torch 2.13 lowers the ``flex_attention`` / ``flex_attention_backward``
    HOPs to a C++ template only for ``device.type == "cpu"`` (forward only)
    and to Triton templates for every other device, which trn cannot run.
    On trn each HOP is lowered to one fallback kernel that runs the HOP's
    dense math and charges one flash-attention kernel
    (:func:`.flex_attention.lower_forward` / ``lower_backward``); other
    devices keep torch's lowering."""
    import torch
    from torch._inductor.lowering import lowerings

    from . import flex_attention

    flex_attention.install()  # the custom ops the fallback kernels call
    hops = {torch.ops.higher_order.flex_attention: flex_attention.lower_forward,
            torch.ops.higher_order.flex_attention_backward: flex_attention.lower_backward}
    for hop, lower_on_trn in hops.items():
        upstream = lowerings[hop]

        def lowering(*args, _upstream=upstream, _lower_on_trn=lower_on_trn, **kwargs):
            if args[0].get_device().type == DEVICE_NAME:
                return _lower_on_trn(*args, **kwargs)
            return _upstream(*args, **kwargs)

        lowerings[hop] = lowering


def _guard_trn_devices() -> None:
    """``utils.device_need_guard()`` decides whether the wrapper enters a
    device context around a device's kernels; only GPUs get one, so a graph
    on trn:1 would allocate its buffers on the current device. trn needs the
    guard too (:class:`TrnDeviceOpOverrides` says how). Imported by name
    into the scheduler, which is where it is asked."""
    import torch._inductor.scheduler as scheduler

    upstream = scheduler.device_need_guard
    scheduler.device_need_guard = lambda device: device == DEVICE_NAME or upstream(device)


def _device_op_overrides():
    """Device helpers in generated code: the CPU's (kernels run on the host,
    synchronously), except that a device guard selects the trn device."""
    from torch._inductor.codegen.cpu_device_op_overrides import CpuDeviceOpOverrides

    class TrnDeviceOpOverrides(CpuDeviceOpOverrides):
        def device_guard(self, device_idx: int) -> str:
            return f"torch.{DEVICE_NAME}.device({device_idx})"

    return TrnDeviceOpOverrides()


@functools.cache
def codegen_module():
    """Imports :mod:`.codegen` and installs what inductor needs for trn."""
    from torch._inductor.codegen.common import register_device_op_overrides

    from . import codegen

    register_device_op_overrides(DEVICE_NAME, _device_op_overrides())
    _answer_backend_for_trn()
    _schedule_trn_nodes_as_cpu()
    _guard_trn_devices()
    _lower_flex_attention_on_trn()
    return codegen
