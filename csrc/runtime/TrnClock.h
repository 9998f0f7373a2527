// Simulated device time: per logical device, one clock per engine and per
// stream, and the time each piece of device memory was last written.
//
// An op is scheduled at   start = max(its engine's free time,
//                                     the ready time of each input,
//                                     the time its stream was made to wait for)
// and ends at start + duration; its outputs become ready at the end. So ops
// on different engines overlap when their data allows it (softmax on the
// Vector Engine beside the next matmul on the Tensor Engine), ops on one
// engine run one after another, and a stream's clock is the end of the last
// op issued on it, which is what events record. Wall-clock time is never
// reported as device time.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/Stream.h>
#include <c10/util/ArrayRef.h>

#include <utility>
#include <vector>

namespace torch_trn3 {

constexpr int kNumEngines = 6;  // hw.cost.Engine: TENSOR VECTOR SCALAR GPSIMD DMA COLLECTIVE

// Schedules an op; `inputs`/`outputs` identify device memory by data pointer.
// Returns (start, end) in modelled seconds.
std::pair<double, double> schedule_op(c10::DeviceIndex device, c10::StreamId stream, int engine,
                                      double duration_s, c10::ArrayRef<const void*> inputs,
                                      c10::ArrayRef<const void*> outputs);
// The id of this thread's current stream on `device` (TrnGuard.cpp).
c10::StreamId current_stream_id(c10::DeviceIndex device);
// Forgets the ready time of freed memory.
void forget_memory(c10::DeviceIndex device, const void* data);

// Modelled seconds at which everything issued on `stream` has finished.
double stream_now(c10::DeviceIndex device, c10::StreamId stream);
// Makes `stream` wait until `time` (stream waits on an event).
void wait_until(c10::DeviceIndex device, c10::StreamId stream, double time);
// The latest time over all streams of the device (device synchronize).
double device_now(c10::DeviceIndex device);
// Seconds each engine of the device has been busy.
std::vector<double> engine_busy(c10::DeviceIndex device);
void reset_clocks();

// Modelled milliseconds between two recorded events (TrnGuard.cpp); raises
// CUDA's errors for unrecorded or non-timing events and mixed devices.
double event_elapsed_ms(void* start_event, void* end_event);

}  // namespace torch_trn3
