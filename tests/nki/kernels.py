"""Small NKI kernels the tests share (written as a user would, against the public API)."""
import torch_trn3.nki as nki
import torch_trn3.nki.isa as nisa
import torch_trn3.nki.language as nl


@nki.jit
def matmul(lhsT, rhs):
    """out[M, N] = lhsT.T @ rhs, tiled 128 x 128 x 512, FP32 PSUM, output in lhsT's dtype."""
    K, M = lhsT.shape
    _, N = rhs.shape
    TK, TM = nl.tile_size.pmax, nl.tile_size.gemm_stationary_fmax
    TN = min(N, nl.tile_size.gemm_moving_fmax)
    out = nl.ndarray((M, N), lhsT.dtype, buffer=nl.shared_hbm)
    for m in nl.affine_range(M // TM):
        for n in nl.affine_range(N // TN):
            acc = nl.ndarray((TM, TN), nl.float32, buffer=nl.psum)
            for k in nl.affine_range(K // TK):
                a = nl.ndarray((TK, TM), lhsT.dtype, buffer=nl.sbuf)
                b = nl.ndarray((TK, TN), rhs.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=a, src=lhsT[k * TK:(k + 1) * TK, m * TM:(m + 1) * TM])
                nisa.dma_copy(dst=b, src=rhs[k * TK:(k + 1) * TK, n * TN:(n + 1) * TN])
                nisa.nc_matmul(acc, a, b)
            o = nl.ndarray((TM, TN), out.dtype, buffer=nl.sbuf)
            nisa.tensor_copy(o, acc)
            nisa.dma_copy(dst=out[m * TM:(m + 1) * TM, n * TN:(n + 1) * TN], src=o)
    return out


@nki.jit
def elementwise(a, b, op):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    ta = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
    tb = nl.ndarray(b.shape, b.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ta, src=a)
    nisa.dma_copy(dst=tb, src=b)
    tc = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(tc, ta, tb, op=op)
    nisa.dma_copy(dst=out, src=tc)
    return out
