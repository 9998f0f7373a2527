#include "OpCharging.h"

#include "../runtime/TrnClock.h"
#include "../runtime/TrnGuard.h"

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

// Background layout work held back until its consumers are known (see the
// header). Keyed by the memory of its output.
struct Pending {
  std::string op;
  c10::DeviceIndex device;
  c10::StreamId stream;
  OpCharge charge;
  c10::SmallVector<const void*, 2> inputs;
  const void* output;
  std::string scope;
  std::vector<TensorDesc> input_descs, output_descs;
  bool recorded = false;  // shown in the profiler as folded already
};
// Never destroyed (memory is still freed, and this consulted, while static
// objects are torn down at exit).
std::mutex& g_pending_mutex = *new std::mutex();
std::unordered_map<const void*, Pending>& g_pending = *new std::unordered_map<const void*, Pending>();
std::atomic<size_t> g_pending_count{0};

void forget_pending(const void* data) {
  if (g_pending_count.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard<std::mutex> lock(g_pending_mutex);
  if (g_pending.erase(data)) g_pending_count = g_pending.size();
}

const bool g_hook_installed = [] {
  add_memory_freed_hook(&forget_pending);
  return true;
}();

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

void defer(const std::string& op, c10::DeviceIndex device, const OpCharge& charge,
           c10::ArrayRef<at::Tensor> inputs, c10::ArrayRef<at::Tensor> outputs);
// Folds held-back layout work that a Tensor Engine op reads into it, and
// runs the rest that `reads` / `writes` touch before the op that does.
void resolve_pending(c10::DeviceIndex device, bool tensor_engine, const std::string& consumer,
                     c10::ArrayRef<const void*> reads, c10::ArrayRef<const void*> writes);

bool same_key(const std::vector<int64_t>& a, const Key& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

const at::Tensor* only_defined(c10::ArrayRef<at::Tensor> tensors, size_t* count) {
  const at::Tensor* found = nullptr;
  *count = 0;
  for (const auto& t : tensors) {
    if (t.defined()) {
      found = &t;
      ++*count;
    }
  }
  return found;
}

// A copy that only re-lays out its input: a transpose / permute made
// contiguous (non-overlapping and dense, but not contiguous, in; contiguous
// out; same dtype and size; one device).
bool is_transposing_copy(c10::DeviceIndex device, c10::ArrayRef<at::Tensor> inputs,
                         c10::ArrayRef<at::Tensor> outputs) {
  size_t n_in = 0, n_out = 0;
  const at::Tensor* in = only_defined(inputs, &n_in);
  const at::Tensor* out = only_defined(outputs, &n_out);
  if (n_in != 1 || n_out != 1 || in->numel() < 2) return false;
  return in->device() == out->device() && in->device().index() == device &&
         in->scalar_type() == out->scalar_type() && in->numel() == out->numel() &&
         !in->is_contiguous() && in->is_non_overlapping_and_dense() && out->is_contiguous() &&
         memory_of(*in) != memory_of(*out);
}

// A row gather (index_select / index on dim 0): rows of a contiguous input
// picked by a 1-D integer index.
bool is_row_gather(const std::string& op, c10::ArrayRef<at::Tensor> inputs,
                   c10::ArrayRef<at::Tensor> outputs) {
  if (op != "aten::index_select" && op != "aten::index.Tensor") return false;
  if (inputs.size() != 2 || outputs.size() != 1) return false;
  const at::Tensor &src = inputs[0], &index = inputs[1], &out = outputs[0];
  if (!src.defined() || !index.defined() || !out.defined()) return false;
  return src.dim() >= 2 && src.is_contiguous() && index.dim() == 1 &&
         c10::isIntegralType(index.scalar_type(), /*includeBool=*/false) &&
         out.dim() == src.dim() && out.sizes().slice(1).equals(src.sizes().slice(1)) &&
         out.scalar_type() == src.scalar_type();
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

  if ((charge.engine == kDmaEngine && is_transposing_copy(device, inputs, outputs)) ||
      (charge.engine == kGpSimdEngine && is_row_gather(op, inputs, outputs))) {
    defer(op, device, charge, inputs, outputs);
    return;
  }
  charge_explicit(op, device, charge, inputs, outputs);
}

namespace {

void defer(const std::string& op, c10::DeviceIndex device, const OpCharge& charge,
           c10::ArrayRef<at::Tensor> inputs, c10::ArrayRef<at::Tensor> outputs) {
  Pending p;
  p.op = op;
  p.device = device;
  p.stream = current_stream_id(device);
  p.charge = charge;
  for (const auto& t : inputs) p.inputs.push_back(memory_of(t));
  p.output = memory_of(outputs[0]);
  resolve_pending(device, /*tensor_engine=*/false, "", p.inputs, {});  // its own inputs run first
  forward_ready(device, p.inputs, {p.output});
  // Described now (the tensors may be gone when it runs or folds, and a
  // profiler may have started in between).
  p.input_descs = describe(inputs);
  p.output_descs = describe(outputs);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    p.scope = g_scope;
  }
  std::lock_guard<std::mutex> lock(g_pending_mutex);
  g_pending[p.output] = std::move(p);
  g_pending_count = g_pending.size();
}

void resolve_pending(c10::DeviceIndex device, bool tensor_engine, const std::string& consumer,
                     c10::ArrayRef<const void*> reads, c10::ArrayRef<const void*> writes) {
  if (g_pending_count.load(std::memory_order_relaxed) == 0) return;
  c10::SmallVector<Pending, 2> to_run;
  {
    std::lock_guard<std::mutex> lock(g_pending_mutex);
    auto visit = [&](const void* p, bool folds) {
      if (!p) return;
      auto it = g_pending.find(p);
      if (it == g_pending.end()) return;
      if (folds) {
        if (!it->second.recorded && g_recording) {
          it->second.recorded = true;
          const auto now = stream_now(device, current_stream_id(device));
          std::lock_guard<std::mutex> rlock(g_mutex);
          g_records.push_back({it->second.op, it->second.scope, device, it->second.stream,
                               it->second.charge.engine, now, now, 0.0, 0.0,
                               it->second.input_descs, it->second.output_descs, 0.0, consumer});
        }
        return;
      }
      to_run.push_back(std::move(it->second));
      g_pending.erase(it);
    };
    for (const void* p : reads) visit(p, tensor_engine);
    for (const void* p : writes) visit(p, false);
    g_pending_count = g_pending.size();
  }
  for (auto& p : to_run) {
    auto scheduled = schedule_op(p.device, p.stream, p.charge.engine, p.charge.seconds,
                                 p.charge.memory_s, p.charge.compute_s, p.inputs, {p.output});
    if (g_recording) {
      std::lock_guard<std::mutex> lock(g_mutex);
      g_records.push_back({p.op, p.scope, p.device, p.stream, p.charge.engine,
                           scheduled.start_s, scheduled.end_s, p.charge.flops, p.charge.bytes,
                           std::move(p.input_descs), std::move(p.output_descs),
                           scheduled.hbm_stall_s, ""});
    }
  }
}

}  // namespace

void charge_explicit(const std::string& op, c10::DeviceIndex device, const OpCharge& charge,
                     c10::ArrayRef<at::Tensor> inputs, c10::ArrayRef<at::Tensor> outputs) {
  c10::SmallVector<const void*, 4> in_mem, out_mem;
  for (const auto& t : inputs) in_mem.push_back(memory_of(t));
  for (const auto& t : outputs) out_mem.push_back(memory_of(t));
  resolve_pending(device, charge.engine == kTensorEngine, op, in_mem, out_mem);
  const auto stream = current_stream_id(device);
  const auto s = schedule_op(device, stream, charge.engine, charge.seconds, charge.memory_s,
                             charge.compute_s, in_mem, out_mem);
  if (g_recording) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_records.push_back({op, g_scope, device, stream, charge.engine, s.start_s, s.end_s,
                         charge.flops, charge.bytes, describe(inputs), describe(outputs),
                         s.hbm_stall_s, ""});
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
