#include "OpCharging.h"

#include "../runtime/TrnClock.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <mutex>
#include <unordered_map>

namespace torch_trn3 {

namespace {

struct KeyHash {
  size_t operator()(const std::vector<int64_t>& key) const {
    uint64_t h = 1469598103934665603ULL;
    for (int64_t v : key) {
      h ^= static_cast<uint64_t>(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    }
    return h;
  }
};

std::mutex g_mutex;
CostFunction g_cost_fn;
std::unordered_map<std::vector<int64_t>, OpCharge, KeyHash> g_memo;
std::atomic<bool> g_enabled{true};
std::atomic<bool> g_recording{false};
std::string g_scope;
std::vector<OpRecord> g_records;

void append_tensor_key(std::vector<int64_t>& key, const at::Tensor& t) {
  if (!t.defined()) {
    key.push_back(-1);
    return;
  }
  key.push_back(static_cast<int64_t>(t.scalar_type()));
  key.push_back(t.dim());
  for (auto s : t.sizes()) key.push_back(s);
}

std::vector<TensorDesc> describe(const std::vector<at::Tensor>& tensors) {
  std::vector<TensorDesc> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    out.push_back({t.sizes().vec(), c10::toString(t.scalar_type())});
  }
  return out;
}

const void* memory_of(const at::Tensor& t) {
  return t.defined() && t.has_storage() ? t.storage().data() : nullptr;
}

}  // namespace

void set_cost_function(CostFunction fn) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_cost_fn = std::move(fn);
  g_memo.clear();
}

void set_model_enabled(bool enabled) { g_enabled = enabled; }
bool model_enabled() { return g_enabled; }

void clear_cost_cache() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_memo.clear();
}

void charge_op(const std::string& op, c10::DeviceIndex device,
               const std::vector<at::Tensor>& inputs, const std::vector<at::Tensor>& outputs) {
  if (!g_enabled) return;
  std::vector<int64_t> key;
  key.reserve(4 + 6 * (inputs.size() + outputs.size()));
  key.push_back(reinterpret_cast<int64_t>(&op));
  for (const auto& t : inputs) append_tensor_key(key, t);
  key.push_back(-2);
  for (const auto& t : outputs) append_tensor_key(key, t);

  OpCharge charge;
  bool found = false;
  CostFunction fn;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_memo.find(key);
    if (it != g_memo.end()) {
      charge = it->second;
      found = true;
    } else {
      fn = g_cost_fn;
    }
  }
  if (!found) {
    if (!fn) return;  // no chip model attached (C++ core used on its own)
    charge = fn(op, describe(inputs), describe(outputs));
    std::lock_guard<std::mutex> lock(g_mutex);
    g_memo.emplace(std::move(key), charge);
  }

  std::vector<const void*> in_mem, out_mem;
  in_mem.reserve(inputs.size());
  for (const auto& t : inputs) in_mem.push_back(memory_of(t));
  out_mem.reserve(outputs.size());
  for (const auto& t : outputs) out_mem.push_back(memory_of(t));
  const auto* guard = c10::impl::getDeviceGuardImpl(c10::DeviceType::PrivateUse1);
  const auto stream = guard->getStream(c10::Device(c10::DeviceType::PrivateUse1, device)).id();
  const auto [start, end] =
      schedule_op(device, stream, charge.engine, charge.seconds, in_mem, out_mem);
  if (g_recording) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_records.push_back({op, g_scope, device, stream, charge.engine, start, end, charge.flops,
                         charge.bytes});
  }
}

void set_recording(bool enabled) { g_recording = enabled; }

void set_scope(const std::string& scope) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_scope = scope;
}

std::vector<OpRecord> drain_records() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<OpRecord> out;
  out.swap(g_records);
  return out;
}

}  // namespace torch_trn3
