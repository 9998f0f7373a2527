"""Timing: each instruction on its engine's lane, priced from the spec, with tile dependencies."""
import pytest
import torch

import torch_trn3
import torch_trn3.nki as nki
import torch_trn3.nki.isa as nisa
import torch_trn3.nki.language as nl
import torch_trn3.profiler as tp
from torch_trn3.hw.specs import TRN3

DEV = torch_trn3.DEVICE_NAME
CHIP = TRN3
LOGICAL = torch_trn3.machine.logical


def _dma_s(nbytes):
    """Hand-computed DMA: the fixed cost shared by the core's 16 DMA queues (128 engines / 8 cores)
    + bytes over one core's share of the chip's DMA bandwidth (4.9 TB/s / 8)."""
    assert CHIP.dma.engines // CHIP.cores_per_chip == 16
    return CHIP.dma.issue_overhead_s / 16 + nbytes / (CHIP.dma.bytes_per_s / CHIP.cores_per_chip)


def _lane_s(engine_spec, n, rate=1.0):
    ii = engine_spec.issue_overhead_cycles
    return (max(ii, n / rate) + ii) / engine_spec.clock_hz


def _event_time(fn, *args):
    start, end = torch.trn.Event(enable_timing=True), torch.trn.Event(enable_timing=True)
    start.record()
    out = fn(*args)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3, out


@nki.jit
def one_matmul(a, b):
    out = nl.ndarray((a.shape[1], b.shape[1]), nl.float32, buffer=nl.shared_hbm)
    ta = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
    tb = nl.ndarray(b.shape, b.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ta, src=a)
    nisa.dma_copy(dst=tb, src=b)
    acc = nl.ndarray(out.shape, nl.float32, buffer=nl.psum)
    nisa.nc_matmul(acc, ta, tb)
    o = nl.ndarray(out.shape, nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(o, acc)
    nisa.dma_copy(dst=out, src=o)
    return out


@pytest.mark.skipif(torch_trn3.machine.chip is not TRN3, reason="hand-computed for Trainium3")
@pytest.mark.parametrize("dtype,passes", [(torch.bfloat16, 1), (torch.float32, 4)])
def test_dependent_chain_time_is_the_sum_of_hand_computed_instruction_costs(dtype, passes):
    K, M, N = 128, 128, 512
    a = torch.randn(K, M, device=DEV).to(dtype)
    b = torch.randn(K, N, device=DEV).to(dtype)
    torch.trn.synchronize()
    elapsed, out = _event_time(one_matmul, a, b)
    e = a.element_size()
    te = CHIP.tensor
    matmul_s = (N * passes + te.issue_overhead_cycles) / te.clock_hz
    copy_s = _lane_s(CHIP.vector, N)
    expected = _dma_s(K * M * e) + _dma_s(K * N * e) + matmul_s + copy_s + _dma_s(M * N * 4)
    assert elapsed == pytest.approx(expected, rel=1e-6)
    report = nki.last_kernel_report()
    assert report.elapsed_s == pytest.approx(expected, rel=1e-6)
    assert report.busy_s["tensor"] == pytest.approx(matmul_s)
    assert report.instructions == {"tensor": 1, "vector": 1, "scalar": 0, "gpsimd": 0, "dma": 3}
    assert report.flops == 2 * K * M * N
    assert report.bound == "dma"


@nki.jit
def two_engines(x, iters, dependent):
    """``iters`` exp activations (Scalar) and additions (Vector): independent, or each reading the last."""
    out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
    t = nl.load(x)
    s = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
    v = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
    for i in nl.sequential_range(iters):
        nisa.activation(s, nl.exp, v if dependent and i else t)
        nisa.tensor_tensor(v, s if dependent else t, t, op=nl.add)
    nisa.dma_copy(dst=out, src=v)
    return out


@pytest.mark.skipif(torch_trn3.machine.chip is not TRN3, reason="hand-computed for Trainium3")
def test_independent_engines_overlap_and_dependent_ones_do_not():
    x = torch.randn(128, 2048, device=DEV) * 0.01
    iters = 8
    free = 2048
    act = _lane_s(CHIP.scalar, free, CHIP.scalar.transcendental_per_lane_cycle)
    add = _lane_s(CHIP.vector, free)
    load = store = _dma_s(128 * free * 4)
    t_ind, _ = _event_time(two_engines, x, iters, False)
    rep = nki.last_kernel_report()
    assert rep.busy_s["scalar"] == pytest.approx(iters * act) and rep.busy_s["vector"] == pytest.approx(iters * add)
    # Independent: the lanes run side by side; the store waits only for the Vector chain,
    # and the kernel ends when both lanes are done.
    assert t_ind == pytest.approx(max(load + iters * act, load + iters * add + store), rel=1e-6)
    assert t_ind < load + iters * (act + add) + store
    t_dep, _ = _event_time(two_engines, x, iters, True)
    assert t_dep == pytest.approx(load + iters * (act + add) + store, rel=1e-6)
    assert t_dep - t_ind > 0.9 * (iters - 1) * min(act, add)


def test_profiler_shows_instructions_on_engine_lanes():
    a = torch.randn(128, 128, device=DEV).bfloat16()
    b = torch.randn(128, 512, device=DEV).bfloat16()
    with tp.profile() as prof:
        one_matmul(a, b)
    names = [(r.name, r.engine.name) for r in prof.records]
    assert names == [("nki::dma_copy", "DMA"), ("nki::dma_copy", "DMA"), ("nki::nc_matmul", "TENSOR"),
                     ("nki::tensor_copy", "VECTOR"), ("nki::dma_copy", "DMA")]
    mm = prof.records[2]
    assert mm.start_s >= prof.records[1].end_s     # the matmul waits for both loads
    assert mm.flops == 2 * 128 * 128 * 512
    assert prof.records[3].start_s >= mm.end_s    # the copy out of PSUM waits for the matmul


def test_kernel_waits_for_the_op_that_produced_its_input():
    a = torch.randn(512, 512, device=DEV)
    b = torch.randn(128, 512, device=DEV)
    with tp.profile() as prof:
        c = (a @ a)[:128, :128].contiguous()
        one_matmul(c, b)
    first_nki = next(r for r in prof.records if r.name.startswith("nki::"))
    producer = [r for r in prof.records if r.name.startswith("aten::")][-1]
    assert first_nki.start_s >= producer.end_s


def test_report_text_names_the_bound_engine():
    a = torch.randn(128, 128, device=DEV).bfloat16()
    b = torch.randn(128, 512, device=DEV).bfloat16()
    one_matmul(a, b)
    text = str(one_matmul.last_report)
    assert "bound by dma" in text and "tensor" in text and "% of BF16 Tensor Engine peak" in text


def test_untimed_on_cpu_and_isa_cost_reads_the_spec():
    from torch_trn3.hw import isa_cost

    c = isa_cost.nc_matmul(CHIP, 128, 128, 512, "bf16")
    assert c.seconds == (512 + CHIP.tensor.issue_overhead_cycles) / CHIP.tensor.clock_hz
    assert c.flops == 2 * 128 * 128 * 512
    # A full bf16 instruction streams 512 of 576 cycles: 88.9% of the array's peak.
    assert c.flops / c.seconds / CHIP.tensor.peak_flops_per_core("bf16") == pytest.approx(512 / 576)
    mx = isa_cost.nc_matmul_mx(CHIP, 512, 128, 512)
    assert mx.seconds == c.seconds and mx.flops == 4 * c.flops


def test_a_load_into_a_new_tile_does_not_wait_for_unrelated_compute():
    @nki.jit
    def k(x, y):
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        t = nl.load(x)
        s = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
        for _ in nl.sequential_range(10):
            nisa.activation(s, nl.exp, t)
        u = nl.load(y)                      # independent of the activations
        nisa.tensor_tensor(u, u, s, op=nl.add)
        nisa.dma_copy(dst=out, src=u)
        return out

    x = torch.randn(128, 512, device=DEV)
    with tp.profile() as prof:
        k(x, x)
    dmas = [r for r in prof.records if r.name == "nki::dma_copy"]
    acts = [r for r in prof.records if r.name == "nki::activation"]
    assert dmas[1].start_s == pytest.approx(dmas[0].end_s)   # right behind the first load
    assert dmas[1].end_s < acts[-1].end_s                    # overlapping the Scalar chain
    assert dmas[2].start_s >= max(r.end_s for r in prof.records if r.name == "nki::tensor_tensor")


def test_stores_do_not_hold_back_later_loads():
    """A store waiting for compute runs on the kernel's store queue; loads issued after it go on."""
    @nki.jit
    def k(x):
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        t = nl.load(x[:, 0:256])
        s = nl.ndarray((128, 256), x.dtype, buffer=nl.sbuf)
        for _ in nl.sequential_range(20):
            nisa.activation(s, nl.exp, t)
        nisa.dma_copy(dst=out[:, 0:256], src=s)     # waits for the activations
        u = nl.load(x[:, 256:512])                   # must not wait for that store
        nisa.dma_copy(dst=out[:, 256:512], src=u)
        return out

    x = torch.randn(128, 512, device=DEV)
    with tp.profile() as prof:
        y = k(x)
    dmas = [r for r in prof.records if r.name == "nki::dma_copy"]
    assert dmas[2].start_s == pytest.approx(dmas[0].end_s)
    assert dmas[2].end_s < dmas[1].start_s
    assert {r.stream for r in dmas} == {dmas[0].stream, dmas[1].stream} and dmas[0].stream != dmas[1].stream
    torch.testing.assert_close(y.cpu(), torch.cat([torch.exp(x[:, :256]), x[:, 256:]], 1).cpu())
