"""Public torch APIs that clients call but torch 2.13 lacks, added only when missing.

Each shim is installed once, at registration (``torch_trn3.distributed.register``),
and only if torch does not already define the name, so a newer torch always wins.

- ``torch.distributed.set_timeout(timeout, group=None)``: torchtitan 0.3.0
  calls it after the first step (``dist_utils.set_pg_timeouts``) to shorten
  every process group's timeout. torch 2.13 has the per-group method
  ``ProcessGroup.set_timeout`` (which sets the timeout of every backend of the
  group) but not the module-level function.
"""
from __future__ import annotations

from datetime import timedelta

import torch

INSTALLED: list[str] = []  # names this module added, for the README and tests


def set_timeout(timeout: timedelta, group=None) -> None:
    """Sets the default timeout of ``group`` (the default group if None) for
    all its future operations, on every backend of the group."""
    import torch.distributed as dist
    from torch.distributed import distributed_c10d as c10d

    if not isinstance(timeout, timedelta):
        raise TypeError(f"set_timeout: timeout must be a datetime.timedelta, got {type(timeout).__name__}")
    if group is None:
        group = c10d._get_default_group()
    if c10d._rank_not_in_group(group):
        raise ValueError("set_timeout: this rank is not part of the given process group")
    if not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"set_timeout: expected a ProcessGroup, got {type(group).__name__}")
    group.set_timeout(timeout)


def install() -> None:
    """Adds each shim whose public name torch does not define. Idempotent."""
    import torch.distributed as dist

    if dist.is_available() and not hasattr(dist, "set_timeout"):
        dist.set_timeout = set_timeout
        INSTALLED.append("torch.distributed.set_timeout")
