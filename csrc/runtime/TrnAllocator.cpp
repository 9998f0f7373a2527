#include "TrnAllocator.h"

#include "TrnClock.h"
#include "TrnDevices.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <mutex>
#include <unordered_set>
#include <vector>

namespace torch_trn3 {

namespace {

using c10::CachingDeviceAllocator::DeviceStats;
constexpr size_t kAggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);

// Each device allocation is preceded by a header so the deleter knows which
// device to credit. The DataPtr's context is the data pointer itself (as the
// CPU allocator's is), because CPU libraries that use Allocator::raw_allocate
// (oneDNN under bf16) require it.
struct alignas(64) AllocationHeader {
  uint64_t magic;
  uint64_t nbytes;
  int32_t device;
};
constexpr uint64_t kMagic = 0x74726e336d656d31ULL;  // "trn3mem1"

struct DeviceMemory {
  std::mutex mutex;
  DeviceStats stats;
};

std::vector<DeviceMemory>& devices_memory() {
  static std::vector<DeviceMemory> memory(kMaxDevices);
  return memory;
}

std::string format_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[64];
  snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

// One allocation (or free) of `nbytes`: every allocation is its own segment,
// active and reserved while it lives (nothing is cached).
void record(DeviceStats& stats, size_t nbytes, bool allocated) {
  auto apply = [allocated](c10::CachingAllocator::Stat& stat, size_t amount) {
    allocated ? stat.increase(amount) : stat.decrease(amount);
  };
  for (auto* s : {&stats.allocated_bytes, &stats.reserved_bytes, &stats.active_bytes,
                  &stats.requested_bytes}) {
    apply((*s)[kAggregate], nbytes);
  }
  for (auto* s : {&stats.allocation, &stats.segment, &stats.active}) apply((*s)[kAggregate], 1);
  (allocated ? stats.num_device_alloc : stats.num_device_free) += 1;
}

void charge(c10::DeviceIndex device, size_t nbytes) {
  auto& mem = devices_memory()[device];
  std::lock_guard<std::mutex> lock(mem.mutex);
  const auto& cfg = machine_config();
  auto& allocated = mem.stats.allocated_bytes[kAggregate];
  if (allocated.current + static_cast<int64_t>(nbytes) > cfg.hbm_bytes) {
    mem.stats.num_ooms += 1;
    TORCH_CHECK_WITH(
        OutOfMemoryError, false, "trn out of memory on logical device ",
        static_cast<int>(device), " (trn:", static_cast<int>(device),
        "): tried to allocate ", format_bytes(nbytes), "; the device has ",
        format_bytes(cfg.hbm_bytes), " of HBM (", cfg.chip_name, ", LNC=",
        cfg.lnc, ") of which ", format_bytes(allocated.current),
        " is already allocated.");
  }
  record(mem.stats, nbytes, /*allocated=*/true);
}

void credit(c10::DeviceIndex device, size_t nbytes) {
  auto& mem = devices_memory()[device];
  std::lock_guard<std::mutex> lock(mem.mutex);
  record(mem.stats, nbytes, /*allocated=*/false);
}

// Device allocations made through the kernel-scratch CPU allocator, so its
// raw deleter can tell them from the host allocator's.
std::mutex g_scratch_mutex;
std::unordered_set<void*> g_scratch_live;

void free_device_memory(void* data) {
  auto* header = static_cast<AllocationHeader*>(data) - 1;
  TORCH_INTERNAL_ASSERT(header->magic == kMagic, "corrupt trn allocation header");
  credit(static_cast<c10::DeviceIndex>(header->device), header->nbytes);
  forget_memory(static_cast<c10::DeviceIndex>(header->device), data);
  header->magic = 0;
  c10::free_cpu(header);
}

void free_scratch_memory(void* data) {
  {
    std::lock_guard<std::mutex> lock(g_scratch_mutex);
    g_scratch_live.erase(data);
  }
  free_device_memory(data);
}

void free_nothing(void*) {}

class TrnDeviceAllocator final : public c10::DeviceAllocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override {
    return allocate_device_memory(nbytes, current_device());
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }
  bool initialized() override { return devices_initialized(); }
  void emptyCache(c10::MempoolId_t) override {}  // nothing is cached
  void recordStream(const c10::DataPtr&, c10::Stream) override {}
  DeviceStats getDeviceStats(c10::DeviceIndex device) override {
    check_device_index(device);
    auto& mem = devices_memory()[device];
    std::lock_guard<std::mutex> lock(mem.mutex);
    return mem.stats;
  }
  void resetAccumulatedStats(c10::DeviceIndex device) override {
    check_device_index(device);
    auto& mem = devices_memory()[device];
    std::lock_guard<std::mutex> lock(mem.mutex);
    auto reset = [](c10::CachingAllocator::StatArray& a) {
      for (auto& s : a) s.reset_accumulated();
    };
    for (auto* a : {&mem.stats.allocation, &mem.stats.segment, &mem.stats.active,
                    &mem.stats.allocated_bytes, &mem.stats.reserved_bytes,
                    &mem.stats.active_bytes, &mem.stats.requested_bytes}) {
      reset(*a);
    }
    mem.stats.num_ooms = 0;
    mem.stats.num_device_alloc = 0;
    mem.stats.num_device_free = 0;
  }
  void resetPeakStats(c10::DeviceIndex device) override {
    check_device_index(device);
    auto& mem = devices_memory()[device];
    std::lock_guard<std::mutex> lock(mem.mutex);
    for (auto* a : {&mem.stats.allocation, &mem.stats.segment, &mem.stats.active,
                    &mem.stats.allocated_bytes, &mem.stats.reserved_bytes,
                    &mem.stats.active_bytes, &mem.stats.requested_bytes}) {
      for (auto& s : *a) s.reset_peak();
    }
  }
  std::pair<size_t, size_t> getMemoryInfo(c10::DeviceIndex device) override {
    check_device_index(device);
    auto& mem = devices_memory()[device];
    std::lock_guard<std::mutex> lock(mem.mutex);
    const size_t total = machine_config().hbm_bytes;
    const size_t used = mem.stats.allocated_bytes[kAggregate].current;
    return {total - used, total};
  }
};

TrnDeviceAllocator g_device_allocator;

thread_local int t_kernel_device = -1;

// CPU allocator used while a trn op's CPU kernel runs: allocations made on the
// op's thread come from the trn device (tagged CPU so the kernel accepts them).
class KernelScratchAllocator final : public c10::Allocator {
 public:
  // Frees memory from Allocator::raw_allocate: ours or the host allocator's.
  static void raw_free(void* data) {
    bool ours = false;
    {
      std::lock_guard<std::mutex> lock(g_scratch_mutex);
      ours = g_scratch_live.count(data) > 0;
    }
    if (ours) {
      free_scratch_memory(data);
    } else {
      instance_fallback_raw_deleter(data);
    }
  }
  static c10::DeleterFnPtr instance_fallback_raw_deleter;

  explicit KernelScratchAllocator(c10::Allocator* fallback) : fallback_(fallback) {
    instance_fallback_raw_deleter = fallback->raw_deleter();
  }
  c10::DataPtr allocate(size_t nbytes) override {
    if (t_kernel_device < 0 || nbytes == 0) return fallback_->allocate(nbytes);
    auto ptr = allocate_device_memory(nbytes, static_cast<c10::DeviceIndex>(t_kernel_device));
    ptr.unsafe_set_device(c10::Device(c10::DeviceType::CPU));
    {
      std::lock_guard<std::mutex> lock(g_scratch_mutex);
      g_scratch_live.insert(ptr.get());
    }
    if (!ptr.compare_exchange_deleter(&free_device_memory, &free_scratch_memory)) {
      TORCH_INTERNAL_ASSERT(false, "trn scratch allocation without a device deleter");
    }
    return ptr;
  }
  c10::DeleterFnPtr raw_deleter() const override { return &raw_free; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

 private:
  c10::Allocator* fallback_;
};

c10::DeleterFnPtr KernelScratchAllocator::instance_fallback_raw_deleter = nullptr;

std::mutex g_pinned_mutex;
std::unordered_set<const void*> g_pinned;

void free_pinned(void* ptr) {
  {
    std::lock_guard<std::mutex> lock(g_pinned_mutex);
    g_pinned.erase(ptr);
  }
  c10::free_cpu(ptr);
}

// Host memory the device can DMA from directly (on the emulator: tracked so
// `is_pinned()` answers like CUDA's).
class PinnedHostAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t nbytes) override {
    void* data = nbytes ? c10::alloc_cpu(nbytes) : nullptr;
    if (data) {
      std::lock_guard<std::mutex> lock(g_pinned_mutex);
      g_pinned.insert(data);
    }
    return {data, data, &free_pinned, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &free_pinned; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }
};

PinnedHostAllocator g_pinned_allocator;

}  // namespace

c10::DataPtr allocate_device_memory(size_t nbytes, c10::DeviceIndex device) {
  check_device_index(device);
  const c10::Device dev(c10::DeviceType::PrivateUse1, device);
  if (nbytes == 0) return {nullptr, nullptr, &free_nothing, dev};
  charge(device, nbytes);
  void* raw = nullptr;
  try {
    raw = c10::alloc_cpu(sizeof(AllocationHeader) + nbytes);
  } catch (const std::exception& e) {
    credit(device, nbytes);
    TORCH_CHECK_WITH(OutOfMemoryError, false, "trn: the host ran out of memory backing logical device ",
                     static_cast<int>(device), " (trn:", static_cast<int>(device),
                     "): tried to allocate ", format_bytes(nbytes),
                     ". Device memory is host memory in the emulator, so a device can hold only "
                     "what the host can give, whatever its modelled HBM capacity. (", e.what(), ")");
  }
  auto* header = static_cast<AllocationHeader*>(raw);
  header->magic = kMagic;
  header->nbytes = nbytes;
  header->device = device;
  return {header + 1, header + 1, &free_device_memory, dev};
}

bool is_device_memory(const c10::DataPtr& ptr) {
  return ptr.get_deleter() == &free_device_memory || ptr.get_deleter() == &free_scratch_memory;
}

c10::DeviceAllocator* device_allocator() { return &g_device_allocator; }

KernelDeviceScope::KernelDeviceScope(c10::DeviceIndex device) : previous_(t_kernel_device) {
  t_kernel_device = device;
}
KernelDeviceScope::~KernelDeviceScope() { t_kernel_device = previous_; }

void install_kernel_scratch_allocator() {
  static KernelScratchAllocator* scratch = [] {
    auto* a = new KernelScratchAllocator(c10::GetCPUAllocator());
    c10::SetCPUAllocator(a, /*priority=*/100);
    return a;
  }();
  (void)scratch;
}

c10::Allocator* pinned_host_allocator() { return &g_pinned_allocator; }

bool is_pinned_host_ptr(const void* ptr) {
  std::lock_guard<std::mutex> lock(g_pinned_mutex);
  return g_pinned.count(ptr) > 0;
}

void resize_device_storage(const c10::Storage& storage, size_t new_nbytes) {
  auto* impl = storage.unsafeGetStorageImpl();
  TORCH_CHECK(impl->resizable(), "Trying to resize storage that is not resizable");
  const size_t old_nbytes = impl->nbytes();
  if (new_nbytes == old_nbytes) return;
  const auto device = storage.device().index();
  c10::DataPtr fresh = allocate_device_memory(new_nbytes, device);
  const size_t keep = std::min(old_nbytes, new_nbytes);
  if (keep > 0 && impl->data() != nullptr) {
    std::memcpy(fresh.get(), impl->data(), keep);
  }
  impl->set_data_ptr_noswap(std::move(fresh));
  impl->set_nbytes(new_nbytes);
}

REGISTER_ALLOCATOR(c10::DeviceType::PrivateUse1, &g_device_allocator)

}  // namespace torch_trn3
