"""torch_trn3.profiler: records, module paths, summary, trace, picture, advice."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch_trn3
import torch_trn3.profiler as tp
from torch_trn3 import _C

from trn_testing import requires_devices

BF16_PEAK_LNC2 = 2 * (2 * 128 * 128 * 2.4e9)   # 157.2864e12 FLOP/s


def events_ms(fn):
    start = torch.trn.Event(enable_timing=True)
    end = torch.trn.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    return start.elapsed_time(end)


# ---------------------------------------------------------------- records
def test_records_are_the_ops_run_with_their_modelled_times():
    a = torch.randn(256, 256, device="trn")
    with tp.profile() as prof:
        b = (a @ a).relu()
    names = [r.name for r in prof.records]
    assert names[0].startswith("aten::mm") and names[1].startswith("aten::relu")
    mm = prof.records[0]
    assert mm.engine.name == "TENSOR" and prof.records[1].engine.name == "SCALAR"
    assert mm.flops == 2 * 256**3
    assert mm.inputs == (((256, 256), "Float"), ((256, 256), "Float"))
    assert prof.records[1].start_s >= mm.end_s          # relu waits for its input
    cost = mm.cost(torch_trn3.machine.logical)
    assert mm.duration_s == pytest.approx(cost.time_s)
    del b


def test_nothing_is_recorded_or_hooked_outside_the_profiler():
    hooks_before = len(torch.nn.modules.module._global_forward_pre_hooks)
    with tp.profile():
        nn.Linear(4, 4).to("trn")(torch.ones(2, 4, device="trn"))
    assert len(torch.nn.modules.module._global_forward_pre_hooks) == hooks_before
    torch.ones(8, device="trn").add_(1)
    assert _C._drain_records() == []


def test_profilers_cannot_be_nested():
    with tp.profile():
        with pytest.raises(RuntimeError, match="already active"):
            with tp.profile():
                pass


def test_step_time_equals_event_time_for_the_same_work():
    a = torch.randn(512, 512, device="trn", dtype=torch.bfloat16)
    torch.trn.synchronize()
    holder = {}
    with tp.profile() as prof:
        holder["ms"] = events_ms(lambda: (a @ a) @ a)
    assert prof.step_time_s * 1e3 == pytest.approx(holder["ms"], rel=1e-6)


def test_steps_split_the_profile():
    a = torch.randn(128, 128, device="trn")
    with tp.profile() as prof:
        for _ in range(3):
            a @ a
            prof.step()
    assert len(prof.steps) == 3                     # the empty trailing step is dropped
    assert [r.step for r in prof.records] == [0, 1, 2]
    assert prof.step_time_s == pytest.approx(prof.total_time_s / 3)
    with pytest.raises(RuntimeError, match="outside"):
        prof.step()


# ---------------------------------------------------------------- module paths
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 64), nn.GELU())
        self.head = nn.Linear(64, 8)

    def forward(self, x):
        return self.head(self.body(x))


def test_ops_carry_module_paths_forward_backward_and_optimizer():
    net = Net().to("trn")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(16, 32, device="trn")
    with tp.profile() as prof:
        net(x).sum().backward()
        opt.step()
    scopes = {(r.base, r.scope) for r in prof.records}
    assert ("addmm", "Net.body.0") in scopes
    assert ("gelu", "Net.body.1") in scopes
    assert ("addmm", "Net.head") in scopes
    assert ("gelu_backward", "Net.body.1 (backward)") in scopes
    assert any(r.scope == "Net.head (backward)" and r.base == "mm" for r in prof.records)
    assert any(r.scope == "optimizer.SGD" for r in prof.records)
    assert all(r.is_backward for r in prof.records if r.base == "gelu_backward")


def test_user_scope_labels_a_block():
    x = torch.randn(8, device="trn")
    with tp.profile() as prof:
        with tp.scope("loss"):
            x.exp()
        x.sin()
    assert [r.scope for r in prof.records] == ["loss", ""]
    with tp.scope("ignored"):   # a no-op when not profiling
        pass


def test_checkpoint_recompute_counts_in_hfu_not_mfu():
    """Non-reentrant checkpoint re-runs the forward in backward until it has
    the tensors backward needs: here the first matmul (the second one's input
    is saved before its kernel would run, so recompute stops there)."""
    from torch.utils.checkpoint import checkpoint

    net = nn.Sequential(nn.Linear(256, 256, bias=False), nn.GELU(),
                        nn.Linear(256, 256, bias=False)).to("trn")
    x = torch.randn(256, 256, device="trn")
    with tp.profile() as prof:
        checkpoint(net, x, use_reentrant=False).sum().backward()
    recomputed = [r for r in prof.records if r.is_recompute and r.base == "mm"]
    assert [r.scope for r in recomputed] == ["Sequential.0 (recompute)"]
    one = 2 * 256**3
    # forward 2 + recompute 1 + backward 3 (x needs no gradient)
    assert prof.hardware_flops == pytest.approx(6 * one)
    assert prof.model_flops == pytest.approx(5 * one)
    assert prof.hfu == pytest.approx(prof.mfu * 6 / 5)


def test_flash_attention_backward_recompute_is_not_model_flops():
    q = torch.randn(1, 2, 128, 64, device="trn", dtype=torch.bfloat16, requires_grad=True)
    with tp.profile() as prof:
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
    bwd = [r for r in prof.records if "flash_attention" in r.name and "backward" in r.name]
    assert bwd, [r.name for r in prof.records]
    assert bwd[0].model_flops == pytest.approx(bwd[0].flops * 4 / 5)
    assert prof.hfu > prof.mfu


# ---------------------------------------------------------------- metrics
def test_mfu_of_one_bf16_matmul_is_hand_computable():
    a = torch.randn(1024, 1024, device="trn", dtype=torch.bfloat16)
    with tp.profile() as prof:
        a @ a
    assert prof.matmul_dtype == "bf16"
    assert prof.peak_flops == pytest.approx(BF16_PEAK_LNC2 * torch_trn3.machine.lnc / 2)
    flops = 2 * 1024**3
    assert prof.model_flops == prof.hardware_flops == flops
    assert prof.mfu == pytest.approx(flops / (prof.step_time_s * prof.peak_flops))
    assert 0.5 < prof.mfu <= 1.0        # one big matmul nearly fills the array
    # 2 inputs + 1 output of 1024^2 bf16 each
    assert prof.hbm_bytes == 3 * 1024**2 * 2
    assert prof.arithmetic_intensity == pytest.approx(flops / (3 * 1024**2 * 2))
    assert prof.engine_activity["Tensor"] == pytest.approx(1.0)


def test_fp32_matmul_mfu_uses_the_fp32_peak():
    a = torch.randn(512, 512, device="trn")
    with tp.profile() as prof:
        a @ a
    assert prof.matmul_dtype == "fp32"
    assert prof.peak_flops == torch_trn3.machine.logical.peak_fp32_flops


def test_key_averages_group_and_breakdown():
    a = torch.randn(128, 64, device="trn")
    b = torch.randn(64, 128, device="trn")
    with tp.profile() as prof:
        for _ in range(3):
            a @ b
        a.exp()
    top = prof.key_averages()[0]
    assert top.name.startswith("aten::mm") and top.calls == 3
    assert top.utilisation == pytest.approx(0.5)   # K=64 of 128 rows
    assert top.intercore_s == 0.0 or torch_trn3.machine.lnc == 8
    assert top.time_s == pytest.approx(3 * prof.records[0].duration_s)
    assert {g.name.split(".")[0] for g in prof.key_averages("op")} == {"aten::mm", "aten::exp"}
    with pytest.raises(ValueError, match="group_by"):
        prof.key_averages("engine")


# ---------------------------------------------------------------- summary and advice
def test_summary_is_a_printable_report():
    net = Net().to("trn")
    with tp.profile() as prof:
        net(torch.randn(16, 32, device="trn")).sum().backward()
    text = prof.summary()
    for part in ("step time", "MFU (fp32)", "HFU (fp32)", "arithmetic intensity", "HBM traffic",
                 "Engine activity", "Tensor", "Vector", "Scalar", "GpSimd", "DMA",
                 "Top ops by modelled time", "Net.head", "Recommendations"):
        assert part in text, part
    assert str(prof) == text


def test_advice_names_fp32_matmuls_and_a_half_filled_array():
    a = torch.randn(2048, 64, device="trn")
    b = torch.randn(64, 2048, device="trn")
    with tp.profile() as prof:
        a @ b
    text = "\n".join(map(str, prof.recommendations()))
    assert "FP32 matmul runs at 1/4 of the BF16 rate" in text
    assert "autocast" in text
    assert "K=64 uses half of the 128-row array" in text


def test_advice_does_not_flag_bf16_matmuls_as_fp32():
    a = torch.randn(1024, 1024, device="trn")
    with tp.profile() as prof:
        with torch.autocast("trn", dtype=torch.bfloat16):
            a @ a
    assert "fp32_matmul" not in [adv.rule for adv in prof.recommendations()]


def test_advice_suggests_fusing_a_memory_bound_elementwise_chain():
    x = torch.randn(2**22, device="trn")
    with tp.profile() as prof:
        ((x * 2 + 1) * x - 3).abs()
    rules = {adv.rule: str(adv) for adv in prof.recommendations()}
    assert "fuse_elementwise" in rules
    assert "torch.compile" in rules["fuse_elementwise"]


# ---------------------------------------------------------------- trace and picture
def test_chrome_trace_has_a_process_per_device_and_a_lane_per_engine(tmp_path):
    net = Net().to("trn")
    with tp.profile() as prof:
        net(torch.randn(16, 32, device="trn")).sum().backward()
    path = prof.export_chrome_trace(tmp_path / "trace.json")
    doc = json.loads(open(path).read())
    events = doc["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert list(procs) == [0] and procs[0].startswith("trn:0")
    lanes = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert [lanes[i] for i in range(6)] == ["Tensor Engine", "Vector Engine", "Scalar Engine",
                                           "GpSimd Engine", "DMA", "Collective"]
    slices = [e for e in events if e["ph"] == "X" and e.get("cat") != "step"]
    assert len(slices) == len(prof.records)
    head = [e for e in slices if e["name"] == "aten::addmm [Net.head]"]
    assert head and head[0]["tid"] == 0 and head[0]["args"]["module"] == "Net.head"
    assert head[0]["dur"] == pytest.approx(prof.records[[r.scope for r in prof.records].index(
        "Net.head")].duration_s * 1e6)
    assert "compute_us" in head[0]["args"] and "intercore_us" in head[0]["args"]


@requires_devices(2)
def test_chrome_trace_separates_devices(tmp_path):
    with tp.profile() as prof:
        torch.ones(64, device="trn:0").exp()
        torch.ones(64, device="trn:1").exp()
    doc = json.loads(open(prof.export_chrome_trace(tmp_path / "t.json")).read())
    pids = {e["pid"] for e in doc["traceEvents"] if e["ph"] == "X"}
    assert pids == {0, 1}
    assert prof.devices == [0, 1]


def test_trace_merges_into_a_torch_profiler_trace(tmp_path):
    x = torch.randn(64, 64, device="trn")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as host:
        with tp.profile() as prof:
            x @ x
    doc = json.loads(open(prof.export_chrome_trace(tmp_path / "m.json", host_trace=host)).read())
    names = [e.get("name", "") for e in doc["traceEvents"]]
    assert any(n.startswith("aten::mm") and e.get("pid", 0) >= 1_000_000
               for n, e in zip(names, doc["traceEvents"]))
    assert any(e.get("ph") == "X" and e.get("pid", 0) < 1_000_000 for e in doc["traceEvents"])
    with pytest.raises(TypeError, match="host_trace"):
        prof.export_chrome_trace(tmp_path / "bad.json", host_trace=42)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    a = torch.randn(256, 256, device="trn")
    with tp.profile() as prof:
        (a @ a).exp().sum()
    path = prof.plot(tmp_path / "p.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import fails
    with tp.profile() as prof:
        torch.ones(4, device="trn").exp()
    with pytest.raises(ImportError, match="pip install matplotlib"):
        prof.plot(tmp_path / "p.png")
