"""Flash-attention cost model: hand-computed checks of hw.cost.attention_cost.

Reference numbers (Trainium3, one LNC=2 device = 2 cores), for the worked
example batch x heads = 32, seq 4096, head dim 128, bf16:
  Q = K = V = O   = 32 * 4096 * 128 * 2 B              = 33,554,432 B each
  LSE (fp32)      = 32 * 4096 * 4 B                     = 524,288 B
  scores          = 32 * 4096 * 4096                    = 536,870,912 elements
  one 4096x4096x128 matmul x 32 = 873.81 us compute + 109.23 us issue = 983.04 us
  Scalar exp rate = 128 lanes * 1.2 GHz * 1 per cycle   = 153.6 Gelem/s per core
  Vector rate     = 128 lanes * 1.2 GHz                 = 153.6 Gelem/s per core
  lane instruction: 65,536 elements, 64 cycles of issue at 1.2 GHz = 53.33 ns
  device HBM      = 4.9e12 / 4                          = 1.225 TB/s
"""
import pytest

from torch_trn3.hw.cost import (
    Engine, attention_cost, attention_work, causal_kept_fraction, matmul_cost,
)
from torch_trn3.hw.lnc import logical_device
from torch_trn3.hw.specs import TRN2, TRN3

DEV = logical_device(TRN3, 2)
DEV_TRN2 = logical_device(TRN2, 2)
BH, L, D = 32, 4096, 128
QKVO = 33_554_432            # one of Q, K, V, O (bytes)
LSE = 524_288
SCORES = BH * L * L          # 536,870,912


def fwd(**kw):
    return attention_cost(DEV, BH, L, L, D, D, "bf16", **kw)


# --- HBM traffic --------------------------------------------------------------

def test_forward_hbm_bytes_are_q_k_v_o_and_lse_once():
    cost = fwd()
    assert cost.hbm_bytes == 4 * QKVO + LSE == 134_742_016
    assert cost.memory_s == pytest.approx(134_742_016 / 1.225e12)     # 110.0 us


def test_scores_never_reach_hbm():
    # the score matrix alone would be 32 x 4096 x 4096 x 2 B = 1.07 GB, 8x the kernel's traffic
    assert fwd().hbm_bytes < SCORES * 2 / 7.9
    assert "flash attention: scores stay in SBUF/PSUM" in fwd().notes


def test_backward_reads_q_k_v_o_do_lse_and_writes_dq_dk_dv():
    cost = fwd(backward=True)
    assert cost.hbm_bytes == 5 * QKVO + LSE + 3 * QKVO == 268_959_744


def test_causal_mask_skips_compute_not_bytes():
    assert fwd(kept_fraction=33 / 64).hbm_bytes == fwd().hbm_bytes


def test_mask_bytes_are_read_once():
    mask = 4096 * 4096 * 1          # one bool per (query, key)
    assert fwd(mask_bytes=mask).hbm_bytes == 4 * QKVO + LSE + mask
    assert fwd(mask_bytes=mask, backward=True).hbm_bytes == 8 * QKVO + LSE + mask


def test_gqa_reads_k_and_v_of_the_shared_heads_only():
    # 8 K/V heads for 32 query heads: K and V are a quarter of Q's bytes
    cost = fwd(kv_batch_heads=8)
    assert cost.hbm_bytes == 2 * QKVO + 2 * QKVO // 4 + LSE


# --- causal kept fraction -----------------------------------------------------

def test_causal_square_keeps_n_plus_1_over_2n_blocks():
    assert causal_kept_fraction(512, 512) == 10 / 16           # 4 blocks: 1+2+3+4 of 16
    assert causal_kept_fraction(4096, 4096) == 33 / 64         # 32 blocks: (32+1)/(2*32)
    assert causal_kept_fraction(128, 128) == 1.0               # one block: the diagonal


def test_causal_fraction_counts_partial_blocks_whole():
    assert causal_kept_fraction(500, 500) == 10 / 16           # still 4 blocks of 128


def test_causal_top_left_is_torch_is_causal():
    # 2 query blocks x 4 key blocks; query i sees keys j <= i:
    # block row 0 keeps 1, row 1 keeps 2 -> 3 of 8
    assert causal_kept_fraction(256, 512) == 3 / 8
    # 4 query blocks x 2 key blocks: rows keep 1, 2, 2, 2 -> 7 of 8
    assert causal_kept_fraction(512, 256) == 7 / 8


def test_causal_bottom_right_aligns_the_last_query_with_the_last_key():
    # offset kv - q = 256: rows keep 3, 4 of 4 -> 7 of 8
    assert causal_kept_fraction(256, 512, align="bottom_right") == 7 / 8
    # offset -256: the first two query blocks see nothing, then 1, 2 -> 3 of 8
    assert causal_kept_fraction(512, 256, align="bottom_right") == 3 / 8


def test_causal_fraction_rejects_unknown_alignment():
    with pytest.raises(ValueError, match="align"):
        causal_kept_fraction(128, 128, align="diagonal")


# --- engines --------------------------------------------------------------------

def test_tensor_engine_time_is_the_two_matmuls_from_matmul_cost():
    # S = QK^T: 32 x 32 M tiles x 1 K tile x 4096 columns / 2 cores / 2.4 GHz
    # = 873.81 us + 4096 instructions x 64 cycles = 109.23 us -> 983.04 us;
    # O^T = V^T P^T streams 4096 query columns: the same 983.04 us
    qk = matmul_cost(DEV, L, L, D, batch=BH)
    assert qk.compute_s + qk.overhead_s == pytest.approx(983.04e-6, rel=1e-6)
    work = attention_work(DEV, BH, L, L, D, D, "bf16")
    assert work.tensor_s == pytest.approx(2 * 983.04e-6, rel=1e-6)
    assert work.flops == 2 * (2 * SCORES * D)                   # 274.9 GFLOP


def test_exp_runs_at_the_scalar_transcendental_rate():
    # 268,435,456 exps per core / 153.6e9 = 1747.63 us
    # + 4096 instructions x 53.33 ns = 218.45 us -> 1966.08 us
    work = attention_work(DEV, BH, L, L, D, D, "bf16")
    assert work.exp_elems == SCORES
    rate = TRN3.scalar.transcendental_elems_per_s
    assert rate == 153.6e9
    assert work.scalar_s == pytest.approx(SCORES / 2 / rate + 4096 * 64 / 1.2e9)
    assert work.scalar_s == pytest.approx(1966.08e-6, rel=1e-6)


def test_trn3_exp_is_4x_trn2_per_cycle():
    assert TRN3.scalar.clock_hz == TRN2.scalar.clock_hz
    ratio = TRN3.scalar.transcendental_elems_per_s / TRN2.scalar.transcendental_elems_per_s
    assert ratio == 4
    # Trn2: 1747.63 us x 4 = 6990.51 us of exp + the same 218.45 us of issue
    trn2 = attention_work(DEV_TRN2, BH, L, L, D, D, "bf16")
    assert trn2.scalar_s == pytest.approx(4 * 1747.626e-6 + 218.453e-6, rel=1e-5)


def test_trn2_attention_is_bound_by_exp():
    assert "bound by the Scalar Engine" in attention_cost(DEV_TRN2, BH, L, L, D, D).notes


def test_vector_engine_does_the_row_statistics():
    # per score: 1 row-max pass + O rescale 128 / 2048 per kv tile; + O / l once
    # = 536,870,912 x 1.0625 + 16,777,216 = 587,202,560 elements
    # per core 293,601,280 / 153.6e9 = 1911.46 us + 4480 x 53.33 ns = 238.93 us
    work = attention_work(DEV, BH, L, L, D, D, "bf16")
    assert work.vector_elems == 587_202_560
    assert work.vector_s == pytest.approx(2150.40e-6, rel=1e-6)


def test_time_is_the_busiest_engine_plus_the_pipeline_fill():
    # Vector 2150.40 us > Tensor = Scalar 1966.08 us > HBM 110.0 us.
    # 4096 score tiles per core: per tile 0.48 + 0.48 + 0.525 us; fill = sum - max = 0.96 us
    cost = fwd()
    assert cost.engine is Engine.TENSOR
    assert cost.compute_s == pytest.approx(2150.40e-6, rel=1e-6)
    assert cost.overhead_s == pytest.approx(0.96e-6, rel=1e-6)
    assert cost.time_s == pytest.approx(2151.36e-6, rel=1e-6)
    assert "bound by the Vector Engine" in cost.notes


def test_long_sequence_attention_is_compute_bound():
    cost = fwd()
    assert cost.bound == "compute"
    assert cost.compute_s > 15 * cost.memory_s


def test_causal_scales_all_score_work_by_the_kept_fraction():
    full = attention_work(DEV, BH, L, L, D, D, "bf16")
    causal = attention_work(DEV, BH, L, L, D, D, "bf16", kept_fraction=33 / 64)
    assert causal.flops == pytest.approx(full.flops * 33 / 64)
    assert causal.tensor_s == pytest.approx(full.tensor_s * 33 / 64)
    assert causal.exp_elems == pytest.approx(SCORES * 33 / 64)


def test_causal_worked_example():
    # Vector: 0.515625 x 570,425,344 + 16,777,216 = 310,902,784 elements;
    # per core 155,451,392 / 153.6e9 = 1012.05 us + 2372 x 53.33 ns = 126.51 us
    cost = fwd(kept_fraction=causal_kept_fraction(L, L))
    assert cost.compute_s == pytest.approx(1138.56e-6, rel=1e-6)
    assert cost.time_s < 0.53 * fwd().time_s


def test_backward_is_five_matmuls_and_tensor_bound():
    # S, dV, dP, dQ, dK: 5 x 983.04 us on the Tensor Engine, one exp per score
    work = attention_work(DEV, BH, L, L, D, D, "bf16", backward=True)
    assert work.flops == 5 * (2 * SCORES * D)
    assert work.tensor_s == pytest.approx(5 * 983.04e-6, rel=1e-6)
    assert work.exp_elems == SCORES
    assert "bound by the Tensor Engine" in fwd(backward=True).notes


def test_lnc8_pays_the_intercore_term():
    dev8 = logical_device(TRN3, 8)
    assert attention_cost(dev8, BH, L, L, D, D).intercore_s > 0
    assert fwd().intercore_s == 0


def test_empty_attention_costs_nothing_and_bad_fraction_raises():
    assert attention_cost(DEV, BH, 0, L, D, D).time_s == 0
    with pytest.raises(ValueError, match="kept_fraction"):
        fwd(kept_fraction=1.5)
