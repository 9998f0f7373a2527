"""The MX array split (TRN3_FACTS "Chip": the 512x128 MX array "can be split
into 4 independent 128x128 arrays that push four results per cycle into
PSUM"), checked against hand-computed Tensor Engine cycles.

Hand model, Trainium3 LNC=2 (2 cores, 2.4 GHz, 64 issue cycles per
instruction, N <= 512 moving columns per instruction): an output tile is
128 M rows x one N chunk; tiles are spread over the 2 cores; each tile
makes K / rows passes of ``N_chunk + 64`` cycles. BF16: 128 rows. MX, whole
array: 512 rows. MX, split: 4 sub-arrays of 128 rows run 4 tiles' passes
side by side, one issue per step.
"""
import pytest

from torch_trn3.hw.cost import matmul_cost
from torch_trn3.hw.lnc import logical_device
from torch_trn3.hw.specs import TRN2, TRN3

DEV = logical_device(TRN3, 2)
CLOCK = 2.4e9
ISSUE = 64


def busy_cycles(cost) -> float:
    """Tensor Engine busy time of the busiest core, in PE cycles."""
    return round((cost.compute_s + cost.overhead_s) * CLOCK, 6)


# (m, n, k, batch) -> (bf16 cycles, mx cycles), worked out by hand below.
HAND = {
    # 8 tiles -> 4 per core. BF16: 4 tiles x 1 pass x (512 + 64) = 2304.
    # MX split: the 4 tiles in one step of 576. Whole-array MX would be 2304.
    (1024, 512, 128, 1): (4 * 1 * 576, 1 * 576),
    # BF16 4 x 2 x 576; MX split: 4 tiles x 2 passes over 4 sub-arrays = 2 steps.
    (1024, 512, 256, 1): (4 * 2 * 576, 2 * 576),
    # K=512: BF16 4 x 4 x 576; MX whole array 4 tiles x 1 pass (split ties: 4 steps).
    (1024, 512, 512, 1): (4 * 4 * 576, 4 * 1 * 576),
    # K=1024: BF16 4 x 8 x 576; MX 4 x 2 x 576.
    (1024, 512, 1024, 1): (4 * 8 * 576, 4 * 2 * 576),
    # K=640: whole array 4 x 2 passes = 8 steps; split 4 x 5 passes / 4 = 5 steps.
    (1024, 512, 640, 1): (4 * 5 * 576, 5 * 576),
    # N=256 chunks: 8 tiles, 4 per core, (256 + 64) cycles per pass.
    (1024, 256, 128, 1): (4 * 320, 1 * 320),
    # N=4096 = 8 chunks of 512 with one M tile: 8 tiles, 4 per core.
    (128, 4096, 128, 1): (4 * 576, 1 * 576),
    # batch 8 of one tile each: 4 per core.
    (128, 512, 128, 8): (4 * 576, 1 * 576),
    # M=512: 4 tiles, 2 per core: split runs them in 1 step, 2 sub-arrays idle.
    (512, 512, 128, 1): (2 * 576, 1 * 576),
    # One tile (one core busy): nothing to put on the other sub-arrays.
    (128, 512, 128, 1): (576, 576),
    (256, 512, 128, 1): (576, 576),
    # One tile, K=2048: whole array 4 passes; split would be 16 passes on one sub-array.
    (128, 512, 2048, 1): (16 * 576, 4 * 576),
}


@pytest.mark.parametrize("shape", list(HAND), ids=lambda s: "m%d_n%d_k%d_b%d" % s)
def test_bf16_and_mx_cycles_match_the_hand_count(shape):
    m, n, k, batch = shape
    bf16_cycles, mx_cycles = HAND[shape]
    assert busy_cycles(matmul_cost(DEV, m, n, k, batch=batch, dtype="bf16")) == bf16_cycles
    for dtype in ("mxfp8", "mxfp4", "fp8"):   # all three run on the MX array
        assert busy_cycles(matmul_cost(DEV, m, n, k, batch=batch, dtype=dtype)) == mx_cycles


@pytest.mark.parametrize("k", [128, 256, 512, 1024])
def test_mxfp8_reaches_4x_bf16_at_small_and_large_k(k):
    # 4+ output tiles per core: the published 315 / 79 TFLOPS per core = 4x.
    bf16 = matmul_cost(DEV, 1024, 512, k, dtype="bf16")
    mx = matmul_cost(DEV, 1024, 512, k, dtype="mxfp8")
    assert busy_cycles(bf16) / busy_cycles(mx) == 4


def test_small_k_notes_say_the_array_is_split_and_fill_is_reported():
    split = matmul_cost(DEV, 1024, 512, 128, dtype="mxfp8")
    assert split.utilisation == 1.0
    assert any("split into 4 independent 128-row arrays: 100% of them busy" in n for n in split.notes)
    half = matmul_cost(DEV, 512, 512, 128, dtype="mxfp8")      # 2 tiles on 4 sub-arrays
    assert half.utilisation == 0.5
    whole = matmul_cost(DEV, 1024, 512, 512, dtype="mxfp8")    # K fills the 512 rows
    assert whole.utilisation == 1.0 and not any("split" in n for n in whole.notes)
    one = matmul_cost(DEV, 128, 512, 128, dtype="mxfp8")       # one tile: a quarter of the PEs
    assert one.utilisation == 0.25
    assert any("K=128 fills 25% of the 512-row array" in n for n in one.notes)


def test_split_k_fill_counts_sub_array_rows():
    # K=192 on the split array: 2 passes of 128 rows, 75% filled.
    cost = matmul_cost(DEV, 1024, 512, 192, dtype="mxfp8")
    assert any("K=192 fills 75% of the 128-row sub-array over 2 K tile(s)" in n for n in cost.notes)
    assert cost.utilisation == 0.75


def test_flops_and_instructions_follow_the_schedule():
    cost = matmul_cost(DEV, 1024, 512, 256, dtype="mxfp8")
    assert cost.flops == 2 * 1024 * 512 * 256
    assert cost.instructions == 2                 # two lockstep steps of the 4 sub-arrays
    assert cost.overhead_s == pytest.approx(2 * ISSUE / CLOCK)


def test_trainium2_fp8_array_does_not_split():
    # No split is stated for Trn2's (est.) 256-row FP8 array: K=128 with 4
    # tiles per core costs what BF16 does, 4 x (512 + 64) cycles.
    dev = logical_device(TRN2, 2)
    assert TRN2.tensor.mx_split_ways == 1
    assert busy_cycles(matmul_cost(dev, 1024, 512, 128, dtype="fp8")) == 4 * 576
    assert busy_cycles(matmul_cost(dev, 1024, 512, 128, dtype="bf16")) == 4 * 576


def test_spec_states_the_split_and_rejects_a_bad_one():
    from dataclasses import replace

    assert TRN3.tensor.mx_split_ways == 4 and TRN3.tensor.mx_sub_array_rows == 128
    with pytest.raises(ValueError, match="mx_split_ways=3 must divide"):
        replace(TRN3.tensor, mx_split_ways=3)
