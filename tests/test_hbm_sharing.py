"""Shared HBM: ops that overlap on a device's timeline share its HBM bandwidth.

Hand numbers use the Trainium3 spec at LNC=2 (hw/specs.py): a device gets
2/8 of the chip's 4.9 TB/s = 1.225 TB/s of HBM; the Tensor Engine runs BF16
at 2 x 128 x 128 x 2.4 GHz per core; one DMA transfer has a fixed 1 us
issue cost. An op's HBM share while it runs is (its HBM time alone) /
(its duration); an op scheduled while others hold part of the bandwidth
gets what they leave, and is stretched when that is not enough
(csrc/runtime/TrnClock.h).
"""
from __future__ import annotations

import pytest
import torch
import torch_trn3
import torch_trn3.profiler as tp
from torch_trn3.distributed import cost as dist_cost

HBM_BYTES_PER_S = 4.9e12 * 2 / 8       # 1.225e12 B/s per LNC=2 device
DMA_ISSUE_S = 1e-6

pytestmark = pytest.mark.skipif(torch_trn3.machine.lnc != 2 or torch_trn3.machine.chip.name != "Trainium3",
                                reason="hand numbers are for Trainium3 at LNC=2")


def _barrier(*streams):
    """Nothing after this starts before everything issued so far has ended
    (the inputs' randn must not share HBM with the ops under test)."""
    done = torch.trn.Event()
    done.record()
    for s in streams or (torch.trn.current_stream(),):
        s.wait_event(done)


def _profiled(fn, *streams):
    _barrier(*streams)
    with tp.profile(with_modules=False) as prof:
        fn()
    return prof


def _one(prof, base):
    (record,) = [r for r in prof.records if r.base == base]
    return record


def test_memory_bound_op_beside_a_matmul_waits_for_the_bandwidth_the_matmul_holds():
    a = torch.randn(1024, 1024, device="trn", dtype=torch.bfloat16)
    x = torch.randn(2**22, device="trn")
    # matmul 1024^3 bf16: 8 M tiles x 8 K tiles x 1024 columns x 8 of 16 output
    # tiles on the busiest core / 2.4 GHz = 13.653 us + 64 instructions x 64
    # cycles = 1.707 us -> 15.360 us; its HBM: 4 MiB in + 2 MiB out = 5.136 us.
    mm_hbm_s = 6 * 2**20 / HBM_BYTES_PER_S
    mm_s = 8 * 8 * 1024 * 8 / 16 / 2.4e9 + 64 * 64 / 2.4e9
    # exp of 4 Mi fp32: 32 MiB of HBM = 27.392 us (memory-bound) + 32 Scalar
    # instructions x 64 cycles / 1.2 GHz = 1.707 us -> 29.098 us alone.
    exp_hbm_s = 2 * 4 * 2**22 / HBM_BYTES_PER_S
    exp_s = exp_hbm_s + 32 * 64 / 1.2e9
    prof = _profiled(lambda: (a @ a, x.exp()))
    mm, exp = _one(prof, "mm"), _one(prof, "exp")
    assert mm.duration_s == pytest.approx(mm_s, rel=1e-6)
    assert mm.hbm_stall_s == 0.0                          # scheduled first: full bandwidth
    assert exp.start_s < mm.end_s                         # the engines do overlap
    # While the matmul runs, the exp gets 1 - 5.136/15.360 of the bandwidth, so
    # by the matmul's end it has moved 15.360 - 5.136 us worth of bytes; the
    # rest at full bandwidth: it finishes exactly the matmul's HBM time late.
    assert exp.hbm_stall_s == pytest.approx(mm_hbm_s, rel=1e-6)
    assert exp.duration_s == pytest.approx(exp_s + mm_hbm_s, rel=1e-6)
    assert prof.hbm_stall_s == pytest.approx(mm_hbm_s, rel=1e-6)
    assert "HBM contention" in prof.summary()
    (exp_stats,) = [g for g in prof.key_averages() if g.name.startswith("aten::exp")]
    assert exp_stats.hbm_stall_s == pytest.approx(mm_hbm_s, rel=1e-6)


def test_compute_bound_op_whose_traffic_fits_in_the_leftover_is_not_stretched():
    a = torch.randn(1024, 1024, device="trn", dtype=torch.bfloat16)
    v = torch.randn(2**20, device="trn")
    # sort of 1 Mi fp32 on GpSimd: 20 passes x 2^20 / (128 lanes x 1.2 GHz x 2
    # cores) = 68.27 us of compute + 20 Mi / 64 Ki elements per instruction /
    # 2 cores = 160 instructions x 64 cycles / 1.2 GHz = 8.53 us; 8 MiB of HBM
    # = 6.85 us: a 9% share. Beside the matmul's 33% it gets 67%: 10.3 us of
    # traffic, hidden by its compute.
    prof = _profiled(lambda: (a @ a, torch.sort(v)))
    sort = _one(prof, "sort")
    assert sort.start_s < _one(prof, "mm").end_s
    assert sort.hbm_stall_s == 0.0
    assert sort.duration_s == pytest.approx(20 * 2**20 / (128 * 1.2e9 * 2) + 160 * 64 / 1.2e9,
                                            rel=1e-6)


def test_copies_on_two_streams_overlap_and_split_the_bandwidth():
    x = torch.randn(2**22, device="trn")     # 16 MiB
    copy_hbm_s = 2 * 16 * 2**20 / HBM_BYTES_PER_S   # read + write: 27.392 us
    s1, s2 = torch.trn.Stream(), torch.trn.Stream()

    def run():
        with torch.trn.stream(s1):
            x.clone()
        with torch.trn.stream(s2):
            x.clone()

    prof = _profiled(run, s1, s2)
    torch.trn.current_stream().wait_stream(s1)   # later work (other tests) after both
    torch.trn.current_stream().wait_stream(s2)
    first, second = [r for r in prof.records if r.base == "_copy_from"]
    # Each stream has its own DMA queue: both start when x is ready ...
    assert first.start_s == pytest.approx(second.start_s)
    assert first.duration_s == pytest.approx(copy_hbm_s + DMA_ISSUE_S, rel=1e-6)
    # ... but the second gets only the 1 us of bandwidth the first leaves
    # during its issue cost: it ends after both copies' bytes have moved,
    # 2 x 27.392 + 1 us, one issue cost less than back to back on one queue.
    assert second.hbm_stall_s == pytest.approx(copy_hbm_s, rel=1e-6)
    assert second.end_s - first.start_s == pytest.approx(2 * copy_hbm_s + DMA_ISSUE_S, rel=1e-6)


def test_a_collective_touches_hbm_only_to_read_its_source_and_write_its_destination():
    shard = torch.empty(2**18, device="trn")              # 1 MiB
    gathered = torch.empty(2**19, device="trn")           # 2 MiB
    # Hops in between move SBUF to SBUF: 3 MiB of HBM at 1.225 TB/s.
    assert dist_cost.hbm_seconds([shard], [gathered]) == pytest.approx(3 * 2**20 / HBM_BYTES_PER_S)
    assert dist_cost.hbm_seconds([gathered], [gathered]) == pytest.approx(4 * 2**20 / HBM_BYTES_PER_S)
