"""The ``torch_trn3::quantize_mx`` C++ op behind ``to_mx``: direct calls,
thread splits, the trn device, torch.compile (Meta kernel), and inputs that
exercise its code paths (float64, float16 subnormals, odd block sizes)
against the independent numpy reference."""

import math

import numpy as np
import pytest
import torch

import mx_reference as ref
from torch_trn3.mx import to_mx

ALL = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2, "e2m1": torch.float4_e2m1fn_x2}
MODES = {"floor": 0, "rceil": 1, "trn3": 2}


def raw(mx):
    return mx.elements.view(torch.uint8), mx.scales.view(torch.uint8)


def assert_same(a, b):
    for x, y in zip(raw(a), raw(b)):
        assert torch.equal(x, y)


def wide_range(rows, k=256, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    exps = torch.randint(-140, 125, (rows, 1), generator=g).double()
    x = torch.randn(rows, k, generator=g, dtype=torch.float64) * torch.exp2(exps)
    x[0, 3], x[1, 40], x[2] = math.nan, -math.inf, 0.0
    return x.to(dtype)


def check_reference(x, name, mode, block_size=32):
    mx = to_mx(x, ALL[name], block_size=block_size, scale_mode=mode)
    x_np = x.view(torch.int16).numpy().view(np.float16) if x.dtype == torch.float16 else x.numpy()
    want_scales, want_elems = ref.quantize(x_np, name, block_size, mode)
    np.testing.assert_array_equal(mx.scales.view(torch.uint8).numpy(), want_scales)
    np.testing.assert_array_equal(mx.elements.view(torch.uint8).numpy(), want_elems)


@pytest.mark.parametrize("name", list(ALL))
def test_op_shapes_and_dtypes(name):
    elements, scales = torch.ops.torch_trn3.quantize_mx(torch.randn(3, 5, 128), ALL[name], 32, 0)
    assert elements.dtype == ALL[name] and scales.dtype == torch.uint8
    assert elements.shape == (3, 5, 64 if name == "e2m1" else 128) and scales.shape == (3, 5, 4)


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("mode", list(MODES))
def test_thread_split_does_not_change_bytes(name, mode):
    x = wide_range(4096)        # 32768 blocks: several tasks on any thread count
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = to_mx(x, ALL[name], scale_mode=mode)
    finally:
        torch.set_num_threads(threads)
    assert_same(single, to_mx(x, ALL[name], scale_mode=mode))


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("mode", list(MODES))
def test_float64_wide_range_matches_reference(name, mode):
    x = wide_range(16, dtype=torch.float64)
    # values between float32 grid points, and beyond float32's range
    x[3] *= 1 + 2.0 ** -30
    x[4, :4] = torch.tensor([1e300, -1e-300, 2.0 ** -1070, 3.0e38 * 4])
    check_reference(x, name, mode)


@pytest.mark.parametrize("name", list(ALL))
def test_float16_subnormals_and_specials_match_reference(name):
    bits = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16)
    x = bits.view(torch.float16).reshape(-1, 64)   # every float16 value, NaN/Inf blocks included
    for mode in MODES:
        check_reference(x, name, mode)


@pytest.mark.parametrize("block_size", [2, 6, 48, 96])
def test_block_sizes_off_the_32_lane_path(block_size):
    x = wide_range(12, k=192, seed=block_size)
    check_reference(x, "e4m3", "rceil", block_size)
    check_reference(x, "e2m1", "floor", block_size)


def test_trn_device_matches_cpu():
    x = wide_range(64)
    for name, dtype in ALL.items():
        for mode in MODES:
            cpu = to_mx(x, dtype, scale_mode=mode)
            trn = to_mx(x.to("trn"), dtype, scale_mode=mode)
            assert trn.elements.device.type == "trn" and trn.scales.device.type == "trn"
            assert_same(cpu, trn.to("cpu"))


def test_requires_grad_input():
    x = torch.randn(4, 64, requires_grad=True)
    mx = to_mx(x, torch.float8_e4m3fn)
    assert not mx.elements.requires_grad
    assert_same(mx, to_mx(x.detach(), torch.float8_e4m3fn))


def test_torch_compile_traces_the_op():
    def quantize(x):
        mx = to_mx(x, torch.float8_e4m3fn, scale_mode="trn3")
        return mx.elements, mx.scales

    compiled = torch.compile(quantize, backend="aot_eager", fullgraph=True)
    for rows in (8, 24):
        x = wide_range(rows, seed=rows)
        got, want = compiled(x), quantize(x)
        assert torch.equal(got[0].view(torch.uint8), want[0].view(torch.uint8))
        assert torch.equal(got[1].view(torch.uint8), want[1].view(torch.uint8))


def test_meta_kernel_shapes():
    x = torch.empty(2, 7, 96, device="meta")
    elements, scales = torch.ops.torch_trn3.quantize_mx(x, torch.float4_e2m1fn_x2, 32, 1)
    assert elements.device.type == "meta" and elements.shape == (2, 7, 48)
    assert scales.shape == (2, 7, 3) and scales.dtype == torch.uint8


def test_op_checks_its_arguments():
    with pytest.raises(RuntimeError, match="block size"):
        torch.ops.torch_trn3.quantize_mx(torch.randn(4, 30), torch.float8_e4m3fn, 32, 0)
    with pytest.raises(RuntimeError, match="scale_mode"):
        torch.ops.torch_trn3.quantize_mx(torch.randn(4, 32), torch.float8_e4m3fn, 32, 3)
    with pytest.raises(RuntimeError, match="element dtype"):
        torch.ops.torch_trn3.quantize_mx(torch.randn(4, 32), torch.bfloat16, 32, 0)
