"""Chip specs against TRN3_FACTS.md, and the env selecting the chip.

Each test checks a fact stated in ``shared/TRN3_FACTS.md`` against what the
spec *derives* (a peak from array dims and clock, a logical device's share,
a ratio between generations), not a field against the literal it was set
from: restating ``hbm_bytes_per_s == 4.9e12`` can only fail when someone
edits the spec on purpose. Published figures marked "~" are compared with
the tolerance their rounding allows; where the model knowingly departs from
a published figure the test names the departure and bounds it.
"""
import dataclasses

import pytest

from torch_trn3.hw.lnc import logical_device
from torch_trn3.hw.specs import (
    CHIPS, GIB, KIB, MIB, MX_BLOCK_SIZE, TRN2, TRN3, canonical_dtype, chip_from_env,
    dtype_bytes, get_chip,
)
from torch_trn3.hw.systems import NEURONLINK_V4, PCIE_GEN6_LANE

TFLOPS = 1e12

# ---- published figures (TRN3_FACTS.md, "Per-NeuronCore numbers") ----------
#: "Tensor Engine | 128x128 PEs, 2.4 GHz, ~79 BF16 / ~20 FP32 TFLOPS per core"
PUBLISHED_BF16_PER_CORE = 79 * TFLOPS
PUBLISHED_FP32_PER_CORE = 20 * TFLOPS
#: "same BF16; ~315 MX TFLOPS per core"; "~2,517 TFLOPS (MXFP8 = MXFP4)" per chip
PUBLISHED_MX_PER_CORE = 315 * TFLOPS
PUBLISHED_MX_PER_CHIP = 2517 * TFLOPS
#: Trainium2 "dense FP8 per chip ~1,299 TFLOPS"
PUBLISHED_TRN2_FP8_PER_CHIP = 1299 * TFLOPS
#: The stated array geometry and clock the peaks follow from.
BF16_ARRAY = (128, 128)
MX_ARRAY = (512, 128)
PE_CLOCK_HZ = 2.4e9
#: "HBM: ... pin speed 9.6 Gbps (Trainium2: 96 GB at 5.7 Gbps). Bandwidth
#: ~1.7x Trainium2's"; both use 4 stacks, so bandwidth scales with pin speed.
TRN3_PIN_GBPS, TRN2_PIN_GBPS = 9.6, 5.7


# ---------------------------------------------------------------- cores and memory
def test_both_generations_have_eight_cores_per_package():
    # "8 NeuronCores per package (same count as Trainium2)"
    assert TRN3.cores_per_chip == TRN2.cores_per_chip == 8


@pytest.mark.parametrize("lnc, devices, gib", [(1, 8, 18), (2, 4, 36), (8, 1, 144)])
def test_logical_devices_split_the_chips_hbm_evenly(lnc, devices, gib):
    # "LNC=2 (4 per chip, each with 36 GB of HBM) ... LNC=8 (1 device per
    # chip with all 144 GB)"
    dev = logical_device(TRN3, lnc)
    assert dev.devices_per_chip == devices
    assert dev.hbm_bytes == gib * GIB
    assert dev.hbm_bytes * devices == TRN3.hbm_bytes
    assert dev.hbm_bytes_per_s * devices == pytest.approx(TRN3.hbm_bytes_per_s)


def test_trn3_has_half_again_trn2s_hbm_capacity():
    # 144 GiB vs 96 GiB: 4 stacks of 12-high vs Trn2's 96 GB
    assert TRN3.hbm_bytes / TRN2.hbm_bytes == pytest.approx(1.5)
    assert TRN3.hbm_bytes == 144 * GIB


def test_hbm_bandwidth_ratio_follows_the_pin_speeds():
    # same 4 stacks, 9.6 vs 5.7 Gbps per pin -> 1.684x; "~1.7x Trainium2's"
    ratio = TRN3.hbm_bytes_per_s / TRN2.hbm_bytes_per_s
    assert ratio == pytest.approx(TRN3_PIN_GBPS / TRN2_PIN_GBPS, rel=0.01)
    assert ratio == pytest.approx(1.7, abs=0.05)


def test_trn3_dma_keeps_up_with_its_hbm():
    # "DMA | 128 engines, ~3.5 TB/s | 128 engines, ~4.9 TB/s"; HBM ~4.9 TB/s
    assert TRN3.dma.engines == TRN2.dma.engines == 128
    assert TRN3.dma.bytes_per_s == pytest.approx(TRN3.hbm_bytes_per_s, rel=0.05)
    assert TRN3.dma.bytes_per_s / TRN2.dma.bytes_per_s == pytest.approx(4.9 / 3.5, rel=0.01)


def test_psum_bank_holds_one_instructions_fp32_columns():
    # "PSUM per core | 2 MiB = 128 partitions x 8 banks x 2 KiB (512 fp32)":
    # one bank of a partition is exactly the N <= 512 fp32 results one
    # matmul instruction streams.
    mem = TRN3.core_memory
    bank_bytes = mem.psum_bytes // (mem.partitions * mem.psum_banks)
    assert bank_bytes == 2 * KIB
    assert bank_bytes == TRN3.tensor.bf16_array.max_moving * dtype_bytes("fp32")
    assert mem.psum_bytes == 2 * MIB
    assert TRN2.core_memory.psum_bytes == mem.psum_bytes            # "same"


def test_sbuf_partitions_feed_the_arrays_k_rows():
    # 128 SBUF partitions; the BF16 array contracts K <= 128 (the partition dim)
    for chip in (TRN3, TRN2):
        assert chip.core_memory.partitions == chip.tensor.bf16_array.rows
    assert TRN3.core_memory.sbuf_bytes == 32 * MIB
    # Trainium2: "24-28 MiB"
    assert 24 * MIB <= TRN2.core_memory.sbuf_bytes <= 28 * MIB


# ---------------------------------------------------------------- Tensor Engine peaks
@pytest.mark.parametrize("chip", [TRN3, TRN2], ids=["trn3", "trn2"])
def test_bf16_peak_is_array_pes_times_clock_times_two(chip):
    rows, cols = BF16_ARRAY
    assert chip.tensor.peak_flops_per_core("bf16") == pytest.approx(2 * rows * cols * PE_CLOCK_HZ)


def test_per_core_peaks_match_the_published_figures():
    # 2 x 128 x 128 x 2.4 GHz = 78.6 ("~79"); FP32 1/4 of it = 19.7 ("~20");
    # 2 x 512 x 128 x 2.4 GHz = 314.6 ("~315")
    pe = TRN3.tensor
    assert pe.peak_flops_per_core("bf16") == pytest.approx(PUBLISHED_BF16_PER_CORE, rel=0.01)
    assert pe.peak_flops_per_core("fp32") == pytest.approx(PUBLISHED_FP32_PER_CORE, rel=0.02)
    assert pe.peak_flops_per_core("mxfp8") == pytest.approx(PUBLISHED_MX_PER_CORE, rel=0.005)
    rows, cols = MX_ARRAY
    assert pe.peak_flops_per_core("mxfp8") == pytest.approx(2 * rows * cols * PE_CLOCK_HZ)


def test_published_mfu_peak_is_the_docs_per_core_figure():
    # AWS and torchtitan quote MFU against 79 TFLOPS per core; it is within
    # 0.5% of the array-derived rate the model times with.
    assert TRN3.published_bf16_flops_per_core == PUBLISHED_BF16_PER_CORE
    assert TRN3.published_bf16_flops_per_core == pytest.approx(
        TRN3.tensor.peak_flops_per_core("bf16"), rel=0.005)


def test_chip_peaks_are_eight_cores_of_the_per_core_peak():
    # "8 cores x 79 = 632 BF16 TFLOPS"; MX: "~2,517 TFLOPS" per chip
    assert TRN3.peak_flops("bf16") == pytest.approx(8 * PUBLISHED_BF16_PER_CORE, rel=0.01)
    assert TRN3.peak_flops("mxfp8") == pytest.approx(PUBLISHED_MX_PER_CHIP, rel=0.001)


def test_trn2_fp8_peak_is_near_the_published_chip_figure():
    # Modelled as a 256x128 contraction: 8 x 2 x 256 x 128 x 2.4 GHz = 1,258
    # TFLOPS vs the docs' ~1,299 (the docs' per-chip figures run 3-6% above
    # 8 x their per-core ones, BF16 too: 667 vs 632).
    assert TRN2.peak_flops("fp8") == pytest.approx(PUBLISHED_TRN2_FP8_PER_CHIP, rel=0.04)


def test_mxfp4_runs_at_the_mxfp8_rate():
    # "MXFP4 runs at the same rate as MXFP8"
    assert TRN3.peak_flops("mxfp4") == TRN3.peak_flops("mxfp8")


def test_trn3_mx_doubles_trn2_fp8():
    # "Dense MXFP8 throughput is 2x Trainium2's FP8"
    assert TRN3.peak_flops("mxfp8") == pytest.approx(2 * TRN2.peak_flops("fp8"))


def test_bf16_and_fp32_rates_are_unchanged_from_trn2():
    # "BF16/FP16/FP32 throughput is unchanged from Trainium2"
    for dtype in ("bf16", "fp16", "fp32"):
        assert TRN2.peak_flops(dtype) == TRN3.peak_flops(dtype)


def test_trn3_mx_array_is_four_bf16_arrays():
    # 512x128 MX array vs 128x128 BF16 array -> 4x the MACs per cycle
    pe = TRN3.tensor
    assert pe.mx_array.macs_per_cycle == 4 * pe.bf16_array.macs_per_cycle
    assert TRN3.peak_flops("mxfp8") / TRN3.peak_flops("bf16") == pytest.approx(4)


def test_structured_sparsity_is_4x_on_trn3_only():
    # "Structured sparsity MXFP8 4:8 and 4:16 gives 4x the dense FLOPs"
    assert TRN3.tensor.sparse_factor("4:8") == 4
    assert TRN3.tensor.sparse_factor("4:16") == 4
    with pytest.raises(ValueError, match="4:8"):
        TRN2.tensor.sparse_factor("4:8")


# ---------------------------------------------------------------- other engines, links
def test_vector_clock_is_1_25x_trn2():
    # "Clock 1.25x Trainium2's"; table: 0.96 -> 1.2 GHz
    assert TRN3.vector.clock_hz / TRN2.vector.clock_hz == pytest.approx(1.25)


def test_exp_throughput_per_cycle_is_4x_trn2_at_the_same_clock():
    # "exp runs at 4x Trainium2's throughput per cycle"; Scalar 1.2 GHz on both
    assert TRN3.scalar.clock_hz == TRN2.scalar.clock_hz
    assert (TRN3.scalar.transcendental_elems_per_s
            / TRN2.scalar.transcendental_elems_per_s) == pytest.approx(4)


def test_scale_up_is_the_active_pcie_gen6_lanes():
    # "144 active" PCIe Gen6 lanes at 64 GT/s = 8 GB/s raw each: 1.152 TB/s,
    # "1.2 TB/s per chip per direction"
    lanes_bytes_per_s = NEURONLINK_V4.active_lanes * PCIE_GEN6_LANE.raw_bytes_per_s
    assert NEURONLINK_V4.active_lanes == 144
    assert TRN3.scale_up_bytes_per_s == pytest.approx(lanes_bytes_per_s, rel=0.05)


def test_trn3_doubles_trn2_scale_up():
    # Neuron docs: 2.56 TB/s per Trainium3 device vs 1.28 TB/s per Trainium2
    # (both directions). Trn3's per-direction figure is the deep dive's 1.2
    # TB/s (lane count), Trn2's half of 1.28, hence ~1.9x rather than 2x.
    assert TRN3.scale_up_bytes_per_s / TRN2.scale_up_bytes_per_s == pytest.approx(2, rel=0.1)


# ---------------------------------------------------------------- spec objects and env
def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TRN3.hbm_bytes = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        TRN3.tensor.clock_hz = 1.0


def test_specs_are_hashable():
    assert len({TRN3, TRN2}) == 2


def test_get_chip_rejects_unknown_names():
    assert get_chip("trn3") is TRN3
    with pytest.raises(ValueError, match="trn2"):
        get_chip("trn4")


def test_chip_from_env_defaults_to_trn3():
    assert chip_from_env({}) is TRN3


def test_chip_from_env_reads_trn3_chip():
    assert chip_from_env({"TRN3_CHIP": "trn2"}) is TRN2


def test_chip_from_env_reads_the_real_environment(monkeypatch):
    monkeypatch.setenv("TRN3_CHIP", "trn2")
    assert chip_from_env() is TRN2


def test_chip_from_env_names_the_variable_and_allowed_values():
    with pytest.raises(ValueError) as err:
        chip_from_env({"TRN3_CHIP": "h100"})
    message = str(err.value)
    assert "TRN3_CHIP" in message and "'h100'" in message
    assert "trn2" in message and "trn3" in message


def test_dtype_bytes_include_mx_scales():
    # "block size 32, shared scale E8M0": one scale byte per 32 elements
    assert MX_BLOCK_SIZE == 32
    assert dtype_bytes("bf16") == 2
    assert dtype_bytes("mxfp8") == 1 + 1 / 32
    assert dtype_bytes("mxfp4") == 0.5 + 1 / 32     # E2M1: two per byte


def test_torch_dtype_spellings_are_accepted():
    assert canonical_dtype("torch.bfloat16") == "bf16"
    assert canonical_dtype("float32") == "fp32"
    with pytest.raises(ValueError, match="complex32"):
        canonical_dtype("complex32")


def test_tensor_engine_refuses_integer_matmul():
    with pytest.raises(ValueError, match="int64"):
        TRN3.tensor.array_for("int64")


def test_every_chip_is_registered():
    assert set(CHIPS) == {"trn2", "trn3"}
