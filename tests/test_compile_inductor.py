"""torch.compile on trn with inductor's code generation (default backend)
and the trn3 graph compiler: values against eager/CPU, kernels on device
memory, and each fused kernel charged to the chip model as one op."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_trn3
import torch_trn3.profiler as tp
from torch_trn3 import _C
from torch_trn3.testing import TinyDecoder

from trn_testing import requires_devices, run_python

FP32 = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def profiled(fn, *args):
    """Records of one run of ``fn`` (already compiled and warmed up)."""
    with tp.profile(with_modules=False) as prof:
        out = fn(*args)
    return out, prof


def compiled_records(prof):
    return [r for r in prof.records if r.name.startswith("compiled::") or "+compiled::" in r.name]


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 4))


# ---------------------------------------------------------------- values
def test_issue_example_compiles_with_default_inductor():
    f = lambda x, y: (torch.sin(x) * y + x.sum(-1, keepdim=True)).relu()  # noqa: E731
    x, y = torch.randn(64, 64), torch.randn(64, 64)
    out = torch.compile(f)(x.to("trn"), y.to("trn"))
    assert out.device == torch.device("trn", 0)
    # the same C++ kernel as inductor on the CPU: bit-equal; eager sums in another order
    assert torch.equal(out.cpu(), torch.compile(f)(x, y))
    torch.testing.assert_close(out.cpu(), f(x, y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["inductor", "trn3"])
def test_mlp_training_step_matches_cpu(backend):
    cpu, trn = mlp(), mlp().to("trn")
    x, target = torch.randn(8, 16), torch.randint(0, 4, (8,))
    F.cross_entropy(cpu(x), target).backward()
    loss = F.cross_entropy(torch.compile(trn, backend=backend)(x.to("trn")), target.to("trn"))
    loss.backward()
    for (name, p), q in zip(cpu.named_parameters(), trn.parameters()):
        assert q.grad.device.type == "trn"
        torch.testing.assert_close(q.grad.cpu(), p.grad, msg=name, **FP32)


@pytest.mark.parametrize("backend", ["inductor", "trn3"])
def test_decoder_training_matches_eager(backend):
    losses = {}
    for mode in ("eager", backend):
        torch.manual_seed(0)
        model = TinyDecoder(vocab=512, dim=64, heads=2, layers=2, seq=32).to("trn").eval()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        run = model if mode == "eager" else torch.compile(model, backend=backend)
        tokens = torch.randint(0, 512, (2, 33), generator=torch.Generator().manual_seed(0)).to("trn")
        losses[mode] = []
        for _ in range(3):
            loss = F.cross_entropy(run(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[mode].append(loss.item())
    assert losses[backend] == pytest.approx(losses["eager"], rel=1e-5)
    assert losses["eager"][-1] < losses["eager"][0]


def test_dynamic_shapes_compile_once_and_match():
    fn = lambda x: (x.softmax(-1) * x.exp()).sum(0)  # noqa: E731
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(fn, dynamic=True)
    for n in (5, 9, 17):
        x = torch.randn(n, n + 3)
        torch.testing.assert_close(compiled(x.to("trn")).cpu(), fn(x), **FP32)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_bf16_matches_eager_within_bf16_rounding():
    fn = lambda x, w: F.silu(x @ w) * 2 + x.mean()  # noqa: E731
    x = torch.randn(16, 32, dtype=torch.bfloat16, device="trn")
    w = torch.randn(32, 32, dtype=torch.bfloat16, device="trn")
    out = torch.compile(fn)(x, w)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.cpu(), fn(x, w).cpu(), rtol=1.6e-2, atol=1e-2)


def test_gather_random_and_arange_lower_on_trn():
    def fn(table, idx, x):
        rows = table[idx].sum(-1)
        return rows + torch.arange(idx.shape[0], device=idx.device), F.dropout(x, 0.5).ne(0).float().mean()

    table, idx = torch.randn(10, 4), torch.tensor([1, 3, 3, 9])
    rows, kept = torch.compile(fn)(table.to("trn"), idx.to("trn"), torch.ones(4096, device="trn"))
    torch.testing.assert_close(rows.cpu(), table[idx].sum(-1) + torch.arange(4))
    assert 0.45 < kept.item() < 0.55


def test_moe_grouped_mm_layer_matches_eager():
    torch.manual_seed(0)
    experts, d, h = 4, 16, 32
    # torch 2.13's meta kernel for _grouped_mm (what compile traces with) takes bf16 only
    w1 = torch.randn(experts, d, h, device="trn", dtype=torch.bfloat16, requires_grad=True)
    counts = torch.tensor([3, 0, 5, 8])
    offs = counts.cumsum(0).to(torch.int32).to("trn")
    tokens = torch.randn(16, d, device="trn", dtype=torch.bfloat16)

    def moe(x, w, offs):
        return F.silu(torch._grouped_mm(x, w, offs=offs)).float().sum()

    expected = moe(tokens, w1, offs)
    (g_expected,) = torch.autograd.grad(expected, w1)
    got = torch.compile(moe)(tokens, w1, offs)
    (g_got,) = torch.autograd.grad(got, w1)
    torch.testing.assert_close(got, expected, rtol=1.6e-2, atol=1e-2)
    torch.testing.assert_close(g_got, g_expected, rtol=1.6e-2, atol=1e-2)


@requires_devices(2)
def test_compiled_kernels_run_on_the_second_device():
    x = torch.randn(32, 32)
    out = torch.compile(lambda t: (t.cos() + 1).sum(0))(x.to("trn:1"))
    assert out.device == torch.device("trn", 1)
    torch.testing.assert_close(out.cpu(), (x.cos() + 1).sum(0), **FP32)


# ---------------------------------------------------------------- device memory
def test_kernels_write_device_memory_without_copies():
    fn = torch.compile(lambda x, y: (x.sin() * y).relu())
    x, y = torch.randn(256, 256, device="trn"), torch.randn(256, 256, device="trn")
    fn(x, y)
    before = torch.trn.memory_allocated(0)
    out, prof = profiled(fn, x, y)
    assert _C._is_device_memory(out)
    assert torch.trn.memory_allocated(0) - before >= out.numel() * 4
    # one fused kernel, and no host<->device copy ops around it
    assert [r.name.split("#")[0] for r in prof.records] == ["compiled::cpp_fused_mul_relu_sin_0"]


# ---------------------------------------------------------------- chip model
def test_fused_kernel_is_one_op_reading_and_writing_only_its_buffers():
    x, y = torch.randn(128, 512, device="trn"), torch.randn(128, 512, device="trn")
    fn = torch.compile(lambda x, y: (x.sin() * y + 1).relu())
    fn(x, y)
    _, prof = profiled(fn, x, y)
    (kernel,) = compiled_records(prof)
    assert kernel.hbm_bytes == 3 * 128 * 512 * 4            # x, y in; result out
    assert set(kernel.fused_ops) == {"aten::sin", "aten::mul", "aten::add", "aten::relu"}
    assert kernel.engine.name == "SCALAR"                   # sin: transcendental
    with tp.profile(with_modules=False) as eager:
        (x.sin() * y + 1).relu()
    assert sum(r.hbm_bytes for r in eager.records) == (2 + 3 + 2 + 2) * 128 * 512 * 4
    assert kernel.duration_s < sum(r.duration_s for r in eager.records)


def test_reduction_kernel_runs_on_the_vector_engine_and_gather_on_gpsimd():
    x = torch.randn(256, 1024, device="trn")
    fn = torch.compile(lambda x: x.sum(-1))
    fn(x)
    _, prof = profiled(fn, x)
    assert [r.engine.name for r in compiled_records(prof)] == ["VECTOR"]
    table, idx = torch.randn(4096, 64, device="trn"), torch.randint(0, 4096, (8192,), device="trn")
    gather = torch.compile(lambda t, i: t[i])
    gather(table, idx)
    _, prof = profiled(gather, table, idx)
    assert [r.engine.name for r in compiled_records(prof)] == ["GPSIMD"]


def test_working_set_beyond_sbuf_is_charged_spill_traffic():
    sbuf = torch_trn3.machine.chip.core_memory.sbuf_bytes * torch_trn3.machine.lnc
    fn = torch.compile(lambda x: x.softmax(-1))

    def softmax_kernel(row):
        x = torch.randn(128, row, device="trn")
        fn(x)
        _, prof = profiled(fn, x)
        (kernel,) = compiled_records(prof)
        return kernel, 2 * x.numel() * 4
    short, io_short = softmax_kernel(4096)       # 128 rows x 16 KiB per buffer: fits
    assert short.hbm_bytes == io_short
    long_, io_long = softmax_kernel(1 << 17)     # 128 rows x 512 KiB per buffer: >= 64 MiB
    assert 128 * (1 << 17) * 4 * 2 > sbuf
    assert long_.hbm_bytes > io_long
    notes = long_.cost(torch_trn3.machine.logical).notes
    assert any("spilled" in n for n in notes)


def test_trn3_charges_matmul_and_epilogue_as_one_tensor_engine_kernel():
    torch.manual_seed(0)
    m, k, n = 512, 256, 1024
    model = nn.Sequential(nn.Linear(k, n), nn.GELU()).to("trn")
    x = torch.randn(m, k, device="trn")
    times = {}
    with torch.no_grad():
        for backend in ("inductor", "trn3"):
            torch._dynamo.reset()
            fn = torch.compile(model, backend=backend)
            fn(x)
            out, prof = profiled(fn, x)
            torch.testing.assert_close(out, model(x), **FP32)
            times[backend] = sum(r.duration_s for r in prof.records)
    (fused,) = prof.records
    assert fused.engine.name == "TENSOR" and fused.name.startswith("aten::addmm+compiled::")
    assert fused.fused_ops == ("aten::addmm", "aten::gelu")
    assert fused.flops == 2 * m * n * k
    assert fused.hbm_bytes == (m * k + k * n + m * n) * 4   # product never round-trips HBM
    assert times["trn3"] < times["inductor"]


def test_compiled_step_is_faster_than_eager_in_modelled_time():
    torch.manual_seed(0)
    model = TinyDecoder(vocab=512, dim=128, heads=2, layers=2, seq=64).to("trn").eval()
    tokens = torch.randint(0, 512, (2, 65), device="trn")

    def step(run):
        loss = F.cross_entropy(run(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        # As a training step does: without it every step ends in a serial
        # chain of gradient accumulations on the Scalar Engine, issued after
        # the compiled backward and the same in both runs.
        model.zero_grad(set_to_none=True)

    compiled = torch.compile(model, backend="trn3")
    step(compiled)
    profiles = {}
    for name, run in (("eager", model), ("trn3", compiled)):
        with tp.profile(with_modules=False) as prof:
            step(run)
        profiles[name] = prof
    assert profiles["trn3"].total_time_s < profiles["eager"].total_time_s
    assert profiles["trn3"].hbm_bytes < profiles["eager"].hbm_bytes


def test_chrome_trace_has_compiled_kernels_on_their_engine_lanes(tmp_path):
    import json

    fn = torch.compile(lambda x: x.exp().sum(-1))
    x = torch.randn(64, 64, device="trn")
    fn(x)
    _, prof = profiled(fn, x)
    path = prof.export_chrome_trace(tmp_path / "trace.json")
    events = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X"
              and e["name"].startswith("compiled::")]
    assert len(events) == 1
    assert events[0]["tid"] == compiled_records(prof)[0].engine.value
    assert "aten::exp" in events[0]["args"]["fused_ops"]


def test_profile_summary_lists_compiled_kernels_with_their_fused_ops():
    fn = torch.compile(lambda x: (x.exp() * 2).sum(-1))
    x = torch.randn(64, 64, device="trn")
    fn(x)
    _, prof = profiled(fn, x)
    text = prof.summary()
    assert "Compiled kernels by modelled time" in text
    section = text.split("Compiled kernels by modelled time")[1].splitlines()
    line = next(l for l in section if l.startswith("compiled::cpp_fused"))
    assert "aten::exp" in line and "aten::mul" in line and "aten::sum" in line
    with tp.profile(with_modules=False) as eager:
        (x.exp() * 2).sum(-1)
    assert "Compiled kernels" not in eager.summary()


# ---------------------------------------------------------------- backends, breaks, report
def test_trn3_and_neuron_are_listed_backends():
    backends = torch._dynamo.list_backends()
    assert "trn3" in backends and "neuron" in backends
    x = torch.randn(8, device="trn")
    torch.testing.assert_close(torch.compile(torch.tanh, backend="neuron")(x), torch.tanh(x))


def test_compile_works_under_the_neuron_device_name():
    result = run_python("""
        import sys, torch
        x = torch.randn(8, 8, device="neuron")
        fn = lambda t: (t.sin() * 2).sum(-1)
        for backend in ("inductor", "neuron", "trn3"):
            out = torch.compile(fn, backend=backend)(x)
            assert out.device == torch.device("neuron", 0), out.device
            torch.testing.assert_close(out.cpu(), fn(x.cpu()), rtol=1e-5, atol=1e-5)
        print("ok")
    """, timeout=300, TORCH_TRN3_DEVICE="neuron")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def data_dependent(x):
    y = x.softmax(-1)
    if y.max() > 0.5:          # data-dependent control flow: a graph break
        return y * 2
    return y - 1


def test_data_dependent_control_flow_breaks_the_graph_and_runs():
    for x in (torch.tensor([[10.0, 0.0]]), torch.tensor([[0.1, 0.0]])):
        out = torch.compile(data_dependent, backend="trn3")(x.to("trn"))
        torch.testing.assert_close(out.cpu(), data_dependent(x))


def test_explain_reports_kernels_and_graph_breaks():
    report = torch_trn3.compiler.explain(data_dependent, torch.randn(4, 8, device="trn"))
    assert report.graph_count == 2 and len(report.graph_breaks) == 1
    assert "test_compile_inductor.py" in report.graph_breaks[0]
    softmax = [k for k in report.kernels if "aten::_softmax" in k.fused_ops]
    # a softmax is a Vector Engine op, compiled as in eager
    assert softmax and softmax[0].engine == "Vector" and softmax[0].working_set > 0
    text = str(report)
    assert "graph break 1" in text and "aten::_softmax" in text and "modelled" in text
    again = torch_trn3.compiler.explain(torch.sin, torch.randn(4, device="trn"))  # still a function
    assert again.graph_count == 1 and not again.graph_breaks


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("backend", ["inductor", "trn3"])
def test_compiled_graph_past_hbm_raises_out_of_memory_naming_the_device(backend):
    fn = torch.compile(lambda x: (x @ x.T).relu().sum(), backend=backend)
    with pytest.raises(torch.OutOfMemoryError, match=r"logical device 0 \(trn:0\).*36.00 GiB of HBM"):
        fn(torch.randn(120000, 64, device="trn"))          # a 53.6 GiB product
    assert _C._model_enabled()                              # charging survives the error
    out = fn(torch.ones(4, 2, device="trn"))
    assert out.item() == 32.0


def test_mixing_trn_and_cpu_tensors_in_a_compiled_graph_is_a_clear_error():
    with pytest.raises(Exception, match="Expected all tensors to be on the same device.*trn:0 and cpu"):
        torch.compile(lambda a, b: a + b)(torch.ones(3, device="trn"), torch.ones(3))
