"""MX on the trn device: torch._scaled_mm / F.scaled_mm with block-scaled and
FP4 operands (which CPU PyTorch refuses), and the Tensor Engine charges of MX,
sparse and W4A8 matmuls."""

import pytest
import torch
import torch.nn.functional as F

import torch_trn3
from torch_trn3 import chip_model
from torch_trn3.hw.cost import matmul_cost
from torch_trn3.mx import mx_grouped_mm, mx_mm, prune_structured, sparse_mm, to_mx, to_nvfp4, w4a8_linear
from trn_testing import raw_records

E4M3, FP4 = torch.float8_e4m3fn, torch.float4_e2m1fn_x2


def operands(elem_dtype, m=64, n=48, k=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = to_mx(torch.randn(m, k, generator=g), elem_dtype)
    b = to_mx(torch.randn(n, k, generator=g), elem_dtype)
    # Reference written from the definition: dequantize, multiply in fp32.
    ref = a.dequantize(torch.float32) @ b.dequantize(torch.float32).t()
    return a, b, ref


@pytest.mark.parametrize("elem_dtype", [E4M3, torch.float8_e5m2, FP4])
def test_scaled_mm_block_scaled_on_trn(elem_dtype):
    a, b, ref = operands(elem_dtype)
    out = torch._scaled_mm(a.elements.trn(), b.elements.trn().t(), a.scales.trn(), b.scales.trn(),
                           out_dtype=torch.float32)
    assert out.device.type == "trn"
    assert torch.equal(out.cpu(), ref)


def test_cpu_refuses_what_trn_runs():
    a, b, _ = operands(E4M3)
    with pytest.raises((RuntimeError, ValueError), match="scaling"):
        torch._scaled_mm(a.elements, b.elements.t(), a.scales, b.scales, out_dtype=torch.float32)


def test_scaled_mm_rounds_once_to_bf16_with_bias():
    a, b, ref = operands(E4M3)
    bias = torch.randn(48)
    out = torch._scaled_mm(a.elements.trn(), b.elements.trn().t(), a.scales.trn(), b.scales.trn(),
                           bias=bias.trn(), out_dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out.cpu(), (ref + bias).to(torch.bfloat16))


def test_functional_scaled_mm_blockwise_1x32():
    a, b, ref = operands(E4M3)
    out = F.scaled_mm(a.elements.trn(), b.elements.trn().t(), a.scales.trn(), F.ScalingType.BlockWise1x32,
                      b.scales.trn(), F.ScalingType.BlockWise1x32, output_dtype=torch.float32)
    assert torch.equal(out.cpu(), ref)


def test_tensorwise_fp8_scaled_mm_matches_cpu():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(32, 64, generator=g).to(E4M3)
    b = torch.randn(16, 64, generator=g).to(E4M3).t()
    sa, sb = torch.tensor(0.5), torch.tensor(2.0)
    cpu = torch._scaled_mm(a, b, sa, sb, out_dtype=torch.float32)
    trn = torch._scaled_mm(a.trn(), b.trn(), sa.trn(), sb.trn(), out_dtype=torch.float32)
    torch.testing.assert_close(trn.cpu(), cpu, rtol=1e-6, atol=1e-5)


def test_swizzled_scales_are_refused_with_a_reason():
    a, b, _ = operands(E4M3)
    with pytest.raises(ValueError, match="swizzled"):
        F.scaled_mm(a.elements.trn(), b.elements.trn().t(), a.scales.trn(), F.ScalingType.BlockWise1x32,
                    b.scales.trn(), F.ScalingType.BlockWise1x32, swizzle_a=F.SwizzleType.SWIZZLE_32_4_4,
                    swizzle_b=F.SwizzleType.SWIZZLE_32_4_4, output_dtype=torch.float32)


def test_nvfp4_compute_is_refused():
    a, b, _ = operands(E4M3)
    with pytest.raises(TypeError, match="NVFP4"):
        F.scaled_mm(a.elements.trn(), b.elements.trn().t(), a.scales.trn(), F.ScalingType.BlockWise1x16,
                    b.scales.trn(), F.ScalingType.BlockWise1x16, output_dtype=torch.float32)


def test_wrong_scale_shape_is_a_clear_error():
    a, b, _ = operands(E4M3)
    with pytest.raises(ValueError, match="E8M0 scales"):
        torch._scaled_mm(a.elements.trn(), b.elements.trn().t(), a.scales.trn()[:, :2], b.scales.trn(),
                         out_dtype=torch.float32)


def test_mixed_devices_are_refused():
    a, b, _ = operands(E4M3)
    with pytest.raises(RuntimeError, match="same device"):
        torch._scaled_mm(a.elements.trn(), b.elements.trn().t(), a.scales, b.scales.trn(), out_dtype=torch.float32)


def test_mx_mm_on_trn_equals_cpu():
    a, b, ref = operands(E4M3)
    out = mx_mm(a.to("trn"), b.to("trn"))
    assert torch.equal(out.cpu(), ref)


def test_grouped_mm_bf16_and_mx_on_trn():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(96, 64, generator=g)
    w = torch.randn(3, 32, 64, generator=g)  # (G, N, K)
    offs = torch.tensor([32, 64, 96], dtype=torch.int32)
    cpu = torch._grouped_mm(x.bfloat16(), w.bfloat16().transpose(-2, -1), offs=offs)
    trn = torch._grouped_mm(x.bfloat16().trn(), w.bfloat16().transpose(-2, -1).trn(), offs=offs.trn())
    assert torch.equal(trn.cpu(), cpu)
    xm, wm = to_mx(x, E4M3), to_mx(w, E4M3)
    assert torch.equal(mx_grouped_mm(xm.to("trn"), wm.to("trn"), offs.trn()).cpu(), mx_grouped_mm(xm, wm, offs))


def test_mx_matmul_is_charged_once_at_the_mx_rate():
    a, b, _ = operands(E4M3, m=256, n=256, k=256)
    _, records = raw_records(lambda: mx_mm(a.to("trn"), b.to("trn")))
    tensor_ops = [r for r in records if r[4] == 0]
    assert [r[0] for r in tensor_ops] == ["torch_trn3::mx_mm"]   # dequantize+fp32 mm are not charged
    expected = matmul_cost(torch_trn3.machine.logical, 256, 256, 256, dtype="mxfp8")
    assert tensor_ops[0][6] - tensor_ops[0][5] == pytest.approx(expected.time_s)


def test_sparse_mm_values_equal_dense_of_pruned_and_are_charged_sparse():
    g = torch.Generator().manual_seed(3)
    a, w = torch.randn(64, 128, generator=g), torch.randn(32, 128, generator=g)
    sp = prune_structured(w.trn(), 4, 8)
    out, records = raw_records(lambda: sparse_mm(a.trn(), sp))
    assert torch.equal(out.cpu(), a @ sp.to_dense().cpu().t())
    assert [r[0] for r in records if r[4] == 0] == ["torch_trn3::sparse_mm"]


def test_sparse_mx_compute_is_four_times_dense_mx():
    """The chip facts: structured-sparse MXFP8 4:8 and 4:16 give 4x dense FLOPs.
    (Compute-bound shape; the device charges sparse_mm with these costs.)"""
    dev = torch_trn3.machine.logical
    dense = matmul_cost(dev, 4096, 4096, 16384, dtype="mxfp8")
    for pattern in ("4:8", "4:16"):
        sparse = matmul_cost(dev, 4096, 4096, 16384, dtype="mxfp8", sparsity=pattern)
        assert dense.compute_s / sparse.compute_s == pytest.approx(4.0)


def test_w4a8_weights_cost_half_the_hbm_bytes_of_mxfp8():
    g = torch.Generator().manual_seed(4)
    x, w = torch.randn(16, 256, generator=g), torch.randn(512, 256, generator=g)
    w4 = to_mx(w, FP4).to("trn")
    out, records = raw_records(lambda: w4a8_linear(x.trn(), w4))
    (rec,) = [r for r in records if r[0] == "torch_trn3::w4a8_linear"]
    mxfp8 = matmul_cost(torch_trn3.machine.logical, 16, 512, 256, dtype="mxfp8")
    from torch_trn3.hw.specs import dtype_bytes
    weight_saving = 512 * 256 * (dtype_bytes("mxfp8") - dtype_bytes("mxfp4"))
    assert rec[8] == pytest.approx(mxfp8.hbm_bytes - weight_saving)
    assert weight_saving == pytest.approx(512 * 256 * 0.5)  # 4-bit instead of 8-bit elements
    assert torch.equal(out.cpu(), w4a8_linear(x, to_mx(w, FP4)))


def test_nvfp4_is_storage_only_on_trn():
    w = torch.randn(32, 64)
    nv_trn = to_nvfp4(w.trn())
    with pytest.raises(TypeError, match="NVFP4"):
        mx_mm(to_mx(torch.randn(8, 64).trn(), E4M3), nv_trn)
    x = torch.randn(8, 64)   # software dequantize path: NVFP4 storage, MXFP8 compute
    assert torch.equal(w4a8_linear(x.trn(), nv_trn).cpu(), w4a8_linear(x, to_nvfp4(w)))


def test_scaled_grouped_mm_mx_on_trn_equals_reference():
    """MoE experts in MXFP8: a (M, K) x b (G, K, N) with group ends over M."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(96, 64, generator=g)
    w = torch.randn(3, 32, 64, generator=g)  # experts as (G, N, K)
    offs = torch.tensor([32, 64, 96], dtype=torch.int32)
    xm, wm = to_mx(x, E4M3), to_mx(w, E4M3)
    expected = mx_grouped_mm(xm, wm, offs)  # dequantize, fp32 grouped matmul
    out = torch._scaled_grouped_mm(xm.elements.trn(), wm.elements.trn().transpose(-2, -1), xm.scales.trn(),
                                   wm.scales.trn(), offs=offs.trn(), out_dtype=torch.float32)
    assert torch.equal(out.cpu(), expected)


def test_scaled_grouped_mm_rowwise_fp8_on_trn():
    g = torch.Generator().manual_seed(6)
    a = torch.randn(64, 32, generator=g).to(E4M3)
    b = torch.randn(2, 32, 16, generator=g).to(E4M3)
    sa, sb = torch.rand(64, generator=g) + 0.5, torch.rand(2, 16, generator=g) + 0.5
    offs = torch.tensor([24, 64], dtype=torch.int32)
    out = torch._scaled_grouped_mm(a.trn(), b.trn(), sa.trn(), sb.trn(), offs=offs.trn(), out_dtype=torch.float32)
    # By hand: rows of group g use expert g, each product scaled by its row and column scale.
    ref = torch.cat([(a[:24].float() * sa[:24, None]) @ (b[0].float() * sb[0]),
                     (a[24:].float() * sa[24:, None]) @ (b[1].float() * sb[1])])
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-6, atol=1e-5)
