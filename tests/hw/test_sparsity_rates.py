"""Structured-sparsity rates (TRN3_FACTS "Chip": MXFP8 4:8 and 4:16 give 4x
the dense FLOPs; "Per-NeuronCore numbers": NeuronCore-v3/v4 support 4:16,
4:12, 4:8, 2:8, 2:4, 1:4, 1:2). Only 4:8 and 4:16 have a published rate;
the others are modelled with no speed-up, and the op's notes say so.

Hand model, Trainium3 LNC=2: M=1024, N=512 -> 8 output tiles, 4 per core,
each pass (512 + 64) cycles. Dense MX, K=4096: 4096 / 512 = 8 passes per
tile -> 32 passes. 4x sparse: a pass covers 4 x 512 = 2048 dense K -> 2
passes per tile -> 8 passes: 4x, issue cost included (the issue said 3x
before: only the streaming cycles were divided).
"""
import pytest
import torch

import torch_trn3
from torch_trn3.hw.cost import matmul_cost
from torch_trn3.hw.lnc import logical_device
from torch_trn3.hw.specs import TRN2, TRN3, UNPUBLISHED_SPARSE_FACTOR
from torch_trn3.mx import SPARSITY_PATTERNS, prune_structured, sparse_mm
from trn_testing import raw_records

DEV = logical_device(TRN3, 2)
CLOCK = 2.4e9
PUBLISHED = {"4:8": 4.0, "4:16": 4.0}
UNPUBLISHED = ("4:12", "2:8", "2:4", "1:4", "1:2")


def busy_cycles(cost) -> float:
    return round((cost.compute_s + cost.overhead_s) * CLOCK, 6)


def test_spec_lists_every_pattern_the_numerics_support():
    numerics = {f"{n}:{m}" for n, m in SPARSITY_PATTERNS}
    assert {p for p, _ in TRN3.tensor.sparse_speedup} == numerics == set(PUBLISHED) | set(UNPUBLISHED)


@pytest.mark.parametrize("pattern", sorted(PUBLISHED))
def test_published_patterns_are_4x_dense_mx_including_issue_cost(pattern):
    dense = matmul_cost(DEV, 1024, 512, 4096, dtype="mxfp8")
    sparse = matmul_cost(DEV, 1024, 512, 4096, dtype="mxfp8", sparsity=pattern)
    assert busy_cycles(dense) == 32 * 576
    assert busy_cycles(sparse) == 8 * 576
    assert sparse.instructions == 8 and dense.instructions == 32
    assert sparse.flops == dense.flops == 2 * 1024 * 512 * 4096     # dense-equivalent
    assert TRN3.tensor.sparse_rate_published(pattern)
    assert any(f"{pattern} sparsity: 4x dense MX throughput" in n for n in sparse.notes)


def test_sparse_short_k_uses_the_split_array():
    # K=1024 at 4x: on the whole array one pass of 2048 dense rows, half
    # filled (4 tiles -> 4 passes); on the split array a 128-row sub-array
    # pass covers 512 dense rows: 4 tiles x 2 passes / 4 sub-arrays = 2 steps.
    cost = matmul_cost(DEV, 1024, 512, 1024, dtype="mxfp8", sparsity="4:16")
    assert busy_cycles(cost) == 2 * 576
    assert any("split into 4" in n for n in cost.notes)
    # One tile cannot be split: one whole-array pass, half of its 2048 rows.
    one = matmul_cost(DEV, 128, 512, 1024, dtype="mxfp8", sparsity="4:16")
    assert busy_cycles(one) == 576
    assert any("K=1024 fills 50% of the 2048-row array" in n for n in one.notes)


@pytest.mark.parametrize("pattern", UNPUBLISHED)
def test_unpublished_patterns_claim_no_speed_up_and_say_so(pattern):
    assert not TRN3.tensor.sparse_rate_published(pattern)
    assert TRN3.tensor.sparse_factor(pattern) == UNPUBLISHED_SPARSE_FACTOR == 1.0
    dense = matmul_cost(DEV, 1024, 512, 4096, dtype="mxfp8")
    sparse = matmul_cost(DEV, 1024, 512, 4096, dtype="mxfp8", sparsity=pattern)
    assert busy_cycles(sparse) == busy_cycles(dense) == 32 * 576
    assert any(f"{pattern} sparsity: rate not published" in n for n in sparse.notes)
    assert DEV.peak_flops("mxfp8", sparsity=pattern) == DEV.peak_mx_flops


def test_unknown_pattern_and_trainium2_are_refused():
    with pytest.raises(ValueError, match="3:8.*allowed values"):
        matmul_cost(DEV, 128, 128, 128, dtype="mxfp8", sparsity="3:8")
    with pytest.raises(ValueError, match="4:8"):
        matmul_cost(logical_device(TRN2, 2), 128, 128, 128, dtype="mxfp8", sparsity="4:8")


@pytest.mark.parametrize("n,m", SPARSITY_PATTERNS, ids=lambda v: str(v))
def test_sparse_mm_on_trn_is_charged_at_its_pattern_rate(n, m):
    g = torch.Generator().manual_seed(n * 100 + m)
    a, w = torch.randn(64, 96, generator=g), torch.randn(32, 96, generator=g)
    sp = prune_structured(w.trn(), n, m)
    out, records = raw_records(lambda: sparse_mm(a.trn(), sp))
    assert torch.equal(out.cpu(), a @ sp.to_dense().cpu().t())
    (rec,) = [r for r in records if r[0] == "torch_trn3::sparse_mm"]
    cost = matmul_cost(torch_trn3.machine.logical, 64, 32, 96, dtype="mxfp8", sparsity=f"{n}:{m}")
    # Weights in HBM: kept values (MXFP8) plus a ceil(log2 m)-bit index each.
    kept = n / m
    weight_bytes = 32 * 96 * (kept * (1 + 1 / 32) + kept * (m - 1).bit_length() / 8)
    dense_weight = 32 * 96 * (1 + 1 / 32)
    assert rec[8] == pytest.approx(cost.hbm_bytes - dense_weight + weight_bytes)
