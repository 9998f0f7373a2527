"""Alpha-beta cost of a collective, per algorithm, over a real topology.

Each algorithm is written as a short list of *steps*. A step is a traffic
pattern every rank performs at once (e.g. "send a 1/n chunk to the next rank
of every ring"); its cost is

    alpha  = step overhead + longest path latency + message issue waves
    beta   = bytes x (seconds per byte of the busiest resource)

where the busiest resource is found by routing the whole pattern: the
on-package path for ranks of one chip (logical devices, LNC), the links of
the scale-up fabric (:meth:`System.bottleneck`: a torus shares links and
oversubscribes, a switch plane does not), or EFA between domains. A
collective costs the launch latency plus the sum of its steps. Every number
comes from :mod:`.systems`.

Sizes follow nccl-tests: ``nbytes`` is the buffer size nccl-tests prints
(all_gather: the gathered output; reduce_scatter: the full input;
all_to_all: one rank's send buffer; send_recv: one message). ``algbw`` is
nbytes / time and ``busbw`` is algbw times the bus factor (all_reduce
2(n-1)/n; all_gather, reduce_scatter, all_to_all (n-1)/n; others 1).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .topology import Placement, System, placement as make_placement

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all",
               "broadcast", "reduce", "send_recv")

#: Algorithms each collective can use, in the order they are tried.
ALGORITHMS: Dict[str, Tuple[str, ...]] = {
    "all_reduce": ("ring", "direct", "hierarchical"),
    "all_gather": ("ring", "direct", "hierarchical"),
    "reduce_scatter": ("ring", "direct", "hierarchical"),
    "all_to_all": ("direct", "hierarchical"),
    "broadcast": ("ring", "direct", "hierarchical"),
    "reduce": ("ring", "direct", "hierarchical"),
    "send_recv": ("direct",),
}


def bus_factor(collective: str, n: int) -> float:
    """nccl-tests' busbw / algbw ratio for ``n`` ranks."""
    if collective == "all_reduce":
        return 2 * (n - 1) / n
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


@dataclass(frozen=True)
class CollectiveCost:
    """Modelled cost of one collective call.

    ``algbw`` and ``busbw`` are bytes/s (nccl-tests prints them / 1e9 as
    GB/s); ``hops`` is the longest in-domain path any step uses.
    """

    collective: str
    nbytes: int
    world_size: int
    time_s: float
    algbw: float
    busbw: float
    algorithm: str
    hops: int
    notes: Tuple[str, ...] = ()


# ----- traffic patterns ---------------------------------------------------

@dataclass
class _Traffic:
    """Bytes (as a fraction of nbytes) between chips, and messages per chip.

    ``flows[(a, a)]`` is on-package traffic of chip ``a``."""

    flows: Dict[Tuple[int, int], float]
    messages: Dict[int, int]

    @classmethod
    def empty(cls) -> "_Traffic":
        return cls(defaultdict(float), defaultdict(int))

    def add(self, pl: Placement, src: int, dst: int, fraction: float) -> None:
        a, b = pl.chip_of(src), pl.chip_of(dst)
        self.flows[(a, b)] += fraction
        self.messages[a] += 1


@dataclass(frozen=True)
class _Step:
    traffic: _Traffic
    #: How many times the pattern's bytes are moved (ring: n-1 steps).
    byte_repeats: int
    #: How many alpha terms it pays (a pipelined chain pays n-1 for 1 pass).
    alpha_repeats: int


def _rank_rings(system: System, pl: Placement, ranks: Sequence[int]) -> List[List[int]]:
    """Cyclic rank orders to stripe a ring over: the system's chip ring
    orders (domain by domain), each chip expanded into its ranks."""
    by_chip: Dict[int, List[int]] = defaultdict(list)
    for r in sorted(ranks):
        by_chip[pl.chip_of(r)].append(r)
    n = system.num_chips
    by_domain: Dict[int, List[int]] = defaultdict(list)
    for chip in by_chip:
        by_domain[chip // n].append(chip % n)
    per_domain = {d: system.ring_orders(local) for d, local in by_domain.items()}
    variants = max(len(v) for v in per_domain.values())
    rings = []
    for v in range(variants):
        ring = []
        for d in sorted(per_domain):
            orders = per_domain[d]
            for local in orders[v % len(orders)]:
                ring.extend(by_chip[d * n + local])
        rings.append(ring)
    if len(by_chip) == 1 and len(ranks) > 2:
        rings.append(list(reversed(rings[0])))
    return rings


def _ring_pass(system, pl, groups, fraction, skip_into=()) -> _Traffic:
    """Every rank of every group sends ``fraction`` to its ring successor,
    striped evenly over the group's ring orders. ``skip_into`` ranks receive
    nothing (the root of a chain)."""
    t = _Traffic.empty()
    for ranks in groups:
        if len(ranks) < 2:
            continue
        rings = _rank_rings(system, pl, ranks)
        for ring in rings:
            for i, src in enumerate(ring):
                dst = ring[(i + 1) % len(ring)]
                if dst not in skip_into:
                    t.add(pl, src, dst, fraction / len(rings))
    return t


def _all_pairs(pl, groups, fraction) -> _Traffic:
    """Every rank sends ``fraction`` to every other rank of its group
    (aggregated per chip pair, so 1000+ ranks stay cheap)."""
    t = _Traffic.empty()
    for ranks in groups:
        per_chip: Dict[int, int] = defaultdict(int)
        for r in ranks:
            per_chip[pl.chip_of(r)] += 1
        for a, ka in per_chip.items():
            t.messages[a] += ka * (len(ranks) - 1)
            for b, kb in per_chip.items():
                pairs = ka * (kb - 1) if a == b else ka * kb
                if pairs:
                    t.flows[(a, b)] += pairs * fraction
    return t


def _fan(pl, root, others, fraction, inward) -> _Traffic:
    """The root sends ``fraction`` to each other rank (or each sends to it)."""
    t = _Traffic.empty()
    for r in others:
        if inward:
            t.add(pl, r, root, fraction)
        else:
            t.add(pl, root, r, fraction)
    return t


# ----- levels for the hierarchical algorithms -----------------------------

def _levels(system: System, pl: Placement) -> List[Callable[[int], tuple]]:
    """Group keys from the fastest level out: ranks of one chip (on-package),
    chips of one rack, racks of one domain (cross-rack cables), domains
    (EFA). A level groups the ranks that share every other coordinate, so
    each step talks only to peers one level away; levels of size 1 are
    dropped."""
    n = system.num_chips
    per_rack = system.nodes_per_rack * system.chips_per_node

    def coords(r):  # (domain, rack, chip in rack, rank in chip)
        chip = pl.chip_of(r)
        return chip // n, (chip % n) // per_rack, chip % per_rack, pl.local_index(r)

    def varying(level):
        return lambda r: tuple(v for i, v in enumerate(coords(r)) if i != level)

    out = []
    for level in (3, 2, 1, 0):
        key = varying(level)
        if max(len(g) for g in _groups(pl.world_size, key)) > 1:
            out.append(key)
    return out


def _groups(world: int, key) -> List[List[int]]:
    found: Dict[tuple, List[int]] = defaultdict(list)
    for r in range(world):
        found[key(r)].append(r)
    return list(found.values())


# ----- algorithms ---------------------------------------------------------

def _ring_steps(system, pl, collective, groups, fraction) -> List[_Step]:
    """Ring (bandwidth-optimal) steps for one level; ``fraction`` is the data
    each rank holds at this level, as a share of nbytes."""
    g = max(len(x) for x in groups)
    if collective in ("all_gather", "reduce_scatter"):
        return [_Step(_ring_pass(system, pl, groups, fraction / g), g - 1, g - 1)]
    if collective == "all_reduce":
        return [_Step(_ring_pass(system, pl, groups, fraction / g), 2 * (g - 1), 2 * (g - 1))]
    raise ValueError(collective)


def _plan_ring(system, pl, collective) -> List[_Step]:
    world = [list(range(pl.world_size))]
    if collective in ("broadcast", "reduce"):
        # Pipelined chain: the whole buffer crosses each ring edge once; the
        # pipeline fills in n-1 alpha terms. Rooted at rank 0.
        t = _ring_pass(system, pl, world, 1.0, skip_into=(0,))
        return [_Step(t, 1, pl.world_size - 1)]
    return _ring_steps(system, pl, collective, world, 1.0)


def _plan_direct(system, pl, collective) -> List[_Step]:
    n = pl.world_size
    world = [list(range(n))]
    if collective in ("all_to_all", "all_gather", "reduce_scatter"):
        return [_Step(_all_pairs(pl, world, 1.0 / n), 1, 1)]
    if collective == "all_reduce":  # one-shot reduce-scatter + all-gather
        return [_Step(_all_pairs(pl, world, 1.0 / n), 2, 2)]
    if collective in ("broadcast", "reduce"):
        return [_Step(_fan(pl, 0, range(1, n), 1.0, collective == "reduce"), 1, 1)]
    if collective == "send_recv":  # nccl-tests: rank r sends to r+1
        t = _Traffic.empty()
        for r in range(n):
            if (r + 1) % n != r:
                t.add(pl, r, (r + 1) % n, 1.0)
        return [_Step(t, 1, 1)]
    raise ValueError(collective)


def _plan_hierarchical(system, pl, collective) -> List[_Step]:
    levels = _levels(system, pl)
    if len(levels) < 2:
        raise _NotApplicable("one level only: same as the flat algorithms")
    groups = [_groups(pl.world_size, key) for key in levels]
    sizes = [max(len(x) for x in g) for g in groups]
    steps: List[_Step] = []
    if collective == "all_to_all":
        # Exchange level by level (as a multi-dimensional all-to-all): fewer
        # peers per step, each rank re-sends (g-1)/g of its buffer per level.
        for g, size in zip(groups, sizes):
            steps.append(_Step(_all_pairs(pl, g, 1.0 / size), 1, 1))
        return steps
    if collective in ("broadcast", "reduce"):
        # Outer level first from the root, then inward; chains per level.
        holders = {0}
        for g in reversed(groups):
            active = [x for x in g if holders & set(x)]
            roots = set(holders)
            t = _ring_pass(system, pl, active, 1.0, skip_into=roots)
            steps.append(_Step(t, 1, max(len(x) for x in active) - 1))
            holders = {r for x in active for r in x}
        return steps
    if collective in ("reduce_scatter", "all_reduce"):
        # Reduce-scatter inner (fastest) level first, on the most data.
        fraction = 1.0
        for g, size in zip(groups, sizes):
            steps += _ring_steps(system, pl, "reduce_scatter", g, fraction)
            fraction /= size
        if collective == "reduce_scatter":
            return steps
        for g, size in reversed(list(zip(groups, sizes))):
            fraction *= size
            steps += _ring_steps(system, pl, "all_gather", g, fraction)
        return steps
    if collective == "all_gather":
        # Gather the outer (slowest) level first, on the least data.
        fraction = 1.0 / pl.world_size
        for g, size in reversed(list(zip(groups, sizes))):
            fraction *= size
            steps += _ring_steps(system, pl, "all_gather", g, fraction)
        return steps
    raise _NotApplicable(collective)


class _NotApplicable(Exception):
    pass


_PLANS = {"ring": _plan_ring, "direct": _plan_direct, "hierarchical": _plan_hierarchical}


# ----- pricing a step -----------------------------------------------------

@dataclass(frozen=True)
class _StepCost:
    alpha_s: float
    seconds_per_byte: float
    hops: int
    limit: str  # the resource that sets seconds_per_byte
    oversubscription: float  # fabric time / injection-limited time (tori)
    uses_efa: bool


def _price(system: System, t: _Traffic, sbuf_to_sbuf: bool) -> _StepCost:
    n = system.num_chips
    lat, cores = system.latency, system.collective_cores
    on_pkg: Dict[int, float] = defaultdict(float)
    fabric: Dict[int, Dict[Tuple[int, int], float]] = defaultdict(dict)
    efa_out: Dict[int, float] = defaultdict(float)
    efa_in: Dict[int, float] = defaultdict(float)
    received: Dict[int, float] = defaultdict(float)
    for (a, b), frac in t.flows.items():
        if a == b:
            on_pkg[a] += frac
        elif a // n == b // n:
            fabric[a // n][(a % n, b % n)] = frac
            received[b] += frac
        else:
            efa_out[a] += frac
            efa_in[b] += frac
            received[b] += frac
    candidates = [(0.0, "")]
    latencies = [0.0]
    hops, oversub = 0, 1.0
    if on_pkg:
        candidates.append((max(on_pkg.values()) / system.on_package.bytes_per_s,
                           "on-package path"))
        latencies.append(system.on_package.latency_s)
    for domain_traffic in fabric.values():
        summary = system.bottleneck(domain_traffic)
        candidates.append((summary.time_s, f"{summary.busiest_link} link"))
        hops = max(hops, summary.max_hops)
        latencies.append(summary.max_hops * lat.hop_s)
        if not system.is_switched and summary.time_s:
            oversub = max(oversub, summary.time_s / _injection_time(system, domain_traffic))
    if efa_out:
        worst = max(max(efa_out.values()), max(efa_in.values()))
        candidates.append((worst / system.efa_bytes_per_s, "EFA"))
        latencies.append(system.efa.latency_s)
    spb, limit = max(candidates)
    if not sbuf_to_sbuf and received:
        # Each received byte lands in HBM and is read back before use.
        spb += 2 * max(received.values()) / system.hbm_bytes_per_s
    waves = math.ceil(max(t.messages.values(), default=0) / cores.count)
    alpha = lat.step_s + max(latencies) + waves * lat.message_issue_s
    return _StepCost(alpha, spb, hops, limit, oversub, bool(efa_out))


def _injection_time(system: System, traffic) -> float:
    """Seconds per byte if every chip could push its egress over all of its
    links at once: what a non-oversubscribed fabric would take."""
    egress: Dict[int, float] = defaultdict(float)
    for (a, _), frac in traffic.items():
        egress[a] += frac
    capacity: Dict[int, float] = defaultdict(float)
    for link in system.links:
        capacity[link.src] += link.bytes_per_s
    return max(b / capacity[a] for a, b in egress.items())


@lru_cache(maxsize=512)
def _priced_plan(system: System, pl: Placement, collective: str, algorithm: str,
                 sbuf_to_sbuf: bool) -> Tuple[Tuple[_StepCost, int, int], ...]:
    """Every step of ``algorithm`` priced per byte: size-independent, so a
    sweep over message sizes routes each pattern once."""
    steps = _PLANS[algorithm](system, pl, collective)
    return tuple((_price(system, s.traffic, sbuf_to_sbuf), s.byte_repeats, s.alpha_repeats)
                 for s in steps)


# ----- public API ---------------------------------------------------------

def collective_cost(system: System, collective: str, nbytes: int,
                    world_size: Optional[int] = None, lnc: Optional[int] = None,
                    algorithm: Optional[str] = None,
                    sbuf_to_sbuf: Optional[bool] = None) -> CollectiveCost:
    """Modelled time of one ``collective`` of ``nbytes`` over ``world_size``
    ranks of ``system``.

    Ranks are logical devices of ``lnc`` cores (:func:`placement`; ``None``:
    one rank per chip, so ``world_size`` counts chips). A world larger than
    the domain spans several domains joined by EFA. ``algorithm`` is one of
    :data:`ALGORITHMS` for the collective; ``None`` picks the fastest, as a
    tuner would. ``sbuf_to_sbuf`` overrides the chip's collective-core
    default (Trainium3: SBUF to SBUF, no HBM round trip).
    """
    if collective not in COLLECTIVES:
        raise ValueError(f"unknown collective {collective!r}: expected one of {COLLECTIVES}")
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    world_size = system.num_chips if world_size is None else world_size
    pl = make_placement(world_size, lnc, system.cores_per_chip)
    sbuf = system.collective_cores.sbuf_to_sbuf if sbuf_to_sbuf is None else sbuf_to_sbuf
    if algorithm is not None and algorithm not in ALGORITHMS[collective]:
        raise ValueError(f"{collective} supports algorithms {ALGORITHMS[collective]}, "
                         f"got {algorithm!r}")
    if world_size == 1:
        return _result(system, pl, collective, nbytes, system.latency.launch_s, "none", 0,
                       ("one rank: nothing to move",))
    names = [algorithm] if algorithm else list(ALGORITHMS[collective])
    best = None
    for name in names:
        try:
            plan = _priced_plan(system, pl, collective, name, sbuf)
        except _NotApplicable as exc:
            if algorithm:
                raise ValueError(f"{name} does not apply here: {exc}") from None
            continue
        time_s = system.latency.launch_s + sum(
            a_rep * c.alpha_s + b_rep * c.seconds_per_byte * nbytes for c, b_rep, a_rep in plan)
        if best is None or time_s < best[0]:
            best = (time_s, name, plan)
    time_s, name, plan = best
    return _result(system, pl, collective, nbytes, time_s, name,
                   max(c.hops for c, _, _ in plan), _notes(system, pl, plan, sbuf))


def _result(system, pl, collective, nbytes, time_s, algorithm, hops, notes) -> CollectiveCost:
    algbw = nbytes / time_s
    return CollectiveCost(collective, nbytes, pl.world_size, time_s, algbw,
                          algbw * bus_factor(collective, pl.world_size), algorithm, hops,
                          tuple(notes))


def _notes(system: System, pl: Placement, plan, sbuf: bool) -> List[str]:
    cores = system.collective_cores
    notes = [f"{pl.world_size} ranks on {pl.num_chips} chip(s), "
             f"{pl.ranks_per_chip} per chip (LNC={pl.lnc})"]
    domains = -(-pl.num_chips // system.num_chips)
    if domains > 1:
        notes.append(f"spans {domains} domains of {system.num_chips} chips over "
                     f"EFA {system.efa_gbps} Gb/s per chip")
    heaviest = max(plan, key=lambda s: s[0].seconds_per_byte * s[1])[0]
    if heaviest.limit:
        notes.append(f"bandwidth limited by the {heaviest.limit}")
    over = max(c.oversubscription for c, _, _ in plan)
    if over > 1.05:
        notes.append(f"torus oversubscription x{over:.1f} (busiest link vs injection bandwidth)")
    notes.append(f"runs on {cores.count} collective cores per chip, overlapping compute")
    notes.append("SBUF-to-SBUF transfers (no HBM round trip)" if sbuf
                 else "received data staged through HBM")
    return notes


def point_to_point(system: System, src: int, dst: int, nbytes: int,
                   lnc: Optional[int] = None) -> CollectiveCost:
    """One ``send`` from rank ``src`` to rank ``dst`` (same-chip ranks use the
    on-package path)."""
    pl = make_placement(max(src, dst) + 1, lnc, system.cores_per_chip)
    t = _Traffic.empty()
    if src != dst:
        t.add(pl, src, dst, 1.0)
    if not t.flows:
        return _result(system, pl, "send_recv", nbytes, system.latency.launch_s, "none", 0, ())
    c = _price(system, t, system.collective_cores.sbuf_to_sbuf)
    time_s = system.latency.launch_s + c.alpha_s + c.seconds_per_byte * nbytes
    return _result(system, pl, "send_recv", nbytes, time_s, "direct", c.hops,
                   [f"limited by the {c.limit}"])
