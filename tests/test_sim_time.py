"""Simulated time through the public API: torch.trn.Event reports modelled
Trainium milliseconds that match hand-computed rooflines.

Hand-computed numbers use the Trainium3 spec (TRN3_FACTS.md, hw/specs.py):
Tensor Engine 128x128 BF16 PEs at 2.4 GHz -> 2 x 128 x 128 x 2.4e9 =
78.6432 TFLOP/s per core; FP32 takes 4 passes; HBM 4.9 TB/s per chip, so an
LNC=2 device gets 2/8 of it = 1.225 TB/s.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch_trn3
from torch_trn3 import chip_model

from trn_testing import requires_devices, run_python

BF16_PEAK_PER_CORE = 2 * 128 * 128 * 2.4e9     # 78.6432e12 FLOP/s
FP32_PEAK_PER_CORE = BF16_PEAK_PER_CORE / 4     # 4 passes through the array
LNC2_HBM_BYTES_PER_S = 4.9e12 * 2 / 8           # 1.225e12 B/s
N = 4096

pytestmark = pytest.mark.skipif(torch_trn3.machine.lnc != 2, reason="hand numbers are for LNC=2")


def modelled_ms(fn) -> float:
    start = torch.trn.Event(enable_timing=True)
    end = torch.trn.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def test_hand_constants_match_the_chip_spec():
    dev = torch_trn3.machine.logical
    assert dev.cores == 2
    assert dev.peak_bf16_flops == pytest.approx(2 * BF16_PEAK_PER_CORE)
    assert dev.peak_fp32_flops == pytest.approx(2 * FP32_PEAK_PER_CORE)
    assert dev.hbm_bytes_per_s == pytest.approx(LNC2_HBM_BYTES_PER_S)


def mm_cost_ms(n: int, dtype: torch.dtype) -> float:
    """Modelled ms of an n^3 ``aten::mm`` from the chip model's cost function
    (the one the C++ core calls for every op), without running it: a real
    4096^3 bf16 GEMM takes minutes on hosts without bf16 instructions."""
    desc = ((n, n), chip_model.describe(torch.empty(0, dtype=dtype))[1])
    return chip_model.cost_of(torch_trn3.machine.logical, "aten::mm", [desc, desc], [desc]).time_s * 1e3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_a_real_matmul_is_charged_what_the_cost_function_says(dtype):
    """What makes the cost function stand for real ops below: a small real
    matmul's event time is exactly its cost (256^3: cheap on any host)."""
    a = torch.randn(256, 256, device="trn", dtype=dtype)
    b = torch.randn(256, 256, device="trn", dtype=dtype)
    assert modelled_ms(lambda: torch.mm(a, b)) == pytest.approx(mm_cost_ms(256, dtype), rel=1e-9)


def test_bf16_4096_matmul_on_lnc2_is_within_15_percent_of_peak():
    expected_ms = 2 * N**3 / (2 * BF16_PEAK_PER_CORE) * 1e3   # 0.8738 ms
    assert expected_ms == pytest.approx(0.87381, rel=1e-4)
    assert mm_cost_ms(N, torch.bfloat16) == pytest.approx(expected_ms, rel=0.15)
    assert mm_cost_ms(N, torch.bfloat16) >= expected_ms  # never faster than peak


def test_fp32_4096_matmul_takes_about_4x_bf16():
    expected_ms = 2 * N**3 / (2 * FP32_PEAK_PER_CORE) * 1e3   # 3.4953 ms
    assert mm_cost_ms(N, torch.float32) == pytest.approx(expected_ms, rel=0.15)
    ratio = mm_cost_ms(N, torch.float32) / mm_cost_ms(N, torch.bfloat16)
    assert ratio == pytest.approx(4.0, rel=0.15)


def test_large_elementwise_add_is_hbm_bound():
    """2^24 fp32 elements: reads 2 x 64 MiB and writes 64 MiB of HBM."""
    n = 2**24
    a = torch.ones(n, device="trn")
    b = torch.ones(n, device="trn")
    expected_ms = 3 * 4 * n / LNC2_HBM_BYTES_PER_S * 1e3          # 0.1643 ms
    lanes_ms = n / (128 * 1.2e9 * 2) * 1e3                        # 0.0546 ms of Scalar work
    ms = modelled_ms(lambda: a + b)
    assert lanes_ms < expected_ms
    assert ms == pytest.approx(expected_ms, rel=0.15)


def test_dependent_matmuls_add_up_and_independent_engines_overlap():
    a = torch.randn(256, 256, device="trn", dtype=torch.bfloat16)
    one = modelled_ms(lambda: a @ a)
    chain = modelled_ms(lambda: (a @ a) @ a)
    assert chain == pytest.approx(2 * one, rel=1e-6)
    x = torch.randn(2**22, device="trn")
    exp_only = modelled_ms(lambda: x.exp())
    both = modelled_ms(lambda: (a @ a, x.exp()))   # Tensor and Scalar Engine in parallel
    # They overlap, but share HBM: the exp (issued second) gets the bandwidth
    # the matmul leaves, so it is stretched by the matmul's HBM time
    # (2 x 128 KiB in + 128 KiB out at 1.225 TB/s = 0.321 us; tests/test_hbm_sharing.py).
    mm_hbm_ms = 3 * 256 * 256 * 2 / LNC2_HBM_BYTES_PER_S * 1e3
    assert max(one, exp_only) < both < one + exp_only
    assert both == pytest.approx(exp_only + mm_hbm_ms, rel=1e-6)


# ---------------------------------------------------------------- LNC=8 vs LNC=2
LNC_PROBE = """
import json, torch, torch_trn3
import torch_trn3.profiler as tp
a = torch.randn(256, 256, device="trn", dtype=torch.bfloat16)
x = torch.randn(2**22, device="trn")
start = torch.trn.Event(enable_timing=True); end = torch.trn.Event(enable_timing=True)
with tp.profile() as prof:
    start.record()
    y = a @ a
    z = torch.nn.functional.gelu(x)
    end.record()
mm = [g for g in prof.key_averages() if g.name.startswith("aten::mm")][0]
print(json.dumps({
    "cores": torch_trn3.machine.logical.cores,
    "ms": start.elapsed_time(end),
    "mm_intercore_s": mm.intercore_s,
    "intercore_s": sum(g.intercore_s for g in prof.key_averages()),
    "table": prof.op_table(),
    "advice": [a.rule for a in prof.recommendations()],
}))
"""


@pytest.fixture(scope="module")
def lnc_runs():
    runs = {}
    for lnc in ("2", "8"):
        run = run_python(LNC_PROBE, TRN3_LNC=lnc)
        assert run.returncode == 0, run.stderr
        runs[int(lnc)] = json.loads(run.stdout.strip().splitlines()[-1])
    return runs


def test_lnc8_is_never_faster_than_lnc2_per_core_second(lnc_runs):
    two, eight = lnc_runs[2], lnc_runs[8]
    assert (two["cores"], eight["cores"]) == (2, 8)
    assert eight["ms"] * eight["cores"] > two["ms"] * two["cores"]


def test_lnc8_pays_a_named_intercore_term_in_the_profiler_breakdown(lnc_runs):
    two, eight = lnc_runs[2], lnc_runs[8]
    assert two["intercore_s"] == 0.0
    # One barrier (1 us) plus 7/8 of the mm's inputs (2 x 128 KiB bf16) at
    # the spec's 2.45 TB/s core-to-core bandwidth.
    expected = 1e-6 + 2 * 256 * 256 * 2 * 7 / 8 / 2.45e12
    assert eight["mm_intercore_s"] == pytest.approx(expected, rel=1e-6)
    assert "intercore" in eight["table"]
    assert "intercore" in eight["advice"]


# ---------------------------------------------------------------- bad input not covered in test_bad_input.py
def test_elapsed_time_to_a_never_recorded_end_event_raises():
    start = torch.trn.Event(enable_timing=True)
    end = torch.trn.Event(enable_timing=True)
    start.record()
    with pytest.raises(RuntimeError, match="must be recorded"):
        start.elapsed_time(end)


@requires_devices(2)
def test_event_takes_the_device_of_the_stream_it_is_recorded_on():
    """Like CUDA: torch.Event keeps only the device type until recorded."""
    e = torch.trn.Event(enable_timing=True)
    e.record(torch.trn.current_stream(1))
    assert e.device == torch.device("trn", 1)
    other = torch.trn.Event(enable_timing=True)
    other.record(torch.trn.current_stream(0))
    with pytest.raises(RuntimeError, match="same device"):
        other.elapsed_time(e)
