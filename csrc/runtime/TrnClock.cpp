#include "TrnClock.h"

#include "TrnDevices.h"

#include <c10/util/Exception.h>
#include <c10/util/SmallVector.h>

#include <algorithm>
#include <array>
#include <deque>
#include <mutex>
#include <unordered_map>

namespace torch_trn3 {

namespace {

// One op's use of HBM: the share of the device's bandwidth it held over
// [start, end].
struct HbmUse {
  double start = 0.0;
  double end = 0.0;
  double share = 0.0;
};

// The last kHbmHistory HBM-using ops of one engine, oldest first.
struct HbmHistory {
  std::array<HbmUse, kHbmHistory> uses{};
  int next = 0;   // slot the next op goes to
  int count = 0;

  void push(const HbmUse& u) {
    uses[next] = u;
    next = (next + 1) % kHbmHistory;
    count = std::min(count + 1, kHbmHistory);
  }
  // Newest first; stops at the first use that ended by `t` (older ones on
  // the same engine ended earlier still).
  template <typename F>
  void each_ending_after(double t, F&& f) const {
    for (int i = 1; i <= count; ++i) {
      const HbmUse& u = uses[(next - i + kHbmHistory) % kHbmHistory];
      if (u.end <= t) break;
      f(u);
    }
  }
};

// One lane of the timeline: ops on it run one after another.
struct Lane {
  double free = 0.0;
  HbmHistory hbm;
};

struct DeviceClock {
  std::mutex mutex;
  // Every engine but DMA is one lane per device.
  std::array<Lane, kNumEngines> lanes{};
  // The device has many DMA engines (queues): each stream's DMA ops run on
  // a queue of their own, concurrently with other streams' (FSDP2's
  // copy-in on its stream beside the compute stream's copy-out), sharing
  // HBM bandwidth like any concurrent ops.
  std::unordered_map<c10::StreamId, Lane> dma_queues;
  double hbm_stall = 0.0;
  std::array<double, kNumEngines> engine_busy{};
  std::unordered_map<c10::StreamId, double> stream_end;
  // Times streams were made to wait for (Stream.wait_event): no op of the
  // stream starts before its floor.
  std::unordered_map<c10::StreamId, double> stream_floor;
  std::unordered_map<const void*, double> ready;
};

std::deque<DeviceClock>& clocks() {
  static std::deque<DeviceClock> c(kMaxDevices);
  return c;
}

// Never destroyed: memory is still freed while static objects are torn down.
std::vector<MemoryFreedHook>& freed_hooks() {
  static auto* hooks = new std::vector<MemoryFreedHook>();
  return *hooks;
}

// Seconds from `start` until an op on `engine` has moved `memory_s` worth of
// bytes (at full bandwidth) through the share of HBM the other engines'
// recent ops leave free: walks the breakpoints of their combined share.
double hbm_time_with_contention(const DeviceClock& c, const Lane& own, double start,
                                double memory_s) {
  // (time, change of the others' combined share)
  c10::SmallVector<std::pair<double, double>, 16> steps;
  auto add = [&](const Lane& lane) {
    if (&lane == &own) return;
    lane.hbm.each_ending_after(start, [&](const HbmUse& u) {
      steps.emplace_back(std::max(u.start, start), u.share);
      steps.emplace_back(u.end, -u.share);
    });
  };
  for (const auto& lane : c.lanes) add(lane);
  for (const auto& kv : c.dma_queues) add(kv.second);
  if (steps.empty()) return memory_s;
  std::sort(steps.begin(), steps.end());
  double t = start, used = 0.0, need = memory_s;
  for (const auto& [time, change] : steps) {
    const double free_share = std::clamp(1.0 - used, 0.0, 1.0);
    const double moved = free_share * (time - t);
    if (moved >= need && free_share > 0.0) return t + need / free_share - start;
    need -= moved;
    t = time;
    used += change;
  }
  return t + need - start;  // every other op has ended: the full bandwidth
}

}  // namespace

void add_memory_freed_hook(MemoryFreedHook hook) { freed_hooks().push_back(hook); }

ScheduledOp schedule_op(c10::DeviceIndex device, c10::StreamId stream, int engine,
                        double duration_s, double memory_s, double compute_s,
                        c10::ArrayRef<const void*> inputs, c10::ArrayRef<const void*> outputs) {
  TORCH_INTERNAL_ASSERT(engine >= 0 && engine < kNumEngines, "bad engine ", engine);
  TORCH_CHECK(duration_s >= 0, "modelled op time cannot be negative");
  TORCH_CHECK(memory_s >= 0 && compute_s >= 0, "modelled memory and compute times cannot be negative");
  auto& c = clocks()[device];
  std::lock_guard<std::mutex> lock(c.mutex);
  double& stream_end = c.stream_end[stream];
  Lane& lane = engine == kDmaEngine ? c.dma_queues[stream] : c.lanes[engine];
  double start = lane.free;
  for (const void* p : inputs) {
    auto it = c.ready.find(p);
    if (it != c.ready.end()) start = std::max(start, it->second);
  }
  auto floor = c.stream_floor.find(stream);
  if (floor != c.stream_floor.end()) start = std::max(start, floor->second);
  double stall = 0.0;
  if (memory_s > 0.0 && duration_s > 0.0) {
    // The op's own roofline already hides its traffic behind this much time.
    const double hidden = std::min(std::max(compute_s, memory_s), duration_s);
    stall = std::max(0.0, hbm_time_with_contention(c, lane, start, memory_s) - hidden);
  }
  const double duration = duration_s + stall;
  const double end = start + duration;
  if (memory_s > 0.0 && duration > 0.0) {
    lane.hbm.push({start, end, std::min(1.0, memory_s / duration)});
  }
  lane.free = end;
  c.engine_busy[engine] += duration;
  c.hbm_stall += stall;
  stream_end = std::max(stream_end, end);
  for (const void* p : outputs) {
    if (p) c.ready[p] = end;
  }
  return {start, end, stall};
}

void forward_ready(c10::DeviceIndex device, c10::ArrayRef<const void*> inputs,
                   c10::ArrayRef<const void*> outputs) {
  auto& c = clocks()[device];
  std::lock_guard<std::mutex> lock(c.mutex);
  double ready = 0.0;
  for (const void* p : inputs) {
    auto it = c.ready.find(p);
    if (it != c.ready.end()) ready = std::max(ready, it->second);
  }
  for (const void* p : outputs) {
    if (p) c.ready[p] = ready;
  }
}

void forget_memory(c10::DeviceIndex device, const void* data) {
  {
    auto& c = clocks()[device];
    std::lock_guard<std::mutex> lock(c.mutex);
    c.ready.erase(data);
  }
  for (auto hook : freed_hooks()) hook(data);
}

double stream_now(c10::DeviceIndex device, c10::StreamId stream) {
  auto& c = clocks()[device];
  std::lock_guard<std::mutex> lock(c.mutex);
  double t = 0.0;
  auto it = c.stream_end.find(stream);
  if (it != c.stream_end.end()) t = it->second;
  auto floor = c.stream_floor.find(stream);
  if (floor != c.stream_floor.end()) t = std::max(t, floor->second);
  return t;
}

void wait_until(c10::DeviceIndex device, c10::StreamId stream, double time) {
  auto& c = clocks()[device];
  std::lock_guard<std::mutex> lock(c.mutex);
  double& floor = c.stream_floor[stream];
  floor = std::max(floor, time);
}

double device_now(c10::DeviceIndex device) {
  auto& c = clocks()[device];
  std::lock_guard<std::mutex> lock(c.mutex);
  double latest = 0.0;
  for (const auto& kv : c.stream_end) latest = std::max(latest, kv.second);
  return latest;
}

std::vector<double> engine_busy(c10::DeviceIndex device) {
  auto& c = clocks()[device];
  std::lock_guard<std::mutex> lock(c.mutex);
  return {c.engine_busy.begin(), c.engine_busy.end()};
}

double hbm_stall_total(c10::DeviceIndex device) {
  auto& c = clocks()[device];
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.hbm_stall;
}

void reset_clocks() {
  for (auto& c : clocks()) {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.lanes = {};
    c.dma_queues.clear();
    c.hbm_stall = 0.0;
    c.engine_busy.fill(0.0);
    c.stream_end.clear();
    c.stream_floor.clear();
    c.ready.clear();
  }
}

}  // namespace torch_trn3
