"""The profiler summary groups collectives by op and message size (power-of-2
buckets) with the distribution of their modelled durations."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch_trn3.profiler as tp
from torch_trn3 import _C
from torch_trn3.hw.cost import Engine

US = 1e-6
COLLECTIVE_ENGINE = Engine.COLLECTIVE.value


def charge(name, seconds, nbytes, t):
    """Charges one collective as trnccl does (on the collective engine)."""
    _C._charge(name, t.device.index, COLLECTIVE_ENGINE, seconds, 0.0, float(nbytes), [t], [t])


def test_collectives_grouped_by_op_and_power_of_two_size_with_distribution():
    t = torch.ones(1024, device="trn")
    with tp.profile() as prof:
        # all_reduce, [4 KiB, 8 KiB): 1, 2, 3, 4, 10 us
        for us, nbytes in ((3, 4096), (1, 5000), (10, 8191), (2, 4096), (4, 6000)):
            charge("trnccl::all_reduce", us * US, nbytes, t)
        charge("trnccl::all_reduce", 7 * US, 8192, t)     # next bucket
        charge("trnccl::all_reduce", 0.5 * US, 100, t)    # [64 B, 128 B)
        charge("trnccl::all_gather", 5 * US, 4096, t)     # other op, same size
        t.add_(1)                                         # not a collective
    groups = {(c.name, c.bucket_bytes): c for c in prof.collectives()}
    assert set(groups) == {("trnccl::all_reduce", 64), ("trnccl::all_reduce", 4096),
                           ("trnccl::all_reduce", 8192), ("trnccl::all_gather", 4096)}
    ar = groups[("trnccl::all_reduce", 4096)]
    assert ar.calls == 5 and ar.size_range == "[4 KiB, 8 KiB)"
    assert ar.total_bytes == 4096 + 5000 + 8191 + 4096 + 6000
    assert ar.min_s == pytest.approx(1 * US)
    assert ar.median_s == pytest.approx(3 * US)
    # p90 of [1, 2, 3, 4, 10], linear between closest ranks: 4 + 0.6 * (10 - 4)
    assert ar.p90_s == pytest.approx(7.6 * US)
    assert ar.max_s == pytest.approx(10 * US)
    assert ar.total_s == pytest.approx(20 * US)
    assert groups[("trnccl::all_reduce", 64)].size_range == "[64 B, 128 B)"
    assert groups[("trnccl::all_gather", 4096)].calls == 1


def test_summary_has_the_collectives_section():
    t = torch.ones(256, device="trn")
    with tp.profile() as prof:
        for us in (2, 4, 6, 8):
            charge("trnccl::reduce_scatter", us * US, 1 << 20, t)
    text = prof.summary()
    assert "Collectives by op and message size" in text
    section = text.split("Collectives by op and message size")[1]
    line = next(l for l in section.splitlines() if l.startswith("trnccl::reduce_scatter"))
    # calls 4, total 20 us, min 2, median 5, p90 7.4, max 8
    assert line.split()[1:] == ["[1", "MiB,", "2", "MiB)", "4", "20.0", "us", "2.0", "us",
                                "5.0", "us", "7.4", "us", "8.0", "us"], line


def test_summary_without_collectives_has_no_section():
    with tp.profile() as prof:
        torch.ones(16, device="trn").add_(1)
    assert prof.collectives() == []
    assert "Collectives by op" not in prof.summary()


def test_real_trnccl_collectives_are_grouped(tmp_path):
    """A 1-rank trnccl group: every call is charged its modelled price."""
    from torch_trn3.distributed import cost

    store = dist.FileStore(os.path.join(tmp_path, "store"), 1)
    dist.init_process_group("trnccl", store=store, rank=0, world_size=1)
    try:
        x = torch.ones(1 << 18, device="trn")    # 1 MiB
        y = torch.ones(1 << 8, device="trn")     # 1 KiB
        with tp.profile() as prof:
            for _ in range(3):
                dist.all_reduce(x)
            dist.all_reduce(y)
            dist.broadcast(y, 0)
    finally:
        dist.destroy_process_group()
    groups = {(c.name, c.bucket_bytes): c for c in prof.collectives()}
    assert set(groups) == {("trnccl::all_reduce", 1 << 20), ("trnccl::all_reduce", 1 << 10),
                           ("trnccl::broadcast", 1 << 10)}
    big = groups[("trnccl::all_reduce", 1 << 20)]
    # one rank moves nothing: each call costs only the collective launch
    want = cost.current_system().latency.launch_s
    assert big.calls == 3
    assert big.min_s == pytest.approx(want) and big.max_s == pytest.approx(want)
    assert "trnccl::broadcast" in prof.summary()
