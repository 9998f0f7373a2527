"""Host bandwidth of trnccl collectives vs plain gloo on CPU tensors.

    python benchmarks/bench_distributed.py [--mb 64] [--iters 8] [--world 2]

Starts ``--world`` ranks (torchrun-style env on loopback). Each rank makes one
process group ``cpu:gloo,trn:trnccl`` and times, interleaved (this machine is
noisy), all_reduce and all_gather of ``--mb`` MB on ``trn`` tensors (trnccl)
and on CPU tensors (gloo). It prints the host bus bandwidth (nccl-tests
convention) of both, their ratio (target >= 0.8), and the modelled Trainium
time of the same collective on ``TRN3_SYSTEM``.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _rank_main(args) -> None:
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dev = torch.device("trn", int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("cpu:gloo,trn:trnccl")
    from torch_trn3.distributed import cost

    numel = args.mb * 2**20 // 4
    results = {}
    for coll in ("all_reduce", "all_gather"):
        bufs = {}
        for kind, device in (("trn", dev), ("cpu", torch.device("cpu"))):
            if coll == "all_reduce":
                x = torch.ones(numel, device=device)
                bufs[kind] = (lambda x=x: dist.all_reduce(x))
            else:  # all_gather: 64 MB gathered output, nccl-tests' size
                out = torch.empty(numel, device=device)
                inp = torch.ones(numel // world, device=device)
                bufs[kind] = (lambda o=out, i=inp: dist.all_gather_into_tensor(o, i))
        times = {"trn": [], "cpu": []}
        for _ in range(2):  # warm up
            for fn in bufs.values():
                fn()
        for _ in range(args.iters):
            for kind in ("trn", "cpu"):
                dist.barrier()
                t0 = time.perf_counter()
                bufs[kind]()
                times[kind].append(time.perf_counter() - t0)
        nbytes = numel * 4
        factor = 2 * (world - 1) / world if coll == "all_reduce" else (world - 1) / world
        modelled = cost.price(coll, nbytes, tuple(range(world)))
        results[coll] = {
            kind: nbytes / statistics.median(ts) * factor / 1e9 for kind, ts in times.items()
        }
        results[coll]["modelled_us"] = modelled.time_s * 1e6
        results[coll]["modelled_busbw"] = modelled.busbw / 1e9
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(results, f)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_main:
        _rank_main(args)
        return

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = os.path.join(tempfile.mkdtemp(), "bench.json")
    procs = []
    for rank in range(args.world):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                   WORLD_SIZE=str(args.world), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(args.world), OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
        procs.append(subprocess.Popen([sys.executable, __file__, "--rank-main", "--out", out,
                                       "--mb", str(args.mb), "--iters", str(args.iters)], env=env))
    codes = [p.wait(timeout=600) for p in procs]
    if any(codes):
        sys.exit(f"ranks failed: {codes}")
    with open(out) as f:
        results = json.load(f)
    system = os.environ.get("TRN3_SYSTEM", "trn3-nl72x2")
    print(f"{args.world} ranks, {args.mb} MB, median of {args.iters}; host busbw in GB/s")
    print(f"{'collective':12s} {'trn (trnccl)':>13s} {'cpu (gloo)':>11s} {'ratio':>6s}   "
          f"modelled on {system}")
    for coll, r in results.items():
        ratio = r["trn"] / r["cpu"]
        print(f"{coll:12s} {r['trn']:13.2f} {r['cpu']:11.2f} {ratio:6.2f}   "
              f"{r['modelled_us']:.1f} us ({r['modelled_busbw']:.0f} GB/s busbw)"
              f"{'' if ratio >= 0.8 else '   BELOW the 0.8 target'}")


if __name__ == "__main__":
    main()
