"""MX performance budgets, measured as ratios within one process.

    python benchmarks/bench_mx.py [--repeats 7] [--threads N] [--device cpu]

Budgets (from the MX issue):
- quantize a 4096x4096 fp32 tensor to MXFP8 <= 3x a plain
  ``.to(torch.float8_e4m3fn)`` cast of it;
- an MXFP8 linear forward+backward (4096x4096 weight, batch 2048) <= 2x the
  same step with fp32 ``nn.Linear``.

The two sides of each ratio run interleaved (A, B, A, B, ...) after a warm-up
so that background load hits both alike; the ratio uses the medians. With
``--threads 1`` the clock is the thread's CPU time (robust on a shared host).
The exit status is 1 if a budget is exceeded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from torch_trn3.mx import MXLinear, to_mx


def clock():
    """Wall time, except with one intra-op thread: then the thread's CPU time,
    which ignores time the OS gives to other processes on a shared host."""
    return time.thread_time() if torch.get_num_threads() == 1 else time.perf_counter()


def interleaved_medians(fn_a, fn_b, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn_a`` and ``fn_b``, run alternately after one warm-up each."""
    fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = clock()
            fn()
            times.append(clock() - start)
    return statistics.median(times_a), statistics.median(times_b)


def bench_quantize(device, repeats):
    x = torch.randn(4096, 4096, device=device)
    rows = []
    for label, elem, mode in (("MXFP8 e4m3 floor", torch.float8_e4m3fn, "floor"),
                              ("MXFP8 e4m3 trn3", torch.float8_e4m3fn, "trn3"),
                              ("MXFP8 e5m2 rceil", torch.float8_e5m2, "rceil")):
        cast, quant = interleaved_medians(lambda: x.to(torch.float8_e4m3fn),
                                          lambda: to_mx(x, elem, scale_mode=mode), repeats)
        rows.append((f"to_mx 4096x4096 fp32 -> {label} vs .to(e4m3)", quant, cast, 3.0))
    return rows


def bench_linear(device, repeats):
    torch.manual_seed(0)
    fp32 = nn.Linear(4096, 4096, device=device)
    mx = MXLinear.from_linear(nn.Linear(4096, 4096, device=device))
    x = torch.randn(2048, 4096, device=device, requires_grad=True)
    grad = torch.randn(2048, 4096, device=device)

    def step(layer):
        def run():
            layer.zero_grad(set_to_none=True)
            x.grad = None
            layer(x).backward(grad)
        return run

    plain, quant = interleaved_medians(step(fp32), step(mx), repeats)
    return [("MXLinear fwd+bwd 2048x4096x4096 vs fp32 nn.Linear", quant, plain, 2.0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, device {device}, {threads} threads, median of "
          f"{args.repeats}, {'thread CPU time' if threads == 1 else 'wall time'}")
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores:
        print(f"warning: load average {load:.1f} on {cores} cores; other processes steal "
              f"time and multi-op paths suffer most from it (try --threads 1 or a quiet machine)")

    failed = False
    for name, ours, baseline, budget in bench_quantize(device, args.repeats) + \
            bench_linear(device, max(3, args.repeats // 2)):
        ratio = ours / baseline
        verdict = "ok" if ratio <= budget else "OVER BUDGET"
        failed |= ratio > budget
        print(f"{name:60s} {ours * 1e3:9.1f} ms / {baseline * 1e3:9.1f} ms = "
              f"{ratio:5.2f}x (budget {budget:.0f}x) {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
