#include "OpCharging.h"

#include "../runtime/TrnClock.h"

#include <c10/util/SmallVector.h>

#include <algorithm>
#include <c10/util/Exception.h>

#include <atomic>
#include <mutex>
#include <unordered_map>

namespace torch_trn3 {

namespace {

using Key = c10::SmallVector<int64_t, 32>;

uint64_t hash_key(const Key& key) {
  uint64_t h = 1469598103934665603ULL;
  for (int64_t v : key) {
    h ^= static_cast<uint64_t>(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  }
  return h;
}

struct MemoEntry {
  std::vector<int64_t> key;
  OpCharge charge;
};

std::mutex g_mutex;
CostFunction g_cost_fn;
// Buckets by hash; entries keep the full key, so a collision never returns
// another op's cost.
std::unordered_map<uint64_t, std::vector<MemoEntry>> g_memo;
std::atomic<bool> g_enabled{true};
std::atomic<bool> g_recording{false};
std::string g_scope;
std::vector<OpRecord> g_records;

void append_tensor_key(Key& key, const at::Tensor& t) {
  if (!t.defined()) {
    key.push_back(-1);
    return;
  }
  key.push_back(static_cast<int64_t>(t.scalar_type()));
  key.push_back(t.dim());
  for (auto s : t.sizes()) key.push_back(s);
}

std::vector<TensorDesc> describe(c10::ArrayRef<at::Tensor> tensors) {
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

bool same_key(const std::vector<int64_t>& a, const Key& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
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

void charge_op(const std::string& op, c10::DeviceIndex device, c10::ArrayRef<at::Tensor> inputs,
               c10::ArrayRef<at::Tensor> outputs) {
  if (!g_enabled) return;
  Key key;
  key.push_back(reinterpret_cast<int64_t>(&op));
  for (const auto& t : inputs) append_tensor_key(key, t);
  key.push_back(-2);
  for (const auto& t : outputs) append_tensor_key(key, t);
  const uint64_t hash = hash_key(key);

  OpCharge charge;
  bool found = false;
  CostFunction fn;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_memo.find(hash);
    if (it != g_memo.end()) {
      for (const auto& entry : it->second) {
        if (same_key(entry.key, key)) {
          charge = entry.charge;
          found = true;
          break;
        }
      }
    }
    if (!found) fn = g_cost_fn;
  }
  if (!found) {
    if (!fn) return;  // no chip model attached (C++ core used on its own)
    charge = fn(op, describe(inputs), describe(outputs));
    std::lock_guard<std::mutex> lock(g_mutex);
    g_memo[hash].push_back({std::vector<int64_t>(key.begin(), key.end()), charge});
  }

  charge_explicit(op, device, charge, inputs, outputs);
}

void charge_explicit(const std::string& op, c10::DeviceIndex device, const OpCharge& charge,
                     c10::ArrayRef<at::Tensor> inputs, c10::ArrayRef<at::Tensor> outputs) {
  c10::SmallVector<const void*, 4> in_mem, out_mem;
  for (const auto& t : inputs) in_mem.push_back(memory_of(t));
  for (const auto& t : outputs) out_mem.push_back(memory_of(t));
  const auto stream = current_stream_id(device);
  const auto [start, end] =
      schedule_op(device, stream, charge.engine, charge.seconds, in_mem, out_mem);
  if (g_recording) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_records.push_back({op, g_scope, device, stream, charge.engine, start, end, charge.flops,
                         charge.bytes, describe(inputs), describe(outputs)});
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
