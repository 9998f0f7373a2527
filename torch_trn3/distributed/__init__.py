"""Distributed training on ``trn`` devices: the ``trnccl`` c10d backend.

``torch.distributed.init_process_group("trnccl")`` (or no backend at all
with ``device_id=torch.device("trn", local_rank)``, or
``"cpu:gloo,trn:trnccl"``) gives a process group whose collectives accept
``trn`` tensors. Data moves through gloo over zero-copy CPU views of device
memory; every collective is charged its modelled time on a Trainium system
(:mod:`.cost`). :mod:`.symm_mem` adds the ``torch.ops.symm_mem``
all-to-all-v ops (MoE dispatch/combine) for trn tensors. See README.md in
this folder.
"""
from __future__ import annotations

from . import backend as _backend
from . import symm_mem as _symm_mem
from .backend import BACKEND_NAME
from .cost import CollectiveStats, collective_stats, current_system, reset_collective_stats


def register(device_name: str = "trn") -> None:
    """Registers ``trnccl`` (default backend of ``device_name``), the
    ``device_name`` kernels of the c10d operators and of the symm_mem
    all-to-all-v ops. Idempotent."""
    _backend.register(device_name)
    _symm_mem.register(device_name)
    from .. import compat

    compat.install()  # torch.distributed.set_timeout where torch lacks it (torchtitan calls it)


__all__ = ["BACKEND_NAME", "register", "collective_stats", "reset_collective_stats",
           "current_system", "CollectiveStats"]
