"""Training scenarios (2 ranks): FSDP2, DDP, tensor parallelism and MoE
expert parallelism on trn, each compared with a single-process run on trn
that this rank computes itself (no collectives) from the same seeds."""
from __future__ import annotations

import copy

import torch
import torch.distributed as dist

from models import moe_expert_parallel, moe_reference
from torch_trn3.testing import TinyDecoder, lm_loss
from workers import DEV, RANK, WORLD, check, close

STEPS = 3
BATCH_PER_RANK = 2
SEQ = 16
#: fp32 runs: the only differences are summation order of the gradient
#: reduction (sum of per-rank means vs one mean) -> float32 rounding.
FP32_TOL = dict(rtol=1e-4, atol=2e-5)
#: bf16 compute (MixedPrecisionPolicy): both runs compute in bf16 but
#: reduce in a different order. Adam normalises the gradient, so a rounding
#: difference on a near-zero gradient can flip a step of size ~lr: single
#: elements may differ by up to 2 x lr x STEPS. Bulk agreement is what shows
#: the runs are the same: 99% of elements within 2e-3, mean difference tiny.
LR = 1e-2
BF16_TOL = dict(rtol=0.0, atol=2 * LR * STEPS)
BF16_BULK_ATOL = 2e-3
BF16_MEAN_ABS_TOL = 5e-4


def _data(step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randint(0, 64, (BATCH_PER_RANK * WORLD, SEQ + 1), generator=g)


def _fresh_model() -> TinyDecoder:
    torch.manual_seed(0)
    return TinyDecoder(seq=SEQ).to(DEV)


def _reference(param_dtype=None) -> dict:
    """Single-process training on the full batch; with ``param_dtype`` the
    forward/backward use parameters cast to it (what FSDP2 mixed precision
    does), the fp32 master copy is updated."""
    model = _fresh_model()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    for step in range(STEPS):
        idx = _data(step).to(DEV)
        if param_dtype is None:
            loss = lm_loss(model, idx)
        else:
            params = {k: v.to(param_dtype) for k, v in model.named_parameters()}
            loss = lm_loss(lambda i: torch.func.functional_call(model, params, (i,)), idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().cpu() for k, v in model.named_parameters()}


def _local_batch(step: int) -> torch.Tensor:
    return _data(step)[RANK * BATCH_PER_RANK:(RANK + 1) * BATCH_PER_RANK].to(DEV)


def _train_fsdp2(mp_policy) -> dict:
    from torch.distributed.fsdp import fully_shard

    model = _fresh_model()
    for blk in model.blocks:
        fully_shard(blk, mp_policy=mp_policy, reshard_after_forward=True)
    fully_shard(model, mp_policy=mp_policy, reshard_after_forward=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    for step in range(STEPS):
        loss = lm_loss(model, _local_batch(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.full_tensor().detach().cpu() for k, v in model.named_parameters()}


def _compare(got: dict, want: dict, tol: dict) -> None:
    assert got.keys() == want.keys(), (got.keys(), want.keys())
    for k in want:
        torch.testing.assert_close(got[k], want[k], **tol, msg=lambda m, k=k: f"{k}: {m}")


def scenario_training():
    dist.init_process_group("trnccl")
    ref = _reference()
    initial = {k: v.detach().cpu() for k, v in _fresh_model().named_parameters()}

    with check("reference_trains"):
        moved = max((ref[k] - initial[k]).abs().max().item() for k in ref)
        assert moved > 1e-3, moved

    with check("fsdp2_fp32_matches_single_process"):
        from torch.distributed.fsdp import MixedPrecisionPolicy
        got = _train_fsdp2(MixedPrecisionPolicy(param_dtype=torch.float32))
        _compare(got, ref, FP32_TOL)

    with check("fsdp2_bf16_mixed_precision_matches_single_process"):
        from torch.distributed.fsdp import MixedPrecisionPolicy
        want = _reference(param_dtype=torch.bfloat16)
        got = _train_fsdp2(MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                reduce_dtype=torch.float32))
        _compare(got, want, BF16_TOL)
        diffs = torch.cat([(got[k] - want[k]).abs().flatten() for k in want])
        assert (diffs <= BF16_BULK_ATOL).float().mean() >= 0.99, (diffs > BF16_BULK_ATOL).sum()
        assert diffs.mean() < BF16_MEAN_ABS_TOL, diffs.mean()

    with check("ddp_matches_single_process"):
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(_fresh_model(), device_ids=[DEV.index])
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        for step in range(STEPS):
            loss = lm_loss(model, _local_batch(step))
            opt.zero_grad()
            loss.backward()
            opt.step()
        got = {k[len("module."):]: v.detach().cpu() for k, v in model.named_parameters()}
        _compare(got, ref, FP32_TOL)

    with check("tensor_parallel_matches_single_process"):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.parallel import (ColwiseParallel, RowwiseParallel,
                                                       parallelize_module)
        mesh = init_device_mesh("trn", (WORLD,))
        model = _fresh_model()
        plan = {}
        for i in range(len(model.blocks)):
            plan.update({
                f"blocks.{i}.attn.q": ColwiseParallel(),
                f"blocks.{i}.attn.k": ColwiseParallel(),
                f"blocks.{i}.attn.v": ColwiseParallel(),
                f"blocks.{i}.attn.o": RowwiseParallel(),
                f"blocks.{i}.mlp.w1": ColwiseParallel(),
                f"blocks.{i}.mlp.w2": RowwiseParallel(),
            })
        parallelize_module(model, mesh, plan)
        # foreach=False: the un-parallelised parameters stay plain tensors, and
        # the foreach kernels refuse a mix of tensors and DTensors
        opt = torch.optim.AdamW(model.parameters(), lr=LR, foreach=False)
        for step in range(STEPS):
            loss = lm_loss(model, _data(step).to(DEV))  # TP: every rank sees the full batch
            opt.zero_grad()
            loss.backward()
            opt.step()
        got = {}
        for k, v in model.named_parameters():
            got[k] = (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu()
        _compare(got, ref, FP32_TOL)

    _moe_checks()
    dist.barrier()


def _moe_checks():
    num_experts, top_k, dim, hidden, tokens = 4, 2, 16, 32, 24
    local_e = num_experts // WORLD
    g = torch.Generator().manual_seed(7)
    x_all = torch.randn(WORLD, tokens, dim, generator=g)
    router = torch.randn(dim, num_experts, generator=g)
    # skew the router so ranks send uneven numbers of tokens to each expert
    router[:, 0] += 0.8
    w1 = torch.randn(num_experts, dim, hidden, generator=g) / dim ** 0.5
    w2 = torch.randn(num_experts, hidden, dim, generator=g) / hidden ** 0.5

    with check("moe_expert_parallel_forward_backward_match_reference"):
        # reference: one rank, all experts, all tokens
        xr = x_all.reshape(-1, dim).to(DEV).requires_grad_(True)
        w1r, w2r = w1.to(DEV).requires_grad_(True), w2.to(DEV).requires_grad_(True)
        rr = router.to(DEV).requires_grad_(True)
        yr = moe_reference(xr, rr, w1r, w2r, top_k)
        yr.square().sum().backward()

        # expert parallel: my tokens, my experts
        x = x_all[RANK].to(DEV).requires_grad_(True)
        mine = slice(RANK * local_e, (RANK + 1) * local_e)
        w1l = w1[mine].to(DEV).requires_grad_(True)
        w2l = w2[mine].to(DEV).requires_grad_(True)
        rl = router.to(DEV).requires_grad_(True)
        y = moe_expert_parallel(x, rl, w1l, w2l, top_k, dist.group.WORLD, num_experts)
        y.square().sum().backward()

        # splits really are uneven
        counts = torch.bincount(torch.softmax(x_all[RANK] @ router, -1).topk(top_k, -1)[1]
                                .reshape(-1), minlength=num_experts)
        assert len(set(counts.view(WORLD, local_e).sum(1).tolist())) > 1 or \
            len(set(counts.tolist())) > 1, counts

        tol = dict(rtol=1e-4, atol=1e-5)
        close(y, yr.detach()[RANK * tokens:(RANK + 1) * tokens], **tol)
        close(x.grad, xr.grad[RANK * tokens:(RANK + 1) * tokens], **tol)
        close(w1l.grad, w1r.grad[mine], **tol)
        close(w2l.grad, w2r.grad[mine], **tol)
        # the router is replicated: its gradient is the sum over ranks
        dist.all_reduce(rl.grad)
        close(rl.grad, rr.grad, **tol)


# Scenarios kept in their own modules; workers.py finds scenarios here.
from checkpointing import scenario_checkpoint_load, scenario_checkpoint_save  # noqa: E402,F401
from symm_mem_checks import scenario_symm_mem  # noqa: E402,F401
