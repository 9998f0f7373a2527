"""``torch_trn3.compiler.explain(fn, *args)``: what the compiler made of a
function, in the chip model's terms.

It reports dynamo's graphs and graph breaks (with their reasons), then runs
the compiled function once more under the profiler and lists every op of
that run in order: each compiled kernel with the ATen ops fused into it, the
engine it runs on, its modelled Trainium3 time, its HBM traffic and its SBUF
working set; and the ATen ops that run as themselves (extern matmuls,
attention, collectives, and eager code between graphs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

from ..profiler import profile
from ..profiler._records import ENGINE_NAMES, OpRecord, is_compiled


@dataclass(frozen=True)
class KernelRow:
    """One op of the explained run."""

    name: str
    graph: str
    engine: str
    time_s: float
    hbm_bytes: float
    #: SBUF bytes kept on chip at once (compiled kernels only).
    working_set: Optional[int]
    fused_ops: Tuple[str, ...]


@dataclass
class CompileReport:
    """The result of :func:`explain`; ``str()`` prints it."""

    backend: str
    graph_count: int
    graph_breaks: List[str] = field(default_factory=list)
    rows: List[KernelRow] = field(default_factory=list)

    @property
    def kernels(self) -> List[KernelRow]:
        """Only the compiled kernels."""
        return [r for r in self.rows if r.fused_ops]

    @property
    def total_time_s(self) -> float:
        return sum(r.time_s for r in self.rows)

    @property
    def hbm_bytes(self) -> float:
        return sum(r.hbm_bytes for r in self.rows)

    def __str__(self) -> str:
        lines = [f"torch_trn3 compile report (backend={self.backend!r}): {self.graph_count} graph(s), "
                 f"{len(self.graph_breaks)} graph break(s). Times are modelled Trainium3 time."]
        for i, reason in enumerate(self.graph_breaks, 1):
            lines.append(f"  graph break {i}: {reason}")
        header = f"{'graph':<22} {'op':<44} {'engine':<7} {'time us':>9} {'HBM KiB':>10} {'SBUF KiB':>9}  fused ATen ops"
        lines += ["", header, "-" * len(header)]
        for r in self.rows:
            sbuf = f"{r.working_set / 1024:9.1f}" if r.working_set is not None else f"{'':>9}"
            name = r.name if len(r.name) <= 44 else r.name[:41] + "..."
            lines.append(f"{r.graph or '(eager/extern)':<22} {name:<44} {r.engine:<7} "
                         f"{r.time_s * 1e6:9.2f} {r.hbm_bytes / 1024:10.1f} {sbuf}  {', '.join(r.fused_ops)}")
        lines.append(f"{len(self.rows)} ops ({len(self.kernels)} compiled kernels): "
                     f"{self.total_time_s * 1e6:.2f} us busy, {self.hbm_bytes / 2**20:.2f} MiB HBM")
        return "\n".join(lines)


def _row(record: OpRecord) -> KernelRow:
    from .kernel_info import KERNELS
    from .runtime import last_cost

    graph, working_set = "", None
    if is_compiled(record.name):
        kernel = KERNELS.get(record.name.rpartition("+")[2])
        graph = kernel.graph if kernel else ""
        found = last_cost(record.name)
        working_set = found[1] if found else None
    return KernelRow(record.name, graph, ENGINE_NAMES[record.engine], record.duration_s,
                     record.hbm_bytes, working_set, record.fused_ops)


def _break_reason(reason) -> str:
    frame = reason.user_stack[-1] if reason.user_stack else None
    where = f" ({frame.filename}:{frame.lineno})" if frame is not None else ""
    return f"{reason.reason.strip().splitlines()[0]}{where}"


def explain(fn, *args, backend: str = "trn3", **kwargs) -> CompileReport:
    """Compiles ``fn`` with ``backend``, runs it on ``args``/``kwargs`` (trn
    tensors) and reports its graphs, graph breaks and kernels. Like
    ``torch._dynamo.explain``, which it uses, it resets dynamo's caches."""
    dynamo = torch._dynamo.explain(fn)(*args, **kwargs)
    compiled = torch.compile(fn, backend=backend)
    compiled(*args, **kwargs)  # compile (and warm up) outside the measured run
    with profile(with_modules=False) as prof:
        compiled(*args, **kwargs)
    return CompileReport(backend, dynamo.graph_count,
                         [_break_reason(r) for r in dynamo.break_reasons if r.graph_break],
                         [_row(r) for r in prof.records])
