"""Dynamo's view of the trn device (``torch._dynamo.device_interface``).

Dynamo and inductor ask a per-device interface for the current device, its
streams and its properties (inductor sizes split reductions by
``multi_processor_count``). torch 2.13 registers interfaces only for its own
device types, so this one is registered for the active device name when
dynamo is first imported (see :mod:`torch_trn3.compiler._hooks`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch._dynamo.device_interface import DeviceInterface

from .. import DEVICE_NAME, _C


@dataclass(frozen=True)
class KernelHostProperties:
    """What inductor's C++ code generation needs of a device: the host threads
    its fused kernels run on (the kernels are C++ on the host CPU)."""

    multi_processor_count: int
    name: str = DEVICE_NAME


def _module():
    return getattr(torch, DEVICE_NAME)


class TrnInterface(DeviceInterface):
    """``torch.trn`` behind dynamo's device-agnostic API."""

    class device:  # noqa: N801 (dynamo's name)
        def __new__(cls, device):
            return _module().device(device)

    # torch.trn's Event and Stream classes; set by register(), when the
    # device module is complete.
    Event = None
    Stream = None

    class Worker:
        @staticmethod
        def set_device(device: int) -> None:
            _module().set_device(device)

        @staticmethod
        def current_device() -> int:
            return _C._current_device()

        @staticmethod
        def get_device_properties(device=None) -> KernelHostProperties:
            return KernelHostProperties(os.cpu_count() or 1)

    @staticmethod
    def current_device() -> int:
        return _C._current_device()

    @staticmethod
    def set_device(device) -> None:
        _module().set_device(device)

    @staticmethod
    def maybe_exchange_device(device: int) -> int:
        previous = _C._current_device()
        if device >= 0 and device != previous:
            _C._set_device(device)
        return previous

    exchange_device = maybe_exchange_device

    @staticmethod
    def device_count() -> int:
        return _C._device_count()

    @staticmethod
    def is_available() -> bool:
        return _C._device_count() > 0

    @staticmethod
    def stream(stream):
        return _module().stream(stream)

    @staticmethod
    def current_stream():
        return _module().current_stream()

    @staticmethod
    def set_stream(stream) -> None:
        _module().set_stream(stream)

    @staticmethod
    def get_raw_stream(device_idx: int) -> int:
        return 0  # fused kernels run synchronously on the host

    @staticmethod
    def synchronize(device=None) -> None:
        _module().synchronize(device)

    @staticmethod
    def get_compute_capability(device=None) -> str:
        return ""

    @staticmethod
    def is_bf16_supported(including_emulation: bool = False) -> bool:
        return True

    @staticmethod
    def memory_allocated(device=None) -> int:
        return _module().memory_allocated(device)

    @staticmethod
    def is_triton_capable(device=None) -> bool:
        return False


def register() -> None:
    from torch._dynamo.device_interface import register_interface_for_device

    TrnInterface.Event = _module().Event
    TrnInterface.Stream = _module().Stream
    register_interface_for_device(DEVICE_NAME, TrnInterface)
    for index in range(_C._device_count()):
        register_interface_for_device(f"{DEVICE_NAME}:{index}", TrnInterface)
