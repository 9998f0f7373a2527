// Simulated device time. Each logical device keeps one clock per stream;
// events read it, and the chip model (torch_trn3.hw) advances it as ops are
// charged. Wall-clock time is never reported as device time.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/Stream.h>

namespace torch_trn3 {

// Modelled seconds elapsed on `stream` of `device`.
double stream_now(c10::DeviceIndex device, c10::StreamId stream);
// Moves the stream's clock forward by `seconds` (>= 0); returns the new time.
double advance_stream(c10::DeviceIndex device, c10::StreamId stream, double seconds);
// Makes `stream` wait until `time` (stream waits on an event).
void wait_until(c10::DeviceIndex device, c10::StreamId stream, double time);
// The latest time over all streams of the device (device synchronize).
double device_now(c10::DeviceIndex device);
void reset_clocks();

}  // namespace torch_trn3
