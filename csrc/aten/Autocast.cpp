// torch.autocast("trn"): the same op policies CUDA uses (matmul-class ops in
// the lower-precision dtype, numerically sensitive ops in fp32, mixed-input
// ops promoted), registered for the AutocastPrivateUse1 key.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace torch_trn3 {
namespace {

using at::Tensor;
using at::IntArrayRef;
using at::Scalar;
using at::ScalarType;

// Ops without a policy run unchanged.
TORCH_LIBRARY_IMPL(_, AutocastPrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFallthrough());
}

TORCH_LIBRARY_IMPL(aten, AutocastPrivateUse1, m) {
#define TRN_LOWER_PRECISION(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, lower_precision_fp)
#define TRN_FP32(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, fp32)
#define TRN_FP32_SET_OPT_DTYPE(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, fp32_set_opt_dtype)
#define TRN_PROMOTE(...) KERNEL_PRIVATEUSEONE(__VA_ARGS__, promote)
  AT_FORALL_LOWER_PRECISION_FP(TRN_LOWER_PRECISION)
  AT_FORALL_FP32(TRN_FP32)
  AT_FORALL_FP32_SET_OPT_DTYPE(TRN_FP32_SET_OPT_DTYPE)
  AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE(KERNEL_DIFFERENT_REDISPATCH_SIGNATURE_PRIVATEUSEONE)
  AT_FORALL_PROMOTE(TRN_PROMOTE)
#undef TRN_LOWER_PRECISION
#undef TRN_FP32
#undef TRN_FP32_SET_OPT_DTYPE
#undef TRN_PROMOTE
}

}  // namespace
}  // namespace torch_trn3
