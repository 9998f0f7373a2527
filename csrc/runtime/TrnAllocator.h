// Device memory: host memory, accounted per logical device against its
// modelled HBM capacity (CUDA-style stats, OutOfMemoryError past capacity).
//
// Three allocators live here:
//  * the trn DeviceAllocator (what `torch.empty(..., device="trn")` uses);
//  * the kernel-scratch CPU allocator: while a CPU kernel runs on behalf of a
//    trn op (see KernelDeviceScope), CPU allocations are taken from the trn
//    device's memory, so fresh outputs can be adopted by the device without a
//    copy and temporaries count against HBM as they would on the chip;
//  * the pinned host allocator behind `Tensor.pin_memory()`.
#pragma once

#include <c10/core/Allocator.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/Storage.h>

namespace torch_trn3 {

// Allocates `nbytes` of device memory on logical device `device`; throws
// torch.OutOfMemoryError naming the device when it would exceed capacity.
c10::DataPtr allocate_device_memory(size_t nbytes, c10::DeviceIndex device);

// True when `ptr` came from allocate_device_memory (any device type tag).
bool is_device_memory(const c10::DataPtr& ptr);

c10::DeviceAllocator* device_allocator();

// While alive, CPU allocations on this thread come from `device`'s memory.
class KernelDeviceScope {
 public:
  explicit KernelDeviceScope(c10::DeviceIndex device);
  ~KernelDeviceScope();
  KernelDeviceScope(const KernelDeviceScope&) = delete;
  KernelDeviceScope& operator=(const KernelDeviceScope&) = delete;

 private:
  int previous_;
};

// Installs the kernel-scratch CPU allocator (idempotent).
void install_kernel_scratch_allocator();

c10::Allocator* pinned_host_allocator();
bool is_pinned_host_ptr(const void* ptr);

// Grows or shrinks a trn storage to `new_nbytes`, keeping the common prefix
// (UntypedStorage.resize_, FSDP2's free/re-allocate of parameter storage).
void resize_device_storage(const c10::Storage& storage, size_t new_nbytes);

}  // namespace torch_trn3
