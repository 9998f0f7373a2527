"""Communication overlapping compute (2 ranks): with FSDP2 the all-gather of
the next block runs on the collective cores while the engines compute, so
the modelled step is shorter than its compute plus its communication.

The checks read the profiler's modelled timeline of one steady-state step
(the second) and compare :meth:`torch_trn3.profiler.profile.communication`
with interval arithmetic done here on the raw records."""
from __future__ import annotations

import torch
import torch.distributed as dist

from torch_trn3.testing import TinyDecoder, lm_loss
from workers import DEV, RANK, check

DIM, LAYERS, SEQ, BATCH = 128, 4, 64, 4


def _busy(intervals):
    """Total length of the union of (start, end) intervals."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e > end:
            total += e - max(s, end)
            end = e
    return total


def scenario_overlap():
    import torch_trn3.profiler as tp
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch_trn3.hw.cost import Engine

    dist.init_process_group("trnccl")
    torch.manual_seed(0)
    model = TinyDecoder(dim=DIM, layers=LAYERS, seq=SEQ).to(DEV)
    mp = MixedPrecisionPolicy(param_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(RANK)
    with tp.profile(with_modules=False) as prof:
        for _ in range(2):
            idx = torch.randint(0, 64, (BATCH, SEQ + 1), generator=g).to(DEV)
            loss = lm_loss(model, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            prof.step()
    step = [r for r in prof.records if r.step == 1 and r.device == DEV.index]
    window = prof.steps[1].windows[DEV.index]
    comm = [(r.start_s, r.end_s) for r in step if r.engine is Engine.COLLECTIVE]
    work = [(r.start_s, r.end_s) for r in step if r.engine is not Engine.COLLECTIVE]
    comm_s, work_s, all_s = _busy(comm), _busy(work), _busy(comm + work)
    hidden_s = comm_s + work_s - all_s          # inclusion-exclusion
    step_s = window[1] - window[0]
    print(f"rank {RANK}: step {step_s * 1e6:.1f} us, compute {work_s * 1e6:.1f} us, "
          f"communication {comm_s * 1e6:.1f} us, hidden {hidden_s * 1e6:.1f} us", flush=True)

    with check("fsdp2_step_is_shorter_than_compute_plus_communication"):
        assert len(comm) >= 2 * (LAYERS + 1), len(comm)   # all-gathers + reduce-scatters
        assert step_s < work_s + comm_s, (step_s, work_s, comm_s)
        assert hidden_s > 0.25 * comm_s, (hidden_s, comm_s)

    with check("forward_all_gathers_of_later_blocks_run_under_compute"):
        gathers = [r for r in step if r.name == "trnccl::all_gather"]
        fully_hidden = [r for r in gathers
                        if _busy([(max(s, r.start_s), min(e, r.end_s)) for s, e in work
                                  if e > r.start_s and s < r.end_s]) >= r.duration_s * (1 - 1e-9)]
        assert len(fully_hidden) >= LAYERS - 1, (len(fully_hidden), len(gathers))

    with check("profiler_reports_exposed_and_hidden_communication"):
        assert prof.devices == [DEV.index]
        mine = prof.records
        all_comm = [(r.start_s, r.end_s) for r in mine if r.engine is Engine.COLLECTIVE]
        all_work = [(r.start_s, r.end_s) for r in mine if r.engine is not Engine.COLLECTIVE]
        steps = len(prof.steps)
        want_comm = _busy(all_comm) / steps
        want_hidden = (_busy(all_comm) + _busy(all_work) - _busy(all_comm + all_work)) / steps
        c = prof.communication()   # means per step (and device)
        assert abs(c.comm_s - want_comm) <= 1e-9 * want_comm, (c.comm_s, want_comm)
        assert abs(c.hidden_s - want_hidden) <= 1e-9 * want_comm, (c.hidden_s, want_hidden)
        assert abs(c.exposed_s - (want_comm - want_hidden)) <= 1e-9 * want_comm
        summary = prof.summary()
        line = next(x for x in summary.splitlines() if x.startswith("communication"))
        assert "hidden behind compute" in line and "exposed" in line, line
