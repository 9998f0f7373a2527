"""MXFP8 matmul as an NKI kernel on trn: quantize_mx on chip, then nc_matmul_mx.

    out (M, N) = A (M, K) @ B^T, B given as (N, K); bf16 in, MXFP8 compute, bf16 out

Trainium3's Tensor Engine multiplies MXFP8 operands (FP8 E4M3 elements, one
E8M0 scale per 32 contraction elements) at 4x the BF16 rate, and its Vector
Engine quantizes BF16 tiles to that format (``nisa.quantize_mx``; the scale
is one power of two above the OCP rule so no element saturates). An MX tile
holds 4 contraction elements per partition (``nl.float8_e4m3fn_x4``), so one
``nc_matmul_mx`` contracts 4 x 128 = 512 elements; a scale group is 8
partitions x 4 elements, i.e. 32 consecutive k.

The operands arrive in that layout (``to_mx_layout``: row c*128 + p, column
4m + j holds A[m, 512c + 4p + j]), which a model keeps its weights in. The
kernel quantizes every operand tile once into SBUF, then runs the tiled
matmul with FP32 accumulation in PSUM over the 512-element K chunks.
Numerics equal ``torch_trn3.mx`` (``to_mx(..., scale_mode="trn3")`` +
``mx_mm``): the same 32-element groups, the same scales. Run:

    python examples/nki/mxfp8_matmul.py
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from torch_trn3 import nki
import torch_trn3.nki.isa as nisa
import torch_trn3.nki.language as nl
from torch_trn3.mx import mx_mm, to_mx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import compare, modelled_ms  # noqa: E402

P = nl.tile_size.pmax                   # 128 partitions
PACK = 4                                # contraction elements per partition of an MX tile
KC = PACK * P                           # 512: contraction per nc_matmul_mx
TM = nl.tile_size.gemm_stationary_fmax  # 128
TN = nl.tile_size.gemm_moving_fmax      # 512
SCALE_ROWS = P // 8                     # one scale per 8 partitions x 4 elements


def to_mx_layout(x: torch.Tensor) -> torch.Tensor:
    """(rows, K) -> (K/4, 4*rows): the quantize_mx / nc_matmul_mx operand layout."""
    rows, k = x.shape
    return (x.reshape(rows, k // KC, P, PACK).permute(1, 2, 0, 3)
            .reshape(k // PACK, PACK * rows).contiguous())


def _quantized_tiles(src, cols, tile_cols):
    """quantize_mx of every (128, 4*tile_cols) tile of ``src`` (K/4, 4*cols):
    [(data, scale)] indexed [k chunk][column tile]."""
    tiles = []
    for c in nl.affine_range(src.shape[0] // P):
        row = []
        for t in nl.affine_range(cols // tile_cols):
            raw = nl.ndarray((P, PACK * tile_cols), dtype=src.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=raw, src=src[c * P:(c + 1) * P,
                                           PACK * t * tile_cols:PACK * (t + 1) * tile_cols])
            q = nl.ndarray((P, tile_cols), dtype=nl.float8_e4m3fn_x4, buffer=nl.sbuf)
            s = nl.ndarray((SCALE_ROWS, tile_cols), dtype=nl.float8_e8m0fnu, buffer=nl.sbuf)
            nisa.quantize_mx(dst=q, src=raw, dst_scale=s)
            row.append((q, s))
        tiles.append(row)
    return tiles


@nki.jit
def mxfp8_matmul_kernel(a_mx, b_mx):
    """a_mx (K/4, 4M), b_mx (K/4, 4N) bf16 in the MX layout -> A @ B^T (M, N) bf16."""
    kp, m4 = a_mx.shape
    _, n4 = b_mx.shape
    m_dim, n_dim = m4 // PACK, n4 // PACK
    out = nl.ndarray((m_dim, n_dim), dtype=a_mx.dtype, buffer=nl.shared_hbm)
    a_q = _quantized_tiles(a_mx, m_dim, TM)
    b_q = _quantized_tiles(b_mx, n_dim, min(TN, n_dim))
    tn = min(TN, n_dim)
    for mt in nl.affine_range(m_dim // TM):
        for nt in nl.affine_range(n_dim // tn):
            acc = nl.ndarray((TM, tn), dtype=nl.float32, buffer=nl.psum)
            for c in nl.affine_range(kp // P):
                (qa, sa), (qb, sb) = a_q[c][mt], b_q[c][nt]
                nisa.nc_matmul_mx(dst=acc, stationary=qa, moving=qb, stationary_scale=sa,
                                  moving_scale=sb)
            res = nl.ndarray((TM, tn), dtype=out.dtype, buffer=nl.sbuf)
            nisa.tensor_copy(dst=res, src=acc)
            nisa.dma_copy(dst=out[mt * TM:(mt + 1) * TM, nt * tn:(nt + 1) * tn], src=res)
    return out


def mxfp8_matmul(a_mx, b_mx):
    return mxfp8_matmul_kernel(a_mx, b_mx)


def mx_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same computation as plain ops: torch_trn3.mx quantization + MX matmul."""
    qa = to_mx(a, torch.float8_e4m3fn, block_size=32, scale_mode="trn3")
    qb = to_mx(b, torch.float8_e4m3fn, block_size=32, scale_mode="trn3")
    return mx_mm(qa, qb, out_dtype=torch.bfloat16)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--m", type=int, default=1024)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--k", type=int, default=2048)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    a = torch.randn(args.m, args.k, dtype=torch.bfloat16).to("trn")
    b = torch.randn(args.n, args.k, dtype=torch.bfloat16).to("trn")
    a_mx, b_mx = to_mx_layout(a), to_mx_layout(b)
    out, nki_ms = modelled_ms(mxfp8_matmul, a_mx, b_mx)
    report = nki.last_kernel_report()
    print(report)
    ref = mx_reference(a, b).cpu().float()
    got = out.cpu().float()
    err = ((got - ref).abs().max() / ref.abs().max()).item()
    exact = a.cpu().float() @ b.cpu().float().t()
    vs_bf16 = ((got - exact).abs().max() / exact.abs().max()).item()
    flops = 2.0 * args.m * args.n * args.k
    print(f"mxfp8 matmul {args.m}x{args.n}x{args.k}: {nki_ms * 1e3:.1f} us modelled "
          f"({flops / (nki_ms * 1e-3) / 1e12:.1f} TFLOP/s); max rel |NKI - torch_trn3.mx| = {err:.2e}, "
          f"max rel |NKI - fp32 product| = {vs_bf16:.2e}")
    cmp = compare(f"mxfp8 matmul {args.m}x{args.n}x{args.k}", mxfp8_matmul, mx_reference, a, b,
                  nki_ms=nki_ms)
    print(cmp.report() + "  (torch: to_mx + mx_mm)")
    bf16 = compare(f"bf16 matmul {args.m}x{args.n}x{args.k}", None, lambda x, y: x @ y.t(), a, b,
                   nki_ms=nki_ms)
    print(bf16.report() + "  (torch: the bf16 matmul MX replaces)")
    return {"err": err, "vs_exact": vs_bf16, "comparison": cmp, "report": report}


if __name__ == "__main__":
    main()
