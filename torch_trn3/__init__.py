"""torch_trn3: an AWS Trainium3 device for PyTorch, emulated on the CPU.

``import torch`` loads it (a ``torch.backends`` entry point); then
``x.to("trn")`` puts a tensor on an emulated logical device. PyTorch device
names cannot contain digits, so the device is spelled ``trn`` (or
``neuron`` with ``TORCH_TRN3_DEVICE=neuron``).
"""
from __future__ import annotations


def _autoload() -> None:
    """Entry point PyTorch calls on ``import torch``; importing did the work.

    Defined before anything imports torch: ``import torch_trn3`` imports
    torch, whose autoload looks this up on the half-initialised module.
    """


from . import _registration
from .config import read_machine_config

__version__ = "0.1.0"

machine = read_machine_config()
_registration.register(machine)

DEVICE_NAME = machine.device_name

from .accumulation import get_matmul_accumulation, set_matmul_accumulation  # noqa: E402
