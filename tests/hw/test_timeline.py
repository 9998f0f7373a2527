"""The simulated clock: ops start at max(engine free, previous op of stream)."""
import pytest

from torch_trn3.hw.cost import Engine
from torch_trn3.hw.timeline import DeviceTimeline


def test_first_op_starts_at_zero():
    tl = DeviceTimeline()
    assert tl.schedule(Engine.TENSOR, 2.0) == (0.0, 2.0)


def test_ops_of_one_stream_run_in_order_even_on_different_engines():
    tl = DeviceTimeline()
    tl.schedule(Engine.TENSOR, 2.0)
    assert tl.schedule(Engine.SCALAR, 1.0) == (2.0, 3.0)
    assert tl.now() == 3.0


def test_independent_op_overlaps_on_an_idle_engine():
    tl = DeviceTimeline()
    tl.schedule(Engine.TENSOR, 2.0)
    assert tl.schedule(Engine.SCALAR, 1.0, depends_on_previous=False) == (0.0, 1.0)
    assert tl.now() == 2.0        # the stream still ends with the matmul


def test_streams_overlap_on_different_engines():
    tl = DeviceTimeline()
    tl.schedule(Engine.TENSOR, 2.0, stream=0)
    assert tl.schedule(Engine.DMA, 1.5, stream=1) == (0.0, 1.5)
    assert tl.now(0) == 2.0 and tl.now(1) == 1.5


def test_streams_share_an_engine_one_op_at_a_time():
    tl = DeviceTimeline()
    tl.schedule(Engine.TENSOR, 2.0, stream=0)
    assert tl.schedule(Engine.TENSOR, 1.0, stream=1) == (2.0, 3.0)


def test_wait_until_delays_the_next_op_of_a_stream():
    tl = DeviceTimeline()
    tl.wait_until(5.0, stream=1)
    assert tl.schedule(Engine.VECTOR, 1.0, stream=1) == (5.0, 6.0)


def test_engine_busy_sums_durations_not_idle_gaps():
    tl = DeviceTimeline()
    tl.schedule(Engine.TENSOR, 2.0)
    tl.schedule(Engine.SCALAR, 1.0)
    tl.schedule(Engine.TENSOR, 0.5)      # starts at 3.0, after the scalar op
    assert tl.engine_busy_s(Engine.TENSOR) == 2.5
    assert tl.engine_busy_s(Engine.SCALAR) == 1.0
    assert tl.now() == 3.5


def test_int_engine_index_is_the_same_engine():
    tl = DeviceTimeline()
    tl.schedule(Engine.GPSIMD.value, 1.0)
    assert tl.engine_busy_s(Engine.GPSIMD) == 1.0


def test_horizon_is_the_latest_end_over_all_streams():
    tl = DeviceTimeline()
    tl.schedule(Engine.TENSOR, 2.0, stream=0)
    tl.schedule(Engine.DMA, 3.0, stream=1)
    assert tl.horizon() == 3.0


def test_reset_returns_to_time_zero():
    tl = DeviceTimeline()
    tl.schedule(Engine.TENSOR, 2.0)
    tl.reset()
    assert tl.now() == 0.0
    assert tl.engine_busy_s(Engine.TENSOR) == 0.0
    assert tl.schedule(Engine.TENSOR, 1.0) == (0.0, 1.0)


def test_scheduling_is_cheap():
    import time
    tl = DeviceTimeline()
    start = time.perf_counter()
    for i in range(100_000):
        tl.schedule(Engine.SCALAR, 1e-6)
    per_op = (time.perf_counter() - start) / 100_000
    assert per_op < 5e-6          # generous: ~0.3 us on a laptop
    assert tl.now() == pytest.approx(0.1)
