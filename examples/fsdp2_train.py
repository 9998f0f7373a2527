"""FSDP2 + bf16 mixed precision on a small transformer, on emulated Trainium3.

    torchrun --nproc_per_node 2 examples/fsdp2_train.py [--steps 20]

Each rank binds to trn:LOCAL_RANK; the process group is the ``trnccl``
backend (the default for ``trn``). Every block and the root are
``fully_shard``-ed with ``MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=fp32)`` and reshard after forward. Rank 0 prints a progress
bar, the loss, and the *modelled* Trainium3 step time (simulated device
clock, collectives on their own lane overlapping compute), then the
modelled collective time per collective type and how much of it the
engines' compute hid (FSDP2 prefetches the next block's all-gather on the
collective cores while the Tensor Engine works). ``--summary`` prints the
profiler's full summary for rank 0.
Choose the system collectives are priced on with ``TRN3_SYSTEM``
(trn3-nl72x2 default, trn3-nl32x2, trn2-nl16, trn2-nl64).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard


# The model is written out here rather than imported from torch_trn3.testing
# (the decoder the tests and benchmarks share): an example is read and copied
# on its own, so it shows every module FSDP2 wraps and depends on nothing but
# torch and torch_trn3's public API.
class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    def __init__(self, vocab=256, dim=128, heads=4, layers=4, seq=64):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(seq, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


def progress(step: int, total: int, loss: float, ms: float, width: int = 30) -> str:
    done = int(width * step / total)
    return f"\r[{'#' * done}{'.' * (width - done)}] {step}/{total}  loss {loss:.4f}  " \
           f"modelled step {ms:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="sequences per rank")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--summary", action="store_true", help="print the profiler summary (rank 0)")
    args = parser.parse_args()

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("trn", local_rank)
    dist.init_process_group(device_id=device)  # trnccl: the default backend for trn
    rank, world = dist.get_rank(), dist.get_world_size()

    torch.manual_seed(0)
    model = Transformer(seq=args.seq).to(device)
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mp_policy=mp, reshard_after_forward=True)
    fully_shard(model, mp_policy=mp, reshard_after_forward=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    n_params = sum(p.numel() for p in model.parameters())  # sharded DTensors: global numel

    import torch_trn3.profiler as tp
    from torch_trn3.distributed import collective_stats, current_system
    collective_stats(reset=True)
    if rank == 0:
        print(f"FSDP2 on {world} x {torch.trn.get_device_name(device)}; {n_params / 1e6:.2f} M params; "
              f"collectives priced on {current_system().describe()}")

    # a learnable toy task: next token = (token + 1) % vocab
    gen = torch.Generator().manual_seed(1234 + rank)
    start, end = torch.trn.Event(enable_timing=True), torch.trn.Event(enable_timing=True)
    step_ms = []
    t0 = time.time()
    prof = tp.profile(with_modules=False)   # modelled timeline of the steady-state steps
    for step in range(1, args.steps + 1):
        if step == min(2, args.steps):
            prof.start()
        first = torch.randint(0, 256, (args.batch, 1), generator=gen)
        idx = ((first + torch.arange(args.seq + 1)) % 256).to(device)
        start.record()
        logits = model(idx[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        end.record()
        step_ms.append(start.elapsed_time(end))
        if rank == 0:
            sys.stdout.write(progress(step, args.steps, loss.item(), step_ms[-1]))
            sys.stdout.flush()
        if step < args.steps and step >= 2:
            prof.step()
    prof.stop()
    if rank == 0:
        print()
        tail = step_ms[1:] or step_ms
        print(f"final loss {loss.item():.4f}; modelled Trainium3 step time "
              f"{sum(tail) / len(tail):.3f} ms (steady state); host wall time {time.time() - t0:.1f} s")
        for name, s in sorted(collective_stats().items()):
            print(f"  {name:15s} {s.calls:5d} calls  {s.bytes / 2**20:9.2f} MiB  "
                  f"modelled {s.seconds * 1e3:8.3f} ms")
        comm = prof.communication()
        print(f"communication {comm.comm_s * 1e3:.3f} ms/step: {comm.hidden_s * 1e3:.3f} ms hidden behind "
              f"compute ({comm.hidden_share:.0%}), {comm.exposed_s * 1e3:.3f} ms exposed; "
              f"compute {comm.compute_s * 1e3:.3f} ms/step")
        if args.summary:
            print(prof.summary())
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
