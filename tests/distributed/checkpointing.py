"""Distributed checkpoint scenarios: ``torch.distributed.checkpoint`` save of
an FSDP2 model and its AdamW state on trn, loaded resharded into another
world size.

``checkpoint_save`` (N ranks): trains a sharded model ``STEPS`` steps,
saves ``{"model", "optim"}`` from ``get_state_dict`` with ``dcp.save`` into
``CKPT_DIR``, and writes (rank 0, ``torch.save``) an independent reference:
every parameter's full value and AdamW state (``full_tensor()`` of the
DTensors), and the full parameters after one more training step.

``checkpoint_load`` (M ranks, M != N): builds the same model from a
different seed, ``dcp.load`` + ``set_state_dict``, checks parameters and
optimizer state equal the reference exactly, then takes the same extra step
(on the same global batch) and checks it matches the N-rank continuation.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from torch_trn3.testing import TinyDecoder, lm_loss
from workers import DEV, RANK, WORLD, check

STEPS = 2
GLOBAL_BATCH = 4
SEQ = 16
LR = 1e-2
#: the continuation step: 2 ranks reduce per-rank mean gradients, 1 rank one
#: mean -> float32 summation order only (as training.FP32_TOL)
FP32_TOL = dict(rtol=1e-4, atol=2e-5)


def _ckpt_dir() -> str:
    return os.environ["CKPT_DIR"]


def _batch(step: int) -> torch.Tensor:
    """This rank's rows of a fixed global batch (any world size dividing it)."""
    g = torch.Generator().manual_seed(2000 + step)
    full = torch.randint(0, 64, (GLOBAL_BATCH, SEQ + 1), generator=g)
    per = GLOBAL_BATCH // WORLD
    return full[RANK * per:(RANK + 1) * per].to(DEV)


def _sharded_model(seed: int):
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(seed)
    model = TinyDecoder(seq=SEQ).to(DEV)
    for blk in model.blocks:
        fully_shard(blk)
    fully_shard(model)
    return model, torch.optim.AdamW(model.parameters(), lr=LR)


def _step(model, opt, step: int) -> None:
    loss = lm_loss(model, _batch(step))
    opt.zero_grad()
    loss.backward()
    opt.step()


def _full(t):
    t = t.full_tensor() if hasattr(t, "full_tensor") else t
    return t.detach().cpu().clone()


def _full_state(model, opt) -> dict:
    """fqn -> {"param", "exp_avg", "exp_avg_sq", "step"}, all full CPU tensors."""
    out = {}
    for name, p in model.named_parameters():
        st = opt.state[p]
        out[name] = {"param": _full(p), **{k: _full(st[k]) for k in ("exp_avg", "exp_avg_sq", "step")}}
    return out


def scenario_checkpoint_save():
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    dist.init_process_group("trnccl")
    model, opt = _sharded_model(seed=0)
    for step in range(STEPS):
        _step(model, opt, step)

    with check("save_fsdp2_model_and_optimizer"):
        msd, osd = get_state_dict(model, opt)
        some = next(iter(msd.values()))
        assert some.device.type == DEV.type, some.device
        assert type(some).__name__ == "DTensor", type(some)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=_ckpt_dir())
        files = sorted(os.listdir(_ckpt_dir()))
        assert ".metadata" in files, files
        assert sum(f.endswith(".distcp") for f in files) >= WORLD, files

    reference = _full_state(model, opt)
    _step(model, opt, STEPS)  # the continuation the loaded run must reproduce
    after = {k: _full(v) for k, v in model.named_parameters()}
    if RANK == 0:
        torch.save({"state": reference, "after_step": after},
                   os.path.join(_ckpt_dir(), "reference.pt"))
    dist.barrier()


def scenario_checkpoint_load():
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    dist.init_process_group("trnccl")
    ref = torch.load(os.path.join(_ckpt_dir(), "reference.pt"))
    model, opt = _sharded_model(seed=1)  # different values: the load must overwrite them

    with check("load_resharded_model_and_optimizer"):
        before = {k: _full(v) for k, v in model.named_parameters()}
        assert any(not torch.equal(before[k], ref["state"][k]["param"]) for k in before)
        msd, osd = get_state_dict(model, opt)
        sd = {"model": msd, "optim": osd}
        dcp.load(sd, checkpoint_id=_ckpt_dir())
        set_state_dict(model, opt, model_state_dict=sd["model"], optim_state_dict=sd["optim"])

    with check("loaded_parameters_equal_saved"):
        got = _full_state(model, opt)
        assert got.keys() == ref["state"].keys(), (got.keys(), ref["state"].keys())
        for name in got:
            p = dict(model.named_parameters())[name]
            assert p.device.type == DEV.type and len(p.device_mesh.mesh.flatten()) == WORLD
            torch.testing.assert_close(got[name]["param"], ref["state"][name]["param"],
                                       rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")

    with check("loaded_optimizer_state_equals_saved"):
        for name in got:
            for key in ("exp_avg", "exp_avg_sq", "step"):
                torch.testing.assert_close(got[name][key], ref["state"][name][key], rtol=0, atol=0,
                                           msg=lambda m, n=name, k=key: f"{n}.{k}: {m}")

    with check("resumed_step_matches_saving_world"):
        _step(model, opt, STEPS)
        for name, p in model.named_parameters():
            torch.testing.assert_close(_full(p), ref["after_step"][name], **FP32_TOL,
                                       msg=lambda m, n=name: f"{n}: {m}")
    dist.barrier()
