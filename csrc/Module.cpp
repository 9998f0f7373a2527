// torch_trn3._C: the Python entry points of the C++ core.
#include "aten/CpuAlias.h"
#include "aten/Fallback.h"
#include "aten/OpCharging.h"
#include "runtime/TrnAllocator.h"
#include "runtime/TrnClock.h"
#include "runtime/TrnDevices.h"
#include "runtime/TrnGenerator.h"
#include "runtime/TrnGuard.h"
#include "runtime/TrnHooks.h"

#include <c10/core/CachingDeviceAllocator.h>
#include <torch/csrc/Generator.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/extension.h>

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

py::list to_py(const std::vector<TensorDesc>& descs) {
  py::list out;
  for (const auto& d : descs) out.append(py::make_tuple(py::tuple(py::cast(d.sizes)), d.dtype));
  return out;
}

// Wraps the Python chip model's cost function for the C++ core (called with
// the GIL released by the op's Python binding, so it takes it back).
void set_python_cost_function(py::object fn) {
  if (fn.is_none()) {
    set_cost_function(nullptr);
    return;
  }
  // Deliberately never freed: the C++ global holding it is destroyed after
  // the interpreter, when dropping a Python reference would crash.
  auto* holder = new py::object(std::move(fn));
  set_cost_function([holder](const std::string& op, const std::vector<TensorDesc>& inputs,
                             const std::vector<TensorDesc>& outputs) {
    OpCharge charge;
    if (!Py_IsInitialized()) return charge;
    py::gil_scoped_acquire gil;
    py::tuple r = (*holder)(op, to_py(inputs), to_py(outputs));
    charge.engine = r[0].cast<int>();
    charge.seconds = r[1].cast<double>();
    charge.flops = r[2].cast<double>();
    charge.bytes = r[3].cast<double>();
    charge.memory_s = r[4].cast<double>();
    charge.compute_s = r[5].cast<double>();
    return charge;
  });
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
  m.def("_max_devices", [] { return kMaxDevices; });
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
  m.def("_device_now", [](int d) { return device_now(static_cast<c10::DeviceIndex>(d)); });
  m.def("_engine_busy", [](int d) { return engine_busy(static_cast<c10::DeviceIndex>(d)); });
  m.def("_reset_clocks", &reset_clocks);
  m.def("_event_elapsed_ms", [](uintptr_t start, uintptr_t end) {
    return event_elapsed_ms(reinterpret_cast<void*>(start), reinterpret_cast<void*>(end));
  });
  m.def("_set_cost_function", &set_python_cost_function,
        "fn(op, inputs, outputs) -> (engine, seconds, flops, bytes, memory_s, compute_s); inputs/outputs are "
        "lists of (sizes, dtype name)");
  m.def("_cpu_view", &cpu_view,
        "A CPU tensor over a trn tensor's memory (zero-copy; keeps it alive)");
  m.def("_charge", [](const std::string& op, int device, int engine, double seconds,
                      double flops, double bytes, std::vector<at::Tensor> inputs,
                      std::vector<at::Tensor> outputs, double memory_s, double compute_s) {
    OpCharge charge{engine, seconds, flops, bytes, memory_s, compute_s};
    charge_explicit(op, static_cast<c10::DeviceIndex>(device), charge, inputs, outputs);
  }, "Schedules an op priced by the caller (e.g. a collective) on the device timeline. "
     "memory_s: its HBM traffic time at the device's full bandwidth; compute_s: the work "
     "that overlaps it (0, 0: the op does not touch HBM)",
        py::arg("op"), py::arg("device"), py::arg("engine"), py::arg("seconds"),
        py::arg("flops"), py::arg("bytes"), py::arg("inputs"), py::arg("outputs"),
        py::arg("memory_s") = 0.0, py::arg("compute_s") = 0.0);
  m.def("_hbm_stall", [](int d) { return hbm_stall_total(static_cast<c10::DeviceIndex>(d)); },
        "Modelled seconds ops of device d were stretched waiting for shared HBM bandwidth");
  m.def("_stop_autograd_engine", [] {
    // The engine waits for its device threads, which need the GIL to exit.
    py::gil_scoped_release no_gil;
    torch::autograd::Engine::get_default_engine().stop();
  }, "Stops autograd's device threads (called at interpreter exit)");
  m.def("_set_model_enabled", &set_model_enabled);
  m.def("_model_enabled", &model_enabled);
  m.def("_clear_cost_cache", &clear_cost_cache);
  m.def("_set_recording", &set_recording);
  m.def("_set_scope", &set_scope);
  m.def("_drain_records", [] {
    py::list out;
    for (const auto& r : drain_records()) {
      out.append(py::make_tuple(r.name, r.scope, r.device, r.stream, r.engine, r.start_s,
                                r.end_s, r.flops, r.bytes, to_py(r.inputs), to_py(r.outputs),
                                r.hbm_stall_s, r.folded_into));
    }
    return out;
  });
}
