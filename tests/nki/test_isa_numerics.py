"""nki.isa numerics against independent CPU references (explicit rounding, torch_trn3.mx)."""
import pytest
import torch

import torch_trn3
import torch_trn3.nki as nki
import torch_trn3.nki.isa as nisa
import torch_trn3.nki.language as nl
from torch_trn3.mx import to_mx
from torch_trn3.mx.scales import e8m0_to_float

from kernels import elementwise, matmul

DEV = torch_trn3.DEVICE_NAME


def test_bf16_matmul_is_fp32_accumulation_of_bf16_products_rounded_once():
    torch.manual_seed(0)
    K, M, N = 256, 128, 512
    a = torch.randn(K, M).bfloat16()
    b = torch.randn(K, N).bfloat16()
    out = matmul(a.to(DEV), b.to(DEV)).cpu()
    assert out.dtype == torch.bfloat16
    # Reference: exact products, float64 sum, one rounding to bf16. FP32
    # accumulation differs from it by at most a few fp32 ulps before rounding.
    ref64 = a.double().t() @ b.double()
    assert (out.double() - ref64).abs().max() <= (ref64.abs() * 2**-8).max() + 1e-6
    torch.testing.assert_close(out, (a.float().t() @ b.float()).bfloat16(), rtol=2**-7, atol=1e-3)


def test_fp32_matmul_matches_cpu():
    torch.manual_seed(1)
    a, b = torch.randn(128, 128), torch.randn(128, 256)
    torch.testing.assert_close(matmul(a.to(DEV), b.to(DEV)).cpu(), a.t() @ b, rtol=1e-5, atol=1e-4)


@nki.jit
def _accumulate_modes(lhsT, rhs, mode):
    out = nl.ndarray((lhsT.shape[1], rhs.shape[1]), nl.float32, buffer=nl.shared_hbm)
    a, b = nl.load(lhsT), nl.load(rhs)
    acc = nl.ndarray(out.shape, nl.float32, buffer=nl.psum)
    nisa.nc_matmul(acc, a, b)                       # first write: overwrite
    nisa.nc_matmul(acc, a, b, accumulate=mode)      # None/True: add, False: overwrite
    o = nl.ndarray(out.shape, nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(o, acc)
    nisa.dma_copy(dst=out, src=o)
    return out


@pytest.mark.parametrize("mode,factor", [(None, 2.0), (True, 2.0), (False, 1.0)])
def test_psum_accumulate_modes(mode, factor):
    a, b = torch.randn(32, 16), torch.randn(32, 8)
    out = _accumulate_modes(a.to(DEV), b.to(DEV), mode).cpu()
    torch.testing.assert_close(out, factor * (a.t() @ b), rtol=1e-5, atol=1e-5)


def test_tensor_tensor_rounds_to_dst_dtype():
    a, b = torch.randn(64, 32).bfloat16(), torch.randn(64, 32).bfloat16()
    out = elementwise(a.to(DEV), b.to(DEV), nl.add).cpu()
    assert torch.equal(out, (a.float() + b.float()).bfloat16())
    out = elementwise(a.to(DEV), b.to(DEV), nl.maximum).cpu()
    assert torch.equal(out, torch.maximum(a, b))


@nki.jit
def _softmax_rows(x):
    """exp(x - rowmax) with the row sum from the activation's reduce registers."""
    P, F = x.shape
    out = nl.ndarray((P, F), nl.float32, buffer=nl.shared_hbm)
    sums = nl.ndarray((P, 1), nl.float32, buffer=nl.shared_hbm)
    t = nl.load(x)
    mx = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(mx, nl.maximum, t, axis=1, negate=True)
    e = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
    s = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
    nisa.activation(e, nl.exp, t, bias=mx, scale=1.0, reduce_op=nl.add, reduce_res=s,
                    reduce_cmd=nisa.reduce_cmd.reset_reduce)
    r = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
    nisa.activation(r, nl.reciprocal, s)
    y = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(y, e, nl.multiply, r)
    nisa.dma_copy(dst=out, src=y)
    nisa.dma_copy(dst=sums, src=s)
    return out, sums


def test_activation_bias_scale_and_reduce_make_softmax():
    x = torch.randn(128, 100)
    y, s = _softmax_rows(x.to(DEV))
    e = torch.exp(x - x.amax(1, keepdim=True))
    torch.testing.assert_close(s.cpu(), e.sum(1, keepdim=True), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y.cpu(), torch.softmax(x, dim=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,ref", [(nl.gelu, torch.nn.functional.gelu), (nl.silu, torch.nn.functional.silu),
                                    (nl.tanh, torch.tanh), (nl.sigmoid, torch.sigmoid)])
def test_activation_functions_with_scale(op, ref):
    @nki.jit
    def act(x):
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        t = nl.load(x)
        y = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
        nisa.activation(y, op, t, scale=0.5, bias=0.25)
        nisa.dma_copy(dst=out, src=y)
        return out

    x = torch.randn(16, 64).bfloat16()
    assert torch.equal(act(x.to(DEV)).cpu(), ref(x.float() * 0.5 + 0.25).bfloat16())


def test_tensor_scalar_two_ops_and_reverse():
    @nki.jit
    def k(x):
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        t = nl.load(x)
        y = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
        nisa.tensor_scalar(y, t, nl.subtract, 3.0, reverse0=True, op1=nl.multiply, operand1=2.0)
        nisa.dma_copy(dst=out, src=y)
        return out

    x = torch.randn(8, 8)
    torch.testing.assert_close(k(x.to(DEV)).cpu(), (3.0 - x) * 2.0)


def test_nc_transpose_tensor_and_vector_engines():
    @nki.jit
    def tr(x):
        P, F = x.shape
        out = nl.ndarray((F, P), x.dtype, buffer=nl.shared_hbm)
        out2 = nl.ndarray((32, 32), x.dtype, buffer=nl.shared_hbm)
        t = nl.load(x)
        pt = nl.ndarray((F, P), nl.float32, buffer=nl.psum)
        nisa.nc_transpose(pt, t)
        o = nl.ndarray((F, P), x.dtype, buffer=nl.sbuf)
        nisa.tensor_copy(o, pt)
        nisa.dma_copy(dst=out, src=o)
        v = nl.ndarray((32, 32), x.dtype, buffer=nl.sbuf)
        nisa.nc_transpose(v, t[0:32, 0:32], engine=nisa.engine.vector)
        nisa.dma_copy(dst=out2, src=v)
        return out, out2

    x = torch.randn(128, 64)
    o, o2 = tr(x.to(DEV))
    assert torch.equal(o.cpu(), x.t()) and torch.equal(o2.cpu(), x[:32, :32].t())


def test_memset_iota_and_bn_stats_aggr():
    @nki.jit
    def stats(x):
        P, F = x.shape
        mv = nl.ndarray((P, 2), nl.float32, buffer=nl.shared_hbm)
        idx = nl.ndarray((P, 4), nl.float32, buffer=nl.shared_hbm)
        t = nl.load(x)
        st = nl.ndarray((P, 6), nl.float32, buffer=nl.sbuf)
        half = F // 2
        nisa.bn_stats(st[:, 0:3], t[:, 0:half])
        nisa.bn_stats(st[:, 3:6], t[:, half:F])
        agg = nl.ndarray((P, 2), nl.float32, buffer=nl.sbuf)
        nisa.bn_aggr(agg, st)
        nisa.dma_copy(dst=mv, src=agg)
        i = nl.ndarray((P, 4), nl.float32, buffer=nl.sbuf)
        nisa.iota(i, offset=1, partition_multiplier=10, free_multipliers=[1])
        nisa.dma_copy(dst=idx, src=i)
        return mv, idx

    x = torch.randn(64, 200)
    mv, idx = stats(x.to(DEV))
    var, mean = torch.var_mean(x, dim=1, unbiased=False)
    torch.testing.assert_close(mv.cpu(), torch.stack([mean, var], 1), rtol=1e-5, atol=1e-5)
    assert torch.equal(idx.cpu(), 1 + 10 * torch.arange(64.).unsqueeze(1) + torch.arange(4.))


@nki.jit
def _mx_matmul(aT, b):
    """Quantize both operands with quantize_mx, multiply with nc_matmul_mx."""
    P, F = aT.shape   # contraction: 4 * P ... laid out as [P, 4 * M]
    M = F // 4
    N = b.shape[1] // 4
    out = nl.ndarray((M, N), nl.float32, buffer=nl.shared_hbm)
    qa = nl.ndarray((P, M), nl.float8_e4m3fn_x4, buffer=nl.sbuf)
    sa = nl.ndarray((P // 8, M), nl.float8_e8m0fnu, buffer=nl.sbuf)
    qb = nl.ndarray((P, N), nl.float8_e4m3fn_x4, buffer=nl.sbuf)
    sb = nl.ndarray((P // 8, N), nl.float8_e8m0fnu, buffer=nl.sbuf)
    nisa.quantize_mx(qa, nl.load(aT), sa)
    nisa.quantize_mx(qb, nl.load(b), sb)
    acc = nl.ndarray((M, N), nl.float32, buffer=nl.psum)
    nisa.nc_matmul_mx(acc, qa, qb, sa, sb)
    o = nl.ndarray((M, N), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(o, acc)
    nisa.dma_copy(dst=out, src=o)
    return out


def _as_blocks(x, P, M):
    """[P, 4 M] quantize_mx layout -> [K = 4 P, M] logical operand (k = 4 p + j)."""
    return x.reshape(P, M, 4).permute(0, 2, 1).reshape(4 * P, M)


def test_quantize_mx_and_nc_matmul_mx_match_torch_trn3_mx():
    torch.manual_seed(2)
    P, M, N = 128, 32, 64
    aT = torch.randn(P, 4 * M).bfloat16()
    b = torch.randn(P, 4 * N).bfloat16()
    out = _mx_matmul(aT.to(DEV), b.to(DEV)).cpu()
    # Reference: the same 32-element groups (8 partitions x 4) through torch_trn3.mx.
    def deq(x, cols):
        blocks = x.reshape(P // 8, 8, cols, 4).permute(0, 2, 1, 3).reshape(P // 8, cols, 32)
        mx = to_mx(blocks.contiguous(), torch.float8_e4m3fn, block_size=32, scale_mode="trn3")
        v = mx.elements.float() * e8m0_to_float(mx.scales)
        v = v.reshape(P // 8, cols, 8, 4).permute(0, 2, 1, 3).reshape(P, cols * 4)
        return _as_blocks(v, P, cols)
    ref = deq(aT, M).double().t() @ deq(b, N).double()
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)
    # And MXFP8 is close to the bf16 product (a sanity bound, not the reference).
    exact = _as_blocks(aT.float(), P, M).t() @ _as_blocks(b.float(), P, N)
    assert (out - exact).abs().max() < 0.1 * exact.abs().max()
