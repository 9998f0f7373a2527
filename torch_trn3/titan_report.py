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

At the end of training (``Trainer.train`` returning or raising), the
:mod:`torch_trn3.profiler` summary of the whole run (one profiler step per
torchtitan train step) is logged, and its Chrome trace (Perfetto) is
written to ``$TORCH_TRN3_TITAN_TRACE`` if set (``{rank}`` in it is replaced
by the global rank), else ``<dump_folder>/trn_profile/rank{rank}_trace.json``.
The profiler keeps every op record of the run in host memory, so use the
switch on short runs (a few hundred steps of a debug model).

The wrappers are installed when ``torchtitan.components.metrics`` and
``torchtitan.trainer`` are imported (nothing of torchtitan changes
otherwise); torchtitan's own wall-clock ``tps``/``mfu`` are left as they
are (host time, not device time).
"""
from __future__ import annotations

import os

from ._wrapping import wrap_once

ENV = "TORCH_TRN3_TITAN_REPORT"
TRACE_ENV = "TORCH_TRN3_TITAN_TRACE"
_METRICS = "torchtitan.components.metrics"
_TRAINER = "torchtitan.trainer"


def enabled() -> bool:
    return os.environ.get(ENV, "0") not in ("", "0", "false", "False")


def _wrap_metrics_processor() -> None:
    import sys

    import torch

    from . import DEVICE_NAME

    dev_mod = getattr(torch, DEVICE_NAME)

    def with_modelled_line(orig_log):
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
        return log

    wrap_once(sys.modules[_METRICS].MetricsProcessor, "log", with_modelled_line)


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


def trace_path(dump_folder: str, rank: int) -> str:
    """Where the run's Chrome trace goes (see the module docstring)."""
    custom = os.environ.get(TRACE_ENV)
    if custom:
        return custom.replace("{rank}", str(rank))
    return os.path.join(dump_folder, "trn_profile", f"rank{rank}_trace.json")


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _profiler_step_after(orig_step):
    def train_step(self, *args, **kwargs):
        out = orig_step(self, *args, **kwargs)
        prof = getattr(self, "_trn3_profile", None)
        if prof is not None:
            prof.step()
        return out
    return train_step


def _profiled(orig_train):
    def train(self, *args, **kwargs):
        from .profiler import profile

        prof = self._trn3_profile = profile()
        prof.start()
        try:
            return orig_train(self, *args, **kwargs)
        finally:
            prof.stop()
            self._trn3_profile = None
            _report_profile(prof, self.config.dump_folder)
    return train


def _wrap_trainer() -> None:
    """Profiles ``Trainer.train``: a profiler step per ``train_step``; at
    the end, the summary in torchtitan's log and the trace on disk."""
    import sys

    trainer_cls = sys.modules[_TRAINER].Trainer
    wrap_once(trainer_cls, "train_step", _profiler_step_after)
    wrap_once(trainer_cls, "train", _profiled)


def _report_profile(prof, dump_folder: str) -> None:
    from torchtitan.tools.logging import logger

    if not prof.records:
        logger.info("torch_trn3 profile: no ops ran on the device")
        return
    path = trace_path(dump_folder, _rank())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    prof.export_chrome_trace(path)
    logger.info("%s\ntorch_trn3 trace (modelled device time, Perfetto / chrome://tracing): %s",
                prof.summary(), path)


def install() -> None:
    """Wraps torchtitan's ``MetricsProcessor.log`` and ``Trainer.train``
    when they are imported, if ``TORCH_TRN3_TITAN_REPORT`` is set. Imports
    nothing of torchtitan."""
    if not enabled():
        return
    from .compiler._hooks import _after_import

    _after_import(_METRICS, _wrap_metrics_processor)
    _after_import(_TRAINER, _wrap_trainer)
