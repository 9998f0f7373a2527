"""torch_trn3.chip_model: ATen op -> chip cost, on cheap shapes, against
rooflines worked out by hand from the spec (hw/specs.py).

Every expectation is written from spec fields (clock, array dims, lanes,
issue cycles, HBM share) and the hardware's tiling as the docstrings of
hw/cost.py describe it, so a changed estimate in the spec moves the
expectation with it; the numbers in the comments are the Trainium3 values
at LNC=2 (2 cores, 1/4 of the chip's 4.9 TB/s = 1.225 TB/s).
"""
from __future__ import annotations

from math import ceil, log2

import pytest
import torch
import torch_trn3
from torch_trn3 import chip_model
from torch_trn3.hw.cost import Engine, dma_cost
from torch_trn3.hw.lnc import logical_device
from torch_trn3.hw.specs import TRN3

DEV = logical_device(TRN3, 2)
PE = TRN3.tensor
CLK = PE.clock_hz                              # 2.4 GHz
ISSUE = PE.issue_overhead_cycles               # 64 cycles per instruction
HBM = DEV.hbm_bytes_per_s                      # 1.225e12 B/s


def bf16(*shape):
    return (tuple(shape), "BFloat16")


def fp32(*shape):
    return (tuple(shape), "Float")


# ---------------------------------------------------------------- describe
def test_describe_gives_sizes_and_the_c10_dtype_name():
    assert chip_model.describe(torch.empty(2, 3)) == ((2, 3), "Float")
    assert chip_model.describe(torch.empty(4, dtype=torch.bfloat16)) == ((4,), "BFloat16")
    assert chip_model.describe(torch.empty(1, dtype=torch.float8_e8m0fnu)) == ((1,), "Float8_e8m0fnu")
    assert chip_model.describe(torch.empty((), dtype=torch.int64)) == ((), "Long")


# ---------------------------------------------------------------- Tensor Engine
def test_mm_is_one_instruction_per_core_and_memory_bound():
    # [256, 128] @ [128, 512] bf16: K = 128 fills the 128-row array in one
    # K tile, M = 256 is 2 tiles of 128 columns, N = 512 one instruction's
    # moving columns -> 2 output tiles, one per core: 512 cycles + 64 issue.
    # HBM: (256x128 + 128x512 + 256x512) x 2 B = 458,752 B -> 374.5 ns at
    # 1.225 TB/s > 512 / 2.4 GHz = 213.3 ns, so memory-bound: 401.2 ns.
    m, n, k = 256, 512, 128
    cost = chip_model.cost_of(DEV, "aten::mm", [bf16(m, k), bf16(k, n)], [bf16(m, n)])
    hbm_bytes = (m * k + k * n + m * n) * 2
    assert cost.engine is Engine.TENSOR
    assert cost.flops == 2 * m * n * k
    assert cost.hbm_bytes == hbm_bytes
    assert cost.compute_s == pytest.approx(n / CLK)
    assert cost.overhead_s == pytest.approx(ISSUE / CLK)
    assert cost.time_s == pytest.approx(hbm_bytes / HBM + ISSUE / CLK)
    assert cost.bound == "memory"
    assert cost.time_s == pytest.approx(401.2e-9, rel=1e-3)


def test_fp32_mm_takes_four_passes_of_the_bf16_array():
    m, n, k = 256, 512, 128
    b = chip_model.cost_of(DEV, "aten::mm", [bf16(m, k), bf16(k, n)], [bf16(m, n)])
    f = chip_model.cost_of(DEV, "aten::mm", [fp32(m, k), fp32(k, n)], [fp32(m, n)])
    assert f.compute_s == pytest.approx(PE.fp32_passes * b.compute_s)      # 4 x 213.3 ns
    assert f.hbm_bytes == 2 * b.hbm_bytes


def test_addmm_reads_its_operands_after_the_bias():
    # addmm(bias [n], a [m, k], b [k, n]): the same GEMM as mm(a, b)
    m, n, k = 256, 512, 128
    mm = chip_model.cost_of(DEV, "aten::mm", [bf16(m, k), bf16(k, n)], [bf16(m, n)])
    addmm = chip_model.cost_of(DEV, "aten::addmm", [bf16(n), bf16(m, k), bf16(k, n)], [bf16(m, n)])
    assert addmm.flops == mm.flops == 2 * m * n * k
    assert addmm.compute_s == mm.compute_s


def test_bmm_spreads_its_batch_over_the_cores():
    # 4 x [128, 128] @ [128, 512]: 4 output tiles over 2 cores -> 2 x 512
    # cycles and 2 instructions on the busiest core.
    cost = chip_model.cost_of(DEV, "aten::bmm", [bf16(4, 128, 128), bf16(4, 128, 512)],
                              [bf16(4, 128, 512)])
    assert cost.flops == 2 * 4 * 128 * 512 * 128
    assert cost.compute_s == pytest.approx(2 * 512 / CLK)
    assert cost.instructions == 2
    assert cost.overhead_s == pytest.approx(2 * ISSUE / CLK)


def test_mx_scales_select_the_mx_array_and_fp4_packs_two_per_byte():
    # E8M0 scales beside fp8 elements: an MX matmul (2 x m x n x k FLOPs);
    # float4_e2m1fn_x2 stores two elements per byte, so K is twice the
    # stored columns.
    m, n, k = 128, 512, 512
    scale = ((m, k // 32), "Float8_e8m0fnu")
    mx8 = chip_model.cost_of(DEV, "aten::_scaled_mm",
                             [((m, k), "Float8_e4m3fn"), ((k, n), "Float8_e4m3fn"), scale, scale],
                             [bf16(m, n)])
    mx4 = chip_model.cost_of(DEV, "aten::_scaled_mm",
                             [((m, k // 2), "Float4_e2m1fn_x2"), ((k // 2, n), "Float4_e2m1fn_x2"),
                              scale, scale], [bf16(m, n)])
    assert mx8.flops == mx4.flops == 2 * m * n * k
    bf = chip_model.cost_of(DEV, "aten::mm", [bf16(m, k), bf16(k, n)], [bf16(m, n)])
    # K = 512 is one pass of the 512-row MX array vs 4 K tiles of the BF16 one
    assert bf.compute_s / mx8.compute_s == pytest.approx(
        PE.mx_array.macs_per_cycle / PE.bf16_array.macs_per_cycle)


def test_integer_matmul_runs_on_gpsimd():
    cost = chip_model.cost_of(DEV, "aten::mm", [((8, 16), "Long"), ((16, 4), "Long")],
                              [((8, 4), "Long")])
    assert cost.engine is Engine.GPSIMD
    assert cost.flops == 8 * 4 * 16          # one MAC per element-step


def test_conv2d_is_charged_as_its_gemm():
    # x [2, 64, 16, 16], w [128, 64, 3, 3], out [2, 128, 16, 16] (padding 1),
    # bf16. GEMM: M = 128 out channels, N = 2 x 16 x 16 = 512 output pixels,
    # K = 64 x 3 x 3 = 576 -> ceil(576 / 128) = 5 K tiles, 1 M tile, 1 N
    # chunk: one output tile, so one core runs 5 instructions of 512 columns:
    # 5 x 512 = 2,560 cycles = 1.0667 us, issue 5 x 64 = 320 cycles =
    # 0.1333 us. HBM: (128 x 576 + 576 x 512 + 128 x 512) x 2 B = 868,352 B
    # = 0.709 us < compute, so time = 2,880 cycles = 1.2 us.
    x, w, out = bf16(2, 64, 16, 16), bf16(128, 64, 3, 3), bf16(2, 128, 16, 16)
    cost = chip_model.cost_of(DEV, "aten::convolution_overrideable", [x, w], [out])
    m, n, k = 128, 512, 576
    k_tiles = ceil(k / PE.bf16_array.rows)
    assert k_tiles == 5
    assert cost.flops == 2 * m * n * k
    assert cost.hbm_bytes == (m * k + k * n + m * n) * 2
    assert cost.compute_s == pytest.approx(k_tiles * n / CLK)
    assert cost.overhead_s == pytest.approx(k_tiles * ISSUE / CLK)
    assert cost.bound == "compute"
    assert cost.time_s == pytest.approx(k_tiles * (n + ISSUE) / CLK)
    assert cost.time_s == pytest.approx(1.2e-6)
    # the backward (grad_out, x, w): two GEMMs of the same size (dX and dW)
    back = chip_model.cost_of(DEV, "aten::convolution_backward_overrideable", [out, x, w], [x, w])
    assert back.flops == 2 * cost.flops
    assert back.time_s == pytest.approx(2 * cost.time_s)


def test_grouped_conv_is_one_gemm_per_group():
    # depthwise-like: 64 in channels in 4 groups of 16, 64 out channels:
    # per group M = 16, K = 16 x 3 x 3 = 144, N = 512; batch = 4 groups.
    x, w, out = bf16(2, 64, 16, 16), bf16(64, 16, 3, 3), bf16(2, 64, 16, 16)
    cost = chip_model.cost_of(DEV, "aten::convolution_overrideable", [x, w], [out])
    assert cost.flops == 2 * 4 * 16 * 512 * 144


def test_flash_attention_forward_by_hand():
    # q, k, v [1, 2, 128, 64] bf16: batch x heads = 2, L = 128, E = 64.
    # Tensor: S = QK^T (M 128, N 128, K 64) and O^T = V^T P^T (M 64, N 128,
    #   K 128): each 2 output tiles (one per head) over 2 cores, 128 columns
    #   + 64 issue cycles per core: 2 x 192 = 384 cycles = 160 ns.
    # Work splits by query tiles: 2 heads x 1 tile over 2 cores, share 1/2.
    # Scalar: exp of 2 x 128 x 128 scores, half per core = 16,384 at
    #   128 lanes x 1.2 GHz x 1 exp/lane-cycle = 106.7 ns + 1 instruction
    #   (64 cycles at 1.2 GHz = 53.3 ns) = 160 ns.
    # Vector: row max over the scores (1 pass) + one O rescale per 2048
    #   keys + the final O / l: 2 x 128 x (128 + 64) + 2 x 128 x 64 = 65,536,
    #   half per core = 32,768 / (128 x 1.2 GHz) = 213.3 ns + 53.3 ns = 266.7 ns.
    # The engines run concurrently: compute = 266.7 ns; 1 score tile per core,
    #   so the pipeline fill is the sum of the other stages: 160 + 160 = 320 ns.
    # HBM: Q, K, V, O 32,768 B each, fp32 LSE 2 x 128 x 4 = 1,024 B ->
    #   132,096 B = 107.8 ns < compute. Time = 266.7 + 320 = 586.7 ns.
    q = bf16(1, 2, 128, 64)
    cost = chip_model.cost_of(DEV, "aten::_scaled_dot_product_flash_attention_for_cpu",
                              [q, q, q], [q, fp32(1, 2, 128)])
    sc, vec, fa = TRN3.scalar, TRN3.vector, TRN3.flash_attention
    bh, L, E = 2, 128, 64
    tensor_s = 2 * (L + ISSUE) / CLK                        # S and PV, one tile per core each
    share = ceil(bh * ceil(L / fa.q_tile_rows) / DEV.cores) / (bh * ceil(L / fa.q_tile_rows))
    exp_mine = bh * L * L * share
    scalar_s = (exp_mine / (sc.lanes * sc.clock_hz * sc.transcendental_per_lane_cycle)
                + ceil(exp_mine / sc.elems_per_instruction) * sc.issue_overhead_cycles / sc.clock_hz)
    vec_mine = (bh * L * (L * fa.forward_vector_passes + E * ceil(L / fa.kv_tile)) + bh * L * E) * share
    vector_s = (vec_mine / (vec.lanes * vec.clock_hz)
                + ceil(vec_mine / vec.elems_per_instruction) * vec.issue_overhead_cycles / vec.clock_hz)
    hbm = 4 * bh * L * E * 2 + bh * L * 4
    busy = [tensor_s, scalar_s, vector_s]
    assert cost.engine is Engine.TENSOR
    assert cost.hbm_bytes == hbm == 132_096
    assert cost.flops == 2 * (2 * bh * L * L * E)
    assert cost.compute_s == pytest.approx(max(busy))
    assert cost.overhead_s == pytest.approx(sum(busy) - max(busy))
    assert cost.time_s == pytest.approx(max(max(busy), hbm / HBM) + sum(busy) - max(busy))
    assert cost.time_s == pytest.approx(586.7e-9, rel=1e-3)


# ---------------------------------------------------------------- lane engines and DMA
def test_elementwise_add_is_hbm_bound_on_the_scalar_engine():
    # 2^20 fp32 + 2^20 fp32: reads 8 MiB, writes 4 MiB -> 10.27 us at
    # 1.225 TB/s; compute 2^20 / (2 cores x 128 lanes x 1.2 GHz) = 3.41 us;
    # 2^20 / 65,536 = 16 instructions, 8 per core x 64 cycles = 0.43 us.
    n = 1 << 20
    sc = TRN3.scalar
    cost = chip_model.cost_of(DEV, "aten::add.Tensor", [fp32(n), fp32(n)], [fp32(n)])
    instructions = ceil(ceil(n / sc.elems_per_instruction) / DEV.cores)
    assert cost.engine is Engine.SCALAR
    assert cost.hbm_bytes == 3 * n * 4
    assert cost.compute_s == pytest.approx(n / (DEV.cores * sc.lanes * sc.clock_hz))
    assert instructions == 8
    assert cost.time_s == pytest.approx(3 * n * 4 / HBM + instructions * sc.issue_overhead_cycles / sc.clock_hz)


def test_exp_runs_at_the_transcendental_rate():
    n = 1 << 20
    sc = TRN3.scalar
    cost = chip_model.cost_of(DEV, "aten::exp", [bf16(n)], [bf16(n)])
    assert cost.compute_s == pytest.approx(
        n / (DEV.cores * sc.lanes * sc.clock_hz * sc.transcendental_per_lane_cycle))
    assert cost.hbm_bytes == 2 * n * 2


def test_sum_streams_its_input_through_the_vector_engine():
    n = 1 << 20
    vec = TRN3.vector
    cost = chip_model.cost_of(DEV, "aten::sum", [fp32(n)], [fp32()])
    assert cost.engine is Engine.VECTOR
    assert cost.hbm_bytes == (n + 1) * 4
    assert cost.compute_s == pytest.approx(n / (DEV.cores * vec.lanes * vec.clock_hz))


def test_sort_takes_log2_n_passes_on_gpsimd():
    n = 1 << 16
    gp = TRN3.gpsimd
    cost = chip_model.cost_of(DEV, "aten::sort", [fp32(n)], [fp32(n), ((n,), "Long")])
    assert cost.engine is Engine.GPSIMD
    assert cost.flops == n * log2(n)                        # 16 passes
    assert cost.compute_s == pytest.approx(n * log2(n) / (DEV.cores * gp.lanes * gp.clock_hz))


def test_copy_is_one_dma_transfer_of_its_bytes():
    # clone of 1 MiB: reads and writes it (2 MiB of HBM at 1.225 TB/s =
    # 1.71 us) vs 1 MiB over the device's DMA share (1.225 TB/s: 0.86 us),
    # plus one transfer's fixed cost (1 us).
    n = 1 << 18
    cost = chip_model.cost_of(DEV, "aten::clone", [fp32(n)], [fp32(n)])
    nbytes = 4 * n
    assert cost.engine is Engine.DMA
    assert cost.hbm_bytes == 2 * nbytes
    assert cost.time_s == pytest.approx(
        max(nbytes / DEV.dma_bytes_per_s, 2 * nbytes / HBM) + TRN3.dma.issue_overhead_s)


def test_an_op_without_tensors_costs_nothing():
    assert chip_model.cost_of(DEV, "aten::empty", [], []).time_s == 0.0


def test_a_model_gap_is_charged_as_a_copy_of_its_bytes():
    # a convolution missing its weight cannot be costed: the callback the C++
    # core memoizes must not fail the op, it charges the bytes as a copy
    op_cost = chip_model.make_op_cost(DEV)
    x = fp32(2, 8, 4, 4)
    with pytest.warns(UserWarning, match="no cost for aten::convolution_overrideable"):
        got = op_cost("aten::convolution_overrideable", [x], [])
    assert got == chip_model.timeline_charge(dma_cost(DEV, 2 * 8 * 4 * 4 * 4))


def test_timeline_charge_is_what_the_core_schedules():
    cost = chip_model.cost_of(DEV, "aten::add.Tensor", [fp32(64), fp32(64)], [fp32(64)])
    engine, seconds, flops, nbytes, memory_s, compute_s = chip_model.timeline_charge(cost)
    assert engine == Engine.SCALAR.value
    assert (seconds, flops, nbytes) == (cost.time_s, cost.flops, float(cost.hbm_bytes))
    assert (memory_s, compute_s) == (cost.memory_s, cost.compute_s)


# ---------------------------------------------------------------- charge on a real device
def _events():
    return torch.trn.Event(enable_timing=True), torch.trn.Event(enable_timing=True)


def test_charge_puts_the_cost_on_the_timeline():
    a = torch.ones(1 << 16, device="trn")
    out = torch.empty_like(a)
    start, end = _events()
    start.record()
    cost = chip_model.charge("aten::exp", [a], [out])
    end.record()
    want = chip_model.cost_of(torch_trn3.machine.logical, "aten::exp",
                              [chip_model.describe(a)], [chip_model.describe(out)])
    assert cost == want
    assert start.elapsed_time(end) == pytest.approx(want.time_s * 1e3, rel=1e-9)


def test_uncharged_ops_take_no_modelled_time():
    a = torch.ones(1 << 16, device="trn")
    start, end = _events()
    start.record()
    with chip_model.uncharged():
        a.exp()
    end.record()
    assert start.elapsed_time(end) == 0.0
    start.record()
    a.exp()                                  # charged again afterwards
    end.record()
    assert start.elapsed_time(end) > 0.0
