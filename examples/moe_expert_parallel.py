"""Mixture of experts with expert parallelism on emulated Trainium3.

    torchrun --nproc_per_node 2 examples/moe_expert_parallel.py [--steps 10]

A token-choice top-k MoE layer: every rank routes its own tokens, sends each
token to the rank holding its expert with ``all_to_all_single`` (uneven
splits, autograd variant), runs its local experts with ``torch._grouped_mm``
and sends the results back the same way. Rank 0 prints the loss and the
*modelled* all-to-all time on the system ``TRN3_SYSTEM`` names (default
trn3-nl72x2); with LNC=2 ranks 0-3 share a chip, so set ``TRN3_LNC=8`` to see
the ranks spread over chips and the fabric come into play.
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as fc
import torch.nn as nn
import torch.nn.functional as F


class ExpertParallelMoE(nn.Module):
    """``num_experts`` SwiGLU-free FFN experts, ``num_experts / world`` per rank."""

    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, group=None):
        super().__init__()
        self.group = group or dist.group.WORLD
        self.world = dist.get_world_size(self.group)
        self.rank = dist.get_rank(self.group)
        assert num_experts % self.world == 0, "experts must divide evenly over ranks"
        self.num_experts, self.top_k, self.local = num_experts, top_k, num_experts // self.world
        self.router = nn.Linear(dim, num_experts, bias=False)  # replicated
        self.w1 = nn.Parameter(torch.randn(self.local, dim, hidden) / dim ** 0.5)
        self.w2 = nn.Parameter(torch.randn(self.local, hidden, dim) / hidden ** 0.5)

    def forward(self, x):  # x: [tokens, dim]
        t, k = x.shape[0], self.top_k
        probs = torch.softmax(self.router(x), dim=-1)
        gates, experts = probs.topk(k, dim=-1)
        gates = gates / gates.sum(-1, keepdim=True)
        flat = experts.reshape(-1)
        order = flat.argsort(stable=True)  # by expert, hence by destination rank
        send = x.repeat_interleave(k, dim=0)[order]
        counts = torch.bincount(flat, minlength=self.num_experts)
        recv_counts = torch.empty_like(counts)
        dist.all_to_all_single(recv_counts, counts, group=self.group)  # token counts first
        send_splits = counts.view(self.world, self.local).sum(1).tolist()
        recv_splits = recv_counts.view(self.world, self.local).sum(1).tolist()
        # dispatch
        recv = fc.wait_tensor(fc.all_to_all_single_autograd(send, recv_splits, send_splits, self.group))
        per_src = recv_counts.view(self.world, self.local)
        owner = torch.repeat_interleave(torch.arange(self.world * self.local, device=x.device),
                                        per_src.reshape(-1)) % self.local
        regroup = owner.argsort(stable=True)  # [source][expert] -> [expert]
        offs = torch.cumsum(per_src.sum(0), 0).to(torch.int32)
        h = F.silu(torch._grouped_mm(recv[regroup], self.w1, offs=offs))
        y = torch._grouped_mm(h, self.w2, offs=offs)
        back = torch.empty_like(y)
        back[regroup] = y
        # combine
        out = fc.wait_tensor(fc.all_to_all_single_autograd(back, send_splits, recv_splits, self.group))
        unsorted = torch.empty_like(out)
        unsorted[order] = out
        return (unsorted.view(t, k, -1) * gates.unsqueeze(-1)).sum(1), send_splits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=512, help="tokens per rank")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    args = parser.parse_args()

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("trn", local_rank)
    dist.init_process_group(device_id=device)
    rank, world = dist.get_rank(), dist.get_world_size()

    from torch_trn3.distributed import collective_stats, current_system

    torch.manual_seed(0)  # same router everywhere; experts differ per rank below
    moe = ExpertParallelMoE(args.dim, args.hidden, args.experts, args.top_k).to(device)
    with torch.no_grad():
        g = torch.Generator().manual_seed(100 + rank)
        moe.w1.copy_(torch.randn(moe.w1.shape, generator=g) / args.dim ** 0.5)
        moe.w2.copy_(torch.randn(moe.w2.shape, generator=g) / args.hidden ** 0.5)
    opt = torch.optim.AdamW(moe.parameters(), lr=1e-3)
    target_map = torch.randn(args.dim, args.dim, generator=torch.Generator().manual_seed(5)).to(device)
    if rank == 0:
        print(f"MoE EP: {args.experts} experts over {world} ranks ({moe.local} per rank), top-{args.top_k}, "
              f"{args.tokens} tokens/rank; all-to-all priced on {current_system().describe()}")

    gen = torch.Generator().manual_seed(rank)
    for step in range(1, args.steps + 1):
        x = torch.randn(args.tokens, args.dim, generator=gen).to(device)
        collective_stats(reset=True)
        y, splits = moe(x)
        loss = F.mse_loss(y, torch.tanh(x @ target_map))
        opt.zero_grad()
        loss.backward()
        # the router is replicated: average its gradient over the ranks
        dist.all_reduce(moe.router.weight.grad, op=dist.ReduceOp.AVG)
        opt.step()
        a2a = collective_stats().get("all_to_all")
        if rank == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}  tokens sent per rank {splits}  "
                  f"modelled all-to-all {a2a.calls} calls, {a2a.bytes / 2**10:.0f} KiB, "
                  f"{a2a.seconds * 1e6:.1f} us")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
