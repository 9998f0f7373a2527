"""scaled_dot_product_attention on trn is charged as one flash-attention kernel.

Hand numbers for batch 1, 4 heads, seq 256, head dim 64, bf16:
  Q = K = V = O = 1 * 4 * 256 * 64 * 2 B = 131,072 B each
  LSE (fp32)    = 1 * 4 * 256 * 4 B      = 4,096 B
  one matmul    = 2 * 4 * 256 * 256 * 64 = 33,554,432 FLOPs
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_trn3
import torch_trn3.profiler as tp
from torch_trn3.chip_model import charge_attention, uncharged

B, H, L, E = 1, 4, 256, 64
QKVO = B * H * L * E * 2          # 131,072
LSE = B * H * L * 4               # 4,096
MATMUL_FLOPS = 2 * B * H * L * L * E


def qkv(length=L, requires_grad=False, seed=0):
    torch.manual_seed(seed)
    cpu = [torch.randn(B, H, length, E, dtype=torch.bfloat16) for _ in range(3)]
    trn = [t.to("trn") for t in cpu]
    if requires_grad:
        for t in cpu + trn:
            t.requires_grad_()
    return cpu, trn


def attention_records(prof):
    return [r for r in prof.records if "attention" in r.name]


def test_sdpa_is_one_tensor_engine_op_moving_q_k_v_o_and_lse_once():
    _, (q, k, v) = qkv()
    with tp.profile() as prof:
        F.scaled_dot_product_attention(q, k, v)
    (op,) = attention_records(prof)
    assert op.name == "aten::_scaled_dot_product_flash_attention_for_cpu"
    assert tp.ENGINE_NAMES[op.engine] == "Tensor"
    assert op.hbm_bytes == 4 * QKVO + LSE == 528_384
    assert op.flops == 2 * MATMUL_FLOPS
    assert len(prof.records) == 1                     # no separate matmul / softmax ops


def test_sdpa_backward_is_one_op_with_its_hand_computed_bytes():
    _, (q, k, v) = qkv(requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v)
    grad = torch.ones_like(out)
    with tp.profile() as prof:
        out.backward(grad)
    (op,) = attention_records(prof)
    assert op.name == "aten::_scaled_dot_product_flash_attention_for_cpu_backward"
    # read Q, K, V, O, dO, LSE; write dQ, dK, dV
    assert op.hbm_bytes == 8 * QKVO + LSE == 1_052_672
    assert op.flops == 5 * MATMUL_FLOPS


def test_causal_is_charged_less_time_than_non_causal():
    _, (q, k, v) = qkv(length=1024)
    with tp.profile() as prof:
        F.scaled_dot_product_attention(q, k, v)
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    full, causal = attention_records(prof)
    # 8 blocks of 128: the causal kernel computes (8 + 1) / 16 of them
    assert causal.flops == pytest.approx(full.flops * 9 / 16)
    # time: 9/16 of the score work, plus per-row work (O / l) and the pipeline
    # fill, which do not shrink: 11.15 us vs 18.24 us
    assert causal.duration_s < 0.65 * full.duration_s
    assert causal.hbm_bytes == full.hbm_bytes


def test_attn_mask_bytes_are_charged():
    _, (q, k, v) = qkv()
    mask = torch.randn(L, L, dtype=torch.bfloat16, device="trn")       # 131,072 B
    with tp.profile() as prof:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    (op,) = attention_records(prof)
    assert op.hbm_bytes == 4 * QKVO + LSE + L * L * 2


@pytest.mark.parametrize("is_causal", [False, True])
def test_values_and_gradients_equal_cpu(is_causal):
    (cq, ck, cv), (q, k, v) = qkv(requires_grad=True)
    expected = F.scaled_dot_product_attention(cq, ck, cv, is_causal=is_causal)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert torch.equal(out.cpu(), expected)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    out.backward(grad.to("trn"))
    for cpu_t, trn_t in ((cq, q), (ck, k), (cv, v)):
        assert trn_t.grad.device.type == "trn"
        assert torch.equal(trn_t.grad.cpu(), cpu_t.grad)


def test_masked_values_and_gradients_equal_cpu():
    (cq, ck, cv), (q, k, v) = qkv(requires_grad=True)
    mask = torch.randn(L, L, dtype=torch.bfloat16)
    expected = F.scaled_dot_product_attention(cq, ck, cv, attn_mask=mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to("trn"))
    assert torch.equal(out.cpu(), expected)
    expected.sum().backward()
    out.sum().backward()
    assert torch.equal(q.grad.cpu(), cq.grad)


def test_charge_attention_takes_a_block_mask_density_for_flex_attention():
    _, (q, k, v) = qkv()
    out = torch.empty_like(q)
    lse = torch.empty(B, H, L, device="trn")
    with tp.profile() as prof:
        cost = charge_attention("flex_attention", q, k, v, [out, lse], kept_fraction=0.25,
                                mask_bytes=1_000)
    (op,) = prof.records
    assert op.name == "flex_attention" and tp.ENGINE_NAMES[op.engine] == "Tensor"
    assert op.hbm_bytes == cost.hbm_bytes == 4 * QKVO + LSE + 1_000
    assert op.flops == 0.25 * 2 * MATMUL_FLOPS
    assert op.duration_s == pytest.approx(cost.time_s)


def test_charge_attention_is_a_no_op_off_trn_and_inside_uncharged():
    (cq, ck, cv), (q, k, v) = qkv()
    assert charge_attention("flex_attention", cq, ck, cv, [cq]) is None
    with tp.profile() as prof:
        with uncharged():
            assert charge_attention("flex_attention", q, k, v, [q]) is None
    assert prof.records == []


def test_fp64_attention_still_runs_and_is_charged():
    q = torch.randn(B, H, 128, E, dtype=torch.float64)
    with tp.profile() as prof:
        out = F.scaled_dot_product_attention(q.to("trn"), q.to("trn"), q.to("trn"))
    assert torch.equal(out.cpu(), F.scaled_dot_product_attention(q, q, q))
    (op,) = attention_records(prof)
    assert op.duration_s > 0


def test_profiler_breakdown_of_unmasked_attention_matches_its_charge():
    _, (q, k, v) = qkv()
    with tp.profile() as prof:
        F.scaled_dot_product_attention(q, k, v)
    (op,) = attention_records(prof)
    cost = op.cost(torch_trn3.machine.logical)
    assert op.duration_s == pytest.approx(cost.time_s)
    assert "flash attention: scores stay in SBUF/PSUM" in cost.notes


def test_efficient_attention_layout_is_read_as_batch_length_heads_dim():
    # _efficient_attention_forward takes (B, L, H, E); same kernel as (B, H, L, E)
    from torch_trn3.chip_model import cost_of

    dev = torch_trn3.machine.logical
    bhle, blhe = ((B, H, L, E), "BFloat16"), ((B, L, H, E), "BFloat16")
    flash = cost_of(dev, "aten::_scaled_dot_product_flash_attention_for_cpu", [bhle] * 3, [bhle])
    efficient = cost_of(dev, "aten::_efficient_attention_forward", [blhe] * 3, [blhe])
    assert efficient.time_s == flash.time_s and efficient.flops == 2 * MATMUL_FLOPS
