// The boxed fallback every trn op without an explicit kernel goes through
// (Fallback.cpp): CPU kernels run on zero-copy aliases of device memory.
#pragma once

namespace torch_trn3 {

// Routes ops whose composite kernels would shadow the fallback (e.g. the
// SDPA choice, convolution) to their CPU kernels on trn (once, at import).
void route_shadowed_ops_to_cpu_kernels();

}  // namespace torch_trn3
