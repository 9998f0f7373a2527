"""Scale-up domains: the stated hop examples, link bandwidths from lane
counts, torus wiring, and rank placement (LNC)."""
import pytest

from torch_trn3.hw import systems
from torch_trn3.hw.topology import Chip, get_system, placement

A, B, C, D = 0, 1, 2, 3  # the facts' chip positions


# ----- every hop example in TRN3_FACTS.md (switch Gen1 unless stated) -----

@pytest.mark.parametrize("name, a, b, hops", [
    # NL32x2: same position, any node in a rack: 1 hop
    ("trn3-nl32x2", Chip(0, 0, A), Chip(0, 1, A), 1),
    ("trn3-nl32x2", Chip(0, 3, A), Chip(0, 15, A), 1),
    # NL32x2: A in node 1 to B in node 2, same rack: 2 hops
    ("trn3-nl32x2", Chip(0, 1, A), Chip(0, 2, B), 2),
    # NL32x2: A in rack A node 1 to B in rack B node 2: 3 hops
    ("trn3-nl32x2", Chip(0, 1, A), Chip(1, 2, B), 3),
    # NL72x2: A->A across nodes in a rack: 1 hop
    ("trn3-nl72x2", Chip(0, 1, A), Chip(0, 2, A), 1),
    # NL72x2: A node 1 to C node 2, same rack: 3 hops
    ("trn3-nl72x2", Chip(0, 1, A), Chip(0, 2, C), 3),
    # NL72x2: A rack A node 1 to C rack B node 2: 4 hops
    ("trn3-nl72x2", Chip(0, 1, A), Chip(1, 2, C), 4),
])
def test_stated_gen1_hop_examples(name, a, b, hops):
    assert get_system(name, switch_gen=1).hops(a, b) == hops


def test_gen2_nl32x2_is_one_hop_all_to_all_in_a_rack():
    system = get_system("trn3-nl32x2", switch_gen=2)
    rack = range(32)  # rack 0
    assert max(system.hops(a, b) for a in rack for b in rack) == 1


@pytest.mark.parametrize("name", ["trn3-nl32x2", "trn3-nl72x2"])
def test_gen3_is_all_to_all_in_the_rack(name):
    system = get_system(name, switch_gen=3)
    per_rack = system.num_chips // 2
    assert max(system.hops(0, b) for b in range(1, per_rack)) == 1
    # Leaving the rack adds the cross-rack cable: 2 hops at most.
    assert max(system.hops(0, b) for b in range(per_rack, system.num_chips)) == 2


def test_gen2_nl72x2_two_planes_reach_any_chip_of_the_rack_in_two_hops():
    system = get_system("trn3-nl72x2", switch_gen=2)
    assert max(system.hops(Chip(0, 0, s), b) for s in range(4) for b in range(72)) == 2


def test_hops_to_self_is_zero_and_accepts_flat_indices():
    system = get_system("trn3-nl72x2")
    assert system.hops(5, 5) == 0
    assert system.index(Chip(1, 2, C)) == (1 * 18 + 2) * 4 + 2
    assert system.hops(Chip(0, 1, A), Chip(1, 2, C)) == system.hops(4, 82)


def test_bad_chip_coordinates_name_the_valid_ranges():
    with pytest.raises(ValueError, match="slot 0..1"):
        get_system("trn3-nl32x2").hops((0, 0, 2), (0, 0, 0))
    with pytest.raises(ValueError, match="chips 0..63"):
        get_system("trn3-nl32x2").hops(0, 64)


# ----- sizes and names -----

@pytest.mark.parametrize("name, chips", [
    ("trn3-nl32x2", 64), ("trn3-nl72x2", 144), ("trn2-nl16", 16), ("trn2-nl64", 64)])
def test_num_chips(name, chips):
    assert get_system(name).num_chips == chips


def test_get_system_rejects_unknown_names_and_generations():
    with pytest.raises(ValueError, match="unknown system"):
        get_system("trn3-nl8")
    with pytest.raises(ValueError, match="switch_gen must be one of"):
        get_system("trn3-nl72x2", switch_gen=4)
    with pytest.raises(ValueError, match="torus"):
        get_system("trn2-nl64", switch_gen=1)
    with pytest.raises(ValueError, match="efa_gbps"):
        get_system("trn2-nl16", efa_gbps=400)
    assert get_system("trn3-nl32x2", efa_gbps=400).efa_bytes_per_s == 50e9


def test_default_switch_generation_is_gen1():
    assert get_system("trn3-nl32x2").switch_gen == 1
    assert get_system("trn2-nl16").switch_gen is None


# ----- link bandwidths from lane counts -----

def _links(system, kind, src=0):
    return [l for l in system.links if l.kind == kind and l.src == src]


def test_lanes_add_up_to_the_stated_chip_bandwidth():
    ports, lane = systems.NEURONLINK_V4, systems.PCIE_GEN6_LANE
    assert ports.active_lanes == 144  # 64 backplane + 64 PCB + 16 AEC
    assert ports.backplane_lanes + ports.pcb_lanes + ports.aec_lanes == ports.total_lanes == 160
    raw = ports.active_lanes * lane.raw_bytes_per_s  # 144 x 8 GB/s = 1.152 TB/s
    assert raw == pytest.approx(ports.stated_bytes_per_s_per_direction, rel=0.05)


def test_nl72x2_link_bandwidths_follow_the_lanes():
    system = get_system("trn3-nl72x2")
    lane = 8e9 * 236 / 256  # PCIe Gen6 x1 payload bytes/s, one direction
    assert [l.bytes_per_s for l in _links(system, "backplane")] == [pytest.approx(64 * lane)]
    # The PCB ring gives each of two neighbours half of the 64 lanes.
    assert [l.bytes_per_s for l in _links(system, "pcb")] == [pytest.approx(32 * lane)] * 2
    assert [l.bytes_per_s for l in _links(system, "aec")] == [pytest.approx(16 * lane)]


def test_cross_rack_is_a_small_share_of_the_chip():
    system = get_system("trn3-nl32x2")
    chip_total = sum(l.bytes_per_s for l in system.links if l.src == 0)
    (aec,) = _links(system, "aec")
    (backplane,) = _links(system, "backplane")
    assert aec.bytes_per_s / chip_total == pytest.approx(16 / 144)  # ~11% of active lanes
    assert aec.bytes_per_s == backplane.bytes_per_s / 4


@pytest.mark.parametrize("name, links", [("trn2-nl16", 4), ("trn2-nl64", 6)])
def test_torus_link_counts(name, links):
    system = get_system(name)
    for chip in range(system.num_chips):
        assert len(_links(system, "torus", chip)) == links
    # NeuronLink-v3: 1.28 TB/s per chip both directions, split over the links.
    assert _links(system, "torus")[0].bytes_per_s == pytest.approx(640e9 / links * 128 / 130)  # Gen5 128b/130b


def test_torus_hops_are_manhattan_distance_with_wraparound():
    nl16 = get_system("trn2-nl16")
    assert nl16.hops(Chip(0, 0, 0), Chip(0, 0, 10)) == 4  # (0,0) -> (2,2)
    assert nl16.hops(Chip(0, 0, 0), Chip(0, 0, 3)) == 1   # (0,0) -> (3,0) wraps
    assert nl16.diameter() == 4
    assert get_system("trn2-nl64").diameter() == 6


def test_torus_rings_are_snakes_of_one_hop_steps():
    system = get_system("trn2-nl64")
    orders = system.ring_orders(range(64))
    assert len(orders) == 6  # one snake per dimension, both directions
    for order in orders:
        assert sorted(order) == list(range(64))
        assert all(system.hops(order[i - 1], order[i]) == 1 for i in range(64))


# ----- placement of logical devices (LNC) -----

def test_placement_of_lnc2_ranks():
    pl = placement(64, lnc=2)  # 4 logical devices per Trainium3
    assert (pl.ranks_per_chip, pl.num_chips) == (4, 16)
    assert [pl.chip_of(r) for r in (0, 3, 4, 63)] == [0, 0, 1, 15]
    assert pl.same_chip(4, 7) and not pl.same_chip(3, 4)


def test_placement_without_lnc_counts_chips():
    pl = placement(10)
    assert (pl.ranks_per_chip, pl.num_chips, pl.lnc) == (1, 10, 8)


def test_placement_rejects_an_lnc_that_does_not_divide_the_chip():
    with pytest.raises(ValueError, match="lnc must divide"):
        placement(8, lnc=3)
    with pytest.raises(ValueError, match="world_size"):
        placement(0)
