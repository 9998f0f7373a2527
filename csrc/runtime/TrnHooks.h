// PrivateUse1HooksInterface for trn (TrnHooks.cpp): generators, pinned
// memory, and resizePrivateUse1Bytes (FSDP2 frees and re-allocates
// parameter storage through it).
#pragma once

namespace torch_trn3 {

// Registers the hooks with c10 (once, at import).
void register_hooks();

}  // namespace torch_trn3
