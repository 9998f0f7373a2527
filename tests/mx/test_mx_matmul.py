"""mx_mm, mx_grouped_mm, W4A8, NVFP4 storage and structured sparsity."""

import pytest
import torch

import mx_reference as ref
from torch_trn3.mx import (NVFP4ComputeError, mx_grouped_mm, mx_mm, prune_structured, sparse_mm,
                           to_mx, to_nvfp4, w4a8_linear)

E4M3, E5M2, FP4 = torch.float8_e4m3fn, torch.float8_e5m2, torch.float4_e2m1fn_x2


def reference_values(mx, name):
    """float64 values of ``mx`` decoded by the independent reference."""
    return torch.from_numpy(ref.dequantize(mx.scales.view(torch.uint8).numpy(),
                                           mx.elements.view(torch.uint8).numpy(),
                                           name, mx.block_size))


# ---- mx_mm ----------------------------------------------------------------------

def test_mx_mm_hand_computed():
    # a = [2, 0, ...], b rows = [3, 0, ...] and [0.5, 0.25, 0, ...]; exact in E4M3.
    a = torch.zeros(1, 32); a[0, 0] = 2.0
    b = torch.zeros(2, 32); b[0, 0] = 3.0; b[1, :2] = torch.tensor([0.5, 0.25])
    assert mx_mm(to_mx(a, E4M3), to_mx(b, E4M3)).tolist() == [[6.0, 1.0]]


@pytest.mark.parametrize("a_name, b_name", [("e4m3", "e4m3"), ("e5m2", "e4m3"), ("e2m1", "e2m1")])
def test_mx_mm_matches_float64_reference(a_name, b_name):
    dtypes = {"e4m3": E4M3, "e5m2": E5M2, "e2m1": FP4}
    g = torch.Generator().manual_seed(0)
    a = to_mx(torch.randn(2, 3, 128, generator=g), dtypes[a_name])
    b = to_mx(torch.randn(40, 128, generator=g) * 1e-3, dtypes[b_name])
    want = reference_values(a, a_name) @ reference_values(b, b_name).T
    got = mx_mm(a, b)
    assert got.shape == (2, 3, 40) and got.dtype == torch.float32
    # FP32 accumulation over K = 128 exact products: a few float32 ulps of the sum
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-8)


def test_mx_mm_rounds_the_output_once_and_adds_bias_in_fp32():
    a, b = to_mx(torch.randn(8, 64), E4M3), to_mx(torch.randn(16, 64), E4M3)
    bias = torch.randn(16)
    exact = (a.dequantize(torch.float64) @ b.dequantize(torch.float64).T + bias.double())
    got = mx_mm(a, b, out_dtype=torch.bfloat16, bias=bias)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, mx_mm(a, b, bias=bias).bfloat16())
    torch.testing.assert_close(got.double(), exact, rtol=2 ** -8, atol=0)


def test_mx_mm_takes_scaled_mm_layout():
    # torch._scaled_mm's b is (K, N) column-major: its transpose is our (N, K).
    b_kn = torch.randn(64, 24)
    b_mx = to_mx(b_kn.t().contiguous(), E4M3)
    a_mx = to_mx(torch.randn(4, 64), E4M3)
    want = a_mx.dequantize() @ b_mx.dequantize().t()
    assert torch.equal(mx_mm(a_mx, b_mx), want)


# ---- grouped ----------------------------------------------------------------------

def test_grouped_2d_3d_matches_per_group_mm():
    a = to_mx(torch.randn(10, 64), E4M3)
    b = to_mx(torch.randn(3, 16, 64), E4M3)
    offs = torch.tensor([3, 3, 10], dtype=torch.int32)     # an empty group too
    out = mx_grouped_mm(a, b, offs)
    a_vals, b_vals = a.dequantize(), b.dequantize()
    for g, (start, end) in enumerate([(0, 3), (3, 3), (3, 10)]):
        torch.testing.assert_close(out[start:end], a_vals[start:end] @ b_vals[g].T)


def test_grouped_3d_3d_is_batched():
    a, b = to_mx(torch.randn(2, 5, 32), E4M3), to_mx(torch.randn(2, 7, 32), E4M3)
    torch.testing.assert_close(mx_grouped_mm(a, b), torch.bmm(a.dequantize(), b.dequantize().mT))


def test_grouped_2d_2d_splits_k():
    a, b = to_mx(torch.randn(4, 128), E4M3), to_mx(torch.randn(6, 128), E4M3)
    out = mx_grouped_mm(a, b, torch.tensor([32, 128], dtype=torch.int32))
    av, bv = a.dequantize(), b.dequantize()
    torch.testing.assert_close(out[0], av[:, :32] @ bv[:, :32].T)
    torch.testing.assert_close(out[1], av[:, 32:] @ bv[:, 32:].T)
    with pytest.raises(ValueError, match="multiples of the block size"):
        mx_grouped_mm(a, b, torch.tensor([48, 128], dtype=torch.int32))


# ---- W4A8 and NVFP4 ----------------------------------------------------------------

def test_mxfp4_to_mxfp8_requantization_is_lossless():
    w4 = to_mx(torch.randn(32, 256) * 50, FP4)
    w8 = to_mx(w4.dequantize(), E4M3, scale_mode="trn3")
    assert torch.equal(w8.dequantize(), w4.dequantize())


def test_w4a8_linear_computes_in_mxfp8():
    x, w4 = torch.randn(6, 128), to_mx(torch.randn(24, 128), FP4)
    bias = torch.randn(24)
    want = mx_mm(to_mx(x, E4M3, scale_mode="trn3"), to_mx(w4.dequantize(), E4M3, scale_mode="trn3"),
                 bias=bias)
    assert torch.equal(w4a8_linear(x, w4, bias), want)
    assert w4a8_linear(x.bfloat16(), w4).dtype == torch.bfloat16


def test_nvfp4_round_trip_and_hand_case():
    # one block of 16 with amax 6 and tensor scale 1: block scale 1, values exact.
    x = torch.tensor([[6.0, -3.0, 0.5, 1.5] + [0.0] * 12])
    nv = to_nvfp4(x, tensor_scale=1.0)
    assert nv.scales.float().tolist() == [[1.0]]
    assert torch.equal(nv.dequantize(), x)
    # FP4's widest gap is 4 -> 6, so errors stay under ~1/6 of the block amax
    # (plus a little from rounding the block scale to E4M3).
    y = torch.randn(8, 4, 16)
    err = (to_nvfp4(y.view(8, 64)).dequantize().view(8, 4, 16) - y).abs()
    assert (err / y.abs().amax(-1, keepdim=True)).max() < 0.2


def test_nvfp4_compute_is_refused_with_a_clear_error():
    nv, mx = to_nvfp4(torch.randn(16, 64)), to_mx(torch.randn(4, 64), E4M3)
    with pytest.raises(NVFP4ComputeError, match="Trainium3 has no NVFP4 hardware"):
        mx_mm(mx, nv)
    with pytest.raises(TypeError, match="no NVFP4 hardware"):
        mx_grouped_mm(nv, mx, torch.tensor([4], dtype=torch.int32))
    # the software path: dequantize to MXFP8 first
    out = mx_mm(mx, nv.to_mx(E4M3))
    assert out.shape == (4, 16)
    assert w4a8_linear(torch.randn(4, 64), nv).shape == (4, 16)


# ---- structured sparsity ----------------------------------------------------------

@pytest.mark.parametrize("m", [8, 16])
def test_prune_keeps_the_four_largest_per_group(m):
    w = torch.randn(12, 64)
    sparse = prune_structured(w, 4, m)
    dense = sparse.to_dense()
    groups, dense_groups = w.view(12, -1, m), dense.view(12, -1, m)
    assert (dense_groups != 0).sum(-1).eq(4).all()
    kept_min = dense_groups.abs().masked_fill(dense_groups == 0, float("inf")).amin(-1)
    dropped_max = groups.abs().masked_fill(dense_groups != 0, 0).amax(-1)
    assert (kept_min >= dropped_max).all()
    assert torch.equal(dense[dense != 0], w[dense != 0])
    assert sparse.values.shape == (12, 64 * 4 // m)


def test_prune_hand_case_and_ties():
    w = torch.tensor([[0.1, -5.0, 3.0, 0.2, 2.0, 2.0, 2.0, -1.0]])
    dense = prune_structured(w, 4, 8).to_dense()
    # keep -5, 3, and the first two of the tied 2.0s
    assert dense.tolist() == [[0.0, -5.0, 3.0, 0.0, 2.0, 2.0, 0.0, 0.0]]


@pytest.mark.parametrize("m", [8, 16])
def test_sparse_matmul_equals_dense_matmul_of_pruned_weight(m):
    x, w = torch.randn(9, 128), torch.randn(20, 128)
    sparse = prune_structured(w, 4, m)
    pruned = w * (sparse.to_dense() != 0)
    assert torch.equal(sparse_mm(x, sparse), x @ pruned.T)
    xq, sq = to_mx(x, E4M3), sparse.to_mx(E4M3)
    assert torch.equal(sparse_mm(xq, sq), xq.dequantize() @ sq.to_dense().T)


def test_unsupported_sparsity_pattern():
    with pytest.raises(ValueError, match="unsupported sparsity 3:8"):
        prune_structured(torch.randn(4, 16), 3, 8)
