"""Host-time budgets of NKI kernels on trn, measured as ratios in one process.

    python benchmarks/bench_nki.py [--repeats 3] [--size 2048]

Budgets (NKI issue, "Figures"):
- host time of a tiled matmul kernel (2048^3, fp32 inputs, 128x128x512
  instructions) within 3x of ``torch.mm`` on CPU: tiles execute as
  vectorised CPU kernels, never a Python loop over elements;
- per-instruction overhead under 20 us (a kernel of many tiny instructions,
  wall time over instruction count);
- first-call overhead of a kernel under 1 s (there is no tracing step: the
  first call runs the body like every other).

The two sides of the matmul ratio run interleaved so that background load
hits both alike; the ratio uses the medians. With ``--threads 1`` (the
default) torch runs single-threaded and the clock is the thread's CPU time,
robust on a shared host; ``--threads 0`` keeps torch's default threads and
wall time. Exit status 1 if a budget is exceeded.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))

import torch_trn3  # noqa: E402
import torch_trn3.nki as nki  # noqa: E402
import torch_trn3.nki.isa as nisa  # noqa: E402
import torch_trn3.nki.language as nl  # noqa: E402
from common import median  # noqa: E402

DEV = torch_trn3.DEVICE_NAME


@nki.jit
def matmul(lhsT, rhs):
    """out = lhsT.T @ rhs: each [K, 128] column block of lhsT loaded once per row
    block, reused for every 512-wide column block of rhs."""
    K, M = lhsT.shape
    _, N = rhs.shape
    TK, TM, TN = nl.tile_size.pmax, nl.tile_size.gemm_stationary_fmax, nl.tile_size.gemm_moving_fmax
    out = nl.ndarray((M, N), lhsT.dtype, buffer=nl.shared_hbm)
    for m in nl.affine_range(M // TM):
        a_tiles = []
        for k in nl.affine_range(K // TK):
            a = nl.ndarray((TK, TM), lhsT.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=a, src=lhsT[k * TK:(k + 1) * TK, m * TM:(m + 1) * TM])
            a_tiles.append(a)
        for n in nl.affine_range(N // TN):
            acc = nl.ndarray((TM, TN), nl.float32, buffer=nl.psum)
            for k in nl.affine_range(K // TK):
                b = nl.ndarray((TK, TN), rhs.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=b, src=rhs[k * TK:(k + 1) * TK, n * TN:(n + 1) * TN])
                nisa.nc_matmul(acc, a_tiles[k], b)
            o = nl.ndarray((TM, TN), out.dtype, buffer=nl.sbuf)
            nisa.tensor_copy(o, acc)
            nisa.dma_copy(dst=out[m * TM:(m + 1) * TM, n * TN:(n + 1) * TN], src=o)
    return out


@nki.jit
def tiny_instructions(x, iters):
    """``iters`` x (tensor_tensor + tensor_scalar + activation) on a [128, 4] tile."""
    out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
    t = nl.load(x)
    u = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
    for _ in nl.sequential_range(iters):
        nisa.tensor_tensor(u, t, t, op=nl.add)
        nisa.tensor_scalar(u, u, nl.multiply, 0.5)
        nisa.activation(t, nl.tanh, u)
    nisa.dma_copy(dst=out, src=t)
    return out


def rmsnorm_like():
    """A fresh kernel object (first call) of the shape the examples use."""
    @nki.jit
    def rmsnorm(x, w):
        P, F = x.shape
        out = nl.ndarray((P, F), x.dtype, buffer=nl.shared_hbm)
        t = nl.load(x)
        sq = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
        ss = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation(sq, nl.square, t, reduce_op=nl.add, reduce_res=ss, reduce_cmd=nisa.reduce_cmd.reset_reduce)
        r = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(r, ss, nl.multiply, 1.0 / F, op1=nl.add, operand1=1e-6)
        nisa.activation(r, nl.rsqrt, r)
        y = nl.ndarray((P, F), x.dtype, buffer=nl.sbuf)
        nisa.tensor_scalar(y, t, nl.multiply, r)
        wt = nl.load(w)
        nisa.tensor_tensor(y, y, wt, op=nl.multiply)
        nisa.dma_copy(dst=out, src=y)
        return out
    return rmsnorm


CLOCK = time.perf_counter


def alternate(fns, repeats):
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = CLOCK()
            fn()
            times[name].append(CLOCK() - t0)
    return times


def main() -> int:
    global CLOCK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        CLOCK = time.thread_time if args.threads == 1 else time.perf_counter
    print(f"torch threads: {torch.get_num_threads()}, clock: {CLOCK.__name__}")
    ok = True

    # First call of a fresh kernel (before anything else warmed the NKI code paths).
    x = torch.randn(128, 1024, device=DEV)
    w = torch.randn(128, 1024, device=DEV)
    kernel = rmsnorm_like()
    t0 = CLOCK()
    kernel(x, w)
    first = CLOCK() - t0
    t0 = CLOCK()
    kernel(x, w)
    second = CLOCK() - t0
    print(f"first call of an rmsnorm kernel: {first * 1e3:.1f} ms (second call {second * 1e3:.2f} ms; "
          f"budget 1000 ms)")
    ok &= first < 1.0

    n = args.size
    a_cpu, b_cpu = torch.randn(n, n), torch.randn(n, n)
    a_dev, b_dev = a_cpu.to(DEV), b_cpu.to(DEV)
    first_mm = CLOCK()
    out = matmul(a_dev, b_dev)
    first_mm = CLOCK() - first_mm
    err = (out.cpu() - a_cpu.t() @ b_cpu).abs().max().item()
    report = nki.last_kernel_report()
    instr = sum(report.instructions.values())
    times = alternate({"nki": lambda: matmul(a_dev, b_dev), "mm": lambda: torch.mm(a_cpu.t(), b_cpu)},
                      repeats=args.repeats)
    ratio = median(times["nki"]) / median(times["mm"])
    print(f"tiled matmul kernel {n}^3 fp32 ({instr} instructions): {median(times['nki']) * 1e3:.0f} ms host, "
          f"torch.mm on CPU {median(times['mm']) * 1e3:.0f} ms -> {ratio:.2f}x (budget 3x); "
          f"first call {first_mm * 1e3:.0f} ms; max |err| {err:.2e}")
    print(f"  modelled: {report.elapsed_s * 1e6:.1f} us on {report.chip}, bound by {report.bound}")
    ok &= ratio <= 3.0

    xs = torch.randn(128, 4, device=DEV)
    iters = 2000
    tiny_instructions(xs, 10)
    t0 = CLOCK()
    tiny_instructions(xs, iters)
    per = (CLOCK() - t0) / sum(nki.last_kernel_report().instructions.values())
    print(f"per-instruction overhead ([128, 4] tiles, {3 * iters} instructions): {per * 1e6:.1f} us (budget 20 us)")
    ok &= per < 20e-6
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
