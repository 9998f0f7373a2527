"""Chrome-trace / Perfetto JSON: one process per logical device, one lane
(thread) per engine, timestamps in modelled microseconds.

Open the file at https://ui.perfetto.dev or chrome://tracing. Slices are
named as ATen names the op (``aten::mm.out``) followed by the module path in
brackets where known; ``args`` carry shapes, dtypes, FLOPs, HBM bytes and the
chip model's breakdown (compute / memory / issue / inter-core seconds).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, TYPE_CHECKING, Union

from ..hw.cost import Engine
from ._records import ENGINE_NAMES, shapes_text

if TYPE_CHECKING:  # pragma: no cover
    from ._profile import profile

#: Thread id of the per-device lane that shows profiler steps.
STEP_LANE = len(Engine)
#: Process ids of device lanes start here when merged into a host trace, so
#: they never collide with host process ids.
MERGED_PID_BASE = 1_000_000


def trace_events(prof: "profile", pid_base: int = 0) -> List[Dict[str, Any]]:
    """The trace events of ``prof`` (metadata first)."""
    dev = prof.device_spec
    events: List[Dict[str, Any]] = []
    for d in prof.devices:
        pid = pid_base + d
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {
            "name": f"{prof.device_type}:{d} ({dev.chip.name}, LNC={dev.lnc}, modelled time)"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                       "args": {"sort_index": pid}})
        for engine in Engine:
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": engine.value,
                           "args": {"name": f"{ENGINE_NAMES[engine]} Engine"
                                    if engine not in (Engine.DMA, Engine.COLLECTIVE)
                                    else ENGINE_NAMES[engine]}})
            events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": engine.value,
                           "args": {"sort_index": engine.value}})
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": STEP_LANE,
                       "args": {"name": "Steps"}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": STEP_LANE,
                       "args": {"sort_index": -1}})
    for step in prof.steps:
        for d, (start, end) in step.windows.items():
            events.append({"ph": "X", "name": f"step {step.index}", "cat": "step",
                           "pid": pid_base + d, "tid": STEP_LANE,
                           "ts": start * 1e6, "dur": (end - start) * 1e6,
                           "args": {"modelled_ms": (end - start) * 1e3}})
    for r in prof.records:
        cost = r.cost(dev)
        args: Dict[str, Any] = {
            "module": r.scope,
            "inputs": shapes_text(r.inputs),
            "outputs": shapes_text(r.outputs),
            "stream": r.stream,
            "step": r.step,
            "flops": r.flops,
            "hbm_bytes": r.hbm_bytes,
        }
        if r.fused_ops:
            args["fused_ops"] = ", ".join(r.fused_ops)
        if cost is not None:
            args.update(compute_us=cost.compute_s * 1e6, memory_us=cost.memory_s * 1e6,
                        overhead_us=cost.overhead_s * 1e6, intercore_us=cost.intercore_s * 1e6,
                        bound=cost.bound)
            if cost.utilisation is not None:
                args["array_utilisation"] = round(cost.utilisation, 4)
            if cost.notes:
                args["notes"] = "; ".join(cost.notes)
        events.append({
            "ph": "X",
            "name": f"{r.name} [{r.scope}]" if r.scope else r.name,
            "cat": ENGINE_NAMES[r.engine],
            "pid": pid_base + r.device,
            "tid": r.engine.value,
            "ts": r.start_s * 1e6,
            "dur": r.duration_s * 1e6,
            "args": args,
        })
    return events


def _load_host_trace(host_trace) -> Dict[str, Any]:
    """A host trace as a dict: a path to a JSON file, a dict, or a finished
    ``torch.profiler.profile`` (its ``export_chrome_trace`` output)."""
    if isinstance(host_trace, dict):
        return host_trace
    if isinstance(host_trace, (str, os.PathLike)):
        with open(host_trace) as f:
            return json.load(f)
    if hasattr(host_trace, "export_chrome_trace"):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "host.json")
            host_trace.export_chrome_trace(path)
            with open(path) as f:
                return json.load(f)
    raise TypeError(
        "host_trace must be a torch.profiler.profile, a Chrome-trace dict or the path of a "
        f"Chrome-trace JSON file, got {type(host_trace).__name__}")


def export(prof: "profile", path: Union[str, os.PathLike],
           host_trace: Optional[object] = None) -> str:
    """Writes the trace to ``path`` and returns the path.

    With ``host_trace`` (a finished ``torch.profiler.profile``, or its JSON)
    the device processes are appended to the host trace, so one file shows
    the host's CPU activity (wall-clock) above the modelled device lanes.
    The two clocks are unrelated: device lanes start at modelled time 0.
    """
    meta = {
        "chip": prof.device_spec.chip.name,
        "lnc": prof.device_spec.lnc,
        "time_base": "modelled device seconds x 1e6 (not wall clock)",
        "step_time_ms": prof.step_time_s * 1e3,
        "steps": len(prof.steps),
    }
    if host_trace is None:
        doc: Dict[str, Any] = {"traceEvents": trace_events(prof), "displayTimeUnit": "ms",
                               "otherData": meta}
    else:
        doc = _load_host_trace(host_trace)
        doc.setdefault("traceEvents", []).extend(trace_events(prof, pid_base=MERGED_PID_BASE))
        doc.setdefault("otherData", {})
        if isinstance(doc["otherData"], dict):
            doc["otherData"]["torch_trn3"] = meta
    with open(path, "w") as f:
        json.dump(doc, f)
    return os.fspath(path)
