"""Host bandwidth of trnccl collectives vs plain gloo on CPU tensors.

    python benchmarks/bench_distributed.py [--mb 64] [--iters 8] [--world 2]

Starts ``--world`` ranks (torchrun-style env on loopback). Each rank makes one
process group ``cpu:gloo,trn:trnccl`` and times, interleaved (this machine is
noisy), all_reduce and all_gather of ``--mb`` MB on ``trn`` tensors (trnccl)
and on CPU tensors (gloo). It prints the host bus bandwidth (nccl-tests
convention) of both, their ratio (target >= 0.8), and the modelled Trainium
time of the same collective on ``TRN3_SYSTEM``.

Then a training step: the same FSDP2 script (``fully_shard`` per layer of an
MLP stack, AdamW, ``--fsdp-dim``/``--fsdp-layers``, batch ``--fsdp-batch``
per rank) runs on ``trn`` (trnccl) and on CPU (gloo), steps interleaved; it
prints the median host time per step of both and their ratio (target: trn at
most 1.25x CPU) and the modelled Trainium step time.
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
    results["fsdp2_step"] = _fsdp2_step(args, dev, world)
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(results, f)
    dist.destroy_process_group()


def _fsdp2_step(args, dev, world: int) -> dict:
    """Median host seconds per FSDP2 training step, trn vs CPU, interleaved."""
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    def build(device):
        torch.manual_seed(0)
        layers = [nn.Sequential(nn.Linear(args.fsdp_dim, 4 * args.fsdp_dim), nn.GELU(),
                                nn.Linear(4 * args.fsdp_dim, args.fsdp_dim))
                  for _ in range(args.fsdp_layers)]
        model = nn.Sequential(*layers).to(device)
        mesh = init_device_mesh(device.type, (world,))
        for layer in model:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(args.fsdp_batch, args.fsdp_dim, device=device)

        def step():
            loss = F.mse_loss(model(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the step is done on the host
        return step

    steps = {"trn": build(dev), "cpu": build(torch.device("cpu"))}
    for _ in range(2):  # warm up (optimizer state, allocations)
        for fn in steps.values():
            fn()
    times = {"trn": [], "cpu": []}
    modelled = []
    for _ in range(args.fsdp_steps):
        for kind in ("trn", "cpu"):
            dist.barrier()
            if kind == "trn":
                start = torch.trn.Event(enable_timing=True)
                end = torch.trn.Event(enable_timing=True)
                start.record()
            t0 = time.perf_counter()
            steps[kind]()
            times[kind].append(time.perf_counter() - t0)
            if kind == "trn":
                end.record()
                modelled.append(start.elapsed_time(end) / 1e3)
    out = {kind: statistics.median(ts) for kind, ts in times.items()}
    out["modelled_s"] = statistics.median(modelled)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--fsdp-dim", type=int, default=512)
    parser.add_argument("--fsdp-layers", type=int, default=4)
    parser.add_argument("--fsdp-batch", type=int, default=64)
    parser.add_argument("--fsdp-steps", type=int, default=8)
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
                                       "--mb", str(args.mb), "--iters", str(args.iters),
                                       "--fsdp-dim", str(args.fsdp_dim),
                                       "--fsdp-layers", str(args.fsdp_layers),
                                       "--fsdp-batch", str(args.fsdp_batch),
                                       "--fsdp-steps", str(args.fsdp_steps)], env=env))
    codes = [p.wait(timeout=600) for p in procs]
    if any(codes):
        sys.exit(f"ranks failed: {codes}")
    with open(out) as f:
        results = json.load(f)
    system = os.environ.get("TRN3_SYSTEM", "trn3-nl72x2")
    print(f"{args.world} ranks, {args.mb} MB, median of {args.iters}; host busbw in GB/s")
    print(f"{'collective':12s} {'trn (trnccl)':>13s} {'cpu (gloo)':>11s} {'ratio':>6s}   "
          f"modelled on {system}")
    fsdp = results.pop("fsdp2_step")
    for coll, r in results.items():
        ratio = r["trn"] / r["cpu"]
        print(f"{coll:12s} {r['trn']:13.2f} {r['cpu']:11.2f} {ratio:6.2f}   "
              f"{r['modelled_us']:.1f} us ({r['modelled_busbw']:.0f} GB/s busbw)"
              f"{'' if ratio >= 0.8 else '   BELOW the 0.8 target'}")
    ratio = fsdp["trn"] / fsdp["cpu"]
    print()
    print(f"FSDP2 training step, {args.world} ranks, MLP {args.fsdp_layers} x "
          f"({args.fsdp_dim} -> {4 * args.fsdp_dim} -> {args.fsdp_dim}), batch {args.fsdp_batch}"
          f"/rank, median of {args.fsdp_steps}")
    print(f"  host time per step: trn (trnccl) {fsdp['trn'] * 1e3:.1f} ms, cpu (gloo) "
          f"{fsdp['cpu'] * 1e3:.1f} ms, ratio trn/cpu {ratio:.2f} (target <= 1.25)"
          f"{'' if ratio <= 1.25 else '   ABOVE the 1.25 target'}")
    print(f"  modelled Trainium step time: {fsdp['modelled_s'] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
