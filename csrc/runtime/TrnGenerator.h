// The trn random generator.
//
// Random ops run CPU kernels, so the numbers come from a CPU (mt19937)
// generator owned by the trn generator: a run on trn seeded like a CPU run
// draws exactly the CPU run's numbers. Its public state is CUDA-Philox-shaped
// -- 16 bytes, (seed: uint64, offset: uint64) -- because DTensor's RNG
// tracker reads and writes that layout. Here `offset` is the exact number of
// 32-bit words drawn from the seed's mt19937 stream, so (seed, offset) always
// reproduces the stream position: set_state seeds and discards `offset` words.
// Reaching an offset costs time proportional to the distance from the
// nearest known stream position (the seed, or a position recently reached by
// drawing), so the usual jumps (restoring a saved state, DTensor's per-shard
// offsets) are cheap; a jump of more than kMaxJumpWords is refused with an
// error rather than spinning for minutes.
// (The CPU generator's cached Box-Muller sample, used only by normal draws of
// fewer than 16 elements, is not part of that state.)
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <c10/core/GeneratorImpl.h>

#include <deque>
#include <utility>

namespace torch_trn3 {

struct TrnGeneratorImpl : public c10::GeneratorImpl {
  explicit TrnGeneratorImpl(c10::DeviceIndex device_index);

  void set_current_seed(uint64_t seed) override;
  void set_offset(uint64_t offset) override;
  uint64_t get_offset() const override;
  uint64_t current_seed() const override;
  uint64_t seed() override;
  void set_state(const c10::TensorImpl& new_state) override;
  c10::intrusive_ptr<c10::TensorImpl> get_state() const override;
  static c10::DeviceType device_type() { return c10::DeviceType::PrivateUse1; }

  // The CPU generator that random CPU kernels draw from on this device's
  // behalf. Bracket each use with begin_draws()/end_draws() so the offset
  // advances by the number of words drawn.
  const at::Generator& cpu_generator() const { return cpu_; }
  at::mt19937 engine_snapshot() const;
  void account_draws_since(const at::mt19937& before);

 private:
  TrnGeneratorImpl* clone_impl() const override;
  at::CPUGeneratorImpl* cpu_impl() const;

  void remember_position();

  at::Generator cpu_;
  uint64_t offset_ = 0;
  // Recently reached (offset, engine) positions of the current seed's stream.
  std::deque<std::pair<uint64_t, at::mt19937>> positions_;
};

// About 4 s of work; beyond it set_offset raises.
constexpr uint64_t kMaxJumpWords = 1ULL << 32;

const at::Generator& default_generator(c10::DeviceIndex device_index);
at::Generator new_generator(c10::DeviceIndex device_index);

}  // namespace torch_trn3
