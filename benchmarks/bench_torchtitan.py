"""Real torchtitan 0.3.0 on trn vs the same runs on CPU, and what the chip
model says the configs would do on Trainium3.

    python benchmarks/bench_torchtitan.py [--steps 6]

One command; each torchtitan run is its own subprocess (torchtitan's entry
point, through the test harness in tests/titan: self-built tokenizer and
``c4_test`` data in a temporary folder, CPU reference = the same torchtitan
model from its registry with the trn backend off). Runs go one after the
other so they do not share the cores. Prints:

- llama3 debugmodel, 1 rank: median host time per step (steps 2..N, from
  torchtitan's log stamps) on trn vs CPU (target: trn within 1.1x);
- the same 2-rank FSDP2 (trnccl) vs CPU with gloo (target within 1.25x);
- peak host memory (max RSS) of the 1-rank trn run vs the CPU run
  (target within 1.2x);
- modelled Trainium3 step time and MFU (``TORCH_TRN3_TITAN_REPORT=1``,
  mean of the logged steps after the first) for llama3 debugmodel and
  qwen3_moe_debug (EP=2 over FSDP=2, 2 ranks).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TITAN_TESTS = os.path.join(os.path.dirname(HERE), "tests", "titan")

FSDP2 = ["--parallelism.data_parallel_shard_degree", "2", "--parallelism.spmd_backend", "partial_dtensor"]
MOE_EP2 = ["--module", "qwen3", "--config", "qwen3_moe_debug", "--training.seq_len", "64",
           "--training.local_batch_size", "2", "--debug.seed", "42",
           "--parallelism.expert_parallel_degree", "2", *FSDP2, "--training.disable_cuda_graphs"]
_MODELLED = re.compile(r"modelled \S+: step ([0-9.]+) ms  MFU ([0-9.]+)%")


def _one(spec: dict) -> None:
    """Child: one torchtitan run; prints its numbers as JSON."""
    sys.path.insert(0, TITAN_TESTS)
    import titan_run

    run = titan_run.run(spec["workdir"], spec["name"], spec["args"], device=spec["device"],
                        nproc=spec["nproc"], env=spec.get("env"), timeout=900)
    if run.returncode != 0:
        sys.stderr.write(run.log[-4000:])
        raise SystemExit(f"{spec['name']} failed (exit {run.returncode})")
    modelled = [(float(ms), float(mfu)) for ms, mfu in _MODELLED.findall(run.log)]
    print(json.dumps({
        "step_s": statistics.median(run.step_seconds) if run.step_seconds else None,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "modelled_ms": statistics.mean(m for m, _ in modelled) if modelled else None,
        "modelled_mfu": statistics.mean(f for _, f in modelled) if modelled else None,
        "losses": run.loss_list(),
    }))


def _measure(workdir: str, name: str, args, device="trn", nproc=1, env=None) -> dict:
    spec = dict(workdir=workdir, name=name, args=list(args), device=device, nproc=nproc, env=env)
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-4000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {name:<14} host step {result['step_s'] * 1e3:8.1f} ms   max RSS "
          f"{result['max_rss_mib']:7.0f} MiB", flush=True)
    return result


def _ratio(label: str, num: float, den: float, target: float) -> None:
    r = num / den
    print(f"{label:<58} {r:5.2f}x  (target <= {target}x: {'met' if r <= target else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return _one(json.loads(args.one))

    sys.path.insert(0, TITAN_TESTS)
    from _assets import build_assets
    import titan_run

    llama = [*titan_run.LLAMA3_DEBUG, "--training.steps", str(args.steps)]
    report = {"TORCH_TRN3_TITAN_REPORT": "1"}
    with tempfile.TemporaryDirectory(prefix="bench_titan_") as tmp:
        work = build_assets(tmp)
        print(f"torchtitan llama3 debugmodel, seq_len 256, local batch 2, {args.steps} steps "
              f"(host wall time per step, median of steps 2..{args.steps})")
        trn1 = _measure(work, "trn_1rank", llama)
        cpu1 = _measure(work, "cpu_1rank", llama, device="cpu")
        trn2 = _measure(work, "trn_fsdp2", [*llama, *FSDP2], nproc=2)
        cpu2 = _measure(work, "cpu_fsdp2_gloo", [*llama, *FSDP2], device="cpu", nproc=2)
        print("modelled runs (TORCH_TRN3_TITAN_REPORT=1)")
        llama_m = _measure(work, "trn_report", llama, env=report)
        moe_m = _measure(work, "trn_moe_ep2", [*MOE_EP2, "--training.steps", "4"], nproc=2, env=report)
    print()
    _ratio("llama3 debugmodel 1 rank: trn / CPU host step time", trn1["step_s"], cpu1["step_s"], 1.1)
    _ratio("llama3 debugmodel 2-rank FSDP2: trn / CPU (gloo) step time", trn2["step_s"], cpu2["step_s"], 1.25)
    _ratio("llama3 debugmodel 1 rank: trn / CPU peak host memory (RSS)",
           trn1["max_rss_mib"], cpu1["max_rss_mib"], 1.2)
    for name, m in (("llama3 debugmodel (1 rank)", llama_m), ("qwen3_moe_debug (EP=2, FSDP=2)", moe_m)):
        print(f"modelled Trainium3 {name:<32} step {m['modelled_ms']:.3f} ms   "
              f"MFU {m['modelled_mfu']:.2f}% (vs bf16 peak)")


if __name__ == "__main__":
    main()
