// DeviceGuardImplInterface for trn: current device, streams and events.
//
// Streams are ordering domains with their own simulated clock (TrnClock);
// kernels run synchronously on the host, so queries report "done" and
// synchronize only reconciles simulated time. Events carry the simulated
// timestamp of the stream they were recorded on, which is what
// Event.elapsed_time() reports (modelled milliseconds, like CUDA events).
#include "TrnClock.h"
#include "TrnDevices.h"
#include "TrnGuard.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <vector>

namespace torch_trn3 {

namespace {

constexpr auto kTrn = c10::DeviceType::PrivateUse1;

struct TrnEvent {
  c10::DeviceIndex device = -1;
  c10::StreamId stream = 0;
  double time_s = 0.0;
  bool recorded = false;
  bool timing = false;
};

std::atomic<c10::StreamId> g_next_stream_id{1};

thread_local std::vector<c10::StreamId> t_current_stream;

// A device without an index means the current device, as for CUDA.
c10::Device resolve(c10::Device d) {
  if (d.index() < 0) return {d.type(), current_device()};
  check_device_index(d.index());
  return d;
}

c10::StreamId& current_stream_slot(c10::DeviceIndex device) {
  if (t_current_stream.size() < static_cast<size_t>(kMaxDevices)) t_current_stream.resize(kMaxDevices, 0);
  return t_current_stream[device];
}

struct TrnGuardImpl final : public c10::impl::DeviceGuardImplInterface {
  c10::DeviceType type() const override { return kTrn; }

  c10::Device exchangeDevice(c10::Device d) const override {
    TORCH_INTERNAL_ASSERT(d.type() == kTrn);
    auto old = current_device();
    if (d.index() != old) set_current_device(d.index());
    return {kTrn, old};
  }
  c10::Device getDevice() const override { return {kTrn, current_device()}; }
  void setDevice(c10::Device d) const override {
    TORCH_INTERNAL_ASSERT(d.type() == kTrn);
    set_current_device(d.index());
  }
  void uncheckedSetDevice(c10::Device d) const noexcept override {
    if (d.index() >= 0 && d.index() < device_count()) {
      set_current_device(d.index());
    }
  }

  c10::Stream getStream(c10::Device d) const override {
    d = resolve(d);
    return c10::Stream(c10::Stream::UNSAFE, d, current_stream_slot(d.index()));
  }
  c10::Stream getDefaultStream(c10::Device d) const override {
    return c10::Stream(c10::Stream::UNSAFE, resolve(d), 0);
  }
  c10::Stream getNewStream(c10::Device d, int /*priority*/) const override {
    return c10::Stream(c10::Stream::UNSAFE, resolve(d), g_next_stream_id++);
  }
  c10::Stream getStreamFromGlobalPool(c10::Device d, bool isHighPriority) const override {
    return getNewStream(d, isHighPriority ? -1 : 0);
  }
  c10::Stream exchangeStream(c10::Stream s) const override {
    auto& slot = current_stream_slot(s.device_index());
    c10::Stream old(c10::Stream::UNSAFE, s.device(), slot);
    slot = s.id();
    return old;
  }

  void destroyEvent(void* event, const c10::DeviceIndex) const noexcept override {
    delete static_cast<TrnEvent*>(event);
  }

  void record(void** event, const c10::Stream& stream, const c10::DeviceIndex device_index,
              const c10::EventFlag flag) const override {
    TORCH_CHECK(device_index == -1 || device_index == stream.device_index(),
                "Event device index ", static_cast<int>(device_index),
                " does not match recording stream's device index ",
                static_cast<int>(stream.device_index()), ".");
    auto* ev = static_cast<TrnEvent*>(*event);
    if (ev == nullptr) {
      ev = new TrnEvent();
      ev->timing = flag == c10::EventFlag::BACKEND_DEFAULT;
      *event = ev;
    }
    TORCH_CHECK(ev->device == -1 || ev->device == stream.device_index(),
                "Event device ", static_cast<int>(ev->device),
                " does not match recording stream's device ",
                static_cast<int>(stream.device_index()), ".");
    ev->device = stream.device_index();
    ev->stream = stream.id();
    ev->time_s = stream_now(ev->device, ev->stream);
    ev->recorded = true;
    // An event is a barrier in its stream: work issued after it starts after
    // everything issued before it, so elapsed_time between two events is the
    // modelled time of exactly the work between them.
    wait_until(ev->device, ev->stream, ev->time_s);
  }

  void block(void* event, const c10::Stream& stream) const override {
    auto* ev = static_cast<TrnEvent*>(event);
    if (ev == nullptr || !ev->recorded) return;  // like CUDA: no-op
    wait_until(stream.device_index(), stream.id(), ev->time_s);
  }

  bool queryEvent(void* /*event*/) const override { return true; }

  c10::DeviceIndex deviceCount() const noexcept override { return device_count(); }

  bool queryStream(const c10::Stream&) const override { return true; }
  void synchronizeStream(const c10::Stream&) const override {}
  void synchronizeEvent(void*) const override {}
  void synchronizeDevice(const c10::DeviceIndex device_index) const override {
    check_device_index(device_index);
  }
  void recordDataPtrOnStream(const c10::DataPtr&, const c10::Stream&) const override {}

  double elapsedTime(void* event1, void* event2, const c10::DeviceIndex) const override {
    return event_elapsed_ms(event1, event2);
  }
};

C10_REGISTER_GUARD_IMPL(PrivateUse1, TrnGuardImpl);

}  // namespace

c10::StreamId current_stream_id(c10::DeviceIndex device) { return current_stream_slot(device); }

double event_elapsed_ms(void* event1, void* event2) {
  auto* a = static_cast<TrnEvent*>(event1);
  auto* b = static_cast<TrnEvent*>(event2);
  TORCH_CHECK(a && b && a->recorded && b->recorded,
              "Both events must be recorded before calculating elapsed time.");
  TORCH_CHECK(a->timing && b->timing,
              "Both events must be created with argument 'enable_timing=True'.");
  TORCH_CHECK(a->device == b->device,
              "Both events must be recorded on the same device to calculate elapsed "
              "time (got ", c10::get_privateuse1_backend(), ":", static_cast<int>(a->device), " and ",
              c10::get_privateuse1_backend(), ":", static_cast<int>(b->device), ").");
  return (b->time_s - a->time_s) * 1e3;
}

}  // namespace torch_trn3
