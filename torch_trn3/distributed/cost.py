"""What a collective of the ``trnccl`` backend would cost on a Trainium system.

The data of a collective moves through gloo on the host; its *modelled* time
comes from :mod:`torch_trn3.hw.collectives` on the system chosen by

- ``TRN3_SYSTEM``: ``trn3-nl72x2`` (default), ``trn3-nl32x2``, ``trn2-nl16``,
  ``trn2-nl64`` (see :func:`torch_trn3.hw.topology.system_names`);
- ``TRN3_SWITCH_GEN``: switch generation 1 (default), 2 or 3 (Trainium3);
- ``TRN3_EFA_GBPS``: EFA bandwidth per chip between domains (default: the
  system's).

Ranks are logical devices of ``torch_trn3.machine.lnc`` cores: global rank
``r`` sits on chip ``r // (cores_per_chip / LNC)`` (with LNC=2, ranks 0-3
share chip 0 and talk over the on-package path). A sub-group is priced with
the densest packing its ranks have (ranks per chip), so a group of ranks
{0, 4} with LNC=2 is two ranks on two chips.

Sizes follow nccl-tests (see :mod:`torch_trn3.hw.collectives`):
all_gather counts the gathered output, reduce_scatter the full input,
all_to_all one rank's send (or receive, whichever is larger) buffer.
gather/scatter are priced as the all_gather/direct pattern of the same total
bytes (the root's link is the bottleneck either way) and barrier as a
4-byte all_reduce.
"""
from __future__ import annotations

import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Optional, Sequence, Tuple

from ..hw.collectives import CollectiveCost, collective_cost, point_to_point
from ..hw.topology import System, get_system, system_names

#: System priced when ``TRN3_SYSTEM`` is unset.
DEFAULT_SYSTEM = "trn3-nl72x2"


@lru_cache(maxsize=None)
def _system_from(name: str, switch_gen: Optional[int], efa_gbps: Optional[int]) -> System:
    return get_system(name, switch_gen=switch_gen, efa_gbps=efa_gbps)


def _int_env(var: str) -> Optional[int]:
    value = os.environ.get(var)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{var}={value!r} is not an integer") from None


def current_system() -> System:
    """The system collectives are priced on (read from the environment)."""
    name = os.environ.get("TRN3_SYSTEM", DEFAULT_SYSTEM)
    if name not in system_names():
        raise ValueError(f"TRN3_SYSTEM={name!r} is not a known system: expected one of "
                         f"{system_names()}")
    return _system_from(name, _int_env("TRN3_SWITCH_GEN"), _int_env("TRN3_EFA_GBPS"))


def _machine():
    import torch_trn3

    return torch_trn3.machine


def ranks_per_chip() -> int:
    """Logical devices (ranks) of one chip: cores_per_chip / LNC."""
    m = _machine()
    return m.chip.cores_per_chip // m.lnc


def chip_of(global_rank: int) -> int:
    """Flat chip index of a global rank (LOCAL_RANK-ordered packing)."""
    return global_rank // ranks_per_chip()


def group_lnc(global_ranks: Sequence[int]) -> int:
    """The LNC that reproduces how densely ``global_ranks`` share chips.

    The cost model places ``cores/lnc`` consecutive ranks per chip; a group
    whose busiest chip holds ``k`` of its ranks is priced with ``k`` per chip
    (rounded up to a divisor of the chip's cores).
    """
    cores = _machine().chip.cores_per_chip
    per_chip: Dict[int, int] = defaultdict(int)
    for r in global_ranks:
        per_chip[chip_of(r)] += 1
    k = max(per_chip.values(), default=1)
    while cores % k:
        k += 1
    return cores // k


@lru_cache(maxsize=4096)
def _cost(system: System, collective: str, nbytes: int, world: int, lnc: int) -> CollectiveCost:
    return collective_cost(system, collective, nbytes, world, lnc=lnc)


def price(collective: str, nbytes: int, global_ranks: Tuple[int, ...]) -> CollectiveCost:
    """Modelled cost of ``collective`` (a :data:`hw.collectives.COLLECTIVES`
    name, or ``gather``/``scatter``/``barrier``) over ``global_ranks``."""
    model = {"gather": "all_gather", "scatter": "all_gather", "barrier": "all_reduce"}
    name = model.get(collective, collective)
    if collective == "barrier":
        nbytes = 4
    return _cost(current_system(), name, int(nbytes), len(global_ranks), group_lnc(global_ranks))


@lru_cache(maxsize=4096)
def _p2p(system: System, src_chip_rank: int, dst_chip_rank: int, nbytes: int, lnc: int):
    return point_to_point(system, src_chip_rank, dst_chip_rank, nbytes, lnc=lnc)


def price_p2p(src: int, dst: int, nbytes: int) -> CollectiveCost:
    """One send from global rank ``src`` to global rank ``dst``."""
    lnc = _machine().lnc
    return _p2p(current_system(), src, dst, int(nbytes), lnc)


def hbm_seconds(inputs: Sequence, outputs: Sequence) -> float:
    """Seconds the HBM traffic of one collective takes at this device's full
    HBM bandwidth: the collective cores read the local source buffers from
    HBM once and write the local destination buffers once; everything in
    between (ring / tree hops, partial sums, multi-hop forwarding) moves SBUF
    to SBUF within the package and across the scale-up domain, without an
    HBM round trip (TRN3_FACTS, collective cores). This is what a collective
    takes from the HBM bandwidth the compute engines share."""
    nbytes = sum(t.numel() * t.element_size() for t in list(inputs) + list(outputs))
    return nbytes / _machine().logical.hbm_bytes_per_s


# ----- what this process has been charged --------------------------------

@dataclass
class CollectiveStats:
    """Totals per collective name for this process (all groups)."""

    calls: int = 0
    bytes: int = 0
    seconds: float = 0.0


_stats: Dict[str, CollectiveStats] = defaultdict(CollectiveStats)
_stats_lock = threading.Lock()


def record(collective: str, nbytes: int, seconds: float) -> None:
    with _stats_lock:
        s = _stats[collective]
        s.calls += 1
        s.bytes += int(nbytes)
        s.seconds += seconds


def collective_stats(reset: bool = False) -> Dict[str, CollectiveStats]:
    """Modelled collective time charged by this process so far, per
    collective (``all_reduce``, ``all_to_all``, ...). ``reset`` clears it."""
    with _stats_lock:
        out = {k: CollectiveStats(v.calls, v.bytes, v.seconds) for k, v in _stats.items()}
        if reset:
            _stats.clear()
    return out


def reset_collective_stats() -> None:
    collective_stats(reset=True)
