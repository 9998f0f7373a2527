// Explicit trn kernels: the ops the boxed fallback cannot serve.
//  * allocation and geometry: empty, empty_strided, resize_, set_, and the
//    view ops whose CPU kernels are not device-generic;
//  * copies across devices (_copy_from), including conj/neg views;
//  * ops whose composite kernels would shadow the fallback for a custom
//    device: convolution_overrideable and its backward.
#include "CpuAlias.h"
#include "OpCharging.h"

#include "../runtime/TrnAllocator.h"
#include "../runtime/TrnDevices.h"

#include <ATen/EmptyTensor.h>
#include <ATen/InferSize.h>
#include <ATen/TensorUtils.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/_reshape_alias_native.h>
#include <ATen/ops/as_strided_native.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/unfold_native.h>
#include <ATen/ops/view_as_complex_native.h>
#include <ATen/ops/view_as_real_native.h>
#include <ATen/ops/view_native.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <cstring>

namespace torch_trn3 {

namespace {

constexpr auto kTrn = c10::DeviceType::PrivateUse1;

c10::DeviceIndex target_device(std::optional<c10::Device> device) {
  c10::DeviceIndex index = device && device->has_index() ? device->index() : current_device();
  check_device_index(index);
  return index;
}

// Allocator bound to one logical device (empty_generic takes an Allocator).
struct BoundAllocator final : public c10::Allocator {
  explicit BoundAllocator(c10::DeviceIndex d) : device(d) {}
  c10::DataPtr allocate(size_t nbytes) override { return allocate_device_memory(nbytes, device); }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }
  c10::DeviceIndex device;
};

void check_layout(std::optional<c10::Layout> layout) {
  TORCH_CHECK(!layout || *layout == c10::kStrided,
              "trn tensors support only the strided layout, got ", *layout);
}

at::Tensor empty_memory_format(c10::IntArrayRef size, std::optional<c10::ScalarType> dtype,
                               std::optional<c10::Layout> layout,
                               std::optional<c10::Device> device, std::optional<bool> pin_memory,
                               std::optional<c10::MemoryFormat> memory_format) {
  check_layout(layout);
  BoundAllocator allocator(target_device(device));
  auto result = at::detail::empty_generic(size, &allocator,
                                          c10::DispatchKeySet(c10::DispatchKey::PrivateUse1),
                                          c10::dtype_or_default(dtype), memory_format);
  result.storage().unsafeGetStorageImpl()->set_allocator(device_allocator());
  return result;
}

at::Tensor empty_strided(c10::IntArrayRef size, c10::IntArrayRef stride,
                         std::optional<c10::ScalarType> dtype, std::optional<c10::Layout> layout,
                         std::optional<c10::Device> device, std::optional<bool> pin_memory) {
  check_layout(layout);
  BoundAllocator allocator(target_device(device));
  auto result = at::detail::empty_strided_generic(
      size, stride, &allocator, c10::DispatchKeySet(c10::DispatchKey::PrivateUse1),
      c10::dtype_or_default(dtype));
  result.storage().unsafeGetStorageImpl()->set_allocator(device_allocator());
  return result;
}

// Makes sure `self`'s storage holds `size` x `stride` elements from `offset`.
void ensure_storage(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride,
                    int64_t offset) {
  const size_t needed =
      at::detail::computeStorageNbytes(size, stride, self.dtype().itemsize(), offset);
  const auto& storage = self.storage();
  if (needed > storage.nbytes()) resize_device_storage(storage, needed);
}

const at::Tensor& resize_(const at::Tensor& self, c10::IntArrayRef size,
                          std::optional<c10::MemoryFormat> memory_format) {
  auto* impl = self.unsafeGetTensorImpl();
  impl->set_sizes_contiguous(size);
  if (memory_format && *memory_format != c10::MemoryFormat::Preserve) {
    impl->empty_tensor_restride(*memory_format);
  }
  ensure_storage(self, self.sizes(), self.strides(), self.storage_offset());
  return self;
}

at::Tensor& set_storage(at::Tensor& self, c10::Storage source, int64_t storage_offset,
                        c10::IntArrayRef size, c10::IntArrayRef stride) {
  TORCH_CHECK(source.device().type() == kTrn,
              "set_: expected a trn storage, got one on ", source.device());
  at::native::checkSetStorage(self, source, storage_offset, size, stride);
  self.unsafeGetTensorImpl()->set_storage_offset(storage_offset);
  std::optional<c10::IntArrayRef> stride_opt;
  if (!stride.empty()) stride_opt = stride;
  if (stride_opt) {
    self.unsafeGetTensorImpl()->set_sizes_and_strides(size, *stride_opt);
  } else {
    self.unsafeGetTensorImpl()->set_sizes_contiguous(size);
  }
  ensure_storage(self, self.sizes(), self.strides(), storage_offset);
  return self;
}

at::Tensor& set_source(at::Tensor& self, c10::Storage source) {
  const int64_t n = source.nbytes() / self.dtype().itemsize();
  return set_storage(self, std::move(source), 0, {n}, {});
}

at::Tensor& set_empty(at::Tensor& self) {
  c10::Storage fresh(c10::Storage::use_byte_size_t(), 0,
                     allocate_device_memory(0, self.device().index()), device_allocator(),
                     /*resizable=*/true);
  return set_storage(self, std::move(fresh), 0, {0}, {});
}

// Copies between trn and CPU (or two trn devices) by running the CPU copy
// kernel on aliases: it handles dtype conversion, strides and conj/neg bits.
at::Tensor copy_from(const at::Tensor& self, const at::Tensor& dst, bool non_blocking) {
  TORCH_CHECK(self.device().type() == kTrn || self.device().is_cpu(),
              "copy from ", self.device(), " to trn is not supported");
  TORCH_CHECK(dst.device().type() == kTrn || dst.device().is_cpu(),
              "copy from trn to ", dst.device(), " is not supported");
  at::Tensor src_cpu = self.device().type() == kTrn ? cpu_alias(self) : self;
  at::Tensor dst_cpu = dst.device().type() == kTrn ? cpu_alias(dst) : dst;
  {
    const c10::DeviceIndex device = dst.device().type() == kTrn ? dst.device().index()
                                                                 : self.device().index();
    KernelDeviceScope scope(device);
    dst_cpu.copy_(src_cpu, non_blocking);
    static const std::string name = "aten::_copy_from";
    charge_op(name, device, {self.device().type() == kTrn ? self : at::Tensor()},
              {dst.device().type() == kTrn ? dst : at::Tensor()});
  }
  return dst;
}

at::Tensor copy_from_and_resize(const at::Tensor& self, const at::Tensor& dst) {
  if (dst.device().type() == kTrn) {
    resize_(dst, self.sizes(), std::nullopt);
  } else {
    at::native::resize_(dst, self.sizes(), std::nullopt);
  }
  return copy_from(self, dst, false);
}

at::Tensor as_strided(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride,
                      std::optional<int64_t> storage_offset) {
  return at::native::as_strided_tensorimpl(self, size, stride, storage_offset);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> convolution_backward_overrideable(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
    bool transposed, c10::IntArrayRef output_padding, int64_t groups,
    std::array<bool, 3> output_mask) {
  const auto device = input.device().index();
  AdoptionContext ctx(device);
  at::Tensor g = cpu_alias(grad_output), x = cpu_alias(input), w = cpu_alias(weight);
  std::tuple<at::Tensor, at::Tensor, at::Tensor> grads;
  {
    KernelDeviceScope scope(device);
    std::vector<int64_t> bias_sizes{weight.size(transposed ? 1 : 0) * (transposed ? groups : 1)};
    grads = at::convolution_backward(g, x, w, bias_sizes, stride, padding, dilation, transposed,
                                     output_padding, groups, output_mask);
  }
  std::tuple<at::Tensor, at::Tensor, at::Tensor> result{
      ctx.adopt(std::get<0>(grads)), ctx.adopt(std::get<1>(grads)),
      ctx.adopt(std::get<2>(grads))};
  static const std::string name = "aten::convolution_backward_overrideable";
  charge_op(name, device, {grad_output, input, weight},
            {std::get<0>(result), std::get<1>(result), std::get<2>(result)});
  return result;
}

at::Tensor convolution_overrideable(const at::Tensor& input, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias,
                                    c10::IntArrayRef stride, c10::IntArrayRef padding,
                                    c10::IntArrayRef dilation, bool transposed,
                                    c10::IntArrayRef output_padding, int64_t groups) {
  const auto device = input.device().index();
  AdoptionContext ctx(device);
  std::optional<at::Tensor> b;
  if (bias && bias->defined()) b = cpu_alias(*bias);
  at::Tensor out;
  {
    KernelDeviceScope scope(device);
    out = at::convolution(cpu_alias(input), cpu_alias(weight), b, stride, padding, dilation,
                          transposed, output_padding, groups);
  }
  auto result = ctx.adopt(out);
  static const std::string name = "aten::convolution_overrideable";
  charge_op(name, device, {input, weight, bias ? *bias : at::Tensor()}, {result});
  return result;
}

at::Tensor efficientzerotensor(c10::IntArrayRef size, std::optional<c10::ScalarType> dtype,
                               std::optional<c10::Layout> layout,
                               std::optional<c10::Device> device,
                               std::optional<bool> pin_memory) {
  check_layout(layout);
  return trn_zero_tensor(size, c10::dtype_or_default(dtype), target_device(device));
}

// Nothing to do: device memory is not cached, so it can never be handed to
// another stream before this one is done with it (FSDP/DDP call this).
void record_stream(at::Tensor& self, c10::Stream stream) {
  TORCH_CHECK(stream.device_type() == kTrn, "record_stream: expected a ",
              c10::get_privateuse1_backend(), " stream, got one on ", stream.device());
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("record_stream", record_stream);
  m.impl("empty.memory_format", empty_memory_format);
  m.impl("empty_strided", empty_strided);
  m.impl("resize_", resize_);
  m.impl("set_.source_Storage_storage_offset", set_storage);
  m.impl("set_.source_Storage", set_source);
  m.impl("set_", set_empty);
  m.impl("_copy_from", copy_from);
  m.impl("_copy_from_and_resize", copy_from_and_resize);
  m.impl("as_strided", as_strided);
  m.impl("view", at::native::view);
  m.impl("_reshape_alias", at::native::_reshape_alias);
  m.impl("unfold", at::native::unfold);
  m.impl("view_as_real", at::native::view_as_real);
  m.impl("view_as_complex", at::native::view_as_complex);
  m.impl("convolution_overrideable", convolution_overrideable);
  m.impl("convolution_backward_overrideable", convolution_backward_overrideable);
  m.impl("_efficientzerotensor", efficientzerotensor);
}

// Without these, `x.conj().cpu()` would resolve the conjugation by calling
// _copy_from again under the Conjugate key, forever. The copy kernel above
// handles the conj/neg bits itself.
TORCH_LIBRARY_IMPL(aten, Conjugate, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}
TORCH_LIBRARY_IMPL(aten, Negative, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}

}  // namespace torch_trn3
