#include "TrnClock.h"

#include "TrnDevices.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <array>
#include <deque>
#include <mutex>
#include <unordered_map>

namespace torch_trn3 {

namespace {

struct DeviceClock {
  std::mutex mutex;
  std::array<double, kNumEngines> engine_free{};
  std::array<double, kNumEngines> engine_busy{};
  std::unordered_map<c10::StreamId, double> stream_end;
  // Times streams were made to wait for (Stream.wait_event): no op of the
  // stream starts before its floor.
  std::unordered_map<c10::StreamId, double> stream_floor;
  std::unordered_map<const void*, double> ready;
};

std::deque<DeviceClock>& clocks() {
  static std::deque<DeviceClock> c(512);
  return c;
}

}  // namespace

std::pair<double, double> schedule_op(c10::DeviceIndex device, c10::StreamId stream, int engine,
                                      double duration_s, c10::ArrayRef<const void*> inputs,
                                      c10::ArrayRef<const void*> outputs) {
  TORCH_INTERNAL_ASSERT(engine >= 0 && engine < kNumEngines, "bad engine ", engine);
  TORCH_CHECK(duration_s >= 0, "modelled op time cannot be negative");
  auto& c = clocks()[device];
  std::lock_guard<std::mutex> lock(c.mutex);
  double& stream_end = c.stream_end[stream];
  double start = c.engine_free[engine];
  for (const void* p : inputs) {
    auto it = c.ready.find(p);
    if (it != c.ready.end()) start = std::max(start, it->second);
  }
  auto floor = c.stream_floor.find(stream);
  if (floor != c.stream_floor.end()) start = std::max(start, floor->second);
  const double end = start + duration_s;
  c.engine_free[engine] = end;
  c.engine_busy[engine] += duration_s;
  stream_end = std::max(stream_end, end);
  for (const void* p : outputs) {
    if (p) c.ready[p] = end;
  }
  return {start, end};
}

void forget_memory(c10::DeviceIndex device, const void* data) {
  auto& c = clocks()[device];
  std::lock_guard<std::mutex> lock(c.mutex);
  c.ready.erase(data);
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

void reset_clocks() {
  for (auto& c : clocks()) {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.engine_free.fill(0.0);
    c.engine_busy.fill(0.0);
    c.stream_end.clear();
    c.stream_floor.clear();
    c.ready.clear();
  }
}

}  // namespace torch_trn3
