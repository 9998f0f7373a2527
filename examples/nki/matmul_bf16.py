"""Tiled BF16 matmul as an NKI kernel on one NeuronCore: out = lhsT^T @ rhs.

    lhsT (K, M), rhs (K, N) in HBM, bf16  ->  out (M, N) bf16

The layout is the Tensor Engine's: K (the contraction) on the partitions of
both operands. Each ``nc_matmul`` multiplies a stationary (128, 128) lhsT tile
by a moving (128, 512) rhs tile into a (128, 512) fp32 PSUM tile, and the K
loop accumulates there; the fp32 sum is rounded to bf16 once, on the copy out
of PSUM.

What makes it fast is reuse and overlap, not the inner loop: a block of
BM=2048 columns of lhsT (all of K: 128 KiB per partition) stays in SBUF while
every (K, 512) column block of rhs streams past it (snake order: consecutive
lhsT blocks share an rhs block), so HBM traffic is K*M + (M/BM)*K*N + M*N
elements instead of a reload per output tile; the rhs DMAs of the next block
are issued before the matmuls of the current one (a two-stage software
pipeline), and within a block K is the outer loop over 8 PSUM accumulators,
so the Tensor Engine starts as soon as the first pair of tiles has arrived. At 4096^3 the kernel is
Tensor-Engine bound; the script prints its modelled time, its fraction of
one core's BF16 Tensor Engine peak and the kernel report. Run:

    python examples/nki/matmul_bf16.py              # 4096 x 4096 x 4096
    python examples/nki/matmul_bf16.py --size 1024
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from torch_trn3 import nki
import torch_trn3.nki.isa as nisa
import torch_trn3.nki.language as nl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import compare, modelled_ms  # noqa: E402

TK = nl.tile_size.pmax                   # 128: contraction per instruction (partitions)
TM = nl.tile_size.gemm_stationary_fmax   # 128: stationary free size
TN = nl.tile_size.gemm_moving_fmax       # 512: moving free size (one PSUM bank of fp32)
GROUP_M = 8 * TM                         # 1024: lhsT columns per group of 8 PSUM accumulators
BLOCK_M = 2 * GROUP_M                    # 2048: lhsT columns kept in SBUF while rhs streams


def _load(src, rows, cols, dtype):
    t = nl.ndarray((rows, cols), dtype=dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=src)
    return t


def _matmul_group(a_tiles, b_tiles, out, m0, n0):
    """out[m0:m0+GROUP_M, n0:n0+TN] = sum_k a_tiles[k][:, m-tile]^T @ b_tiles[k].

    K is the outer loop over 8 PSUM accumulators (all 8 banks), so each newly
    arrived pair of (a, b) tiles feeds every accumulator: the Tensor Engine
    starts on the first K chunk instead of waiting for all of them. The
    accumulators are this function's locals, released when it returns.
    """
    n_m = a_tiles[0].shape[1] // TM
    accs = [nl.ndarray((TM, TN), dtype=nl.float32, buffer=nl.psum) for _ in range(n_m)]
    for kt in nl.affine_range(len(a_tiles)):
        for mt in nl.affine_range(n_m):
            nisa.nc_matmul(dst=accs[mt], stationary=a_tiles[kt][:, mt * TM:(mt + 1) * TM],
                           moving=b_tiles[kt])
    for mt in nl.affine_range(n_m):
        res = nl.ndarray((TM, TN), dtype=out.dtype, buffer=nl.sbuf)
        nisa.tensor_copy(dst=res, src=accs[mt])
        nisa.dma_copy(dst=out[m0 + mt * TM:m0 + (mt + 1) * TM, n0:n0 + TN], src=res)


@nki.jit
def matmul_bf16_kernel(lhsT, rhs):
    """lhsT (K, M) @ rhs (K, N) -> (M, N) in lhsT's dtype; K a multiple of 128,
    M of 1024, N of 512."""
    k_dim, m_dim = lhsT.shape
    _, n_dim = rhs.shape
    out = nl.ndarray((m_dim, n_dim), dtype=lhsT.dtype, buffer=nl.shared_hbm)
    block_m = min(BLOCK_M, m_dim)
    n_groups, n_k, n_n = block_m // GROUP_M, k_dim // TK, n_dim // TN
    # Blocks (m0, n0) in snake order: the last rhs block of one lhsT block is the
    # first of the next, so a new lhsT block needs no rhs DMA.
    blocks = []
    for mb in range(m_dim // block_m):
        cols = range(n_n) if mb % 2 == 0 else reversed(range(n_n))
        blocks += [(mb * block_m, nb * TN) for nb in cols]

    def a_src(m0, g, kt):
        c0 = m0 + g * GROUP_M
        return lhsT[kt * TK:(kt + 1) * TK, c0:c0 + GROUP_M]

    def b_load(n0):
        return [_load(rhs[kt * TK:(kt + 1) * TK, n0:n0 + TN], TK, TN, rhs.dtype)
                for kt in nl.affine_range(n_k)]

    # First block: group 0 of lhsT interleaved with rhs per K chunk, then group 1.
    m0, n0 = blocks[0]
    a = [[None] * n_k for _ in range(n_groups)]
    b_cur = []
    for kt in nl.affine_range(n_k):
        a[0][kt] = _load(a_src(m0, 0, kt), TK, GROUP_M, lhsT.dtype)
        b_cur.append(_load(rhs[kt * TK:(kt + 1) * TK, n0:n0 + TN], TK, TN, rhs.dtype))
    for g in nl.affine_range(1, n_groups):
        for kt in nl.affine_range(n_k):
            a[g][kt] = _load(a_src(m0, g, kt), TK, GROUP_M, lhsT.dtype)

    # Software pipeline: the rhs DMAs of block i+1 are issued before the matmuls
    # of block i, so they run while the Tensor Engine works (DMAs run in order).
    for i in nl.sequential_range(len(blocks)):
        m0, n0 = blocks[i]
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        b_next = b_load(nxt[1]) if nxt is not None and nxt[0] == m0 else b_cur
        for g in nl.affine_range(n_groups):
            _matmul_group(a[g], b_cur, out, m0 + g * GROUP_M, n0)
        if nxt is not None and nxt[0] != m0:
            # New lhsT block: each tile replaces (and frees) the one it succeeds.
            for g in nl.affine_range(n_groups):
                for kt in nl.affine_range(n_k):
                    a[g][kt] = _load(a_src(nxt[0], g, kt), TK, GROUP_M, lhsT.dtype)
        b_cur = b_next
    return out


def matmul_reference(lhsT: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """The same computation as a plain torch op."""
    return lhsT.t() @ rhs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="M = N = K")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch eager/compiled timing")
    args = parser.parse_args(argv)
    s = args.size
    torch.manual_seed(0)
    lhsT = torch.randn(s, s, dtype=torch.bfloat16).to("trn")
    rhs = torch.randn(s, s, dtype=torch.bfloat16).to("trn")
    out, nki_ms = modelled_ms(matmul_bf16_kernel, lhsT, rhs)
    report = nki.last_kernel_report()
    flops = 2.0 * s ** 3
    fraction = report.tensor_engine_peak_fraction
    print(report)
    print(f"matmul {s}x{s}x{s} bf16 on one NeuronCore: {nki_ms * 1e3:.1f} us modelled, "
          f"{flops / (nki_ms * 1e-3) / 1e12:.1f} TFLOP/s = {100 * fraction:.1f}% of the "
          f"{report.peak_bf16_flops / 1e12:.1f} TFLOP/s BF16 Tensor Engine peak")
    # numerics on a slice (a full fp32 reference at 4096^3 is the slow part on the host)
    rows = min(s, 256)
    ref = (lhsT[:, :rows].cpu().float().t() @ rhs.cpu().float()).to(torch.bfloat16)
    got = out[:rows].cpu()
    err = ((got.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
    print(f"max |NKI - fp32 reference| / max |reference| over {rows} rows = {err:.2e}")
    result = {"ms": nki_ms, "fraction": fraction, "err": err, "report": report}
    if not args.no_torch:
        cmp = compare(f"matmul {s}^3", matmul_bf16_kernel, matmul_reference, lhsT, rhs,
                      nki_ms=nki_ms)
        print(cmp.report() + "  (torch ops use every core of the logical device)")
        result["comparison"] = cmp
    return result


if __name__ == "__main__":
    main()
