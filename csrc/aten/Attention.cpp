// scaled_dot_product_attention on trn picks its backend through a
// DispatchStub, not an op, so the boxed fallback never sees the choice: an
// unregistered device silently gets the unfused math path (different
// rounding from the CPU and ~2x slower). Registering the stub for trn makes
// SDPA choose exactly as the CPU does; the chosen kernel
// (_scaled_dot_product_flash_attention_for_cpu) then runs via the fallback.
#include "CpuAlias.h"

#include <ATen/native/transformers/attention.h>
#include <ATen/ops/_fused_sdp_choice_ops.h>

namespace torch_trn3 {
namespace {

int64_t trn_fused_sdp_choice(const at::Tensor& query, const at::Tensor& key,
                             const at::Tensor& value, const std::optional<at::Tensor>& attn_mask,
                             double dropout_p, bool is_causal, std::optional<double> scale,
                             bool enable_gqa) {
  // The CPU's choice depends on which inputs need gradients, so the aliases
  // carry requires_grad too.
  auto alias = [](const at::Tensor& t) {
    auto a = cpu_alias(t);
    if (t.requires_grad()) a.set_requires_grad(true);
    return a;
  };
  std::optional<at::Tensor> mask;
  if (attn_mask && attn_mask->defined()) mask = alias(*attn_mask);
  // Straight to the CPU kernel (it reads only metadata): a plain call would
  // go through Python modes such as FakeTensorMode, which reject the aliases.
  return at::_ops::_fused_sdp_choice::redispatch(c10::DispatchKeySet(c10::DispatchKey::CPU),
                                                 alias(query), alias(key), alias(value), mask,
                                                 dropout_p, is_causal, scale, enable_gqa);
}

}  // namespace
}  // namespace torch_trn3

namespace at::native {
REGISTER_PRIVATEUSE1_DISPATCH(_fused_sdp_choice_stub, &torch_trn3::trn_fused_sdp_choice)
}
