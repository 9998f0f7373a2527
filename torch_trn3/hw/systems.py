"""System and link specs as data: every number the topology and collective
models use, each with its source.

Sources: ``shared/TRN3_FACTS.md`` (a public Trainium3 deep dive, December
2025, plus the AWS Neuron docs) and the AWS Neuron architecture pages quoted
beside each number. A value marked ``est.`` is an estimate or a derivation
the sources do not state; it is a named field so a better number replaces it
in one place. :mod:`.topology` and :mod:`.collectives` read these specs and
never repeat a hardware literal.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Tuple

from .specs import TRN2, TRN3

GBIT = 1e9 / 8  # bytes per second in one Gb/s


@dataclass(frozen=True)
class LaneSpec:
    """One SerDes lane, one direction."""

    name: str
    #: Signalling rate in transfers/s, one bit per transfer per lane
    #: (PCIe 6.0: 64 GT/s PAM4; PCIe 5.0: 32 GT/s NRZ; PCI-SIG specs).
    transfers_per_s: float
    #: Share of raw bytes that carries payload (est.: TLP headers ignored).
    #: PCIe 6.0 FLIT mode: 236 of 256 bytes carry TLPs (the rest DLP, CRC,
    #: FEC). PCIe 5.0: 128b/130b line coding.
    efficiency: float

    @property
    def raw_bytes_per_s(self) -> float:
        """Raw bytes/s per lane per direction (PCIe 6.0: 64 Gb/s / 8 = 8 GB/s)."""
        return self.transfers_per_s / 8

    @property
    def bytes_per_s(self) -> float:
        """Payload bytes/s per lane per direction."""
        return self.raw_bytes_per_s * self.efficiency


#: Trainium3's NeuronLink v4 lanes (TRN3_FACTS: "160 PCIe Gen6 lanes per chip").
PCIE_GEN6_LANE = LaneSpec(
    name="PCIe Gen6 x1",
    transfers_per_s=64e9,
    efficiency=236 / 256,
)

#: Trainium2's NeuronLink v3 torus links (est.: Trainium2 predates PCIe 6
#: silicon; its lanes are taken as PCIe Gen5 signalling with 128b/130b
#: coding, not Gen6 FLITs).
PCIE_GEN5_LANE = LaneSpec(
    name="PCIe Gen5 x1",
    transfers_per_s=32e9,
    efficiency=128 / 130,
)


@dataclass(frozen=True)
class NeuronLinkV4Ports:
    """Trainium3 scale-up lanes per chip (NeuronLink v4 over PCIe Gen6).

    Facts: 160 lanes per chip, 144 active (16 spare on the backplane);
    1.2 TB/s per chip per direction (144 x 8 GB/s = 1.152 TB/s; the Neuron
    docs' 2.56 TB/s per device counts 160 lanes, both directions).
    """

    total_lanes: int = 160
    #: Backplane lanes to the switch trays: 80 physical, 64 active (facts).
    backplane_lanes: int = 80
    backplane_active_lanes: int = 64
    #: PCB lanes to the neighbour chip(s) on the same tray (facts).
    pcb_lanes: int = 64
    #: Cross-rack lanes over active electrical cables (facts). The facts call
    #: this "under 10% of the in-rack bandwidth": 16 of 160 lanes is 10%,
    #: 16 of 144 active lanes 11%; the model uses the lane count.
    aec_lanes: int = 16

    def __post_init__(self):
        # The facts' 16 spare lanes are all on the backplane (80 - 64).
        spare = self.total_lanes - self.active_lanes
        if spare != self.backplane_lanes - self.backplane_active_lanes:
            raise ValueError(f"NeuronLink v4 lanes do not add up: {self.total_lanes} total, "
                             f"{self.active_lanes} active, {spare} spare")

    @property
    def active_lanes(self) -> int:
        return self.backplane_active_lanes + self.pcb_lanes + self.aec_lanes

    @property
    def stated_bytes_per_s_per_direction(self) -> float:
        """The facts' per-chip, per-direction figure (1.2 TB/s), read from
        the chip spec (``TRN3.scale_up_bytes_per_s``) to check the lanes."""
        return TRN3.scale_up_bytes_per_s


NEURONLINK_V4 = NeuronLinkV4Ports()


@dataclass(frozen=True)
class SwitchGeneration:
    """One NeuronLink switch generation over Trainium3's life (facts). The
    topology reads only which slots each plane joins (``planes_by_gen``);
    the switch chip itself is described in words for reports."""

    #: The facts' words for the switch chip, e.g. "160-lane 20-port PCIe 6 switch".
    description: str


SWITCH_GENERATIONS: Mapping[int, SwitchGeneration] = MappingProxyType({
    1: SwitchGeneration("160-lane 20-port PCIe 6 switch, multi-plane"),
    2: SwitchGeneration("320-lane 40-port PCIe 6 switch"),
    3: SwitchGeneration("72+ port UALink switch, all-to-all in the rack"),
})


@dataclass(frozen=True)
class SwitchedSystemSpec:
    """A Trainium3 switched scale-up domain (facts, Systems table).

    A chip is ``(rack, node, slot)``; a node is one tray of chips on a shared
    PCB (NL32x2: a 2-chip JBOG tray, slots A..B; NL72x2: a 4-chip compute
    tray, slots A..D). Switches of one plane are modelled as one non-blocking
    crossbar per rack: every chip of the plane's slots sends its 64 active
    backplane lanes into it ("switched fabrics do not oversubscribe").
    """

    name: str
    chip: str
    racks: int
    nodes_per_rack: int
    chips_per_node: int
    #: How the PCB lanes join the chips of a node: "pair" (NL32x2: all 64 lanes
    #: to the one neighbour) or "ring" (NL72x2: A-B-C-D-A, 32 lanes to each of
    #: two neighbours). See ``pcb_wiring_estimated``.
    pcb_wiring: str
    #: True when ``pcb_wiring`` is the model's reading rather than a stated
    #: fact. NL72x2's ring is est.: the facts give "8 small 32-lane switches
    #: per compute tray" and 64 PCB lanes per chip, not how they connect.
    #: 8 x 32 = 256 = 4 chips x 64 lanes fits two switches per ring link
    #: (32 lanes each way between neighbours); a tray switch joining all four
    #: chips would make A->C one hop and A node 1 -> C node 2 two hops, but
    #: the facts state three, which the ring reproduces (A->B->C, then the C
    #: plane). Consequence to keep in mind: A->C traffic on a tray loads
    #: chip B's links (the collective cores forward it).
    pcb_wiring_estimated: bool
    #: Per switch generation, the slots each switch plane of a rack connects.
    #: Gen1 NL32x2: 2 planes of 8 switches, one per slot (facts: A->B across
    #: nodes is 2 hops). Gen1 NL72x2: 4 planes of 10 switches, one per slot.
    #: Gen2 NL72x2 "drops to 2 planes": slots {A,C} and {B,D} (grouping est.).
    #: Gen2 NL32x2 and Gen3: one plane per rack (1 hop in the rack).
    planes_by_gen: Tuple[Tuple[int, Tuple[Tuple[int, ...], ...]], ...]
    #: Switch chips per plane per rack, Gen1 (facts; shown in reports).
    gen1_switches_per_plane: int
    cooling: str

    @property
    def num_chips(self) -> int:
        return self.racks * self.nodes_per_rack * self.chips_per_node

    @property
    def switch_gens(self) -> Tuple[int, ...]:
        return tuple(gen for gen, _ in self.planes_by_gen)

    def planes(self, gen: int) -> Tuple[Tuple[int, ...], ...]:
        """Slot groups, one per switch plane of a rack, for switch ``gen``."""
        return dict(self.planes_by_gen)[gen]


TRN3_NL32X2 = SwitchedSystemSpec(
    name="trn3-nl32x2",
    chip="trn3",
    racks=2,
    nodes_per_rack=16,
    chips_per_node=2,
    pcb_wiring="pair",                  # facts: a 2-chip JBOG tray
    pcb_wiring_estimated=False,
    planes_by_gen=((1, ((0,), (1,))), (2, ((0, 1),)), (3, ((0, 1),))),
    gen1_switches_per_plane=8,
    cooling="air",
)

TRN3_NL72X2 = SwitchedSystemSpec(
    name="trn3-nl72x2",
    chip="trn3",
    racks=2,
    nodes_per_rack=18,
    chips_per_node=4,
    pcb_wiring="ring",                  # est. (see SwitchedSystemSpec)
    pcb_wiring_estimated=True,
    planes_by_gen=(
        (1, ((0,), (1,), (2,), (3,))),
        (2, ((0, 2), (1, 3))),
        (3, ((0, 1, 2, 3),)),
    ),
    gen1_switches_per_plane=10,
    cooling="liquid",
)


@dataclass(frozen=True)
class TorusSystemSpec:
    """A Trainium2 torus scale-up domain (facts, Systems table).

    Chips sit at torus coordinates ``(x, y[, z])`` with wrap-around links to
    the two neighbours in every dimension; traffic to a non-neighbour is
    forwarded chip to chip, so links are shared (oversubscribed).
    """

    name: str
    chip: str
    #: Chips per dimension: NL16 4x4 (2D), NL64 ("NL32x2") 4x4x4 (3D).
    dims: Tuple[int, ...]
    #: Chips per node (one trn2 server of 16 chips = one x-y plane).
    chips_per_node: int
    #: Nodes per rack (NL64: 2 racks of 2 servers each; est. from "NL32x2").
    nodes_per_rack: int
    cooling: str

    @property
    def chip_bytes_per_s_per_direction(self) -> float:
        """NeuronLink-v3 bytes/s per chip per direction: the chip spec's
        ``scale_up_bytes_per_s`` (Trainium2: 0.64 TB/s, see specs.py)."""
        return TRN2.scale_up_bytes_per_s

    @property
    def num_chips(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def links_per_chip(self) -> int:
        """Torus neighbours per chip: 2 per dimension (4 in 2D, 6 in 3D)."""
        return 2 * len(self.dims)

    @property
    def link_bytes_per_s(self) -> float:
        """One torus link, one direction (est.): the chip's NeuronLink
        bandwidth split evenly over its torus links, times the payload share
        of its PCIe Gen5 lanes (128b/130b)."""
        return (self.chip_bytes_per_s_per_direction / self.links_per_chip
                * PCIE_GEN5_LANE.efficiency)


TRN2_NL16 = TorusSystemSpec(
    name="trn2-nl16",
    chip="trn2",
    dims=(4, 4),
    chips_per_node=16,
    nodes_per_rack=1,
    cooling="air",
)

TRN2_NL64 = TorusSystemSpec(
    name="trn2-nl64",
    chip="trn2",
    dims=(4, 4, 4),
    chips_per_node=16,
    nodes_per_rack=2,
    cooling="air",
)


@dataclass(frozen=True)
class CollectiveCoreSpec:
    """The chip's dedicated collective-communication cores."""

    #: Cores per chip. Trainium2: 20 CC-Cores (NKI architecture guide).
    #: Trainium3: "dozens" (facts); 32 is est.
    count: int
    #: Whether data moves SBUF to SBUF with no HBM round trip (facts, for
    #: Trainium3). Not stated for Trainium2: est. False (staged in HBM).
    sbuf_to_sbuf: bool
    # Reductions run near memory as one read-add-write instruction (facts,
    # Trainium3), so the model charges a reduce step no engine time (both chips).


COLLECTIVE_CORES: Mapping[str, CollectiveCoreSpec] = MappingProxyType({
    "trn3": CollectiveCoreSpec(count=32, sbuf_to_sbuf=True),
    "trn2": CollectiveCoreSpec(count=20, sbuf_to_sbuf=False),
})


@dataclass(frozen=True)
class LatencySpec:
    """Alpha terms of the alpha-beta model. All est.: no source states them.

    Orders of magnitude: a PCIe switch traversal is a few hundred ns port to
    port; a DMA descriptor plus semaphore handshake is around a microsecond.
    """

    #: Fixed cost of starting one collective on the collective cores (est.).
    launch_s: float = 2.0e-6
    #: Per algorithm step: neighbour handshake / semaphore wait (est.).
    step_s: float = 0.5e-6
    #: Per hop: one switch traversal or one chip-to-chip forward (est.).
    hop_s: float = 0.25e-6
    #: Issuing one peer message on one collective core (est.); a step with
    #: more peers than collective cores issues in waves.
    message_issue_s: float = 0.1e-6


LATENCY = LatencySpec()


@dataclass(frozen=True)
class OnPackageSpec:
    """Transfers between logical devices (LNC) of one chip.

    They never leave the package. Bandwidth est.: the chip's DMA bandwidth
    (``ChipSpec.dma.bytes_per_s``), shared by all ranks of the chip.
    """

    bytes_per_s: float
    #: est.
    latency_s: float = 0.1e-6


#: The on-package path of each chip, by chip name.
ON_PACKAGES: Mapping[str, OnPackageSpec] = MappingProxyType({
    "trn3": OnPackageSpec(bytes_per_s=TRN3.dma.bytes_per_s),
    "trn2": OnPackageSpec(bytes_per_s=TRN2.dma.bytes_per_s),
})
#: Trainium3's (the default chip).
ON_PACKAGE = ON_PACKAGES["trn3"]


@dataclass(frozen=True)
class EfaSpec:
    """Scale-out (EFA) between scale-up domains, per chip."""

    #: Allowed per-chip rates in Gb/s. Trainium3: 200 in most racks, 400
    #: optional (facts, EFAv4). Trainium2: trn2.48xlarge has 3.2 Tb/s EFAv3
    #: for 16 chips = 200 Gb/s per chip (AWS instance page).
    gbps_options: Tuple[int, ...]
    default_gbps: int
    #: One-way latency of one inter-domain message (est.; SRD over EFA is
    #: on the order of 10 us).
    latency_s: float = 10e-6
    #: The scale-out network is modelled as non-blocking between chips'
    #: NICs (est.): rail-optimised fabrics are built that way.

    def bytes_per_s(self, gbps: int) -> float:
        return gbps * GBIT


EFA: Mapping[str, EfaSpec] = MappingProxyType({
    "trn3": EfaSpec(gbps_options=(200, 400), default_gbps=200),
    "trn2": EfaSpec(gbps_options=(200,), default_gbps=200),
})

#: Every system by its public name.
SYSTEMS: Mapping[str, object] = MappingProxyType({
    s.name: s for s in (TRN3_NL32X2, TRN3_NL72X2, TRN2_NL16, TRN2_NL64)
})

#: Switch generation used when the caller names none: Gen1 is the one the
#: stated hop examples describe and the first to ship.
DEFAULT_SWITCH_GEN = 1
