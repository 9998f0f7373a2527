"""Scale-up domains as graphs: which chip is wired to which, how many hops
apart two chips are, and how a traffic pattern loads each link.

The collective cost model (:mod:`.collectives`) asks this module one question
per algorithm step: "if these chips send these bytes at once, how long does
the busiest link take?". Answering it by routing the traffic over the real
wiring (rather than assuming one bandwidth per system) is what makes a torus
oversubscribe under all-to-all while a switched fabric does not.

Graph: chips are nodes ``0..num_chips-1``; each switch plane of a rack is one
extra node (a non-blocking crossbar). Every link is directed and carries a
bandwidth from :mod:`.systems`. Path length is counted in hops: a chip-to-chip
link is one hop, chip -> switch -> chip is one hop (the facts' convention).
Routing is minimal-hop with an equal split over every minimal next hop
(per-hop ECMP).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from . import systems as S
from .specs import get_chip

#: Edge weights (hops are distance // 2): a direct link is one hop; a switch
#: traversal is two half-hops so a path through a switch node counts one.
_LINK_WEIGHT = 2
_SWITCH_HALF_WEIGHT = 1


class Chip(NamedTuple):
    """A chip's place in a domain, counted from 0.

    Switched Trainium3: ``slot`` 0..3 are the positions the facts call A..D
    (NL32x2 trays hold 2 chips, so slots 0..1). Trainium2 torus: ``node`` is
    a 16-chip server and ``slot`` 0..15 its chip (x = slot % 4, y = slot // 4,
    z = the node's index in the domain).
    """

    rack: int
    node: int
    slot: int


ChipLike = Union[Chip, Tuple[int, int, int], int]


@dataclass(frozen=True)
class Link:
    """One direction of one physical connection."""

    kind: str  # "pcb", "aec", "backplane" (chip <-> switch plane), "torus"
    src: int
    dst: int
    bytes_per_s: float

    @property
    def weight(self) -> int:
        return _LINK_WEIGHT if self.kind in ("pcb", "aec", "torus") else _SWITCH_HALF_WEIGHT


class LoadSummary(NamedTuple):
    """What a traffic pattern costs on the fabric of one domain."""

    #: Seconds the busiest link needs for its load (the beta term).
    time_s: float
    #: Kind of that link ("" when there was no inter-chip traffic).
    busiest_link: str
    #: Largest hop count among the pattern's flows.
    max_hops: int


@dataclass(frozen=True)
class System:
    """One scale-up domain (plus EFA to further domains of the same kind).

    Build it with :func:`get_system`. ``num_chips`` is the domain size;
    chip arguments are :class:`Chip` tuples or flat indices
    ``(rack * nodes_per_rack + node) * chips_per_node + slot``.
    """

    spec: Union[S.SwitchedSystemSpec, S.TorusSystemSpec]
    switch_gen: Optional[int]
    efa_gbps: int
    _caches: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    # ----- identity -------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_chips(self) -> int:
        return self.spec.num_chips

    @property
    def is_switched(self) -> bool:
        return isinstance(self.spec, S.SwitchedSystemSpec)

    @property
    def chip_kind(self) -> str:
        """"trn3" or "trn2": the key into the chip-level specs."""
        return self.spec.chip

    @property
    def racks(self) -> int:
        if self.is_switched:
            return self.spec.racks
        nodes = self.num_chips // self.spec.chips_per_node
        return max(1, nodes // self.spec.nodes_per_rack)

    @property
    def nodes_per_rack(self) -> int:
        return self.spec.nodes_per_rack

    @property
    def chips_per_node(self) -> int:
        return self.spec.chips_per_node

    def describe(self) -> str:
        """One line for reports, e.g. the CLI header."""
        if self.is_switched:
            planes = self.spec.planes(self.switch_gen)
            gen = S.SWITCH_GENERATIONS[self.switch_gen]
            wiring = f"{self.spec.pcb_wiring} tray wiring" + (
                " (est.)" if self.spec.pcb_wiring_estimated else "")
            switches = (f", {self.spec.gen1_switches_per_plane} switches per plane"
                        if self.switch_gen == 1 else "")
            shape = (f"switched, Gen{self.switch_gen} ({gen.description}), "
                     f"{len(planes)} plane(s) per rack{switches}, {wiring}")
        else:
            shape = "x".join(map(str, self.spec.dims)) + f" {len(self.spec.dims)}D torus"
        return (f"{self.name}: {self.num_chips} chips, {shape}, {self.spec.cooling}-cooled, "
                f"EFA {self.efa_gbps} Gb/s per chip")

    # ----- chip-level resources the cost model reads ----------------------
    @property
    def collective_cores(self) -> S.CollectiveCoreSpec:
        return S.COLLECTIVE_CORES[self.chip_kind]

    @property
    def latency(self) -> S.LatencySpec:
        return S.LATENCY

    @property
    def on_package(self) -> S.OnPackageSpec:
        return S.ON_PACKAGES[self.chip_kind]

    @property
    def efa(self) -> S.EfaSpec:
        return S.EFA[self.chip_kind]

    @property
    def efa_bytes_per_s(self) -> float:
        return self.efa.bytes_per_s(self.efa_gbps)

    @property
    def hbm_bytes_per_s(self) -> float:
        return get_chip(self.chip_kind).hbm_bytes_per_s

    @property
    def cores_per_chip(self) -> int:
        return get_chip(self.chip_kind).cores_per_chip

    # ----- coordinates ----------------------------------------------------
    def chip(self, index: int) -> Chip:
        """The :class:`Chip` at flat ``index``."""
        if not 0 <= index < self.num_chips:
            raise ValueError(f"{self.name} has chips 0..{self.num_chips - 1}, got {index}")
        slot = index % self.chips_per_node
        node_global = index // self.chips_per_node
        return Chip(node_global // self.nodes_per_rack, node_global % self.nodes_per_rack, slot)

    def index(self, chip: ChipLike) -> int:
        """Flat index of ``chip`` (a :class:`Chip`, a 3-tuple or an index)."""
        if isinstance(chip, int):
            self.chip(chip)  # validates the range
            return chip
        rack, node, slot = chip
        if not (0 <= rack < self.racks and 0 <= node < self.nodes_per_rack
                and 0 <= slot < self.chips_per_node):
            raise ValueError(
                f"{self.name} chips are (rack 0..{self.racks - 1}, node "
                f"0..{self.nodes_per_rack - 1}, slot 0..{self.chips_per_node - 1}), "
                f"got {tuple(chip)}")
        return (rack * self.nodes_per_rack + node) * self.chips_per_node + slot

    def torus_coord(self, index: int) -> Tuple[int, ...]:
        """Torus coordinates ``(x, y[, z])`` of a Trainium2 chip."""
        dims = self.spec.dims
        slot = index % self.chips_per_node
        coord = (slot % dims[0], slot // dims[0])
        return coord + ((index // self.chips_per_node,) if len(dims) == 3 else ())

    # ----- graph ----------------------------------------------------------
    @cached_property
    def links(self) -> Tuple[Link, ...]:
        """Every directed link of the domain."""
        pairs = self._switched_links() if self.is_switched else self._torus_links()
        out: List[Link] = []
        for kind, a, b, bw in pairs:
            out.append(Link(kind, a, b, bw))
            out.append(Link(kind, b, a, bw))
        return tuple(out)

    @cached_property
    def _num_nodes(self) -> int:
        return 1 + max(max(l.src, l.dst) for l in self.links)

    @cached_property
    def _adjacency(self) -> Tuple[Tuple[int, ...], ...]:
        adj: List[List[int]] = [[] for _ in range(self._num_nodes)]
        for lid, link in enumerate(self.links):
            adj[link.src].append(lid)
        return tuple(tuple(a) for a in adj)

    def _switched_links(self) -> Iterable[Tuple[str, int, int, float]]:
        spec, ports, lane = self.spec, S.NEURONLINK_V4, S.PCIE_GEN6_LANE
        cpn = spec.chips_per_node
        idx = lambda r, n, s: (r * spec.nodes_per_rack + n) * cpn + s  # noqa: E731
        if spec.pcb_wiring == "pair":
            neighbours = [(0, 1)] if cpn == 2 else []
            pcb_lanes = ports.pcb_lanes
        else:  # ring: each chip splits its PCB lanes over its two neighbours
            neighbours = [(s, (s + 1) % cpn) for s in range(cpn)]
            pcb_lanes = ports.pcb_lanes // 2
        next_node = self.num_chips
        for r in range(spec.racks):
            for n in range(spec.nodes_per_rack):
                for a, b in neighbours:
                    yield "pcb", idx(r, n, a), idx(r, n, b), pcb_lanes * lane.bytes_per_s
                for s in range(cpn):
                    for r2 in range(r + 1, spec.racks):
                        yield "aec", idx(r, n, s), idx(r2, n, s), ports.aec_lanes * lane.bytes_per_s
            for slots in spec.planes(self.switch_gen):
                plane, next_node = next_node, next_node + 1
                for n in range(spec.nodes_per_rack):
                    for s in slots:
                        yield ("backplane", idx(r, n, s), plane,
                               ports.backplane_active_lanes * lane.bytes_per_s)

    def _torus_links(self) -> Iterable[Tuple[str, int, int, float]]:
        dims, bw = self.spec.dims, self.spec.link_bytes_per_s
        where = {self.torus_coord(i): i for i in range(self.num_chips)}
        for coord, i in where.items():
            for d, size in enumerate(dims):
                if size < 2:
                    continue
                nxt = list(coord)
                nxt[d] = (coord[d] + 1) % size
                if size == 2 and coord[d] == 1:
                    continue  # the +1 and -1 neighbours coincide: one link
                yield "torus", i, where[tuple(nxt)], bw

    def _distances_from(self, src: int) -> Tuple[int, ...]:
        """Weighted distances from ``src`` (links are symmetric, so also to)."""
        cache = self._caches.setdefault("dist", {})
        if src not in cache:
            dist = [float("inf")] * self._num_nodes
            dist[src] = 0
            heap = [(0, src)]
            while heap:
                d, u = heapq.heappop(heap)
                if d > dist[u]:
                    continue
                for lid in self._adjacency[u]:
                    link = self.links[lid]
                    nd = d + link.weight
                    if nd < dist[link.dst]:
                        dist[link.dst] = nd
                        heapq.heappush(heap, (nd, link.dst))
            cache[src] = tuple(dist)
        return cache[src]

    def _routes_to(self, dst: int):
        """Nodes farthest-first and, per node, its minimal next-hop links."""
        cache = self._caches.setdefault("routes", {})
        if dst not in cache:
            dist = self._distances_from(dst)
            order = sorted((u for u in range(self._num_nodes) if u != dst),
                           key=lambda u: -dist[u])
            nexts = {}
            for u in order:
                nexts[u] = tuple(lid for lid in self._adjacency[u]
                                 if dist[self.links[lid].dst] + self.links[lid].weight == dist[u])
            cache[dst] = (order, nexts)
        return cache[dst]

    # ----- public queries -------------------------------------------------
    def hops(self, a: ChipLike, b: ChipLike) -> int:
        """Minimal hop count between two chips of the domain.

        A switch traversal counts one hop, as does a PCB, cross-rack (AEC) or
        torus link; 0 for the same chip.
        """
        ia, ib = self.index(a), self.index(b)
        return self._distances_from(ia)[ib] // _LINK_WEIGHT

    def diameter(self) -> int:
        """Largest hop count between any two chips."""
        n = self.num_chips
        return max(self._distances_from(a)[b] // _LINK_WEIGHT for a in range(n) for b in range(n))

    def link_loads(self, traffic: Mapping[Tuple[int, int], float]) -> List[float]:
        """Bytes each link (by position in :attr:`links`) carries when every
        ``(src, dst) -> bytes`` flow is routed at once, minimal-hop with an
        equal split over minimal next hops."""
        load = [0.0] * len(self.links)
        by_dst: Dict[int, Dict[int, float]] = {}
        for (src, dst), nbytes in traffic.items():
            if src != dst and nbytes:
                by_dst.setdefault(dst, {})
                by_dst[dst][src] = by_dst[dst].get(src, 0.0) + nbytes
        for dst, sources in by_dst.items():
            order, nexts = self._routes_to(dst)
            inflow = [0.0] * self._num_nodes
            for src, nbytes in sources.items():
                inflow[src] += nbytes
            for u in order:
                if not inflow[u]:
                    continue
                hops = nexts[u]
                share = inflow[u] / len(hops)
                for lid in hops:
                    load[lid] += share
                    inflow[self.links[lid].dst] += share
        return load

    def bottleneck(self, traffic: Mapping[Tuple[int, int], float]) -> LoadSummary:
        """Time of the busiest link and the longest path for ``traffic``."""
        loads = self.link_loads(traffic)
        best, kind = 0.0, ""
        for link, load in zip(self.links, loads):
            t = load / link.bytes_per_s
            if t > best:
                best, kind = t, link.kind
        max_hops = max((self.hops(s, d) for (s, d), b in traffic.items() if s != d and b),
                       default=0)
        return LoadSummary(best, kind, max_hops)

    def ring_orders(self, chips: Sequence[int]) -> Tuple[Tuple[int, ...], ...]:
        """Cyclic chip orders a ring algorithm stripes its data over.

        Switched: node-major and slot-major (one stays on PCB and planes, the
        other on one plane per slot), each both ways. Torus: one snake per
        dimension (that dimension varies fastest), each both ways, so the
        rings together use every link as a multi-ring schedule does. For a
        subset of chips the full orders are filtered to it.
        """
        members = set(chips)
        if self.is_switched:
            node_major = list(range(self.num_chips))
            slot_major = sorted(node_major, key=lambda i: (self.chip(i).rack, self.chip(i).slot,
                                                           self.chip(i).node))
            bases = [node_major, slot_major]
        else:
            where = {self.torus_coord(i): i for i in range(self.num_chips)}
            dims = self.spec.dims
            bases = []
            for fast in range(len(dims)):
                axes = [fast] + [d for d in range(len(dims)) if d != fast]
                bases.append([where[_unpermute(c, axes)]
                              for c in _snake([dims[a] for a in axes])])
        orders = []
        for base in bases:
            order = tuple(i for i in base if i in members)
            orders.extend([order, tuple(reversed(order))])
        return tuple(dict.fromkeys(orders))  # drop duplicates (e.g. 2 chips)

    def collective_time(self, collective: str, nbytes: int, world_size: Optional[int] = None,
                        lnc: Optional[int] = None, algorithm: Optional[str] = None, **kw):
        """Modelled cost of one collective: see
        :func:`torch_trn3.hw.collectives.collective_cost` (imported here, not at
        module level, because that module builds on this one)."""
        from .collectives import collective_cost
        return collective_cost(self, collective, nbytes, world_size, lnc=lnc,
                               algorithm=algorithm, **kw)


def _snake(sizes: Sequence[int]) -> List[Tuple[int, ...]]:
    """Boustrophedon walk over a grid, first axis fastest: consecutive points
    differ by one in one axis, and with even sizes the walk closes into a
    ring with one wrap-around hop."""
    if len(sizes) == 1:
        return [(i,) for i in range(sizes[0])]
    inner = _snake(sizes[:-1])
    out = []
    for k in range(sizes[-1]):
        layer = inner if k % 2 == 0 else list(reversed(inner))
        out.extend(c + (k,) for c in layer)
    return out


def _unpermute(coord: Tuple[int, ...], axes: Sequence[int]) -> Tuple[int, ...]:
    out = [0] * len(coord)
    for value, axis in zip(coord, axes):
        out[axis] = value
    return tuple(out)


def get_system(name: str, switch_gen: Optional[int] = None,
               efa_gbps: Optional[int] = None) -> System:
    """The system called ``name``: ``trn3-nl32x2``, ``trn3-nl72x2`` (switched;
    ``switch_gen`` 1, 2 or 3, default 1), ``trn2-nl16`` or ``trn2-nl64``
    (tori; no switch generation). ``efa_gbps`` is the per-chip scale-out
    rate (Trainium3: 200 or 400; default 200). Instances are shared, so their
    routing caches are too."""
    try:
        spec = S.SYSTEMS[name]
    except KeyError:
        raise ValueError(f"unknown system {name!r}: expected one of {sorted(S.SYSTEMS)}") from None
    if isinstance(spec, S.SwitchedSystemSpec):
        switch_gen = S.DEFAULT_SWITCH_GEN if switch_gen is None else switch_gen
        if switch_gen not in spec.switch_gens:
            raise ValueError(f"{name}: switch_gen must be one of {spec.switch_gens}, "
                             f"got {switch_gen!r}")
    elif switch_gen is not None:
        raise ValueError(f"{name} is a torus and has no switch generation (got {switch_gen!r})")
    efa = S.EFA[spec.chip]
    efa_gbps = efa.default_gbps if efa_gbps is None else efa_gbps
    if efa_gbps not in efa.gbps_options:
        raise ValueError(f"{name}: efa_gbps must be one of {efa.gbps_options}, got {efa_gbps!r}")
    return _shared_system(name, switch_gen, efa_gbps)


@lru_cache(maxsize=None)
def _shared_system(name: str, switch_gen: Optional[int], efa_gbps: int) -> System:
    return System(S.SYSTEMS[name], switch_gen, efa_gbps)


def system_names() -> Tuple[str, ...]:
    return tuple(S.SYSTEMS)


@dataclass(frozen=True)
class Placement:
    """Where the ranks of a job sit: ``ranks_per_chip`` consecutive ranks
    share a chip (logical devices of one package), chips fill in order."""

    world_size: int
    lnc: int
    ranks_per_chip: int

    @property
    def num_chips(self) -> int:
        return -(-self.world_size // self.ranks_per_chip)

    def chip_of(self, rank: int) -> int:
        """Flat chip index (over all domains) of ``rank``."""
        return rank // self.ranks_per_chip

    def local_index(self, rank: int) -> int:
        """Position of ``rank`` among the ranks of its chip."""
        return rank % self.ranks_per_chip

    def same_chip(self, a: int, b: int) -> bool:
        """True when the two ranks talk over the on-package path."""
        return self.chip_of(a) == self.chip_of(b)


def placement(world_size: int, lnc: Optional[int] = None, cores_per_chip: int = 8) -> Placement:
    """Map ``world_size`` ranks that are logical devices of ``lnc`` cores onto
    chips: ``cores_per_chip // lnc`` ranks per chip. ``lnc=None`` means one
    rank per chip (the world size counts chips, as LNC = cores_per_chip)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    lnc = cores_per_chip if lnc is None else lnc
    if lnc < 1 or cores_per_chip % lnc:
        raise ValueError(f"lnc must divide cores_per_chip={cores_per_chip}, got {lnc}")
    return Placement(world_size, lnc, cores_per_chip // lnc)
