#include "TrnGenerator.h"

#include "TrnDevices.h"

#include <ATen/Utils.h>
#include <ATen/core/GeneratorForPrivateuseone.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <deque>
#include <mutex>

namespace torch_trn3 {

namespace {

constexpr uint64_t kWordsPerBlock = 624;  // mt19937 state size

// Number of state refreshes ("twists") that lead from `before` to `after`.
// Random kernels draw far fewer than 2^40 words per op; the bound only
// guards against a corrupt engine.
uint64_t count_twists(const at::mt19937& before, const at::mt19937& after) {
  auto probe = before.data();
  const auto target = after.data();
  for (uint64_t twists = 0; twists < (1ULL << 40) / kWordsPerBlock; ++twists) {
    if (std::memcmp(probe.state_.data(), target.state_.data(),
                    sizeof(uint32_t) * kWordsPerBlock) == 0) {
      return twists;
    }
    // Forcing left_ to 1 makes the next draw refresh the whole state block.
    probe.left_ = 1;
    at::mt19937 engine;
    engine.set_data(probe);
    engine();
    probe = engine.data();
  }
  TORCH_INTERNAL_ASSERT(false, "trn generator: lost track of the mt19937 stream");
}

// Moves `engine` forward by `words` draws without producing them: whole
// blocks cost one state refresh each.
void advance(at::mt19937& engine, uint64_t words) {
  while (words > 0) {
    auto data = engine.data();
    const uint64_t in_block = static_cast<uint64_t>(data.left_ - 1);  // draws before a refresh
    if (words <= in_block) {
      data.next_ += static_cast<uint32_t>(words);
      data.left_ -= static_cast<int>(words);
      engine.set_data(data);
      return;
    }
    words -= in_block;
    data.next_ += static_cast<uint32_t>(in_block);
    data.left_ = 1;
    engine.set_data(data);
    engine();  // refreshes the block and draws its first word
    words -= 1;
  }
}

// Draw position of an engine relative to a freshly seeded one, given the
// number of twists since seeding: words = (twists - 1) * 624 + next_.
uint64_t words_drawn(uint64_t twists_since_seed, const at::mt19937& engine) {
  if (twists_since_seed == 0) return 0;
  return (twists_since_seed - 1) * kWordsPerBlock + engine.data().next_;
}

}  // namespace

TrnGeneratorImpl::TrnGeneratorImpl(c10::DeviceIndex device_index)
    : c10::GeneratorImpl{c10::Device(c10::DeviceType::PrivateUse1, device_index),
                         c10::DispatchKeySet(c10::DispatchKey::PrivateUse1)},
      cpu_(at::detail::createCPUGenerator(c10::default_rng_seed_val)) {}

at::CPUGeneratorImpl* TrnGeneratorImpl::cpu_impl() const {
  return at::check_generator<at::CPUGeneratorImpl>(cpu_);
}

void TrnGeneratorImpl::set_current_seed(uint64_t seed) {
  cpu_impl()->set_current_seed(seed);
  offset_ = 0;
  positions_.clear();
}

void TrnGeneratorImpl::remember_position() {
  constexpr size_t kPositions = 32;
  positions_.emplace_back(offset_, cpu_impl()->engine());
  if (positions_.size() > kPositions) positions_.pop_front();
}

uint64_t TrnGeneratorImpl::current_seed() const { return cpu_impl()->current_seed(); }

uint64_t TrnGeneratorImpl::seed() {
  uint64_t s = c10::detail::getNonDeterministicRandom();
  set_current_seed(s);
  return s;
}

void TrnGeneratorImpl::set_offset(uint64_t offset) {
  auto* cpu = cpu_impl();
  // Start from the nearest known position at or before `offset`.
  uint64_t from = 0;
  at::mt19937 engine(cpu->current_seed());
  for (const auto& [position, state] : positions_) {
    if (position <= offset && position >= from) {
      from = position;
      engine = state;
    }
  }
  TORCH_CHECK(offset - from <= kMaxJumpWords, "trn generator: offset ", offset,
              " is ", offset - from, " words past the nearest known position of seed ",
              cpu->current_seed(), "'s stream; jumps of more than ", kMaxJumpWords,
              " words are refused (they would take minutes). Use a state saved from "
              "get_rng_state() or a smaller offset.");
  advance(engine, offset - from);
  cpu->set_engine(engine);
  cpu->set_next_float_normal_sample(std::nullopt);
  cpu->set_next_double_normal_sample(std::nullopt);
  offset_ = offset;
  remember_position();
}

uint64_t TrnGeneratorImpl::get_offset() const { return offset_; }

at::mt19937 TrnGeneratorImpl::engine_snapshot() const { return cpu_impl()->engine(); }

void TrnGeneratorImpl::account_draws_since(const at::mt19937& before) {
  const at::mt19937 after = cpu_impl()->engine();
  const uint64_t twists = count_twists(before, after);
  // Position of `before` in whole blocks: its offset minus its in-block words.
  const auto b = before.data();
  const uint64_t before_twists =
      offset_ == 0 ? 0 : (offset_ - b.next_) / kWordsPerBlock + 1;
  offset_ = words_drawn(before_twists + twists, after);
  remember_position();
}

static constexpr size_t kStateSize = 16;

void TrnGeneratorImpl::set_state(const c10::TensorImpl& new_state) {
  at::detail::check_rng_state(new_state);
  TORCH_CHECK(new_state.numel() == static_cast<int64_t>(kStateSize),
              "trn generator state must be ", kStateSize,
              " bytes (seed: uint64, offset: uint64), got ", new_state.numel());
  uint64_t seed = 0, offset = 0;
  const auto* bytes = new_state.data_dtype_initialized<uint8_t>();
  std::memcpy(&seed, bytes, 8);
  std::memcpy(&offset, bytes + 8, 8);
  if (seed != current_seed()) {
    // A new seed's stream is known only from its start: refuse far jumps
    // before changing anything.
    TORCH_CHECK(offset <= kMaxJumpWords, "trn generator: offset ", offset, " of seed ", seed,
                " is more than ", kMaxJumpWords, " words from the start of its stream; such "
                "jumps are refused (they would take minutes).");
    set_current_seed(seed);
  }
  set_offset(offset);
}

c10::intrusive_ptr<c10::TensorImpl> TrnGeneratorImpl::get_state() const {
  auto state = at::detail::empty_cpu({static_cast<int64_t>(kStateSize)}, at::kByte,
                                     std::nullopt, std::nullopt, std::nullopt,
                                     std::nullopt);
  uint64_t seed = current_seed();
  auto* bytes = state.data_ptr<uint8_t>();
  std::memcpy(bytes, &seed, 8);
  std::memcpy(bytes + 8, &offset_, 8);
  return state.getIntrusivePtr();
}

TrnGeneratorImpl* TrnGeneratorImpl::clone_impl() const {
  auto* gen = new TrnGeneratorImpl(device().index());
  gen->cpu_ = cpu_.clone();
  gen->offset_ = offset_;
  gen->positions_ = positions_;
  return gen;
}

const at::Generator& default_generator(c10::DeviceIndex device_index) {
  static std::once_flag once;
  static std::deque<at::Generator> generators;
  std::call_once(once, [] {
    for (c10::DeviceIndex i = 0; i < device_count(); ++i) {
      generators.emplace_back(at::make_generator<TrnGeneratorImpl>(i));
    }
  });
  if (device_index < 0) device_index = current_device();
  check_device_index(device_index);
  return generators[device_index];
}

at::Generator new_generator(c10::DeviceIndex device_index) {
  if (device_index < 0) device_index = current_device();
  check_device_index(device_index);
  return at::make_generator<TrnGeneratorImpl>(device_index);
}

}  // namespace torch_trn3
