"""Device overhead: how much slower user code runs on `trn` than on the CPU.

Prints, each as a ratio against a CPU baseline measured alternately in the
same process:
  * a 4-layer decoder training step (d_model 256, 4 heads, seq 128, batch 8)
    with AdamW, in fp32 and under bf16 autocast (target <= 1.15x);
  * 10,000 small ops (`a + b` on 16 elements) (target <= 2.5x per op);
  * the time `import torch` takes with the trn autoload on vs off (target
    < 0.5 s added).

Usage: python benchmarks/bench_device.py [--repeats N]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import alternate, make_train_step, median  # noqa: E402

import torch_trn3  # noqa: E402,F401  (explicit, in case autoload is off)


def bench_training(repeats: int) -> None:
    for label, dtype in (("fp32", None), ("bf16 autocast", torch.bfloat16)):
        times = alternate(
            {"cpu": make_train_step("cpu", dtype), "trn": make_train_step("trn", dtype)}, repeats
        )
        cpu, trn = median(times["cpu"]), median(times["trn"])
        print(f"training step {label:14s} cpu {cpu * 1e3:8.2f} ms  trn {trn * 1e3:8.2f} ms  ratio {trn / cpu:5.3f}  (target <= 1.15)")


def bench_small_ops(n_ops: int, repeats: int) -> None:
    def loop(device):
        a = torch.randn(16, device=device)
        b = torch.randn(16, device=device)

        def run():
            for _ in range(n_ops):
                a + b

        return run

    times = alternate({"cpu": loop("cpu"), "trn": loop("trn")}, repeats)
    cpu, trn = median(times["cpu"]) / n_ops, median(times["trn"]) / n_ops
    print(f"small op (a + b, 16 elems)    cpu {cpu * 1e6:8.2f} us  trn {trn * 1e6:8.2f} us  ratio {trn / cpu:5.3f}  (target <= 2.5)")


def bench_import(repeats: int) -> None:
    code = "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"

    def run(autoload: str):
        env = dict(os.environ, TORCH_DEVICE_BACKEND_AUTOLOAD=autoload)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    off, on = [], []
    for _ in range(repeats):
        off.append(run("0"))
        on.append(run("1"))
    check = subprocess.run(
        [sys.executable, "-c", "import torch; print(hasattr(torch, 'trn'))"], capture_output=True, text=True
    ).stdout.strip()
    print(f"import torch                  autoload off {median(off):.3f} s  on {median(on):.3f} s  added {median(on) - median(off):+.3f} s  (target < 0.5; autoload active: {check})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--small-ops", type=int, default=10_000)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench_training(args.repeats)
    bench_small_ops(args.small_ops, max(3, args.repeats // 3))
    bench_import(max(3, args.repeats // 3))


if __name__ == "__main__":
    main()
