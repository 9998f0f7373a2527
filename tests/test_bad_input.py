"""Bad input gives clear, typed errors: no crash, no hang, and the device stays usable."""
from __future__ import annotations

import subprocess

import pytest
import torch
import torch_trn3  # noqa: F401

from trn_testing import requires_devices, run_python

BAD_INDEX = 99  # more than any machine this suite runs on


# ---------------------------------------------------------------- unknown device index
def test_tensor_on_unknown_device_index_raises_index_error():
    with pytest.raises(IndexError, match=f"invalid device index {BAD_INDEX}") as info:
        torch.empty(2, device=f"trn:{BAD_INDEX}")
    assert f"{torch.trn.device_count()} logical device(s)" in str(info.value)


def test_copy_to_unknown_device_index_raises():
    with pytest.raises(IndexError, match="invalid device index"):
        torch.ones(2).to(f"trn:{BAD_INDEX}")


def test_set_device_to_unknown_index_raises_and_keeps_current():
    with pytest.raises(IndexError, match="invalid device index"):
        torch.trn.set_device(BAD_INDEX)
    assert torch.trn.current_device() == 0


def test_device_context_with_unknown_index_raises():
    with pytest.raises(IndexError, match="invalid device index"):
        with torch.trn.device(BAD_INDEX):
            pass
    assert torch.trn.current_device() == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: torch.trn.get_device_properties(BAD_INDEX),
        lambda: torch.trn.get_device_name(BAD_INDEX),
        lambda: torch.trn.memory_allocated(BAD_INDEX),
        lambda: torch.trn.memory_stats(BAD_INDEX),
        lambda: torch.trn.mem_get_info(BAD_INDEX),
        lambda: torch.trn.synchronize(BAD_INDEX),
        lambda: torch.trn.get_rng_state(BAD_INDEX),
        lambda: torch.trn.Stream(device=BAD_INDEX),
        lambda: torch.Generator(f"trn:{BAD_INDEX}"),
    ],
    ids=["properties", "name", "memory_allocated", "memory_stats", "mem_get_info",
         "synchronize", "get_rng_state", "Stream", "Generator"],
)
def test_device_module_functions_reject_unknown_index(call):
    with pytest.raises(IndexError, match="invalid device index"):
        call()


def test_negative_device_index_is_refused_by_torch():
    with pytest.raises(RuntimeError, match="must not be negative"):
        torch.device("trn", -1)


def test_non_trn_device_passed_to_device_module_raises_value_error():
    with pytest.raises(ValueError, match="Expected a trn device"):
        torch.trn.set_device("cpu")


def test_device_works_after_a_bad_index():
    with pytest.raises(IndexError):
        torch.empty(1, device=f"trn:{BAD_INDEX}")
    assert torch.ones(3, device="trn").sum().item() == 3.0


# ---------------------------------------------------------------- bad LNC value (at import)
def test_bad_lnc_value_fails_at_import_with_a_clear_message():
    """More configurations in test_lnc_config.py."""
    run = run_python("import torch\nimport torch_trn3\n", TRN3_LNC="3")
    assert run.returncode == 1
    assert "TRN3_LNC='3' is invalid: allowed values are 1, 2, 8" in run.stderr


# ---------------------------------------------------------------- unsupported dtypes
def test_op_without_kernel_for_dtype_raises_like_cpu():
    with pytest.raises(NotImplementedError, match="not implemented for 'Float8_e4m3fn'"):
        torch.ones(2).to(torch.float8_e4m3fn) + 1  # the CPU's answer
    with pytest.raises(NotImplementedError, match="not implemented for 'Float8_e4m3fn'"):
        torch.ones(2, device="trn").to(torch.float8_e4m3fn) + 1


def test_integer_only_op_on_float_raises_like_cpu():
    x = torch.ones(2, device="trn")
    with pytest.raises(NotImplementedError, match="not implemented for 'Float'"):
        x & x


def test_uint64_arithmetic_raises_like_cpu():
    with pytest.raises(NotImplementedError, match="UInt64"):
        torch.ones(2, dtype=torch.uint64, device="trn") + 1


def test_sparse_layout_is_refused():
    with pytest.raises((NotImplementedError, RuntimeError)):
        torch.eye(2).to_sparse().to("trn")


def test_storage_only_dtypes_can_still_be_allocated_and_copied():
    raw = torch.tensor([0x12, 0x34], dtype=torch.uint8)
    packed = raw.view(torch.float4_e2m1fn_x2).to("trn")
    assert packed.dtype == torch.float4_e2m1fn_x2
    assert torch.equal(packed.cpu().view(torch.uint8), raw)


# ---------------------------------------------------------------- mixed devices
def test_mixed_trn_and_cpu_raises_runtime_error():
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.mm(torch.ones(2, 2, device="trn"), torch.ones(2, 2))


@requires_devices(2)
def test_mixed_trn_devices_raises_runtime_error():
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.ones(2, device="trn:0") * torch.ones(2, device="trn:1")


# ---------------------------------------------------------------- out of memory
def test_out_of_memory_is_a_typed_error_and_device_stays_usable():
    capacity = torch.trn.get_device_properties(0).total_memory
    with pytest.raises(torch.OutOfMemoryError, match="out of memory"):
        torch.empty(capacity + 1, dtype=torch.uint8, device="trn")
    assert torch.ones(2, device="trn").sum().item() == 2.0


def test_absurd_allocation_is_out_of_memory_not_a_crash():
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(2**62, dtype=torch.uint8, device="trn")


# ---------------------------------------------------------------- .item() and friends
def test_item_on_empty_tensor_raises():
    with pytest.raises(RuntimeError, match="a Tensor with 0 elements cannot be converted to Scalar"):
        torch.empty(0, device="trn").item()


def test_item_on_multi_element_tensor_raises():
    with pytest.raises(RuntimeError, match="a Tensor with 2 elements cannot be converted to Scalar"):
        torch.ones(2, device="trn").item()


def test_item_on_single_element_tensor():
    assert torch.tensor([2.5], device="trn").item() == 2.5
    assert torch.tensor(7, device="trn").item() == 7


def test_bool_of_empty_tensor_raises():
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(torch.empty(0, device="trn"))


def test_index_out_of_bounds_raises_index_error():
    x = torch.ones(3, device="trn")
    with pytest.raises(IndexError, match="out of bounds"):
        x[5]
    with pytest.raises(IndexError, match="out of bounds"):
        x[torch.tensor([7], device="trn")]


def test_shape_mismatch_raises():
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        torch.ones(2, 3, device="trn") @ torch.ones(2, 3, device="trn")


def test_negative_size_raises():
    with pytest.raises(RuntimeError, match="negative dimension"):
        torch.empty(-1, device="trn")


def test_cross_entropy_with_bad_target_raises():
    with pytest.raises(IndexError, match="out of bounds"):
        torch.nn.functional.cross_entropy(torch.randn(2, 3, device="trn"), torch.tensor([0, 5], device="trn"))


def test_failed_op_leaves_no_device_memory_behind(no_device_leaks):
    x = torch.ones(100, device="trn")
    with pytest.raises(RuntimeError):
        x.view(3, 7)
    with pytest.raises(RuntimeError):
        torch.mm(x.view(10, 10), torch.ones(3, 3, device="trn"))
    del x


# ---------------------------------------------------------------- generator state
def test_set_rng_state_with_wrong_size_raises():
    with pytest.raises(RuntimeError, match="16 bytes"):
        torch.trn.set_rng_state(torch.zeros(5, dtype=torch.uint8))


def test_set_rng_state_with_wrong_dtype_is_refused_or_converted():
    """CUDA refuses non-uint8 state; the device module converts to uint8 first."""
    state = torch.trn.get_rng_state()
    torch.trn.set_rng_state(state.to(torch.int32))
    assert torch.equal(torch.trn.get_rng_state(), state)


def test_huge_rng_offset_does_not_hang():
    """A corrupt or hostile state (here offset 2**40 words) must either work or
    fail with an error within seconds, never spin for minutes."""
    code = """
    import torch, torch_trn3
    state = torch.tensor([1, 2**40], dtype=torch.int64).view(torch.uint8)
    try:
        torch.trn.set_rng_state(state)
        torch.rand(1, device="trn")
    except (RuntimeError, ValueError) as e:
        print("refused:", e)
    print("done")
    """
    try:
        run = run_python(code, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("set_rng_state with offset 2**40 did not finish within 15 s")
    assert run.returncode == 0, run.stderr
    assert "done" in run.stdout


# ---------------------------------------------------------------- events
def test_elapsed_time_on_never_recorded_event_raises():
    start = torch.trn.Event(enable_timing=True)
    end = torch.trn.Event(enable_timing=True)
    end.record()
    with pytest.raises((RuntimeError, ValueError), match="recorded"):
        start.elapsed_time(end)


def test_elapsed_time_without_enable_timing_raises():
    start = torch.trn.Event()
    end = torch.trn.Event()
    start.record()
    end.record()
    with pytest.raises((RuntimeError, ValueError), match="enable_timing"):
        start.elapsed_time(end)


@requires_devices(2)
def test_elapsed_time_between_events_on_different_devices_raises():
    start = torch.trn.Event(enable_timing=True)
    end = torch.trn.Event(enable_timing=True)
    start.record(torch.trn.current_stream(0))
    end.record(torch.trn.current_stream(1))
    with pytest.raises((RuntimeError, ValueError), match="same device"):
        start.elapsed_time(end)


@requires_devices(2)
def test_re_recording_an_event_on_another_device_raises():
    e = torch.trn.Event()
    e.record(torch.trn.current_stream(0))
    with pytest.raises(RuntimeError, match="does not match"):
        e.record(torch.trn.current_stream(1))
