// Charges every trn op to the chip model: which engine runs it and for how
// long (modelled Trainium time), then schedules it on the device's timeline
// (runtime/TrnClock.h).
//
// The cost itself is computed by the Python chip model (torch_trn3.chip_model
// over torch_trn3.hw.cost), the single place the formulas live. Training
// loops repeat the same ops on the same shapes, so costs are memoized here
// by (op, input/output shapes and dtypes): the Python model runs once per
// distinct op signature and each later op costs a hash lookup.
//
// Background layout work ("zero-cost" transposes and tensor dereferencing):
// a copy that only re-lays out its input (a transpose or permute made
// contiguous: the input is non-overlapping and dense but not contiguous, the
// output contiguous, same dtype and size) and a row gather (index_select /
// index on dim 0 of a contiguous input) are not scheduled when charged.
// They are held back and their output is ready when their input is. If only
// Tensor Engine ops read the output, the work is folded into them (the DMA
// that loads a matmul operand transposes it; the Tensor Engine indexes
// activation rows itself) and costs nothing; the profiler shows it as a
// zero-time op folded into the first matmul. The first other op that reads
// or writes the output (or a collective) makes it run then, at its full cost.
// Detection is one check of strides at charge time and one hash lookup per
// input while any such op is held back.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/util/ArrayRef.h>

#include <functional>
#include <string>
#include <vector>

namespace torch_trn3 {

struct OpCharge {
  int engine = 0;
  double seconds = 0.0;
  double flops = 0.0;
  double bytes = 0.0;
  // HBM traffic time at the device's full bandwidth, and the work that
  // overlaps it (see TrnClock.h, shared HBM).
  double memory_s = 0.0;
  double compute_s = 0.0;
};

struct TensorDesc {
  std::vector<int64_t> sizes;
  std::string dtype;
};

using CostFunction = std::function<OpCharge(
    const std::string& op, const std::vector<TensorDesc>& inputs,
    const std::vector<TensorDesc>& outputs)>;

void set_cost_function(CostFunction fn);
void set_model_enabled(bool enabled);
bool model_enabled();

// Charges `op` (a stable name, e.g. the schema's "aten::mm") on `device`.
void charge_op(const std::string& op, c10::DeviceIndex device, c10::ArrayRef<at::Tensor> inputs,
               c10::ArrayRef<at::Tensor> outputs);

// Charges an op whose cost the caller computed (collectives: the topology
// model prices them) and schedules it like any other.
void charge_explicit(const std::string& op, c10::DeviceIndex device, const OpCharge& charge,
                     c10::ArrayRef<at::Tensor> inputs, c10::ArrayRef<at::Tensor> outputs);

// A profiled op as the profiler shows it.
struct OpRecord {
  std::string name;
  std::string scope;  // module path when known
  int device;
  int64_t stream;
  int engine;
  double start_s;
  double end_s;
  double flops;
  double bytes;
  std::vector<TensorDesc> inputs;
  std::vector<TensorDesc> outputs;
  // Seconds of end_s - start_s spent waiting for HBM bandwidth other
  // engines held.
  double hbm_stall_s = 0.0;
  // Background layout work folded into this Tensor Engine op ("" otherwise).
  std::string folded_into;
};

void set_recording(bool enabled);
void set_scope(const std::string& scope);
std::vector<OpRecord> drain_records();
// Empties the memo (after the chip spec changes, e.g. in tests).
void clear_cost_cache();

}  // namespace torch_trn3
