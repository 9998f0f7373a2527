#include "TrnClock.h"

#include "TrnDevices.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace torch_trn3 {

namespace {
std::mutex g_mutex;
// clocks[device][stream id] -> seconds
std::vector<std::unordered_map<c10::StreamId, double>>& clocks() {
  static std::vector<std::unordered_map<c10::StreamId, double>> c(512);
  return c;
}
}  // namespace

double stream_now(c10::DeviceIndex device, c10::StreamId stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& m = clocks()[device];
  auto it = m.find(stream);
  return it == m.end() ? 0.0 : it->second;
}

double advance_stream(c10::DeviceIndex device, c10::StreamId stream, double seconds) {
  TORCH_CHECK(seconds >= 0, "simulated time cannot go backwards");
  check_device_index(device);
  std::lock_guard<std::mutex> lock(g_mutex);
  return clocks()[device][stream] += seconds;
}

void wait_until(c10::DeviceIndex device, c10::StreamId stream, double time) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& t = clocks()[device][stream];
  t = std::max(t, time);
}

double device_now(c10::DeviceIndex device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  double latest = 0.0;
  for (const auto& kv : clocks()[device]) latest = std::max(latest, kv.second);
  return latest;
}

void reset_clocks() {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& m : clocks()) m.clear();
}

}  // namespace torch_trn3
