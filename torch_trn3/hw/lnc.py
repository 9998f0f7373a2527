"""Logical NeuronCores: what one logical device of LNC physical cores gets.

A Trainium chip is exposed as ``cores_per_chip / LNC`` logical devices. Each
owns LNC cores, so it gets LNC x the per-core engine peaks and LNC/8 of the
chip's HBM capacity and bandwidth (the Neuron runtime splits HBM evenly).
Spreading one op over more cores than ``chip.intercore.free_lnc`` costs
inter-core traffic; that term lives in :mod:`.cost`, read from the spec here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .specs import ChipSpec

#: LNC values a logical device may have: 1 and 2 ship on day 0, 8 is planned.
ALLOWED_LNC = (1, 2, 8)

#: Most logical devices one emulated machine has. An emulator limit, not a
#: chip fact: the C++ core sizes its per-device tables by it
#: (``kMaxDevices`` in csrc/runtime/TrnDevices.h, ``torch_trn3._C._max_devices()``).
MAX_LOGICAL_DEVICES = 512


def check_lnc(lnc: int) -> int:
    """``lnc`` if it is one of :data:`ALLOWED_LNC`; ValueError otherwise."""
    if isinstance(lnc, bool) or lnc not in ALLOWED_LNC:
        raise ValueError(
            f"LNC={lnc!r} is not supported: allowed values are {ALLOWED_LNC}"
        )
    return int(lnc)


@dataclass(frozen=True)
class LogicalDeviceSpec:
    """One logical device: LNC cores of ``chip`` and their share of HBM."""

    chip: ChipSpec
    lnc: int
    #: Physical NeuronCores in this device (= lnc).
    cores: int
    #: This device's share of the chip's HBM capacity, bytes.
    hbm_bytes: int
    #: This device's share of the chip's HBM bandwidth, bytes/s.
    hbm_bytes_per_s: float
    #: This device's share of the chip's DMA bandwidth, bytes/s.
    dma_bytes_per_s: float
    #: Dense Tensor Engine peaks of the whole device, FLOP/s.
    peak_bf16_flops: float
    peak_fp32_flops: float
    peak_mx_flops: float

    @property
    def devices_per_chip(self) -> int:
        return self.chip.cores_per_chip // self.lnc

    def peak_flops(self, dtype: str, sparsity: Optional[str] = None) -> float:
        """Peak FLOP/s of this device for a matmul in ``dtype``.

        With ``sparsity`` ("4:8", "4:16") the peak counts dense-equivalent
        FLOPs, as the hardware's marketing figures do.
        """
        peak = self.cores * self.chip.tensor.peak_flops_per_core(dtype)
        if sparsity is not None:
            peak *= self.chip.tensor.sparse_factor(sparsity)
        return peak


def logical_device(chip: ChipSpec, lnc: int) -> LogicalDeviceSpec:
    """The logical device of ``lnc`` cores on ``chip``."""
    lnc = check_lnc(lnc)
    share = lnc / chip.cores_per_chip
    tensor = chip.tensor
    return LogicalDeviceSpec(
        chip=chip,
        lnc=lnc,
        cores=lnc,
        hbm_bytes=chip.hbm_bytes * lnc // chip.cores_per_chip,
        hbm_bytes_per_s=chip.hbm_bytes_per_s * share,
        dma_bytes_per_s=chip.dma.bytes_per_s * share,
        peak_bf16_flops=lnc * tensor.peak_flops_per_core("bf16"),
        peak_fp32_flops=lnc * tensor.peak_flops_per_core("fp32"),
        peak_mx_flops=lnc * tensor.peak_flops_per_core("mxfp8"),
    )
