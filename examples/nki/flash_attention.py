"""Flash-attention forward as an NKI kernel on trn.

    out = softmax(q @ k^T * scale) @ v        q, k, v: (heads, seq, d), d <= 128

Per head, K is transposed once into SBUF (d on the partitions: the matmul
contraction) and V kept as 128-row tiles. Per 128-query tile the kernel walks
the keys in blocks of 512 with the online softmax, never materialising the
(seq, seq) score matrix:

    s     = qT^T @ kT[:, block]                   Tensor Engine -> PSUM (128, 512) fp32
    m'    = max(m, rowmax(s))                     Vector Engine (kept negated: -m' is exp's bias)
    p     = exp(s - m'), rowsum(p)                one Scalar Engine activation (bias=-m', reduce)
    alpha = exp(m - m')
    l     = l * alpha + rowsum(p)
    o     = o * alpha + p @ v[block]              p^T by nc_transpose (PSUM->SBUF copies split
                                                  Vector/Scalar), then 4 accumulating matmuls

and finally out = o / l. Scores and probabilities stay on chip; HBM traffic
is q, k, v in and out once, so the kernel is Tensor-Engine bound. Run:

    python examples/nki/flash_attention.py
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

from torch_trn3 import nki
import torch_trn3.nki.isa as nisa
import torch_trn3.nki.language as nl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import compare, modelled_ms  # noqa: E402

P = nl.tile_size.pmax        # 128: query tile, key sub-tile, max head dim
KB = nl.tile_size.psum_fmax  # 512: keys per block (one PSUM bank of fp32 scores)


QUERY_GROUP = 4              # query tiles interleaved stage by stage per key block


def _start_query_tile(q, h, i, scale):
    """Load query tile i of head h, transposed to (d, 128) with the softmax scale folded in."""
    d = q.shape[2]
    qt = nl.ndarray((P, d), dtype=q.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=qt, src=q[h, i * P:(i + 1) * P, :])
    tq = nl.ndarray((d, P), dtype=q.dtype, buffer=nl.psum)
    nisa.nc_transpose(dst=tq, data=qt)
    qT = nl.ndarray((d, P), dtype=q.dtype, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=qT, data=tq, op0=nl.multiply, operand0=scale)
    return {"i": i, "qT": qT, "neg_m": None,   # -(running row max): exp's bias as it is
            "l": nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf),
            "o": nl.ndarray((P, d), dtype=nl.float32, buffer=nl.sbuf)}


def _scores(st, b, kT):
    """Stage 1 (Tensor Engine): s = (q scale) k^T for key block b, in PSUM."""
    st["s"] = nl.ndarray((P, KB), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=st["s"], stationary=st["qT"], moving=kT[:, b * KB:(b + 1) * KB])


def _probabilities(st, b, dtype):
    """Stage 2 (Vector, then Scalar Engine): running max, p = exp(s - max) and its row sum."""
    neg_block_max = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=neg_block_max, op=nl.maximum, data=st["s"], axis=1, negate=True)
    if b == 0:
        neg_m_new = neg_block_max
    else:
        neg_m_new = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=neg_m_new, data1=st["neg_m"], data2=neg_block_max, op=nl.minimum)
    st["p"] = nl.ndarray((P, KB), dtype=dtype, buffer=nl.sbuf)
    st["rowsum"] = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=st["p"], op=nl.exp, data=st["s"], bias=neg_m_new, reduce_op=nl.add,
                    reduce_res=st["rowsum"], reduce_cmd=nisa.reduce_cmd.reset_reduce)
    st["s"] = None
    st["neg_m_new"] = neg_m_new


def _weighted_values(st, b, v_tiles, dtype):
    """Stage 3 (Tensor Engine, copies on Vector/Scalar): pv = p @ v[block] via p^T."""
    d = st["o"].shape[1]
    st["pv"] = nl.ndarray((P, d), dtype=nl.float32, buffer=nl.psum)
    sub = KB // P
    for c in nl.static_range(sub):
        tp = nl.ndarray((P, P), dtype=dtype, buffer=nl.psum)
        nisa.nc_transpose(dst=tp, data=st["p"][:, c * P:(c + 1) * P])
        pT = nl.ndarray((P, P), dtype=dtype, buffer=nl.sbuf)
        # PSUM -> SBUF copies alternate Vector / Scalar: both engines stay busy
        nisa.tensor_copy(dst=pT, src=tp,
                         engine=nisa.engine.vector if c % 2 == 0 else nisa.engine.scalar)
        nisa.nc_matmul(dst=st["pv"], stationary=pT, moving=v_tiles[b * sub + c], accumulate=c > 0)
    st["p"] = None


def _rescale(st, b):
    """Stage 4: l = l * alpha + rowsum, o = o * alpha + pv, alpha = exp(m_old - m_new)."""
    l, o, pv, rowsum, neg_m_new = st["l"], st["o"], st["pv"], st["rowsum"], st["neg_m_new"]
    if b == 0:
        nisa.tensor_copy(dst=l, src=rowsum, engine=nisa.engine.scalar)
        nisa.tensor_copy(dst=o, src=pv)
    else:
        # alpha = exp(m_old - m_new) = exp(-1 * neg_m_old + neg_m_new)
        alpha = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=alpha, op=nl.exp, data=st["neg_m"], scale=-1.0, bias=neg_m_new)
        nisa.scalar_tensor_tensor(dst=l, data=l, op0=nl.multiply, operand0=alpha,
                                  op1=nl.add, operand1=rowsum)
        nisa.scalar_tensor_tensor(dst=o, data=o, op0=nl.multiply, operand0=alpha,
                                  op1=nl.add, operand1=pv)
    st["neg_m"], st["pv"], st["rowsum"] = neg_m_new, None, None


def _finish_query_tile(st, out, h, dtype):
    """out tile = o / l."""
    d = st["o"].shape[1]
    inv_l = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=inv_l, op=nl.reciprocal, data=st["l"])
    ot = nl.ndarray((P, d), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=ot, data=st["o"], op0=nl.multiply, operand0=inv_l)
    i = st["i"]
    nisa.dma_copy(dst=out[h, i * P:(i + 1) * P, :], src=ot)


@nki.jit
def flash_attention_fwd_kernel(q, k, v, scale):
    """(heads, seq, d) q, k, v (bf16) -> softmax(q k^T * scale) v, (heads, seq, d)."""
    heads, seq, d = q.shape
    out = nl.ndarray((heads, seq, d), dtype=q.dtype, buffer=nl.shared_hbm)
    n_q, n_kb = seq // P, seq // KB

    for h in nl.affine_range(heads):
        # K^T (d, seq) and the V tiles of this head, loaded once.
        kT = nl.ndarray((d, seq), dtype=k.dtype, buffer=nl.sbuf)
        v_tiles = []
        for j in nl.affine_range(seq // P):
            kt = nl.ndarray((P, d), dtype=k.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=kt, src=k[h, j * P:(j + 1) * P, :])
            tp = nl.ndarray((d, P), dtype=k.dtype, buffer=nl.psum)
            nisa.nc_transpose(dst=tp, data=kt)
            nisa.tensor_copy(dst=kT[:, j * P:(j + 1) * P], src=tp)
            vt = nl.ndarray((P, d), dtype=v.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=vt, src=v[h, j * P:(j + 1) * P, :])
            v_tiles.append(vt)

        for i0 in nl.affine_range(0, n_q, QUERY_GROUP):
            group = [_start_query_tile(q, h, i, scale) for i in range(i0, min(n_q, i0 + QUERY_GROUP))]
            for b in nl.sequential_range(n_kb):
                # stage by stage across the group: while one tile waits on the
                # Vector/Scalar Engines, the Tensor Engine works on the other
                for st in group:
                    _scores(st, b, kT)
                for st in group:
                    _probabilities(st, b, q.dtype)
                for st in group:
                    _weighted_values(st, b, v_tiles, q.dtype)
                for st in group:
                    _rescale(st, b)
            for st in group:
                _finish_query_tile(st, out, h, q.dtype)
    return out


def check_shapes(q, k, v):
    heads, seq, d = q.shape
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"flash_attention: q, k, v must have one shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if d > P or seq % KB:
        raise ValueError(f"flash_attention: head dim must be <= {P} and seq a multiple of {KB}, "
                         f"got d={d}, seq={seq}")


def flash_attention(q, k, v):
    check_shapes(q, k, v)
    return flash_attention_fwd_kernel(q, k, v, 1.0 / math.sqrt(q.shape[-1]))


def attention_reference(q, k, v):
    """The same computation as plain torch ops: SDPA (one flash-style kernel on trn)."""
    return F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0))[0]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    shape = (args.heads, args.seq, args.dim)
    q, k, v = (torch.randn(shape, dtype=torch.bfloat16).to("trn") for _ in range(3))
    out, nki_ms = modelled_ms(flash_attention, q, k, v)
    ref = attention_reference(q.cpu().float(), k.cpu().float(), v.cpu().float())
    err = (out.cpu().float() - ref).abs().max().item()
    flops = 4 * args.heads * args.seq * args.seq * args.dim
    print(f"flash attention fwd {shape} bf16: max |NKI - torch CPU fp32| = {err:.3e}; "
          f"{flops / (nki_ms * 1e-3) / 1e12:.1f} TFLOP/s modelled")
    cmp = compare(f"attention {shape}", flash_attention, attention_reference, q, k, v,
                  nki_ms=nki_ms)
    print(cmp.report())
    return {"err": err, "comparison": cmp}


if __name__ == "__main__":
    main()
