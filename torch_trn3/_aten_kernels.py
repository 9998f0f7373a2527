"""Registers Python kernels for ATen ops on the trn dispatch key.

Kernels written in Python (MX ``_scaled_mm``, SDPA's flash kernels, BF16
accumulation matmuls) run their math on CPU views and charge the chip model
once; this is the one way they are attached to the device.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch


def register(kernels: Mapping[str, Callable], device_key: str = "PrivateUse1") -> torch.library.Library:
    """Registers ``{"op.overload": kernel}`` for ``device_key``; the returned
    library keeps them registered until it is destroyed."""
    lib = torch.library.Library("aten", "IMPL")
    for name, kernel in kernels.items():
        lib.impl(name, kernel, device_key)
    return lib
