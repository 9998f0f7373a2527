"""Row softmax as an NKI kernel on trn.

Per 128-row tile (rows on the partitions): the row max on the Vector Engine
(``tensor_reduce`` with ``negate=True`` gives -max directly), then one Scalar
Engine instruction computes exp(x - max) *and* its row sum (``activation``
with ``bias=-max`` and ``reduce_op=nl.add``), the reciprocal of the sum, and
the scaling by it on GpSimd (its operands are in SBUF, and the Vector Engine
is the busiest), then one DMA out. Tiles are independent
(``nl.affine_range``), so the DMA of tile t+1 overlaps the compute of tile t
and the three compute engines work on different tiles at once. Run:

    python examples/nki/softmax.py
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

P = nl.tile_size.pmax


@nki.jit
def softmax_kernel(x):
    """softmax(x, dim=-1) of a 2-D ``x`` (N, D); fp32 math, output in x.dtype."""
    n, d = x.shape
    out = nl.ndarray((n, d), dtype=x.dtype, buffer=nl.shared_hbm)
    for t in nl.affine_range((n + P - 1) // P):
        r0, rows = t * P, min(P, n - t * P)
        xt = nl.ndarray((rows, d), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=xt, src=x[r0:r0 + rows, :])
        neg_max = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_reduce(dst=neg_max, op=nl.maximum, data=xt, axis=1, negate=True)
        e = nl.ndarray((rows, d), dtype=nl.float32, buffer=nl.sbuf)
        total = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=e, op=nl.exp, data=xt, bias=neg_max, reduce_op=nl.add,
                        reduce_res=total, reduce_cmd=nisa.reduce_cmd.reset_reduce)
        inv = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=inv, op=nl.reciprocal, data=total)
        yt = nl.ndarray((rows, d), dtype=x.dtype, buffer=nl.sbuf)
        # the scaling reads SBUF only, so GpSimd can take it off the busy Vector Engine
        nisa.tensor_scalar(dst=yt, data=e, op0=nl.multiply, operand0=inv, engine=nisa.engine.gpsimd)
        nisa.dma_copy(dst=out[r0:r0 + rows, :], src=yt)
    return out


def softmax_reference(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x.float(), dim=-1).to(x.dtype)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--cols", type=int, default=2048)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x = (3 * torch.randn(args.rows, args.cols)).to(torch.bfloat16).to("trn")
    y, nki_ms = modelled_ms(softmax_kernel, x)
    ref = softmax_reference(x.cpu())
    err = (y.cpu().float() - ref.float()).abs().max().item()
    row_sum_err = (y.cpu().float().sum(-1) - 1).abs().max().item()
    print(f"softmax {args.rows}x{args.cols} bf16: max |NKI - torch CPU| = {err:.3e}, "
          f"max |row sum - 1| = {row_sum_err:.3e}")
    cmp = compare(f"softmax {args.rows}x{args.cols}", softmax_kernel, softmax_reference, x,
                  nki_ms=nki_ms)
    print(cmp.report())
    return {"err": err, "row_sum_err": row_sum_err, "comparison": cmp}


if __name__ == "__main__":
    main()
