"""Makes the emulated device a PyTorch device (run once, at import).

Order matters: the PrivateUse1 backend is renamed before anything asks for
its name, the C++ core is configured before any tensor is made, and the
device module (``torch.trn``) is registered before the generated
``Tensor.trn()`` helpers that look it up.
"""
from __future__ import annotations

import torch

import atexit
import os
import time

from . import _C
from .config import MachineConfig

_done = False


def _autograd_device_threads() -> int:
    """How many autograd device threads ("pt_autograd_N") are alive (Linux)."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                count += f.read().startswith("pt_autograd")
        except OSError:
            pass  # the thread just exited
    return count


def _stop_autograd_device_threads() -> None:
    """Stops autograd's device threads before the interpreter finalizes.

    In torch 2.13 every backward stashes a Python object in the graph task's
    thread-local state, so a device thread that drops the last reference to
    a finished graph task takes the GIL to release it, and every device
    thread takes it again to delete its thread state when it ends. If either
    happens while the interpreter is finalizing, the thread exits mid-unwind
    and the process aborts ("terminate called without an active
    exception"). CUDA has the same race; on trn, backward finishes so fast
    that short scripts hit it. PyTorch stops the engine only at static
    destruction, too late; here it is stopped at exit and the threads are
    given the GIL (by sleeping) until they are gone, for at most 2 s.
    """
    _C._stop_autograd_engine()
    if not os.path.isdir("/proc/self/task"):
        time.sleep(0.05)
        return
    deadline = time.monotonic() + 2.0
    while _autograd_device_threads() and time.monotonic() < deadline:
        time.sleep(0.001)


def register(config: MachineConfig) -> None:
    global _done
    if _done:
        return
    name = config.device_name
    torch.utils.rename_privateuse1_backend(name)
    _C._init(
        config.device_count,
        config.logical.hbm_bytes,
        config.lnc,
        config.chips,
        config.chip.name,
    )
    from . import device_module
    from .chip_model import make_op_cost

    _C._set_cost_function(make_op_cost(config.logical))
    from . import scaled_mm

    scaled_mm.register()
    from . import attention

    attention.register()  # SDPA's CPU flash kernels as one flash-attention op each
    from . import cuda_parity

    cuda_parity.register()  # dtypes CUDA accepts where the CPU kernel refuses them (int histc, ...)

    torch._register_device_module(name, device_module)
    torch.utils.generate_methods_for_privateuse1_backend(
        for_tensor=True, for_module=True, for_packed_sequence=True, for_storage=True
    )
    __import__(f"{__package__}.distributed", fromlist=["register"]).register(name)  # trnccl c10d backend
    from .compiler import _hooks

    _hooks.install()  # torch.compile support, set up when dynamo is imported
    from . import titan_report

    titan_report.install()  # TORCH_TRN3_TITAN_REPORT=1: modelled step time/MFU/HBM in torchtitan's log
    from . import titan_checks

    titan_checks.install()  # torchtitan options trn cannot honour fail at start-up
    atexit.register(_stop_autograd_device_threads)
    _done = True
