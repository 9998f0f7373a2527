// Zero-copy bridges between trn tensors and the CPU kernels that compute them.
//
// A trn tensor's memory is host memory, so a CPU kernel can work on it in
// place through a CPU "alias": a CPU tensor over the same bytes with the same
// sizes, strides, offset, dtype and conj/neg bits. Outputs the CPU kernel
// allocates come from the trn device's memory (KernelDeviceScope), so the
// device adopts them by re-tagging the storage, again without a copy.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/util/SmallVector.h>

#include <vector>

namespace torch_trn3 {

// CPU view of a trn tensor's memory (undefined stays undefined). It borrows
// the memory: valid while the trn tensor lives (one op's duration).
at::Tensor cpu_alias(const at::Tensor& trn);

// A CPU view that keeps the trn storage alive for as long as it lives, for
// code that holds on to it (the distributed backend hands it to gloo).
at::Tensor cpu_view(const at::Tensor& trn);

// What adopt() needs to know about the inputs of one call: outputs that are
// an input alias (in-place / out=) map back to the input, outputs viewing an
// input's memory become views of the input's trn storage.
class AdoptionContext {
 public:
  explicit AdoptionContext(c10::DeviceIndex device) : device_(device) {}
  // Remembers `alias` as the CPU stand-in of `original` (a trn tensor);
  // `mutable_arg` marks arguments the op may write (Tensor(a!)); `out_arg`
  // those it only writes (out=), which are not reads of the op.
  void add_input(const at::Tensor& original, const at::Tensor& alias, bool mutable_arg,
                 bool out_arg = false);
  // Writes back metadata (sizes, strides, offset) and any storage the kernel
  // re-allocated from each mutable alias to its trn original.
  void sync_mutated() const;
  // The trn tensor standing for a CPU kernel output.
  at::Tensor adopt(const at::Tensor& cpu_out);
  c10::DeviceIndex device() const { return device_; }
  // The trn tensors the op read (add_input's, less out= arguments).
  c10::SmallVector<at::Tensor, 4> originals() const;

 private:
  struct Input {
    at::Tensor original;
    at::Tensor alias;
    bool mutable_arg;
    bool out_arg;
  };
  void sync(const Input& in) const;
  struct Adopted {
    const c10::StorageImpl* cpu_storage;
    c10::Storage trn_storage;
  };
  c10::Storage trn_storage_for(const at::Tensor& cpu_out);

  c10::DeviceIndex device_;
  c10::SmallVector<Input, 4> inputs_;
  c10::SmallVector<Adopted, 2> adopted_;
};

// A storage-less ZeroTensor on a trn device (keeps `sgn`/`abs` backward's
// efficient zeros efficient).
at::Tensor trn_zero_tensor(c10::IntArrayRef size, c10::ScalarType dtype, c10::DeviceIndex device);

// Wraps a storage as a trn tensor with the given geometry and dtype.
at::Tensor make_trn_tensor(c10::Storage storage, caffe2::TypeMeta dtype,
                           c10::IntArrayRef sizes, c10::IntArrayRef strides,
                           int64_t storage_offset);

}  // namespace torch_trn3
