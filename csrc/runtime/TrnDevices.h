// The emulated machine's logical devices: how many there are, which one is
// current on this thread, and each one's modelled HBM capacity.
//
// Python (torch_trn3/config.py) reads TRN3_CHIPS / TRN3_LNC and the chip spec
// and calls init_devices() once at import; everything in C++ reads from here.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace torch_trn3 {

// Most logical devices one process emulates (per-device tables are sized by
// it). Python reads it as torch_trn3._C._max_devices() and mirrors it as
// torch_trn3.hw.lnc.MAX_LOGICAL_DEVICES (a test checks they agree).
constexpr int kMaxDevices = 512;

struct MachineConfig {
  int device_count = 0;       // logical devices = chips * cores / lnc
  int64_t hbm_bytes = 0;      // modelled HBM capacity of one logical device
  int lnc = 2;                // NeuronCores per logical device
  int chips = 1;
  std::string chip_name = "Trainium3";
};

void init_devices(const MachineConfig& config);
const MachineConfig& machine_config();
bool devices_initialized();

c10::DeviceIndex device_count();
c10::DeviceIndex current_device();
void set_current_device(c10::DeviceIndex index);
// Raises a typed error naming the index and the machine when out of range.
void check_device_index(c10::DeviceIndex index);

}  // namespace torch_trn3
