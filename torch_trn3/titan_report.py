"""Modelled Trainium cost of a torchtitan run, one switch away.

With ``TORCH_TRN3_TITAN_REPORT=1``, every step torchtitan logs (its
``MetricsProcessor.log``) is followed by one more line with what the chip
model says that step costs on the emulated device:

    modelled Trainium3: step 1.234 ms  MFU 12.34% (bf16 peak 157.29 TFLOP/s)  peak HBM 0.20 GiB (0.56%) per logical device

- step time: simulated time of the device's stream between consecutive
  logs (``torch.trn.Event`` timestamps), divided by the steps in between;
  the first logged step also holds set-up work (weight init), so it is
  reported from the second log on.
- MFU: torchtitan's own FLOPs per token times this rank's tokens per step
  (over its non-data-parallel degree, as torchtitan's MFU), against the
  logical device's bf16 peak from the chip spec.
- peak HBM: ``max_memory_allocated`` of this rank's logical device since
  the previous log (torchtitan resets peak stats after each log).

The wrapper is installed when ``torchtitan.components.metrics`` is imported
(nothing of torchtitan changes otherwise); torchtitan's own wall-clock
``tps``/``mfu`` are left as they are (host time, not device time).
"""
from __future__ import annotations

import os

ENV = "TORCH_TRN3_TITAN_REPORT"
_METRICS = "torchtitan.components.metrics"


def enabled() -> bool:
    return os.environ.get(ENV, "0") not in ("", "0", "false", "False")


def _wrap_metrics_processor() -> None:
    import sys

    import torch

    from . import DEVICE_NAME

    mp_cls = sys.modules[_METRICS].MetricsProcessor
    if getattr(mp_cls.log, "_trn3_report", False):
        return
    orig_log = mp_cls.log
    dev_mod = getattr(torch, DEVICE_NAME)

    def log(self, step, *args, **kwargs):
        line = None
        device = getattr(getattr(self, "device_memory_monitor", None), "device", None)
        device = torch.device(device) if device is not None else torch.device(DEVICE_NAME, dev_mod.current_device())
        if device.type == DEVICE_NAME:
            line = _modelled_line(self, step, device, dev_mod)
        orig_log(self, step, *args, **kwargs)
        if line:
            from torchtitan.tools.logging import logger

            logger.info(line)

    log._trn3_report = True
    log.__wrapped__ = orig_log
    mp_cls.log = log


def _modelled_line(mp, step: int, device, dev_mod) -> str:
    props = dev_mod.get_device_properties(device)
    end = dev_mod.Event(enable_timing=True)
    end.record(dev_mod.current_stream(device))
    dev_mod.synchronize(device)
    prev = getattr(mp, "_trn3_last", None)
    mp._trn3_last = (step, end)
    peak = dev_mod.max_memory_allocated(device)
    mem = f"peak HBM {peak / 2**30:.2f} GiB ({100 * peak / props.total_memory:.2f}%) per logical device"
    chip = props.chip
    if prev is None or step <= prev[0]:
        return f"modelled {chip}: step {step} holds set-up work, step time from the next log on  {mem}"
    seconds = prev[1].elapsed_time(end) / 1e3 / (step - prev[0])
    tokens = mp.ntokens_since_last_log / max(1, mp.parallel_dims.non_data_parallel_size) / (step - prev[0])
    flops = mp.num_flops_per_token * tokens
    mfu = 100 * flops / seconds / props.peak_bf16_flops if seconds > 0 else float("nan")
    return (f"modelled {chip}: step {seconds * 1e3:.3f} ms  MFU {mfu:.2f}% "
            f"(bf16 peak {props.peak_bf16_flops / 1e12:.2f} TFLOP/s)  {mem}")


def install() -> None:
    """Wraps torchtitan's ``MetricsProcessor.log`` when it is imported, if
    ``TORCH_TRN3_TITAN_REPORT`` is set. Imports nothing of torchtitan."""
    if not enabled():
        return
    from .compiler._hooks import _after_import

    _after_import(_METRICS, _wrap_metrics_processor)
