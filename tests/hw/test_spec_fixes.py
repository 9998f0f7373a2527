"""The errors issue 10 found in the chip and system specs, one test each,
with the expected numbers worked out from TRN3_FACTS.md / the sources
quoted in hw/specs.py and hw/systems.py."""
from dataclasses import replace

import pytest

from torch_trn3 import chip_model
from torch_trn3.hw import systems
from torch_trn3.hw.cost import ATTENTION_OPS, Engine, engine_for_op
from torch_trn3.hw.lnc import logical_device
from torch_trn3.hw.specs import TRN2, TRN3
from torch_trn3.hw.topology import Chip, get_system

DEV = logical_device(TRN3, 2)


# ----- Trainium2 scale-up: one number, half of Trainium3's per the Neuron docs -----

def test_trn2_scale_up_is_one_number_used_by_the_torus():
    # Neuron docs: 1.28 TB/s per Trn2 chip vs 2.56 TB/s per Trn3 chip, both
    # directions -> 0.64 TB/s each way on Trn2 (was 1.0 TB/s in specs.py
    # and 0.64 TB/s in systems.py).
    assert TRN2.scale_up_bytes_per_s == 0.64e12
    for spec in (systems.TRN2_NL16, systems.TRN2_NL64):
        assert spec.chip_bytes_per_s_per_direction == TRN2.scale_up_bytes_per_s
    assert systems.NEURONLINK_V4.stated_bytes_per_s_per_direction == TRN3.scale_up_bytes_per_s == 1.2e12


# ----- Trainium2 torus links: PCIe Gen5 128b/130b, not Gen6 FLIT -----

def test_trn2_torus_links_use_gen5_line_coding():
    lane = systems.PCIE_GEN5_LANE
    assert lane.raw_bytes_per_s == 4e9                       # 32 GT/s / 8
    assert lane.bytes_per_s == pytest.approx(4e9 * 128 / 130)
    assert systems.PCIE_GEN6_LANE.raw_bytes_per_s == 8e9     # 64 GT/s / 8
    nl16 = get_system("trn2-nl16")                           # 2D: 4 links per chip
    link = [l for l in nl16.links if l.kind == "torus" and l.src == 0][0]
    assert link.bytes_per_s == pytest.approx(0.64e12 / 4 * 128 / 130)   # 157.5 GB/s
    assert link.bytes_per_s != pytest.approx(0.64e12 / 4 * 236 / 256)


# ----- attention ops are attention, not a matmul over the head dim -----

BH, L, E = 8, 256, 64
FORWARD_FLOPS = 2 * (2 * BH * L * L * E)          # QK^T and PV
BACKWARD_FLOPS = 5 * (2 * BH * L * L * E)         # S, dV, dP, dQ, dK


@pytest.mark.parametrize("op", sorted(ATTENTION_OPS))
def test_every_attention_op_is_priced_as_one_flash_kernel(op):
    layout, backward, first, _ = chip_model._ATTENTION_OPS[op]
    shape = (2, L, 4, E) if layout == "blhe" else (2, 4, L, E)
    desc = (shape, "BFloat16")
    ins = [desc] * (first + 3)
    cost = chip_model.cost_of(DEV, f"aten::{op}", ins, [desc])
    assert engine_for_op(f"aten::{op}") is Engine.TENSOR
    assert cost.engine is Engine.TENSOR
    assert cost.flops == (BACKWARD_FLOPS if backward else FORWARD_FLOPS)
    assert any("flash attention" in n for n in cost.notes)


def test_efficient_attention_was_a_scalar_op_before():
    # These three used to fall through to the Scalar Engine (130k "FLOPs").
    for op in ("_scaled_dot_product_efficient_attention",
               "_scaled_dot_product_efficient_attention_backward",
               "_scaled_dot_product_flash_attention_backward"):
        assert engine_for_op(f"aten::{op}") is Engine.TENSOR


# ----- NL72x2 tray wiring: an estimate, and marked as one -----

def test_nl72x2_ring_is_marked_as_an_estimate_and_reproduces_the_stated_hops():
    nl72 = get_system("trn3-nl72x2")
    assert systems.TRN3_NL72X2.pcb_wiring_estimated
    assert not systems.TRN3_NL32X2.pcb_wiring_estimated
    assert "ring tray wiring (est.)" in nl72.describe()
    assert "(est.)" not in get_system("trn3-nl32x2").describe()
    # Stated Gen1 hops: A->A across nodes 1; A node 1 -> C node 2 (same rack) 3;
    # A rack A node 1 -> C rack B node 2: 4.
    assert nl72.hops(Chip(0, 0, 0), Chip(0, 1, 0)) == 1
    assert nl72.hops(Chip(0, 0, 0), Chip(0, 1, 2)) == 3
    assert nl72.hops(Chip(0, 0, 0), Chip(1, 1, 2)) == 4
    # The consequence the estimate carries: A->C on one tray rides through B (or D).
    a, b, c, d = (nl72.index(Chip(0, 0, s)) for s in range(4))
    loads = nl72.link_loads({(a, c): 1.0})
    via = {(l.src, l.dst): x for l, x in zip(nl72.links, loads) if x}
    assert via == {(a, b): 0.5, (b, c): 0.5, (a, d): 0.5, (d, c): 0.5}


# ----- on-package path per chip; lanes checked -----

def test_on_package_bandwidth_is_each_chips_dma_bandwidth():
    assert get_system("trn3-nl72x2").on_package.bytes_per_s == TRN3.dma.bytes_per_s == 4.9e12
    assert get_system("trn2-nl16").on_package.bytes_per_s == TRN2.dma.bytes_per_s == 3.5e12


def test_neuronlink_lane_counts_must_add_up():
    with pytest.raises(ValueError, match="lanes do not add up"):
        replace(systems.NEURONLINK_V4, pcb_lanes=48)


def test_trn2_is_trn3_with_the_stated_differences():
    # Fields the Neuron table gives the same on both generations stay equal.
    assert TRN2.tensor.bf16_array == TRN3.tensor.bf16_array
    assert TRN2.tensor.clock_hz == TRN3.tensor.clock_hz == 2.4e9
    assert TRN2.scalar.clock_hz == TRN3.scalar.clock_hz == 1.2e9
    assert (TRN2.vector.clock_hz, TRN3.vector.clock_hz) == (0.96e9, 1.2e9)
    assert TRN3.scalar.transcendental_per_lane_cycle == 4 * TRN2.scalar.transcendental_per_lane_cycle
    assert (TRN2.hbm_bytes_per_s, TRN3.hbm_bytes_per_s) == (2.9e12, 4.9e12)


# ----- profiler advice names the array's own multiple -----

def test_fill_advice_pads_mx_k_to_512_and_bf16_k_to_128():
    from torch_trn3.hw.cost import matmul_cost
    from torch_trn3.profiler._advice import _pad_phrase

    mx = matmul_cost(DEV, 128, 512, 128, dtype="mxfp8")        # one tile: whole 512-row array
    assert _pad_phrase(mx.notes) == "Pad or merge K to a multiple of 512"
    bf16 = matmul_cost(DEV, 64, 512, 64, dtype="bf16")
    assert _pad_phrase(bf16.notes) == "Pad or merge K to a multiple of 128 and M to a multiple of 128"
    split = matmul_cost(DEV, 1024, 512, 192, dtype="mxfp8")   # split array: 128-row sub-arrays
    assert _pad_phrase(split.notes) == "Pad or merge K to a multiple of 128"


def test_system_description_reports_its_stated_fields():
    # Facts, Systems table: NL72x2 is liquid-cooled with Gen1 4 planes x 10 switches.
    text = get_system("trn3-nl72x2").describe()
    assert "liquid-cooled" in text and "4 plane(s) per rack, 10 switches per plane" in text
    assert "air-cooled" in get_system("trn2-nl16").describe()


def test_device_cap_is_one_constant_shared_by_cpp_and_python():
    import torch_trn3
    from torch_trn3.config import read_machine_config
    from torch_trn3.hw.lnc import MAX_LOGICAL_DEVICES

    assert torch_trn3._C._max_devices() == MAX_LOGICAL_DEVICES == 512
    # 129 chips x 8 cores / LNC=2 = 516 logical devices: over the cap.
    with pytest.raises(ValueError, match="516 logical devices; at most 512"):
        read_machine_config({"TRN3_CHIPS": "129", "TRN3_LNC": "2"})
