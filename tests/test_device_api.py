"""``torch.trn`` behaves like ``torch.cuda`` where PyTorch's libraries call it."""
from __future__ import annotations

import inspect

import pytest
import torch
import torch_trn3  # noqa: F401

from trn_testing import GIB, requires_devices

# The default machine: 1 chip, LNC=2 -> 4 logical devices of 36 GiB, 2 cores each.
# Tests that depend on it skip when the suite runs under another TRN3_LNC.
default_machine = pytest.mark.skipif(
    torch_trn3.machine.lnc != 2 or torch_trn3.machine.chips != 1,
    reason="expects the default machine (TRN3_LNC=2, TRN3_CHIPS=1)",
)


# ---------------------------------------------------------------- devices
def test_device_module_is_registered_as_torch_trn():
    assert torch.get_device_module("trn") is torch.trn


def test_is_available():
    assert torch.trn.is_available() is True


@default_machine
def test_device_count_default_machine_is_four():
    assert torch.trn.device_count() == 4  # 8 cores / LNC 2


def test_current_device_defaults_to_zero():
    assert torch.trn.current_device() == 0


@requires_devices(2)
def test_set_device_changes_where_new_tensors_go():
    torch.trn.set_device(1)
    assert torch.trn.current_device() == 1
    assert torch.empty(3, device="trn").device == torch.device("trn", 1)


@requires_devices(2)
def test_set_device_accepts_device_string():
    torch.trn.set_device("trn:1")
    assert torch.trn.current_device() == 1


@requires_devices(2)
def test_device_context_manager_restores_previous_device():
    with torch.trn.device(1):
        assert torch.trn.current_device() == 1
        assert torch.zeros(1, device="trn").device.index == 1
    assert torch.trn.current_device() == 0


def test_synchronize_returns_none():
    torch.randn(4, 4, device="trn").sum()
    assert torch.trn.synchronize() is None
    assert torch.trn.synchronize(0) is None


def test_get_device_name_names_the_chip():
    assert "Trainium3" in torch.trn.get_device_name(0)


@default_machine
def test_get_device_properties_reports_hbm_lnc_and_cores():
    props = torch.trn.get_device_properties(0)
    assert props.total_memory == 36 * GIB  # 144 GiB * 2 / 8
    assert props.lnc == 2
    assert props.cores == 2
    assert props.name == torch.trn.get_device_name(0)


def test_get_device_properties_accepts_device_objects():
    a = torch.trn.get_device_properties(torch.device("trn", 0))
    b = torch.trn.get_device_properties("trn:0")
    assert a.total_memory == b.total_memory


def test_is_bf16_supported():
    assert torch.trn.is_bf16_supported() is True


def test_get_amp_supported_dtype_includes_bfloat16():
    assert torch.bfloat16 in torch.trn.get_amp_supported_dtype()


def test_autocast_is_available_for_trn():
    assert torch.amp.is_autocast_available("trn")


@pytest.mark.parametrize(
    "name",
    [
        "is_available", "device_count", "current_device", "set_device", "synchronize",
        "current_stream", "default_stream", "stream", "set_stream", "get_device_name",
        "get_device_properties", "manual_seed", "manual_seed_all", "seed", "initial_seed",
        "get_rng_state", "set_rng_state", "get_rng_state_all", "set_rng_state_all",
        "memory_allocated", "max_memory_allocated", "memory_reserved", "memory_stats",
        "reset_peak_memory_stats", "mem_get_info", "empty_cache", "is_bf16_supported",
    ],
)
def test_function_signature_matches_torch_cuda(name):
    """Library code calls these with CUDA's argument names (e.g. ``device=``)."""
    cuda_params = list(inspect.signature(getattr(torch.cuda, name)).parameters)
    trn_params = list(inspect.signature(getattr(torch.trn, name)).parameters)
    assert trn_params == cuda_params


# ---------------------------------------------------------------- tensor and module helpers
def test_tensor_trn_method_and_is_trn():
    x = torch.arange(4.0).trn()
    assert x.is_trn
    assert x.device == torch.device("trn", 0)
    assert not torch.arange(4.0).is_trn
    assert torch.equal(x.cpu(), torch.arange(4.0))


@requires_devices(2)
def test_tensor_trn_method_with_index():
    assert torch.ones(2).trn(1).device == torch.device("trn", 1)


def test_module_trn_method_moves_parameters_and_buffers():
    model = torch.nn.BatchNorm1d(3).trn()
    assert all(p.is_trn for p in model.parameters())
    assert all(b.is_trn for b in model.buffers())


def test_module_to_trn_string():
    model = torch.nn.Linear(3, 2).to("trn")
    assert model.weight.device.type == "trn"


# ---------------------------------------------------------------- streams and events
def test_current_stream_is_the_default_stream_initially():
    s = torch.trn.current_stream()
    assert s.device == torch.device("trn", 0)
    assert s.stream_id == 0


def test_default_stream_is_stream_zero():
    s = torch.trn.default_stream()
    assert s.device == torch.device("trn", 0)
    assert s == torch.trn.current_stream()


def test_new_stream_is_distinct_from_default():
    s = torch.trn.Stream()
    assert isinstance(s, torch.Stream)
    assert s.device.type == "trn"
    assert s != torch.trn.current_stream()


def test_stream_context_makes_stream_current_and_restores():
    s = torch.trn.Stream()
    before = torch.trn.current_stream()
    with torch.trn.stream(s):
        assert torch.trn.current_stream() == s
    assert torch.trn.current_stream() == before


def test_stream_context_with_none_is_noop():
    before = torch.trn.current_stream()
    with torch.trn.stream(None):
        assert torch.trn.current_stream() == before


@requires_devices(2)
def test_stream_context_on_other_device_restores_current_device():
    """torch.cuda.stream(s) for a stream on another device switches the device
    for the block and switches it back afterwards."""
    s = torch.trn.Stream(device=1)
    with torch.trn.stream(s):
        assert torch.trn.current_stream(1) == s
    assert torch.trn.current_device() == 0
    assert torch.trn.current_stream(1).stream_id == 0


def test_stream_synchronize_and_query():
    s = torch.trn.Stream()
    with torch.trn.stream(s):
        y = torch.randn(8, 8, device="trn") @ torch.randn(8, 8, device="trn")
    s.synchronize()
    assert s.query() is True
    assert y.shape == (8, 8)


def test_tensor_record_stream():
    """FSDP and DDP call record_stream on tensors used on a side stream."""
    s = torch.trn.Stream()
    x = torch.ones(4, device="trn")
    with torch.trn.stream(s):
        y = x * 2
    x.record_stream(s)
    assert y.cpu().tolist() == [2.0] * 4


def test_event_record_query_and_synchronize():
    e = torch.trn.Event()
    e.record()
    e.synchronize()
    assert e.query() is True


def test_event_elapsed_time_is_non_negative_milliseconds():
    start = torch.trn.Event(enable_timing=True)
    end = torch.trn.Event(enable_timing=True)
    start.record()
    torch.randn(64, 64, device="trn").sum()
    end.record()
    end.synchronize()
    ms = start.elapsed_time(end)
    assert isinstance(ms, float)
    assert ms >= 0.0


def test_event_elapsed_time_grows_with_device_work():
    """DESIGN: events carry the simulated clock, so device work takes modelled time."""
    start = torch.trn.Event(enable_timing=True)
    end = torch.trn.Event(enable_timing=True)
    a = torch.randn(128, 128, device="trn")
    start.record()
    for _ in range(3):
        a = a @ a
    end.record()
    end.synchronize()
    assert start.elapsed_time(end) > 0.0  # three 128^3 matmuls take modelled time


def _timed_event(stream=None):
    e = torch.trn.Event(enable_timing=True)
    e.record(stream)
    return e


def test_stream_wait_event():
    """Modelled time: a stream that waits an event starts its next op at the
    event's time (not before), waiting never moves a stream back, and
    ``wait_stream`` brings the waiting stream up to the other's last op."""
    a = torch.randn(256, 256, device="trn")
    x = torch.randn(4096, device="trn")
    side = torch.trn.Stream()
    default = torch.trn.current_stream()
    default.wait_stream(side)               # streams are pooled: start level or ahead
    base = _timed_event()
    a @ a                                   # default stream: one matmul
    done_mm = _timed_event()
    assert base.elapsed_time(done_mm) > 0
    side_before = _timed_event(side)
    # a fresh stream's clock is behind the default stream's matmul ...
    assert done_mm.elapsed_time(side_before) < 0
    side.wait_event(done_mm)
    side_waited = _timed_event(side)
    # ... and waiting lifts it exactly to the event's time
    assert done_mm.elapsed_time(side_waited) == 0.0
    with torch.trn.stream(side):
        x.exp()
    side_done = _timed_event(side)
    exp_ms = side_waited.elapsed_time(side_done)
    assert exp_ms > 0
    # the exp started at the event: it ends one exp after the matmul
    assert done_mm.elapsed_time(side_done) == pytest.approx(exp_ms, rel=1e-9)
    # waiting an event already passed does not move the stream back
    default.wait_event(base)
    assert done_mm.elapsed_time(_timed_event(default)) == 0.0
    # wait_stream: the default stream now starts after the side stream's exp
    default.wait_stream(side)
    after = _timed_event(default)
    assert side_done.elapsed_time(after) == 0.0
    assert done_mm.elapsed_time(after) == pytest.approx(exp_ms, rel=1e-9)


# ---------------------------------------------------------------- torch.accelerator
def test_accelerator_current_accelerator_is_trn():
    assert torch.accelerator.is_available()
    assert torch.accelerator.current_accelerator() == torch.device("trn")


def test_accelerator_device_count_matches_device_module():
    assert torch.accelerator.device_count() == torch.trn.device_count()


@requires_devices(2)
def test_accelerator_device_index_context():
    with torch.accelerator.device_index(1):
        assert torch.trn.current_device() == 1
    assert torch.accelerator.current_device_index() == 0


def test_accelerator_synchronize():
    """Kernels run synchronously on the host, so synchronize returns at once;
    the device clock it reconciles (the one the profiler's windows end at)
    is then at the end of the last op of the busiest stream, and a bad
    device index is refused like CUDA's."""
    from torch_trn3 import _C

    side = torch.trn.Stream(device=0)
    a = torch.randn(256, 256, device="trn:0")
    side.wait_stream(torch.trn.current_stream(0))   # start level with the default stream
    start = _timed_event(side)
    with torch.trn.stream(side):
        a @ a @ a                           # the longer stream
    side_end = _timed_event(side)
    torch.ones(3, device="trn:0").add_(1)   # a short op on the default stream
    torch.accelerator.synchronize(0)
    now = _C._device_now(0)
    assert start.elapsed_time(side_end) > 0
    assert now == _C._stream_now(0, side.stream_id)
    assert now >= _C._stream_now(0, torch.trn.current_stream(0).stream_id)
    torch.accelerator.synchronize()          # the current device: no change
    assert _C._device_now(0) == now
    with pytest.raises(IndexError, match="invalid device index 99"):
        torch.accelerator.synchronize(99)


def test_accelerator_streams():
    s = torch.Stream(device="trn")
    prev = torch.accelerator.current_stream()
    torch.accelerator.set_stream(s)
    try:
        assert torch.accelerator.current_stream() == s
        assert torch.trn.current_stream() == s
    finally:
        torch.accelerator.set_stream(prev)


def test_accelerator_memory_functions_match_device_module(no_device_leaks):
    x = torch.empty(1024, device="trn")
    assert torch.accelerator.memory_allocated() == torch.trn.memory_allocated()
    assert torch.accelerator.memory_allocated() >= x.nbytes
    assert torch.accelerator.max_memory_allocated() == torch.trn.max_memory_allocated()
    assert torch.accelerator.memory_reserved() == torch.trn.memory_reserved()
    assert torch.accelerator.get_memory_info() == torch.trn.mem_get_info()
    stats = torch.accelerator.memory_stats()
    assert stats["allocated_bytes.all.current"] == torch.trn.memory_allocated()
    torch.accelerator.empty_cache()
    del x


def test_accelerator_reset_peak_memory_stats(no_device_leaks):
    x = torch.empty(4096, device="trn")
    del x
    torch.accelerator.reset_peak_memory_stats()
    assert torch.trn.max_memory_allocated() == torch.trn.memory_allocated()


# ---------------------------------------------------------------- random numbers (device module)
def test_manual_seed_makes_draws_repeat():
    torch.trn.manual_seed(123)
    a = torch.randn(6, device="trn")
    torch.trn.manual_seed(123)
    b = torch.randn(6, device="trn")
    assert torch.equal(a.cpu(), b.cpu())


@requires_devices(2)
def test_manual_seed_all_seeds_every_device():
    torch.trn.manual_seed_all(7)
    a = torch.rand(5, device="trn:0")
    b = torch.rand(5, device="trn:1")
    assert torch.equal(a.cpu(), b.cpu())
    assert torch.trn.initial_seed() == 7


def test_rng_state_is_16_bytes_seed_then_offset():
    torch.trn.manual_seed(0x0102030405060708)
    state = torch.trn.get_rng_state()
    assert state.dtype == torch.uint8
    assert state.device.type == "cpu"
    assert state.numel() == 16
    seed = int.from_bytes(bytes(state[:8].tolist()), "little")
    offset = int.from_bytes(bytes(state[8:].tolist()), "little")
    assert seed == 0x0102030405060708
    assert offset == 0


def test_torch_generator_on_trn():
    g = torch.Generator("trn")
    assert g.device == torch.device("trn", 0)
    g.manual_seed(5)
    a = torch.rand(4, device="trn", generator=g)
    g.manual_seed(5)
    b = torch.rand(4, device="trn", generator=g)
    assert torch.equal(a.cpu(), b.cpu())


# ---------------------------------------------------------------- memory (device module)
def test_memory_allocated_counts_a_new_tensor(no_device_leaks):
    before = torch.trn.memory_allocated()
    x = torch.empty(1000, dtype=torch.float32, device="trn")
    assert torch.trn.memory_allocated() - before == 4000
    del x
    assert torch.trn.memory_allocated() == before


def test_max_memory_allocated_and_reset_peak(no_device_leaks):
    base = torch.trn.memory_allocated()
    x = torch.empty(2**20, dtype=torch.uint8, device="trn")
    del x
    assert torch.trn.max_memory_allocated() >= base + 2**20
    torch.trn.reset_peak_memory_stats()
    assert torch.trn.max_memory_allocated() == base


def test_memory_reserved_at_least_allocated(no_device_leaks):
    x = torch.empty(512, device="trn")
    assert torch.trn.memory_reserved() >= torch.trn.memory_allocated() >= x.nbytes


def test_memory_stats_has_cuda_keys(no_device_leaks):
    stats = torch.trn.memory_stats()
    for key in (
        "allocated_bytes.all.current",
        "allocated_bytes.all.peak",
        "reserved_bytes.all.current",
        "active_bytes.all.current",
        "num_ooms",
    ):
        assert key in stats
    assert stats["allocated_bytes.all.current"] == torch.trn.memory_allocated()


def test_mem_get_info_is_free_and_total(no_device_leaks):
    total = torch.trn.get_device_properties(0).total_memory
    free, tot = torch.trn.mem_get_info()
    assert tot == total
    x = torch.empty(2**20, dtype=torch.uint8, device="trn")
    free_after, _ = torch.trn.mem_get_info()
    assert free - free_after == 2**20
    del x


def test_empty_cache_is_callable():
    assert torch.trn.empty_cache() is None


@requires_devices(2)
def test_memory_is_accounted_per_device(no_device_leaks):
    before0 = torch.trn.memory_allocated(0)
    before1 = torch.trn.memory_allocated(1)
    x = torch.empty(256, dtype=torch.float64, device="trn:1")
    assert torch.trn.memory_allocated(1) - before1 == 2048
    assert torch.trn.memory_allocated(0) == before0
    del x
