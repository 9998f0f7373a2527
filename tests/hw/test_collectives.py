"""Collective cost: hand-computed bandwidth terms, the torus-vs-switched
all-to-all trend, LNC ranks on the on-package path, EFA beyond one domain."""
import pytest

from torch_trn3.hw import systems
from torch_trn3.hw.collectives import (ALGORITHMS, COLLECTIVES, bus_factor, collective_cost,
                                       point_to_point)
from torch_trn3.hw.topology import Chip, get_system

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
LANE = 8e9 * 236 / 256  # PCIe Gen6 x1 payload bytes/s, one direction


def beta_seconds(system, collective, nbytes, world, **kw):
    """Size-dependent part of the time: alpha terms cancel in the difference."""
    t2 = collective_cost(system, collective, 2 * nbytes, world, **kw).time_s
    t1 = collective_cost(system, collective, nbytes, world, **kw).time_s
    return t2 - t1


# ----- the public result -----

def test_cost_reports_nccl_tests_bandwidths():
    cost = collective_cost(get_system("trn3-nl72x2"), "all_reduce", 64 * MIB, 8)
    assert cost.algbw == pytest.approx(64 * MIB / cost.time_s)
    assert cost.busbw == pytest.approx(cost.algbw * 2 * 7 / 8)
    assert cost.algorithm in ALGORITHMS["all_reduce"]
    assert cost.hops >= 1 and cost.notes


def test_bus_factors_match_nccl_tests():
    assert bus_factor("all_reduce", 4) == 1.5
    assert bus_factor("all_gather", 4) == bus_factor("reduce_scatter", 4) == 0.75
    assert bus_factor("all_to_all", 4) == 0.75
    assert bus_factor("broadcast", 4) == bus_factor("send_recv", 4) == 1


def test_system_method_is_the_same_model():
    system = get_system("trn2-nl16")
    assert (system.collective_time("all_gather", MIB, 16)
            == collective_cost(system, "all_gather", MIB, 16))


@pytest.mark.parametrize("collective", COLLECTIVES)
def test_every_collective_and_algorithm_prices_a_full_nl72x2(collective):
    system = get_system("trn3-nl72x2")
    for algorithm in ALGORITHMS[collective]:
        try:
            cost = collective_cost(system, collective, MIB, 144, algorithm=algorithm)
        except ValueError as exc:
            assert "does not apply" in str(exc)
            continue
        assert cost.time_s > system.latency.launch_s and cost.algorithm == algorithm


def test_bad_arguments_are_named():
    system = get_system("trn3-nl32x2")
    with pytest.raises(ValueError, match="unknown collective"):
        collective_cost(system, "allreduce", 1, 2)
    with pytest.raises(ValueError, match="supports algorithms"):
        collective_cost(system, "all_to_all", 1, 2, algorithm="ring")


# ----- hand-computed bandwidth terms -----

def test_switch_plane_all_to_all_is_injection_limited():
    # Gen2 NL32x2, one rack of 32 chips on one plane. Each chip sends S/32
    # to 31 peers: 30 only through its 64-lane backplane link; the PCB
    # neighbour is also one hop through the switch, so ECMP halves it.
    system = get_system("trn3-nl32x2", switch_gen=2)
    s = 256 * MIB
    expected = (30 + 0.5) / 32 * s / (64 * LANE)
    assert beta_seconds(system, "all_to_all", s, 32) == pytest.approx(expected)


@pytest.mark.parametrize("name, links", [("trn2-nl16", 4), ("trn2-nl64", 6)])
def test_torus_all_to_all_is_limited_by_shared_links(name, links):
    # k=4 ring: distances 0,1,2,1 -> mean 1 hop per dimension. A chip's S is
    # split over n peers, so every link carries n * dims * S/n / links_per_chip
    # = S/2 (2D: 2 dims / 4 links; 3D: 3 dims / 6 links).
    system = get_system(name)
    s = 256 * MIB
    link = 640e9 / links * 128 / 130   # PCIe Gen5 128b/130b (Trn2)
    assert beta_seconds(system, "all_to_all", s, system.num_chips,
                        sbuf_to_sbuf=True) == pytest.approx(s / 2 / link)
    note = collective_cost(system, "all_to_all", s, system.num_chips).notes
    assert any("oversubscription" in n for n in note)


def test_hop_latency_shows_in_small_messages():
    system = get_system("trn3-nl32x2")
    one_hop = point_to_point(system, system.index(Chip(0, 0, 0)), system.index(Chip(0, 1, 0)), 0)
    three = point_to_point(system, system.index(Chip(0, 0, 0)), system.index(Chip(1, 1, 1)), 0)
    assert (one_hop.hops, three.hops) == (1, 3)
    assert three.time_s - one_hop.time_s == pytest.approx(2 * systems.LATENCY.hop_s)


# ----- the facts' claim: torus all-to-all falls behind as messages grow -----

@pytest.mark.parametrize("torus, switched, world", [
    ("trn2-nl16", "trn3-nl72x2", 16),
    ("trn2-nl16", "trn3-nl32x2", 16),
    ("trn2-nl64", "trn3-nl72x2", 64),  # 64 chips fit one NL72x2 rack
])
def test_torus_all_to_all_falls_behind_switched_as_messages_grow(torus, switched, world):
    t, s = get_system(torus), get_system(switched)
    # Same SBUF-to-SBUF data path on both, so only the topology differs.
    ratios = [collective_cost(t, "all_to_all", n, world, sbuf_to_sbuf=True).time_s
              / collective_cost(s, "all_to_all", n, world).time_s
              for n in (16 * KIB, 64 * KIB, 256 * KIB, MIB)]
    assert ratios == sorted(ratios) and ratios[-1] > ratios[0] * 1.15
    assert ratios[-1] > 1


def test_cross_rack_cables_limit_a_two_rack_nl32x2_all_to_all():
    # 64 chips on NL32x2 span both racks: half the traffic crosses 16 lanes.
    cost = collective_cost(get_system("trn3-nl32x2"), "all_to_all", GIB, 64)
    assert any("aec link" in n for n in cost.notes)


# ----- logical devices, data path, scale-out -----

def test_ranks_of_one_chip_use_the_on_package_path():
    # LNC=2: 4 ranks on one chip. Direct all-gather moves 4 x 3 shards of S/4.
    system = get_system("trn3-nl72x2")
    s = 64 * MIB
    beta = beta_seconds(system, "all_gather", s, 4, lnc=2, algorithm="direct")
    assert beta == pytest.approx(3 * s / systems.ON_PACKAGE.bytes_per_s)
    assert collective_cost(system, "all_gather", s, 4, lnc=2).hops == 0


def test_same_chip_send_is_faster_than_the_next_chip():
    system = get_system("trn3-nl72x2")
    same = point_to_point(system, 0, 1, 16 * MIB, lnc=2)   # ranks 0, 1: chip 0
    other = point_to_point(system, 0, 4, 16 * MIB, lnc=2)  # rank 4: chip 1
    assert same.hops == 0 and other.hops == 1
    assert same.time_s < other.time_s


def test_hierarchical_all_reduce_wins_for_a_rack_of_lnc2_ranks():
    # 288 ranks = 72 chips x 4: a flat ring pays 574 steps and crosses the
    # fabric on every chip boundary; on-package first cuts fabric bytes by 4.
    system = get_system("trn3-nl72x2")
    best = collective_cost(system, "all_reduce", 256 * MIB, 288, lnc=2)
    ring = collective_cost(system, "all_reduce", 256 * MIB, 288, lnc=2, algorithm="ring")
    assert best.algorithm == "hierarchical" and best.time_s < ring.time_s


def test_beyond_one_domain_goes_over_efa():
    system = get_system("trn3-nl32x2")
    cost = collective_cost(system, "all_reduce", GIB, 128)
    assert any("2 domains" in n for n in cost.notes)
    faster = collective_cost(get_system("trn3-nl32x2", efa_gbps=400), "all_reduce", GIB, 128)
    assert faster.time_s < cost.time_s


def test_hbm_staging_costs_two_hbm_passes_per_received_byte():
    system = get_system("trn3-nl32x2")
    s = 64 * MIB
    sbuf = beta_seconds(system, "send_recv", s, 2, sbuf_to_sbuf=True)
    hbm = beta_seconds(system, "send_recv", s, 2, sbuf_to_sbuf=False)
    assert hbm - sbuf == pytest.approx(2 * s / 4.9e12)
