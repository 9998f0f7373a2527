"""The profiler context manager: collect, then summarise, export, plot."""
from __future__ import annotations

import contextlib
import os
from typing import Dict, List, Optional, Union

import torch

from .. import _C
from ..hw.cost import Engine
from ..hw.lnc import LogicalDeviceSpec
from . import _advice, _plot, _trace
from ._records import ENGINE_NAMES, OpRecord, from_raw
from ._scopes import ScopeTracker
from ._stats import (GROUP_BY, CollectiveStats, CommOverlap, OpStats, Step, comm_overlap,
                     engine_busy, fmt_quantity, fmt_time, group_collectives, group_ops,
                     render_table, truncate)

_active: Optional["profile"] = None


class profile:
    """Records every op run on trn devices while active, as the chip model ran it.

    ::

        with torch_trn3.profiler.profile() as prof:
            for batch in loader:
                train_step(batch)
                prof.step()                  # optional step markers
        print(prof.summary())
        prof.export_chrome_trace("trace.json")   # Perfetto / chrome://tracing
        prof.plot("profile.png")                 # needs matplotlib

    All times are modelled device time (the clocks ``torch.trn.Event``
    reads), never wall-clock. While active, global ``nn.Module`` forward
    hooks (and optimizer step hooks) attach module paths to ops
    (``with_modules=False`` turns them off); on exit everything is removed,
    so an inactive profiler costs nothing. Only one profiler can be active
    at a time.

    ``step()`` closes a step and opens the next; without it the whole block
    is one step. Per-step numbers (:attr:`step_time_s`, :attr:`model_flops`,
    ...) are means over the recorded steps (a trailing empty step is dropped).
    """

    def __init__(self, *, with_modules: bool = True,
                 device_spec: Optional[LogicalDeviceSpec] = None):
        from .. import machine

        self.with_modules = with_modules
        #: The logical device spec costs and peaks are read from.
        self.device_spec: LogicalDeviceSpec = device_spec or machine.logical
        #: The device type name ("trn", or "neuron").
        self.device_type: str = machine.device_name
        self._records: List[OpRecord] = []
        self._steps: List[Step] = []
        self._open_now: Dict[int, float] = {}
        self._last_end: Dict[int, float] = {}
        self._tracker = ScopeTracker(_C._set_scope)
        self._running = False
        self._groups: Dict[str, List[OpStats]] = {}

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "profile":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        global _active
        if _active is not None:
            raise RuntimeError("a torch_trn3.profiler.profile is already active; "
                               "profilers cannot be nested")
        _active = self
        _C._set_recording(False)
        _C._drain_records()  # whatever someone else left behind is not ours
        self._running = True
        self._open_step()
        if self.with_modules:
            self._tracker.start()
        _C._set_recording(True)

    def stop(self) -> None:
        global _active
        if not self._running:
            return
        _C._set_recording(False)
        if self.with_modules:
            self._tracker.stop()
        self._close_step(final=True)
        self._running = False
        _active = None

    def step(self) -> None:
        """Marks the end of a step (e.g. one training iteration)."""
        if not self._running:
            raise RuntimeError("profile.step() called outside the profiled block")
        self._close_step(final=False)
        self._tracker.new_step()
        self._open_step()

    # ------------------------------------------------------------------ steps
    def _now(self) -> Dict[int, float]:
        return {d: _C._device_now(d) for d in range(_C._device_count())}

    def _open_step(self) -> None:
        self._open_now = self._now()

    def _close_step(self, final: bool) -> None:
        index = len(self._steps)
        new = [from_raw(raw, index) for raw in _C._drain_records()]
        if not new and final and self._steps:
            return  # a trailing step() left an empty step open
        close_now = self._now()
        step = Step(index)
        for d in sorted({r.device for r in new}):
            mine = [r for r in new if r.device == d]
            # Steps are not separated by barriers, so a step's first ops may
            # start in idle engine time before the previous step (or the work
            # before profiling) ended; steps partition time at their ends.
            start = self._last_end.get(d, self._open_now.get(d, 0.0))
            end = max(close_now.get(d, 0.0), max(r.end_s for r in mine))
            step.windows[d] = (start, end)
            self._last_end[d] = end
        self._steps.append(step)
        self._records.extend(new)
        self._groups.clear()

    # ------------------------------------------------------------------ data
    @property
    def records(self) -> List[OpRecord]:
        """Every profiled op, in issue order."""
        return list(self._records)

    @property
    def steps(self) -> List[Step]:
        return list(self._steps)

    @property
    def devices(self) -> List[int]:
        """Indices of the logical devices that ran profiled ops."""
        return sorted({r.device for r in self._records})

    @property
    def total_time_s(self) -> float:
        """Sum of the steps' modelled times."""
        return sum(s.duration_s for s in self._steps)

    @property
    def step_time_s(self) -> float:
        """Modelled time of one step (mean over steps), seconds.

        A step's time is its longest device window: from the device's clock
        when the step opened (profiling started, or the previous step ended)
        to the end of its last op. Steps are not separated by barriers, so a
        step's first ops may start in idle engine time before that (as on the
        hardware, e.g. the next forward's embedding while the optimizer
        finishes): this is the steady-state time between step completions.
        """
        return self.total_time_s / len(self._steps) if self._steps else 0.0

    def _per_step(self, total: float) -> float:
        return total / max(1, len(self._steps))

    @property
    def model_flops(self) -> float:
        """Tensor Engine FLOPs the model needs per step (no recompute)."""
        return self._per_step(sum(r.model_flops for r in self._records))

    @property
    def hardware_flops(self) -> float:
        """Tensor Engine FLOPs executed per step, recompute included."""
        return self._per_step(sum(r.hardware_flops for r in self._records))

    @property
    def hbm_bytes(self) -> float:
        """HBM bytes read plus written per step, all devices."""
        return self._per_step(sum(r.hbm_bytes for r in self._records))

    @property
    def matmul_dtype(self) -> str:
        """The dtype most Tensor Engine FLOPs ran in (MFU's peak uses it)."""
        by_dtype: Dict[str, float] = {}
        for r in self._records:
            if r.engine is Engine.TENSOR:
                by_dtype[r.dtype] = by_dtype.get(r.dtype, 0.0) + r.flops
        return max(by_dtype, key=by_dtype.get) if by_dtype else "bf16"

    @property
    def peak_flops(self) -> float:
        """Peak FLOP/s of one device in :attr:`matmul_dtype`."""
        try:
            return self.device_spec.peak_flops(self.matmul_dtype)
        except ValueError:  # a dtype the Tensor Engine has no mode for
            return self.device_spec.peak_bf16_flops

    def _utilisation(self, flops_per_step: float) -> float:
        denom = self.step_time_s * self.peak_flops * max(1, len(self.devices))
        return flops_per_step / denom if denom > 0 else 0.0

    @property
    def mfu(self) -> float:
        """Model FLOPs utilisation: :attr:`model_flops` / (step time x peak
        FLOP/s of the dominant matmul dtype x devices used).

        Model FLOPs are the Tensor Engine FLOPs the computation needs: they
        exclude recompute, i.e. the forward re-run of activation
        checkpointing (ops in a ``(recompute)`` scope) and the S = QK^T that
        flash-attention backward recomputes (1 of its 5 matmuls). Lane-engine
        work (element-wise, reductions) is not counted, as is customary."""
        return self._utilisation(self.model_flops)

    @property
    def published_peak_flops(self) -> float:
        """The published BF16 peak of one device: ~79 TFLOPS per NeuronCore x
        LNC (``ChipSpec.published_bf16_flops_per_core``), the figure AWS and
        torchtitan quote MFU against. :attr:`peak_flops` is the rate the
        model's time comes from (the array: 78.6 TFLOPS per core in BF16)."""
        return self.device_spec.chip.published_bf16_flops_per_core * self.device_spec.cores

    @property
    def mfu_published(self) -> float:
        """:attr:`model_flops` against :attr:`published_peak_flops` (what
        torchtitan's MFU would print for this run on Trainium)."""
        denom = self.step_time_s * self.published_peak_flops * max(1, len(self.devices))
        return self.model_flops / denom if denom > 0 else 0.0

    @property
    def hbm_stall_s(self) -> float:
        """Modelled seconds per step (summed over devices) ops were stretched
        waiting for HBM bandwidth that concurrent ops on other engines of
        their device held (see csrc/runtime/TrnClock.h, shared HBM)."""
        return self._per_step(sum(r.hbm_stall_s for r in self._records))

    def communication(self) -> CommOverlap:
        """Collective time per step and device: how much of it ran while a
        compute or DMA engine was busy too (hidden) and how much alone
        (exposed, adding to the step), from the modelled timeline."""
        return comm_overlap(self._records, len(self._steps))

    @property
    def hfu(self) -> float:
        """Hardware FLOPs utilisation: like :attr:`mfu` but counting every
        Tensor Engine FLOP executed, recompute included, so HFU >= MFU."""
        return self._utilisation(self.hardware_flops)

    @property
    def arithmetic_intensity(self) -> float:
        """Tensor Engine FLOPs per HBM byte (all ops' traffic)."""
        return self.hardware_flops / self.hbm_bytes if self.hbm_bytes else 0.0

    @property
    def ridge_point(self) -> float:
        """FLOPs per byte at which the dominant dtype's peak meets HBM bandwidth."""
        return self.peak_flops / self.device_spec.hbm_bytes_per_s

    @property
    def engine_activity(self) -> Dict[str, float]:
        """Share of step time each engine is busy (0..1), averaged over devices."""
        denom = self.total_time_s * max(1, len(self.devices))
        busy = engine_busy(self._records)
        return {ENGINE_NAMES[e]: (busy[e] / denom if denom > 0 else 0.0) for e in Engine}

    def device_engine_activity(self, device: int) -> Dict[str, float]:
        """Share of step time each engine of ``device`` is busy (0..1)."""
        denom = sum(s.windows[device][1] - s.windows[device][0]
                    for s in self._steps if device in s.windows)
        busy = engine_busy(r for r in self._records if r.device == device)
        return {ENGINE_NAMES[e]: (busy[e] / denom if denom > 0 else 0.0) for e in Engine}

    def key_averages(self, group_by: str = "shape") -> List[OpStats]:
        """Per-op totals over all steps, most modelled time first, grouped by op
        and input shapes ("shape"), op ("op") or op and module ("module").
        Each carries the chip model's breakdown, including ``intercore_s``."""
        if group_by not in self._groups:
            self._groups[group_by] = group_ops(self._records, self.device_spec, group_by)
        return self._groups[group_by]

    def collectives(self) -> List[CollectiveStats]:
        """Collectives (ops on the COLLECTIVE engine, e.g. ``trnccl::all_reduce``)
        grouped by op and power-of-2 message-size bucket, each with its call
        count and modelled durations (``min_s``, ``median_s``, ``p90_s``,
        ``max_s``), over all steps and devices."""
        return group_collectives(self._records)

    def collective_table(self) -> str:
        """:meth:`collectives` as a table (durations per call, modelled)."""
        rows = []
        for c in self.collectives():
            rows.append([truncate(c.name, 36), c.size_range, str(c.calls), fmt_time(c.total_s),
                         fmt_time(c.min_s), fmt_time(c.median_s), fmt_time(c.p90_s),
                         fmt_time(c.max_s)])
        return render_table(["collective", "message size", "calls", "total", "min", "median",
                             "p90", "max"], rows, "llrrrrrr")

    def recommendations(self) -> List[_advice.Advice]:
        """Rule-based advice, most important first (``str(a)`` is the text)."""
        return _advice.recommend(self)

    # ------------------------------------------------------------------ output
    def op_table(self, top: int = 15, group_by: str = "shape") -> str:
        """The per-op breakdown as a table (times per step)."""
        n = max(1, len(self._steps))
        denom = self.step_time_s * max(1, len(self.devices))
        rows = []
        for g in self.key_averages(group_by)[:top]:
            rows.append([
                truncate(g.name, 32),
                truncate(g.module, 32),
                truncate(g.shapes, 28),
                ENGINE_NAMES[g.engine],
                f"{g.calls / n:g}",
                fmt_time(g.time_s / n),
                f"{g.time_s / n / denom:.1%}" if denom else "-",
                g.bound,
                f"{g.utilisation:.0%}" if g.utilisation is not None else "",
                fmt_time(g.intercore_s / n) if g.intercore_s else "0",
                fmt_time(g.hbm_stall_s / n) if g.hbm_stall_s else "0",
            ])
        return render_table(
            ["op", "module", "inputs", "engine", "calls", "time", "% step", "bound",
             "PE fill", "intercore", "HBM stall"], rows, "lllllrrllrr")

    def compiled_kernel_table(self, top: int = 5) -> str:
        """The torch.compile kernels that took the most modelled time ("" when
        none ran), each with the ATen ops fused into it."""
        totals: Dict[str, list] = {}
        for r in self._records:
            if r.fused_ops:
                name = r.name.rpartition("#")[0] or r.name
                entry = totals.setdefault(name, [0, 0.0, r])
                entry[0] += 1
                entry[1] += r.duration_s
        if not totals:
            return ""
        ranked = sorted(totals.items(), key=lambda kv: -kv[1][1])[:top]
        rows = [[name if len(name) <= 48 else name[:45] + "...", ENGINE_NAMES[r.engine], str(calls),
                 fmt_time(self._per_step(t)), ", ".join(r.fused_ops)]
                for name, (calls, t, r) in ranked]
        return render_table(["kernel", "engine", "calls", "time", "fused ATen ops"], rows, "llrrl")

    def summary(self, top: int = 10) -> str:
        """A printable report: step time, MFU/HFU, arithmetic intensity, HBM,
        engine activity, top ops, collectives by op and message size (when
        any ran) and recommendations."""
        dev = self.device_spec
        steps = len(self._steps)
        lines = [
            f"torch_trn3 profile: {dev.chip.name}, LNC={dev.lnc} ({dev.cores} cores per "
            f"device), {len(self.devices)} device(s), {steps} step(s), {len(self._records)} ops",
            "All times are modelled Trainium time (not wall clock).",
            "",
        ]
        dtype = self.matmul_dtype
        peak = self.peak_flops
        hbm_s = self.hbm_bytes / (dev.hbm_bytes_per_s * max(1, len(self.devices)))
        metric_rows = [
            ["step time", fmt_time(self.step_time_s),
             "mean over steps" if steps > 1 else "one step"],
            [f"MFU ({dtype})", f"{self.mfu:.1%}",
             f"{fmt_quantity(self.model_flops, 'FLOP')} model FLOPs/step vs "
             f"{fmt_quantity(peak, 'FLOP/s')} peak per device"],
            ["MFU (published bf16 peak)",
             f"{self.mfu_published:.1%}",
             f"vs {fmt_quantity(self.published_peak_flops, 'FLOP/s')} per device "
             f"({fmt_quantity(dev.chip.published_bf16_flops_per_core, 'FLOP/s')} per core x "
             f"LNC, as AWS and torchtitan; the line above uses the array rate)"],
            [f"HFU ({dtype})", f"{self.hfu:.1%}",
             f"{fmt_quantity(self.hardware_flops, 'FLOP')} executed incl. recompute"],
            ["arithmetic intensity", f"{self.arithmetic_intensity:.1f} FLOP/B",
             f"Tensor Engine FLOPs per HBM byte; ridge point {self.ridge_point:.0f}"],
            ["HBM traffic", fmt_quantity(self.hbm_bytes, "B") + "/step",
             f"{fmt_time(hbm_s)} at {fmt_quantity(dev.hbm_bytes_per_s, 'B/s')} per device"],
            ["HBM contention", fmt_time(self.hbm_stall_s) + "/step",
             f"ops stretched waiting for HBM bandwidth held by other engines "
             f"({sum(1 for r in self._records if r.hbm_stall_s > 0)} of "
             f"{len(self._records)} ops)"],
        ]
        comm = self.communication()
        if comm.comm_s > 0:
            metric_rows.append(
                ["communication", fmt_time(comm.comm_s) + "/step",
                 f"{fmt_time(comm.hidden_s)} hidden behind compute ({comm.hidden_share:.0%}), "
                 f"{fmt_time(comm.exposed_s)} exposed (per device)"])
        lines.append(render_table(["metric", "value", "note"], metric_rows, "lrl"))
        lines.append("")
        lines.append("Engine activity (% of step time busy)")
        for name, share in self.engine_activity.items():
            bar = "#" * round(share * 40)
            lines.append(f"  {name:<10} {share * 100:5.1f}%  {bar}")
        lines.append("")
        lines.append(f"Top ops by modelled time (per step)")
        lines.append(self.op_table(top=top))
        compiled = self.compiled_kernel_table(top=min(top, 5))
        if compiled:
            lines.append("")
            lines.append("Compiled kernels by modelled time (per step), with the ATen ops fused into each")
            lines.append(compiled)
        inter = sum(g.intercore_s for g in self.key_averages())
        if inter:
            lines.append(f"  intercore: LNC={dev.lnc} inter-core barrier + traffic, "
                         f"{fmt_time(inter / max(1, steps))} per step")
        if any(r.engine is Engine.COLLECTIVE for r in self._records):
            lines.append("")
            lines.append("Collectives by op and message size (modelled duration per call, "
                         "all steps)")
            lines.append(self.collective_table())
        lines.append("")
        lines.append("Recommendations")
        advice = self.recommendations()
        if not advice:
            lines.append("  none: no rule found a visible inefficiency.")
        for i, a in enumerate(advice, 1):
            lines.append(f"  {i}. {a.text}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def export_chrome_trace(self, path: Union[str, os.PathLike],
                            host_trace: Optional[object] = None) -> str:
        """Writes a Chrome-trace / Perfetto JSON; see :func:`._trace.export`.

        ``host_trace``: a finished ``torch.profiler.profile`` (or its JSON) to
        merge with, so host CPU activity and device lanes share one file."""
        return _trace.export(self, path, host_trace)

    def plot(self, path: Union[str, os.PathLike], title: Optional[str] = None) -> str:
        """Saves a PNG timeline and engine-activity chart (needs matplotlib)."""
        return _plot.plot(self, path, title)


@contextlib.contextmanager
def scope(name: str):
    """Labels the ops of a block with ``name`` (nested under the current
    module path) while a profiler is active; a no-op otherwise::

        with torch_trn3.profiler.scope("loss"):
            loss = F.cross_entropy(logits, targets)
    """
    prof = _active
    if prof is None or not prof._running or not prof.with_modules:
        yield
        return
    prof._tracker.push_user(name)
    try:
        yield
    finally:
        prof._tracker.pop_user()
