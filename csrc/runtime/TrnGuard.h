// The trn DeviceGuardImplInterface (TrnGuard.cpp): current device, streams
// and events whose timestamps are the streams' simulated clocks.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/Stream.h>

namespace torch_trn3 {

// The id of this thread's current stream on `device`.
c10::StreamId current_stream_id(c10::DeviceIndex device);

// Modelled milliseconds between two recorded events; raises CUDA's errors
// for unrecorded or non-timing events and mixed devices.
double event_elapsed_ms(void* start_event, void* end_event);

}  // namespace torch_trn3
