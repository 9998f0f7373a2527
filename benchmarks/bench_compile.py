"""torch.compile on trn: host speed, compile time and modelled Trainium3 time.

Prints, each as a ratio of measurements taken in one run:
  * wall clock of a compiled training step (fwd+bwd+AdamW) of the README's
    decoder on trn vs the same model compiled with inductor on the CPU
    (target <= 1.15x), and vs the same step in trn eager (target: compiled
    at least 1.3x faster);
  * compile time of that model on trn vs on the CPU, each in a fresh
    process with an empty inductor cache (target <= 1.5x);
  * modelled Trainium3 time and HBM bytes of the decoder step, eager vs
    compiled (default inductor and trn3);
  * modelled MFU of one bf16 decoder block shaped like Qwen3-8B (hidden
    4096, 32 query / 8 KV heads of 128, SwiGLU FFN 12288, seq 4096, batch 1,
    forward + backward) on one LNC=2 device, eager vs trn3. This runs the
    real bf16 math on the host (~6 TFLOP a pass): fast with AVX512-BF16/AMX,
    very slow without; --qwen-seq shortens it, --skip-qwen skips it.

Usage: python benchmarks/bench_compile.py [--repeats N] [--qwen-seq 4096] [--skip-qwen]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import alternate, make_train_step, median  # noqa: E402

import torch_trn3  # noqa: E402,F401
import torch_trn3.profiler as tp  # noqa: E402


def bench_wall_clock(repeats: int) -> None:
    steps = {
        "cpu compiled": make_train_step("cpu", compile_backend="inductor"),
        "trn compiled": make_train_step("trn", compile_backend="inductor"),
        "trn eager": make_train_step("trn"),
        "cpu eager": make_train_step("cpu"),
    }
    times = {k: median(v) for k, v in alternate(steps, repeats).items()}
    cpu, trn, eager = times["cpu compiled"], times["trn compiled"], times["trn eager"]
    cpu_eager = times["cpu eager"]
    print(f"compiled training step   cpu {cpu * 1e3:7.1f} ms  trn {trn * 1e3:7.1f} ms  "
          f"ratio {trn / cpu:5.3f}  (target <= 1.15)")
    print(f"trn eager vs compiled    eager {eager * 1e3:7.1f} ms  compiled {trn * 1e3:7.1f} ms  "
          f"speed-up {eager / trn:5.2f}x  (target >= 1.3; inductor on the CPU itself: "
          f"{cpu_eager / cpu:4.2f}x over CPU eager)")


_COMPILE_ONE = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {bench!r})
    import torch_trn3
    from common import make_train_step
    step = make_train_step({device!r}, compile_backend="inductor")
    t0 = time.perf_counter(); step(); first = time.perf_counter() - t0
    t0 = time.perf_counter(); step(); second = time.perf_counter() - t0
    print(first - second)
""")


def _compile_seconds(device: str) -> float:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, TORCHINDUCTOR_FX_GRAPH_CACHE="0",
                   TORCHINDUCTOR_AUTOGRAD_CACHE="0")
        code = _COMPILE_ONE.format(bench=os.path.dirname(os.path.abspath(__file__)), device=device)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
        return float(out.stdout.strip().splitlines()[-1])


def bench_compile_time(repeats: int) -> None:
    cpu, trn = [], []
    for _ in range(repeats):
        cpu.append(_compile_seconds("cpu"))
        trn.append(_compile_seconds("trn"))
    print(f"compile time (cold cache) cpu {median(cpu):6.1f} s  trn {median(trn):6.1f} s  "
          f"ratio {median(trn) / median(cpu):5.3f}  (target <= 1.5)")


def _modelled(step) -> tp.profile:
    step()  # compile / warm up
    with tp.profile(with_modules=False) as prof:
        step()
    return prof


def bench_modelled_decoder() -> None:
    results = {}
    for label, backend in (("eager", None), ("inductor", "inductor"), ("trn3", "trn3")):
        torch._dynamo.reset()
        results[label] = _modelled(make_train_step("trn", torch.bfloat16, compile_backend=backend))
    eager = results["eager"]
    for label, prof in results.items():
        print(f"modelled decoder step {label:9s} {prof.total_time_s * 1e3:7.3f} ms  "
              f"HBM {prof.hbm_bytes / 2**20:8.1f} MiB  MFU {prof.mfu * 100:5.1f}%  "
              f"ops {len(prof.records):5d}  speed-up {eager.total_time_s / prof.total_time_s:5.2f}x")


class QwenBlock(nn.Module):
    """One Qwen3-8B-shaped decoder block: RMSNorm, GQA attention with q/k
    norms and rotary embeddings, SwiGLU FFN."""

    def __init__(self, hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=12288):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.norm1, self.norm2 = nn.RMSNorm(hidden), nn.RMSNorm(hidden)
        self.q = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, hidden, bias=False)
        self.q_norm, self.k_norm = nn.RMSNorm(head_dim), nn.RMSNorm(head_dim)
        self.gate = nn.Linear(hidden, ffn, bias=False)
        self.up = nn.Linear(hidden, ffn, bias=False)
        self.down = nn.Linear(ffn, hidden, bias=False)

    @staticmethod
    def rotate(x, cos, sin):
        a, b = x.chunk(2, dim=-1)
        return x * cos + torch.cat((-b, a), dim=-1) * sin

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        h = self.norm1(x)
        q = self.q_norm(self.q(h).view(b, s, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k(h).view(b, s, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(attn.transpose(1, 2).reshape(b, s, -1))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def bench_qwen_block(seq: int) -> None:
    torch.manual_seed(0)
    block = QwenBlock().to("trn", torch.bfloat16)
    x = torch.randn(1, seq, 4096, device="trn", dtype=torch.bfloat16, requires_grad=True)
    pos = torch.arange(seq, dtype=torch.float32)[:, None] * 10000.0 ** (-torch.arange(64) / 64)
    cos = torch.cat((pos.cos(), pos.cos()), -1).to("trn", torch.bfloat16)
    sin = torch.cat((pos.sin(), pos.sin()), -1).to("trn", torch.bfloat16)
    for label, run in (("eager", block), ("trn3", torch.compile(block, backend="trn3"))):
        def step():
            run(x, cos, sin).float().square().mean().backward()
        prof = _modelled(step)
        print(f"Qwen3-8B block seq {seq} {label:6s} modelled {prof.total_time_s * 1e3:8.3f} ms  "
              f"MFU {prof.mfu * 100:5.1f}%  HBM {prof.hbm_bytes / 2**30:6.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile-repeats", type=int, default=2)
    parser.add_argument("--qwen-seq", type=int, default=4096)
    parser.add_argument("--skip-qwen", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench_wall_clock(args.repeats)
    bench_compile_time(args.compile_repeats)
    bench_modelled_decoder()
    if not args.skip_qwen:
        bench_qwen_block(args.qwen_seq)


if __name__ == "__main__":
    main()
