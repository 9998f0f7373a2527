"""Distributed training on ``trn`` devices: the ``trnccl`` c10d backend.

``torch.distributed.init_process_group("trnccl")`` (or no backend at all
with ``device_id=torch.device("trn", local_rank)``, or
``"cpu:gloo,trn:trnccl"``) gives a process group whose collectives accept
``trn`` tensors. Data moves through gloo over zero-copy CPU views of device
memory; every collective is charged its modelled time on a Trainium system
(:mod:`.cost`). See README.md in this folder.
"""
from __future__ import annotations

from .backend import BACKEND_NAME, register
from .cost import CollectiveStats, collective_stats, current_system, reset_collective_stats

__all__ = ["BACKEND_NAME", "register", "collective_stats", "reset_collective_stats",
           "current_system", "CollectiveStats"]
