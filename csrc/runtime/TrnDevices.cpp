#include "TrnDevices.h"

#include <c10/util/Exception.h>

namespace torch_trn3 {

namespace {
MachineConfig g_config;
bool g_initialized = false;
thread_local c10::DeviceIndex t_current_device = 0;
}  // namespace

void init_devices(const MachineConfig& config) {
  TORCH_CHECK(config.device_count > 0 && config.device_count <= kMaxDevices,
              "torch_trn3: device_count must be in [1, ", kMaxDevices, "], got ",
              config.device_count);
  TORCH_CHECK(config.hbm_bytes > 0, "torch_trn3: HBM capacity must be > 0");
  g_config = config;
  g_initialized = true;
}

const MachineConfig& machine_config() { return g_config; }

bool devices_initialized() { return g_initialized; }

c10::DeviceIndex device_count() {
  return static_cast<c10::DeviceIndex>(g_config.device_count);
}

void check_device_index(c10::DeviceIndex index) {
  TORCH_CHECK_INDEX(
      index >= 0 && index < g_config.device_count,
      "trn: invalid device index ", static_cast<int>(index), ": this machine has ",
      g_config.device_count, " logical device(s) (TRN3_CHIPS=", g_config.chips,
      " x 8 NeuronCores / TRN3_LNC=", g_config.lnc, ")");
}

c10::DeviceIndex current_device() { return t_current_device; }

void set_current_device(c10::DeviceIndex index) {
  check_device_index(index);
  t_current_device = index;
}

}  // namespace torch_trn3
