"""The MoE layer the distributed tests train, with expert parallelism
(dispatch/combine through ``all_to_all_single`` with uneven splits, experts
through ``torch._grouped_mm``). The transformer they train is the shared
:class:`torch_trn3.testing.TinyDecoder`."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def route(x: torch.Tensor, router: torch.Tensor, top_k: int):
    """Token-choice top-k: (expert ids [T, k], gate weights [T, k])."""
    probs = torch.softmax(x @ router, dim=-1)
    gates, experts = probs.topk(top_k, dim=-1)
    return experts, gates / gates.sum(-1, keepdim=True)


def expert_ffn(x: torch.Tensor, counts: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor):
    """Rows of ``x`` grouped by expert (``counts`` rows each) through each
    expert's FFN with two grouped GEMMs."""
    offs = torch.cumsum(counts, 0).to(torch.int32)
    h = F.silu(torch._grouped_mm(x, w1, offs=offs))
    return torch._grouped_mm(h, w2, offs=offs)


def moe_reference(x, router, w1, w2, top_k):
    """All experts on one rank: the result expert parallelism must match."""
    t = x.shape[0]
    experts, gates = route(x, router, top_k)
    flat = experts.reshape(-1)
    order = flat.argsort(stable=True)
    xs = x.repeat_interleave(top_k, dim=0)[order]
    counts = torch.bincount(flat, minlength=w1.shape[0])
    ys = expert_ffn(xs, counts, w1, w2)
    out = torch.empty_like(ys)
    out[order] = ys
    return (out.view(t, top_k, -1) * gates.unsqueeze(-1)).sum(1)


def moe_expert_parallel(x, router, w1_local, w2_local, top_k, group, num_experts: int):
    """This rank's tokens through experts spread over ``group`` (expert e on
    rank e // experts_per_rank): dispatch and combine are
    ``all_to_all_single`` with uneven splits (autograd variants)."""
    import torch.distributed as dist
    import torch.distributed._functional_collectives as fc

    world = dist.get_world_size(group)
    local_e = num_experts // world
    t = x.shape[0]
    experts, gates = route(x, router, top_k)
    flat = experts.reshape(-1)
    order = flat.argsort(stable=True)  # grouped by expert, so by destination rank
    xs = x.repeat_interleave(top_k, dim=0)[order]
    counts = torch.bincount(flat, minlength=num_experts)  # rows I send to each expert
    # every rank learns how many rows it receives per (source rank, local expert)
    recv_counts = torch.empty_like(counts)
    dist.all_to_all_single(recv_counts, counts, group=group)
    send_splits = counts.view(world, local_e).sum(1).tolist()
    recv_splits = recv_counts.view(world, local_e).sum(1).tolist()
    received = fc.all_to_all_single_autograd(xs, recv_splits, send_splits, group)
    received = fc.wait_tensor(received)
    # received rows are [source rank][local expert]: regroup by local expert
    per_src = recv_counts.view(world, local_e)
    src_of = torch.repeat_interleave(torch.arange(world * local_e, device=x.device),
                                     per_src.reshape(-1))
    expert_of_row = src_of % local_e
    regroup = expert_of_row.argsort(stable=True)
    ys = expert_ffn(received[regroup], per_src.sum(0), w1_local, w2_local)
    back = torch.empty_like(ys)
    back[regroup] = ys
    returned = fc.wait_tensor(fc.all_to_all_single_autograd(back, send_splits, recv_splits, group))
    out = torch.empty_like(returned)
    out[order] = returned
    return (out.view(t, top_k, -1) * gates.unsqueeze(-1)).sum(1)
