// The boxed fallback: every ATen op without an explicit trn kernel runs the
// CPU kernel on zero-copy CPU aliases of its trn arguments (CpuAlias.h).
//
// PyTorch's own at::native::cpu_fallback copies each tensor to the CPU and
// back; this one only swaps tensor handles, so an op costs about what it
// costs on the CPU. It also
//  * checks that tensors are on one trn device (CUDA's error when not),
//  * maps trn Device arguments (factory ops) to the CPU and back,
//  * feeds random ops the device's generator (TrnGenerator.h),
//  * writes back mutated arguments and adopts outputs (no copies).
#include "CpuAlias.h"
#include "Fallback.h"
#include "OpCharging.h"

#include "../runtime/TrnAllocator.h"
#include "../runtime/TrnDevices.h"
#include "../runtime/TrnGenerator.h"

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/op_registration/op_registration.h>
#include <torch/library.h>

#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <sstream>

namespace torch_trn3 {

namespace {

constexpr auto kTrn = c10::DeviceType::PrivateUse1;

std::string device_name(const c10::Device& d) {
  std::ostringstream os;
  os << d;
  return os.str();
}

[[noreturn]] void mixed_devices(const c10::Device& a, const c10::Device& b,
                                const c10::OperatorHandle& op) {
  TORCH_CHECK(false,
              "Expected all tensors to be on the same device, but found at least two "
              "devices, ", device_name(a), " and ", device_name(b), "! (when running ",
              op.schema().name(), ")");
}

// "aten::add.Tensor": the op's full name, interned so OpCharging can key on
// its address.
const std::string& full_name(const c10::OperatorHandle& op) {
  const auto* schema = &op.schema();
  thread_local std::unordered_map<const c10::FunctionSchema*, const std::string*> cache;
  auto hit = cache.find(schema);
  if (hit != cache.end()) return *hit->second;
  static std::mutex mutex;
  static std::unordered_map<const c10::FunctionSchema*, std::unique_ptr<std::string>> names;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = names[schema];
  if (!slot) {
    const auto& name = schema->operator_name();
    slot = std::make_unique<std::string>(name.name);
    if (!name.overload_name.empty()) *slot += "." + name.overload_name;
  }
  cache.emplace(schema, slot.get());
  return *slot;
}

// The thread that loaded the extension (the user's); set_num_threads there
// already applies.
const std::thread::id g_main_thread = std::this_thread::get_id();
bool is_main_thread() { return std::this_thread::get_id() == g_main_thread; }

bool is_generator_arg(const c10::Argument& arg) {
  const auto& type = arg.real_type();
  if (type->kind() == c10::TypeKind::GeneratorType) return true;
  if (type->kind() == c10::TypeKind::OptionalType) {
    return type->castRaw<c10::OptionalType>()->getElementType()->kind() ==
           c10::TypeKind::GeneratorType;
  }
  return false;
}

// Finds the op's trn device and checks every tensor against it.
class DeviceScan {
 public:
  explicit DeviceScan(const c10::OperatorHandle& op) : op_(op) {}

  void tensor(const at::Tensor& t, bool cpu_allowed) {
    if (!t.defined()) return;
    const auto d = t.device();
    if (d.type() == kTrn) {
      if (!device_) {
        device_ = d;
      } else if (*device_ != d) {
        mixed_devices(*device_, d, op_);
      }
    } else if (d.is_cpu()) {
      if (!(cpu_allowed || t.dim() == 0)) cpu_.emplace(d);
    } else {
      foreign_ = d;
    }
  }
  void device_arg(const c10::Device& d) {
    if (d.type() == kTrn && !device_) device_ = d;
  }
  c10::DeviceIndex finish() {
    if (foreign_) mixed_devices(device_.value_or(c10::Device(kTrn, current_device())), *foreign_, op_);
    if (device_ && cpu_) mixed_devices(*device_, *cpu_, op_);
    auto index = device_ ? device_->index() : current_device();
    if (index < 0) index = current_device();
    check_device_index(index);
    return index;
  }

 private:
  const c10::OperatorHandle& op_;
  std::optional<c10::Device> device_;
  std::optional<c10::Device> cpu_;
  std::optional<c10::Device> foreign_;
};

at::Tensor to_alias(const at::Tensor& t, AdoptionContext& ctx, bool mutable_arg,
                    bool out_arg = false) {
  if (!t.defined() || t.device().type() != kTrn) return t;
  auto alias = cpu_alias(t);
  ctx.add_input(t, alias, mutable_arg, out_arg);
  return alias;
}

void trn_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const auto& args = schema.arguments();
  const size_t num_args = args.size();
  const size_t first = stack->size() - num_args;

  // 1. Which device, and are the arguments consistent?
  DeviceScan scan(op);
  int generator_slot = -1;
  for (size_t i = 0; i < num_args; ++i) {
    const auto& iv = (*stack)[first + i];
    if (iv.isTensor()) {
      scan.tensor(iv.toTensor(), false);
    } else if (iv.isTensorList()) {
      for (const auto& t : iv.toTensorList()) scan.tensor(t, false);
    } else if (iv.isList()) {  // Tensor?[] (index lists accept CPU indices)
      for (const auto& e : iv.toListRef()) {
        if (e.isTensor()) scan.tensor(e.toTensor(), true);
      }
    } else if (iv.isDevice()) {
      scan.device_arg(iv.toDevice());
    }
    if (is_generator_arg(args[i])) generator_slot = static_cast<int>(i);
  }
  const c10::DeviceIndex device = scan.finish();
  AdoptionContext ctx(device);

  // 2. Swap trn tensors for CPU aliases, trn devices for the CPU.
  for (size_t i = 0; i < num_args; ++i) {
    auto& iv = (*stack)[first + i];
    const auto* alias_info = args[i].alias_info();
    const bool mutable_arg = alias_info && alias_info->isWrite();
    const bool out_arg = mutable_arg && args[i].kwarg_only();
    if (iv.isTensor()) {
      iv = to_alias(iv.toTensor(), ctx, mutable_arg, out_arg);
    } else if (iv.isTensorList()) {
      auto list = iv.toTensorList();
      c10::List<at::Tensor> aliases;
      aliases.reserve(list.size());
      for (const auto& t : list) aliases.push_back(to_alias(t, ctx, mutable_arg, out_arg));
      iv = std::move(aliases);
    } else if (iv.isList() && iv.toListRef().size() > 0 &&
               args[i].real_type()->kind() == c10::TypeKind::ListType) {
      auto generic = iv.toList();
      bool has_tensor = false;
      for (const auto& e : iv.toListRef()) has_tensor |= e.isTensor();
      if (has_tensor) {
        c10::impl::GenericList aliases(generic.elementType());
        for (const auto& e : iv.toListRef()) {
          aliases.push_back(e.isTensor() ? c10::IValue(to_alias(e.toTensor(), ctx, mutable_arg)) : e);
        }
        iv = std::move(aliases);
      }
    } else if (iv.isDevice() && iv.toDevice().type() == kTrn) {
      iv = c10::Device(c10::kCPU);
    }
  }

  // 3. Random ops draw from this device's generator.
  TrnGeneratorImpl* generator = nullptr;
  std::optional<at::mt19937> engine_before;
  if (generator_slot >= 0) {
    auto& iv = (*stack)[first + generator_slot];
    at::Generator gen = iv.isNone() ? default_generator(device) : iv.toGenerator();
    TORCH_CHECK(gen.device().type() == kTrn,
                "Expected a '", c10::get_privateuse1_backend(),
                "' device type for generator but found '", gen.device().type(), "'");
    generator = at::check_generator<TrnGeneratorImpl>(gen);
    engine_before = generator->engine_snapshot();
    iv = generator->cpu_generator();
  }

  // 4. Run the CPU kernel; its allocations come from the trn device. Backward
  // ops run on autograd's device threads, whose intra-op thread count was
  // fixed when they started: resync it with torch.set_num_threads' current
  // value, so a kernel runs (and reduces) exactly as it would on the CPU.
  if (!is_main_thread()) at::init_num_threads();
  {
    KernelDeviceScope scope(device);
    op.redispatchBoxed(c10::DispatchKeySet(c10::DispatchKey::CPU), stack);
  }
  if (generator) generator->account_draws_since(*engine_before);

  // 5. Mutated arguments take any new memory/geometry; outputs are adopted.
  ctx.sync_mutated();
  const size_t num_returns = schema.returns().size();
  const size_t out_first = stack->size() - num_returns;
  c10::SmallVector<at::Tensor, 4> outputs;
  for (size_t i = 0; i < num_returns; ++i) {
    auto& iv = (*stack)[out_first + i];
    if (iv.isTensor()) {
      outputs.push_back(ctx.adopt(iv.toTensor()));
      iv = outputs.back();
    } else if (iv.isTensorList()) {
      auto list = iv.toTensorList();
      c10::List<at::Tensor> adopted;
      adopted.reserve(list.size());
      for (const auto& t : list) {
        outputs.push_back(ctx.adopt(t));
        adopted.push_back(outputs.back());
      }
      iv = std::move(adopted);
    }
  }

  // 6. Charge the chip model.
  if (model_enabled()) charge_op(full_name(op), device, ctx.originals(), outputs);
}

}  // namespace

TORCH_LIBRARY_IMPL(_, PrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&trn_fallback>());
}

// Ops with a CPU kernel and also a CompositeExplicitAutograd kernel
// (native_layer_norm, native_group_norm, addr, ...) or a
// CompositeExplicitAutogradNonFunctional one (every structured op: add, mm,
// softmax, ...): for a custom device the composite kernel wins over the
// backend fallback. It decomposes into other ops or allocates the output and
// calls the out= variant, which is slower, can round differently from the CPU
// and trips the out= resize warning. Route them to the CPU kernel through the
// fallback instead, so trn results equal CPU results at CPU speed.
void route_shadowed_ops_to_cpu_kernels() {
  static auto* lib = new torch::Library(torch::Library::IMPL, "aten",
                                        c10::DispatchKey::PrivateUse1, __FILE__, __LINE__);
  static bool done = false;
  if (done) return;
  done = true;
  auto& dispatcher = c10::Dispatcher::singleton();
  for (const auto& name : dispatcher.getAllOpNames()) {
    if (name.getNamespace() != std::optional<std::string_view>("aten")) continue;
    auto op = dispatcher.findOp(name);
    if (!op || !op->hasKernelForDispatchKey(c10::DispatchKey::CPU) ||
        op->hasKernelForDispatchKey(c10::DispatchKey::PrivateUse1)) {
      continue;
    }
    if (!op->hasKernelForDispatchKey(c10::DispatchKey::CompositeExplicitAutograd) &&
        !op->hasKernelForDispatchKey(c10::DispatchKey::CompositeExplicitAutogradNonFunctional)) {
      continue;
    }
    std::string full = name.name.substr(6);  // drop "aten::"
    if (!name.overload_name.empty()) full += "." + name.overload_name;
    lib->impl(full.c_str(), torch::CppFunction::makeFromBoxedFunction<&trn_fallback>());
  }
}

}  // namespace torch_trn3
