// torch_trn3._C: the Python entry points of the C++ core.
#include "runtime/TrnAllocator.h"
#include "runtime/TrnClock.h"
#include "runtime/TrnDevices.h"
#include "runtime/TrnGenerator.h"

#include <c10/core/CachingDeviceAllocator.h>
#include <torch/csrc/Generator.h>
#include <torch/extension.h>

namespace torch_trn3 {
void register_hooks();
void route_shadowed_ops_to_cpu_kernels();
}

namespace {

using namespace torch_trn3;

py::dict stat_dict(const c10::CachingAllocator::Stat& s) {
  py::dict d;
  d["current"] = s.current;
  d["peak"] = s.peak;
  d["allocated"] = s.allocated;
  d["freed"] = s.freed;
  return d;
}

// Flat dict in the layout of torch.cuda.memory_stats (aggregate pool only).
py::dict memory_stats(int device) {
  check_device_index(static_cast<c10::DeviceIndex>(device));
  const auto stats = device_allocator()->getDeviceStats(static_cast<c10::DeviceIndex>(device));
  py::dict result;
  auto add = [&](const char* name, const c10::CachingAllocator::StatArray& a) {
    const auto& s = a[0];
    for (auto item : stat_dict(s)) {
      result[py::str(std::string(name) + ".all." + py::str(item.first).cast<std::string>())] =
          item.second;
    }
  };
  add("allocation", stats.allocation);
  add("segment", stats.segment);
  add("active", stats.active);
  add("allocated_bytes", stats.allocated_bytes);
  add("reserved_bytes", stats.reserved_bytes);
  add("active_bytes", stats.active_bytes);
  add("requested_bytes", stats.requested_bytes);
  result["num_alloc_retries"] = stats.num_alloc_retries;
  result["num_ooms"] = stats.num_ooms;
  result["num_device_alloc"] = stats.num_device_alloc;
  result["num_device_free"] = stats.num_device_free;
  return result;
}

void init(int device_count, int64_t hbm_bytes, int lnc, int chips, const std::string& chip_name) {
  MachineConfig config;
  config.device_count = device_count;
  config.hbm_bytes = hbm_bytes;
  config.lnc = lnc;
  config.chips = chips;
  config.chip_name = chip_name;
  init_devices(config);
  register_hooks();
  install_kernel_scratch_allocator();
  route_shadowed_ops_to_cpu_kernels();
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "torch_trn3 C++ core: devices, memory, generator, simulated clocks";
  m.def("_init", &init, "Configure the emulated machine (called once at import)");
  m.def("_device_count", [] { return static_cast<int>(device_count()); });
  m.def("_current_device", [] { return static_cast<int>(current_device()); });
  m.def("_set_device", [](int d) { set_current_device(static_cast<c10::DeviceIndex>(d)); });
  m.def("_memory_stats", &memory_stats);
  m.def("_reset_peak_memory_stats", [](int d) {
    device_allocator()->resetPeakStats(static_cast<c10::DeviceIndex>(d));
  });
  m.def("_reset_accumulated_memory_stats", [](int d) {
    device_allocator()->resetAccumulatedStats(static_cast<c10::DeviceIndex>(d));
  });
  m.def("_mem_get_info", [](int d) {
    return device_allocator()->getMemoryInfo(static_cast<c10::DeviceIndex>(d));
  });
  m.def("_default_generator", [](int d) {
    return py::reinterpret_steal<py::object>(
        THPGenerator_initDefaultGenerator(default_generator(static_cast<c10::DeviceIndex>(d))));
  });
  m.def("_is_device_memory", [](const at::Tensor& t) {
    return t.has_storage() && is_device_memory(t.storage().data_ptr());
  });
  m.def("_stream_now", [](int d, int64_t stream) {
    return stream_now(static_cast<c10::DeviceIndex>(d), stream);
  });
  m.def("_advance_stream", [](int d, int64_t stream, double seconds) {
    return advance_stream(static_cast<c10::DeviceIndex>(d), stream, seconds);
  });
  m.def("_device_now", [](int d) { return device_now(static_cast<c10::DeviceIndex>(d)); });
  m.def("_reset_clocks", &reset_clocks);
}
