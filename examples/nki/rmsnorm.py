"""Fused RMSNorm as an NKI kernel on trn, with an NKI backward kernel.

    y = x / sqrt(mean(x^2, -1) + eps) * w

Forward, per 128-row tile (rows on the partitions, the hidden size on the
free axis): one DMA in, the sum of squares fused into a Scalar Engine
activation (``reduce_op=nl.add``), rstd on the Vector Engine, and the
normalise-and-scale as one ``scalar_tensor_tensor`` ((x * rstd) * w), one DMA
out. The weight is broadcast to all 128 partitions once, by a K=1 matmul
against a row of ones (the Tensor Engine's broadcast). ``rstd`` is returned
too: the backward reuses it instead of recomputing the reduction.

Backward: dx = rstd * (g - xhat * mean(g * xhat)), g = dy * w, xhat = x * rstd;
dw = sum over rows of dy * xhat, reduced across partitions (and across row
tiles) by the Tensor Engine: ones[P,1]^T @ (dy * xhat) accumulated in PSUM.

Both kernels become torch ops with ``torch_trn3.nki.custom_op``, the forward
with the backward registered as its autograd, so ``rmsnorm(x, w)`` trains in
eager and under ``torch.compile``. Run:

    python examples/nki/rmsnorm.py
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

P = nl.tile_size.pmax          # 128 partitions
FMAX = nl.tile_size.psum_fmax  # 512 fp32 per PSUM bank and partition: matmul free size


def _broadcast_rows(w_row, d, dtype):
    """(P, d) SBUF tile with ``w_row`` (1, d) on every partition: ones[1,P]^T @ w."""
    ones = nl.ndarray((1, P), dtype=w_row.dtype, buffer=nl.sbuf)
    nisa.memset(dst=ones, value=1.0)
    out = nl.ndarray((P, d), dtype=dtype, buffer=nl.sbuf)
    for c in nl.affine_range((d + FMAX - 1) // FMAX):
        lo, hi = c * FMAX, min(d, (c + 1) * FMAX)
        acc = nl.ndarray((P, hi - lo), dtype=nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=acc, stationary=ones, moving=w_row[:, lo:hi])
        nisa.tensor_copy(dst=out[:, lo:hi], src=acc)
    return out


@nki.jit
def rmsnorm_fwd_kernel(x, w, eps):
    """x (N, D), w (D,) -> (y (N, D) in x.dtype, rstd (N, 1) fp32)."""
    n, d = x.shape
    y = nl.ndarray((n, d), dtype=x.dtype, buffer=nl.shared_hbm)
    rstd_out = nl.ndarray((n, 1), dtype=nl.float32, buffer=nl.shared_hbm)

    w_row = nl.ndarray((1, d), dtype=w.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=w_row, src=w.reshape((1, d)))
    w_all = _broadcast_rows(w_row, d, nl.float32)

    for t in nl.affine_range((n + P - 1) // P):
        r0, rows = t * P, min(P, n - t * P)
        xt = nl.ndarray((rows, d), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=xt, src=x[r0:r0 + rows, :])
        sq = nl.ndarray((rows, d), dtype=nl.float32, buffer=nl.sbuf)
        ssum = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=sq, op=nl.square, data=xt, reduce_op=nl.add, reduce_res=ssum,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        # rstd = (ssum / d + eps) ^ -0.5
        ms = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=ms, data=ssum, op0=nl.multiply, operand0=1.0 / d,
                           op1=nl.add, operand1=eps)
        rstd = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=rstd, op=nl.rsqrt, data=ms)
        yt = nl.ndarray((rows, d), dtype=x.dtype, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=yt, data=xt, op0=nl.multiply, operand0=rstd,
                                  op1=nl.multiply, operand1=w_all[:rows, :])
        nisa.dma_copy(dst=y[r0:r0 + rows, :], src=yt)
        nisa.dma_copy(dst=rstd_out[r0:r0 + rows, :], src=rstd)
    return y, rstd_out


@nki.jit
def rmsnorm_bwd_kernel(dy, x, w, rstd):
    """dy, x (N, D), w (D,), rstd (N, 1) -> (dx (N, D) in x.dtype, dw (D,) in w.dtype)."""
    n, d = x.shape
    dx = nl.ndarray((n, d), dtype=x.dtype, buffer=nl.shared_hbm)
    dw = nl.ndarray((d,), dtype=w.dtype, buffer=nl.shared_hbm)

    w_row = nl.ndarray((1, d), dtype=w.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=w_row, src=w.reshape((1, d)))
    w_all = _broadcast_rows(w_row, d, nl.float32)
    ones = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=ones, value=1.0)
    n_chunks = (d + FMAX - 1) // FMAX
    dw_acc = [nl.ndarray((1, min(FMAX, d - c * FMAX)), dtype=nl.float32, buffer=nl.psum)
              for c in range(n_chunks)]

    n_tiles = (n + P - 1) // P
    for t in nl.sequential_range(n_tiles):
        r0, rows = t * P, min(P, n - t * P)
        xt = nl.ndarray((rows, d), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=xt, src=x[r0:r0 + rows, :])
        dyt = nl.ndarray((rows, d), dtype=dy.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=dyt, src=dy[r0:r0 + rows, :])
        rt = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=rt, src=rstd[r0:r0 + rows, :])

        xhat = nl.ndarray((rows, d), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=xhat, data=xt, op0=nl.multiply, operand0=rt)
        g = nl.ndarray((rows, d), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=g, data1=dyt, data2=w_all[:rows, :], op=nl.multiply)
        gx = nl.ndarray((rows, d), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=gx, data1=g, data2=xhat, op=nl.multiply)
        c = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_reduce(dst=c, op=nl.add, data=gx, axis=1)
        nisa.tensor_scalar(dst=c, data=c, op0=nl.multiply, operand0=1.0 / d)
        # dx = (g - xhat * c) * rstd
        t1 = nl.ndarray((rows, d), dtype=nl.float32, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=t1, data=xhat, op0=nl.multiply, operand0=c,
                                  op1=nl.subtract, operand1=g, reverse1=True)
        dxt = nl.ndarray((rows, d), dtype=x.dtype, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=dxt, data=t1, op0=nl.multiply, operand0=rt)
        nisa.dma_copy(dst=dx[r0:r0 + rows, :], src=dxt)

        # dw += ones^T @ (dy * xhat): the partition (row) sum on the Tensor Engine
        dyx = nl.ndarray((rows, d), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=dyx, data1=dyt, data2=xhat, op=nl.multiply)
        for ci in nl.static_range(n_chunks):
            lo, hi = ci * FMAX, min(d, (ci + 1) * FMAX)
            nisa.nc_matmul(dst=dw_acc[ci], stationary=ones[:rows, :], moving=dyx[:, lo:hi],
                           accumulate=t > 0)

    dw_row = nl.ndarray((1, d), dtype=w.dtype, buffer=nl.sbuf)
    for ci in nl.static_range(n_chunks):
        lo, hi = ci * FMAX, min(d, (ci + 1) * FMAX)
        nisa.tensor_copy(dst=dw_row[:, lo:hi], src=dw_acc[ci])
    nisa.dma_copy(dst=dw.reshape((1, d)), src=dw_row)
    return dx, dw


# ---- torch ops -------------------------------------------------------------------

def _fwd_fake(x, w, eps):
    return torch.empty_like(x), x.new_empty((x.shape[0], 1), dtype=torch.float32)


def _bwd_fake(dy, x, w, rstd):
    return torch.empty_like(x), torch.empty_like(w)


rmsnorm_bwd = nki.custom_op("nki_examples::rmsnorm_bwd", rmsnorm_bwd_kernel, fake=_bwd_fake,
                            schema="(Tensor dy, Tensor x, Tensor w, Tensor rstd) -> (Tensor, Tensor)")


def _setup_context(ctx, inputs, output):
    x, w, _ = inputs
    _, rstd = output
    ctx.save_for_backward(x, w, rstd)


def _backward(ctx, dy, _drstd):
    x, w, rstd = ctx.saved_tensors
    dx, dw = rmsnorm_bwd(dy.contiguous(), x, w, rstd)
    return dx, dw, None


rmsnorm_fwd = nki.custom_op("nki_examples::rmsnorm_fwd", rmsnorm_fwd_kernel, fake=_fwd_fake,
                            schema="(Tensor x, Tensor w, float eps) -> (Tensor, Tensor)",
                            backward=_backward, setup_context=_setup_context)


def rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dim of ``x`` (any leading shape) by the NKI kernels."""
    shape = x.shape
    y, _ = rmsnorm_fwd(x.reshape(-1, shape[-1]), w, eps)
    return y.reshape(shape)


def rmsnorm_reference(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The same computation as plain torch ops (fp32 math, output in x's dtype)."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w.float()).to(x.dtype)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=1024)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.hidden, dtype=torch.bfloat16).to("trn")
    w = (1 + 0.1 * torch.randn(args.hidden)).to("trn")

    y, nki_ms = modelled_ms(rmsnorm, x, w)
    ref = rmsnorm_reference(x.cpu(), w.cpu())
    err = (y.cpu().float() - ref.float()).abs().max().item()
    print(f"rmsnorm {args.rows}x{args.hidden} bf16: max |NKI - torch CPU| = {err:.3e}")
    cmp = compare(f"rmsnorm fwd {args.rows}x{args.hidden}", rmsnorm, rmsnorm_reference, x, w,
                  nki_ms=nki_ms)
    print(cmp.report())

    xg = x.detach().requires_grad_()
    wg = w.detach().requires_grad_()
    dy = torch.randn_like(x)

    def nki_fwd_bwd(x_, w_):
        return torch.autograd.grad(rmsnorm(x_, w_), (x_, w_), dy)

    def torch_fwd_bwd(x_, w_):
        return torch.autograd.grad(rmsnorm_reference(x_, w_), (x_, w_), dy)

    (dx, dw), bwd_ms = modelled_ms(nki_fwd_bwd, xg, wg)
    xc, wc = x.cpu().requires_grad_(), w.cpu().requires_grad_()
    rdx, rdw = torch.autograd.grad(rmsnorm_reference(xc, wc), (xc, wc), dy.cpu())
    dx_err = (dx.cpu().float() - rdx.float()).abs().max().item()
    dw_rel = ((dw.cpu() - rdw).abs().max() / rdw.abs().max()).item()
    print(f"rmsnorm backward: max |dx - autograd| = {dx_err:.3e}, max rel |dw - autograd| = {dw_rel:.3e}")
    _, eager_ms = modelled_ms(torch_fwd_bwd, xg, wg)
    print(f"rmsnorm fwd+bwd: modelled Trainium3 time  NKI kernels {bwd_ms * 1e3:9.2f} us | "
          f"torch eager {eager_ms * 1e3:9.2f} us")
    return {"fwd_err": err, "dx_err": dx_err, "dw_rel": dw_rel, "comparison": cmp}


if __name__ == "__main__":
    main()
