#include "CpuAlias.h"

#include "../runtime/TrnAllocator.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/_efficientzerotensor.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/StorageImpl.h>
#include <c10/core/TensorImpl.h>

#include <cstring>

namespace torch_trn3 {

namespace {

constexpr auto kTrn = c10::DeviceType::PrivateUse1;

// Allocator for storage-less ZeroTensors: never hands out bytes.
struct ZeroAllocator final : public c10::Allocator {
  explicit ZeroAllocator(c10::Device device) : device_(device) {}
  c10::DataPtr allocate(size_t) override { return {nullptr, device_}; }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
  void copy_data(void*, const void*, std::size_t) const override {}
  c10::Device device_;
};

void copy_geometry(const at::Tensor& from, const at::Tensor& to) {
  auto* impl = to.unsafeGetTensorImpl();
  if (to.sizes() != from.sizes() || to.strides() != from.strides() ||
      to.storage_offset() != from.storage_offset()) {
    impl->set_sizes_and_strides(from.sizes(), from.strides(), from.storage_offset());
  }
}

}  // namespace

at::Tensor make_trn_tensor(c10::Storage storage, caffe2::TypeMeta dtype,
                           c10::IntArrayRef sizes, c10::IntArrayRef strides,
                           int64_t storage_offset) {
  auto t = at::detail::make_tensor<c10::TensorImpl>(
      std::move(storage), c10::DispatchKeySet(c10::DispatchKey::PrivateUse1), dtype);
  t.unsafeGetTensorImpl()->set_sizes_and_strides(sizes, strides, storage_offset);
  return t;
}

namespace {

// A CPU tensor over `data` (the memory of `trn`) with `trn`'s geometry,
// dtype and conj/neg bits.
at::Tensor cpu_tensor_over(const at::Tensor& trn, c10::DataPtr data, c10::Allocator* allocator,
                           bool resizable) {
  auto storage = c10::make_intrusive<c10::StorageImpl>(
      c10::StorageImpl::use_byte_size_t(), trn.storage().nbytes(), std::move(data), allocator,
      resizable);
  auto cpu = at::detail::make_tensor<c10::TensorImpl>(
      c10::Storage(std::move(storage)), c10::DispatchKeySet(c10::DispatchKey::CPU), trn.dtype());
  cpu.unsafeGetTensorImpl()->set_sizes_and_strides(trn.sizes(), trn.strides(),
                                                   trn.storage_offset());
  if (trn.is_conj()) cpu._set_conj(true);
  if (trn.is_neg()) cpu._set_neg(true);
  return cpu;
}

}  // namespace

at::Tensor cpu_alias(const at::Tensor& trn) {
  if (!trn.defined()) return trn;
  if (trn._is_zerotensor()) {
    return at::_efficientzerotensor(trn.sizes(), trn.options().device(c10::kCPU));
  }
  // Non-owning pointer: the trn storage keeps the memory alive. The alias
  // storage stays resizable with the CPU allocator so out= kernels can grow
  // it; AdoptionContext::sync_mutated moves any new memory back to the trn
  // storage.
  c10::DataPtr borrowed(const_cast<void*>(trn.storage().data()), c10::Device(c10::kCPU));
  return cpu_tensor_over(trn, std::move(borrowed), c10::GetCPUAllocator(), /*resizable=*/true);
}

at::Tensor cpu_view(const at::Tensor& trn) {
  TORCH_CHECK(trn.device().type() == kTrn, "cpu_view expects a ", c10::get_privateuse1_backend(),
              " tensor, got one on ", trn.device());
  const auto& storage = trn.storage();
  auto* owner = new c10::Storage(storage);
  c10::DataPtr shared(const_cast<void*>(storage.data()), owner,
                      [](void* ctx) { delete static_cast<c10::Storage*>(ctx); },
                      c10::Device(c10::kCPU));
  return cpu_tensor_over(trn, std::move(shared), nullptr, /*resizable=*/false);
}

at::Tensor trn_zero_tensor(c10::IntArrayRef size, c10::ScalarType dtype,
                           c10::DeviceIndex device) {
  ZeroAllocator allocator(c10::Device(kTrn, device));
  auto keys = c10::DispatchKeySet(c10::DispatchKey::PrivateUse1)
                  .add(c10::DispatchKey::ZeroTensor);
  return at::detail::empty_generic(size, &allocator, keys, dtype, std::nullopt);
}

void AdoptionContext::add_input(const at::Tensor& original, const at::Tensor& alias,
                                bool mutable_arg, bool out_arg) {
  inputs_.push_back({original, alias, mutable_arg, out_arg});
}

c10::SmallVector<at::Tensor, 4> AdoptionContext::originals() const {
  c10::SmallVector<at::Tensor, 4> out;
  for (const auto& in : inputs_) {
    if (!in.out_arg) out.push_back(in.original);
  }
  return out;
}

void AdoptionContext::sync_mutated() const {
  for (const auto& in : inputs_) {
    if (in.mutable_arg) sync(in);
  }
}

void AdoptionContext::sync(const Input& in) const {
  const auto& alias = in.alias;
  if (!in.original.has_storage()) return;
  auto* alias_storage = alias.storage().unsafeGetStorageImpl();
  auto* trn_storage = in.original.storage().unsafeGetStorageImpl();
  if (alias_storage->data() != trn_storage->data()) {
    // The kernel re-allocated the argument (out= resize): take its memory.
    const size_t nbytes = alias_storage->nbytes();
    c10::DataPtr fresh = alias_storage->set_data_ptr(c10::DataPtr(nullptr, c10::kCPU));
    if (is_device_memory(fresh)) {
      fresh.unsafe_set_device(c10::Device(kTrn, device_));
    } else {
      c10::DataPtr copy = allocate_device_memory(nbytes, device_);
      if (nbytes) std::memcpy(copy.get(), fresh.get(), nbytes);
      fresh = std::move(copy);
    }
    trn_storage->set_data_ptr_noswap(std::move(fresh));
    trn_storage->set_nbytes(nbytes);
  }
  copy_geometry(alias, in.original);
}

c10::Storage AdoptionContext::trn_storage_for(const at::Tensor& cpu_out) {
  auto* impl = cpu_out.storage().unsafeGetStorageImpl();
  for (const auto& in : inputs_) {
    if (in.alias.defined() && in.alias.has_storage() &&
        in.alias.storage().unsafeGetStorageImpl() == impl) {
      return in.original.storage();  // a view of an input
    }
  }
  for (const auto& a : adopted_) {
    if (a.cpu_storage == impl) return a.trn_storage;  // shared by two outputs
  }
  c10::Storage result;
  if (is_device_memory(impl->data_ptr())) {
    // Allocated from this device while the kernel ran: re-tag it in place.
    impl->mutable_data_ptr().unsafe_set_device(c10::Device(kTrn, device_));
    impl->set_allocator(device_allocator());
    result = cpu_out.storage();
  } else {
    // Memory from elsewhere (a library's own allocator): copy it in.
    const size_t nbytes = impl->nbytes();
    c10::DataPtr copy = allocate_device_memory(nbytes, device_);
    if (nbytes) std::memcpy(copy.get(), impl->data(), nbytes);
    result = c10::Storage(c10::make_intrusive<c10::StorageImpl>(
        c10::StorageImpl::use_byte_size_t(), nbytes, std::move(copy), device_allocator(),
        /*resizable=*/true));
  }
  adopted_.push_back({impl, result});
  return result;
}

at::Tensor AdoptionContext::adopt(const at::Tensor& cpu_out) {
  if (!cpu_out.defined()) return cpu_out;
  for (const auto& in : inputs_) {
    if (in.alias.is_same(cpu_out)) return in.original;  // in-place / out=
  }
  TORCH_CHECK(cpu_out.layout() == c10::kStrided || cpu_out._is_zerotensor(),
              c10::get_privateuse1_backend(), " tensors support only the strided (dense) layout, "
              "but this op produced a ", cpu_out.layout(), " tensor; move the tensor to the CPU for "
              "sparse work.");
  if (cpu_out._is_zerotensor() || !cpu_out.has_storage()) {
    return trn_zero_tensor(cpu_out.sizes(), cpu_out.scalar_type(), device_);
  }
  auto result = make_trn_tensor(trn_storage_for(cpu_out), cpu_out.dtype(), cpu_out.sizes(),
                                cpu_out.strides(), cpu_out.storage_offset());
  if (cpu_out.is_conj()) result._set_conj(true);
  if (cpu_out.is_neg()) result._set_neg(true);
  return result;
}

}  // namespace torch_trn3
