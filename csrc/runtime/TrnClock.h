// Simulated device time: per logical device, one clock per engine and per
// stream, and the time each piece of device memory was last written.
//
// An op is scheduled at   start = max(its engine's free time,
//                                     the ready time of each input,
//                                     the time its stream was made to wait for)
// and ends at start + duration; its outputs become ready at the end. So ops
// on different engines overlap when their data allows it (softmax on the
// Vector Engine beside the next matmul on the Tensor Engine), ops on one
// engine run one after another (DMA: one queue per stream, as the device has
// many DMA engines, so copies of different streams overlap), and a stream's clock is the end of the last
// op issued on it, which is what events record. Wall-clock time is never
// reported as device time.
//
// Shared HBM: the engines of a device overlap in time but share its HBM
// bandwidth. Each op says how long its HBM traffic takes alone at the
// device's full bandwidth (`memory_s`) and how long the work that overlaps
// that traffic takes (`compute_s`, the roofline's other side). While it runs
// it uses the share memory_s / duration of the bandwidth. An op scheduled
// while ops on other engines hold part of the bandwidth gets only what they
// leave: its traffic takes the time M in which the leftover share, walked
// forward from its start, moves `memory_s` worth of bytes, and the op is
// stretched by max(0, M - max(compute_s, memory_s)) (its "HBM stall"). Ops
// already scheduled keep their times: the later-scheduled op yields, as a
// first-come, first-served memory controller would. Only the last
// kHbmHistory ops per engine are remembered (ops on one engine never
// overlap, so these are the ones a new op can meet).
#pragma once

#include <c10/core/Device.h>
#include <c10/core/Stream.h>
#include <c10/util/ArrayRef.h>

#include <utility>
#include <vector>

namespace torch_trn3 {

// Engine lanes, as hw.cost.Engine numbers them.
enum EngineId : int {
  kTensorEngine = 0,
  kVectorEngine = 1,
  kScalarEngine = 2,
  kGpSimdEngine = 3,
  kDmaEngine = 4,
  kCollectiveEngine = 5,
};
constexpr int kNumEngines = 6;

// Ops per engine whose HBM use a new op is checked against.
constexpr int kHbmHistory = 8;

// Where an op landed on the timeline, in modelled seconds. `hbm_stall_s` is
// the part of end - start spent waiting for HBM bandwidth other engines held.
struct ScheduledOp {
  double start_s;
  double end_s;
  double hbm_stall_s;
};

// Schedules an op of `duration_s` (alone on the device) whose HBM traffic
// takes `memory_s` at full bandwidth and overlaps `compute_s` of other work;
// `inputs`/`outputs` identify device memory by data pointer.
ScheduledOp schedule_op(c10::DeviceIndex device, c10::StreamId stream, int engine,
                        double duration_s, double memory_s, double compute_s,
                        c10::ArrayRef<const void*> inputs, c10::ArrayRef<const void*> outputs);
// Makes `outputs` ready when `inputs` are, without running anything (work
// folded into a later op, e.g. a transpose the Tensor Engine's load does).
void forward_ready(c10::DeviceIndex device, c10::ArrayRef<const void*> inputs,
                   c10::ArrayRef<const void*> outputs);
// Called with the data pointer of each piece of device memory that is freed.
using MemoryFreedHook = void (*)(const void* data);
void add_memory_freed_hook(MemoryFreedHook hook);
// Forgets the ready time of freed memory.
void forget_memory(c10::DeviceIndex device, const void* data);

// Modelled seconds at which everything issued on `stream` has finished.
double stream_now(c10::DeviceIndex device, c10::StreamId stream);
// Makes `stream` wait until `time` (stream waits on an event).
void wait_until(c10::DeviceIndex device, c10::StreamId stream, double time);
// The latest time over all streams of the device (device synchronize).
double device_now(c10::DeviceIndex device);
// Seconds each engine of the device has been busy (HBM stalls included).
std::vector<double> engine_busy(c10::DeviceIndex device);
// Seconds ops of the device were stretched waiting for shared HBM bandwidth.
double hbm_stall_total(c10::DeviceIndex device);
void reset_clocks();

}  // namespace torch_trn3
