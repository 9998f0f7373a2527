"""Makes the emulated device a PyTorch device (run once, at import).

Order matters: the PrivateUse1 backend is renamed before anything asks for
its name, the C++ core is configured before any tensor is made, and the
device module (``torch.trn``) is registered before the generated
``Tensor.trn()`` helpers that look it up.
"""
from __future__ import annotations

import torch

from . import _C
from .config import MachineConfig

_done = False


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

    torch._register_device_module(name, device_module)
    torch.utils.generate_methods_for_privateuse1_backend(
        for_tensor=True, for_module=True, for_packed_sequence=True, for_storage=True
    )
    _done = True
