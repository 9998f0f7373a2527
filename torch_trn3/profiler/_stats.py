"""Aggregates over profiled ops: per-op-group totals and per-step windows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from ..hw.cost import Engine
from ..hw.lnc import LogicalDeviceSpec
from ._records import OpRecord, TensorDesc, shapes_text

#: How :func:`group_ops` keys records.
GROUP_BY = ("shape", "op", "module")


@dataclass
class Step:
    """One profiler step: per device, the modelled window its ops ran in."""

    index: int
    #: device -> (start_s, end_s) on that device's clock.
    windows: Dict[int, Tuple[float, float]] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """The step's modelled time: its longest device window."""
        return max((end - start for start, end in self.windows.values()), default=0.0)


@dataclass
class OpStats:
    """Totals over a group of records (one op, or one op at one shape)."""

    name: str
    engine: Engine
    #: Input shapes of the first record of the group.
    inputs: Tuple[TensorDesc, ...]
    dtype: str
    calls: int = 0
    #: Modelled seconds on the op's engine, summed over calls.
    time_s: float = 0.0
    flops: float = 0.0
    model_flops: float = 0.0
    hbm_bytes: float = 0.0
    #: The chip model's breakdown, summed over calls (see hw.cost.OpCost).
    compute_s: float = 0.0
    memory_s: float = 0.0
    overhead_s: float = 0.0
    intercore_s: float = 0.0
    #: Modelled seconds the calls waited for HBM bandwidth other engines held.
    hbm_stall_s: float = 0.0
    #: Calls that cost nothing, folded into a Tensor Engine op's operand load.
    folded_calls: int = 0
    #: Tensor Engine array fill of the first call (None for other engines).
    utilisation: Optional[float] = None
    notes: Tuple[str, ...] = ()
    #: Module paths the calls ran in, first seen first.
    scopes: Tuple[str, ...] = ()

    @property
    def bound(self) -> str:
        """What sets the time: "compute", "memory", "issue" (fixed per-instruction
        cost dominates) or "intercore" (LNC=8 traffic dominates)."""
        parts = {"compute": self.compute_s, "memory": self.memory_s,
                 "issue": self.overhead_s, "intercore": self.intercore_s}
        return max(parts, key=parts.get)

    @property
    def shapes(self) -> str:
        return shapes_text(self.inputs)

    @property
    def module(self) -> str:
        """The first module path, with "(+N)" when the group spans more."""
        named = [s for s in self.scopes if s]
        if not named:
            return ""
        return named[0] + (f" (+{len(named) - 1})" if len(named) > 1 else "")


def group_ops(records: Iterable[OpRecord], dev: LogicalDeviceSpec, group_by: str = "shape") -> List[OpStats]:
    """Records grouped by op name and input shapes ("shape"), op name ("op")
    or op name and module path ("module"), most modelled time first."""
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by={group_by!r} is invalid: allowed values are {', '.join(GROUP_BY)}")
    groups: Dict[tuple, OpStats] = {}
    scopes: Dict[tuple, Dict[str, None]] = {}
    for r in records:
        if group_by == "shape":
            key = (r.name, r.inputs)
        elif group_by == "op":
            key = (r.name,)
        else:
            key = (r.name, r.scope)
        stats = groups.get(key)
        cost = r.cost(dev)
        if stats is None:
            stats = groups[key] = OpStats(
                r.name, r.engine, r.inputs, r.dtype,
                utilisation=cost.utilisation if cost else None,
                notes=cost.notes if cost else ())
            scopes[key] = {}
        stats.calls += 1
        stats.time_s += r.duration_s
        stats.flops += r.flops
        stats.model_flops += r.model_flops
        stats.hbm_bytes += r.hbm_bytes
        stats.hbm_stall_s += r.hbm_stall_s
        stats.folded_calls += bool(r.folded_into)
        if cost is not None:
            stats.compute_s += cost.compute_s
            stats.memory_s += cost.memory_s
            stats.overhead_s += cost.overhead_s
            stats.intercore_s += cost.intercore_s
        scopes[key][r.scope] = None
    for key, stats in groups.items():
        stats.scopes = tuple(scopes[key])
    return sorted(groups.values(), key=lambda s: -s.time_s)


@dataclass(frozen=True)
class CommOverlap:
    """How much of the collectives' modelled time compute hid, per step and
    device (means over both)."""

    #: Time at least one collective ran (union of the COLLECTIVE lane's ops).
    comm_s: float
    #: Of that, time at least one compute or DMA engine was busy as well.
    hidden_s: float
    #: Time some engine other than the collective cores was busy.
    compute_s: float

    @property
    def exposed_s(self) -> float:
        """Collective time no other engine overlapped: it adds to the step."""
        return self.comm_s - self.hidden_s

    @property
    def hidden_share(self) -> float:
        return self.hidden_s / self.comm_s if self.comm_s > 0 else 0.0


def _union(intervals: List[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """Disjoint, sorted intervals covering ``intervals``."""
    out: List[Tuple[float, float]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _length(intervals: List[Tuple[float, float]]) -> float:
    return sum(end - start for start, end in intervals)


def _intersection(a: List[Tuple[float, float]], b: List[Tuple[float, float]]) -> float:
    """Total length of the overlap of two disjoint sorted interval lists."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def comm_overlap(records: Iterable[OpRecord], steps: int) -> CommOverlap:
    """Collective time hidden behind / exposed beyond other engines' work,
    per device from the records' modelled intervals, as means per step and
    device."""
    by_device: Dict[int, Tuple[list, list]] = {}
    for r in records:
        comm, other = by_device.setdefault(r.device, ([], []))
        (comm if r.engine is Engine.COLLECTIVE else other).append((r.start_s, r.end_s))
    comm_s = hidden_s = compute_s = 0.0
    for comm, other in by_device.values():
        c, o = _union(comm), _union(other)
        comm_s += _length(c)
        compute_s += _length(o)
        hidden_s += _intersection(c, o)
    n = max(1, steps) * max(1, len(by_device))
    return CommOverlap(comm_s / n, hidden_s / n, compute_s / n)


def engine_busy(records: Iterable[OpRecord]) -> Dict[Engine, float]:
    """Modelled busy seconds per engine, summed over devices."""
    busy = {e: 0.0 for e in Engine}
    for r in records:
        busy[r.engine] += r.duration_s
    return busy


# ---------------------------------------------------------------------------
# Plain-text tables
# ---------------------------------------------------------------------------

def fmt_time(seconds: float) -> str:
    """``"1.234 ms"`` / ``"56.7 us"`` / ``"2.000 s"``."""
    if seconds >= 1.0:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e9:.0f} ns"


def fmt_quantity(value: float, unit: str) -> str:
    """``"1.23 GB"``, ``"4.56 TFLOP"`` (decimal prefixes)."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def render_table(headers: List[str], rows: List[List[str]], align: str) -> str:
    """A fixed-width table; ``align`` has one "l"/"r" per column."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(cells):
        out = []
        for cell, width, a in zip(cells, widths, align):
            out.append(cell.ljust(width) if a == "l" else cell.rjust(width))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule] + [line(r) for r in rows])


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------------------
# Collectives: per op and message-size bucket, duration distributions
# ---------------------------------------------------------------------------

@dataclass
class CollectiveStats:
    """Calls of one collective op whose message size falls in one power-of-2
    bucket ``[bucket_bytes, 2 * bucket_bytes)`` (``bucket_bytes == 0``: empty
    messages), with the distribution of their modelled durations."""

    #: Charged op name, e.g. ``"trnccl::all_reduce"``.
    name: str
    #: Lower bound of the size bucket, a power of 2 (0 for 0-byte messages).
    bucket_bytes: int
    #: Modelled seconds of each call, ascending.
    durations_s: Tuple[float, ...] = ()
    #: Message bytes summed over calls (the size each call was charged for).
    total_bytes: float = 0.0

    @property
    def calls(self) -> int:
        return len(self.durations_s)

    @property
    def total_s(self) -> float:
        return sum(self.durations_s)

    @property
    def min_s(self) -> float:
        return self.durations_s[0]

    @property
    def max_s(self) -> float:
        return self.durations_s[-1]

    @property
    def median_s(self) -> float:
        return percentile(self.durations_s, 50)

    @property
    def p90_s(self) -> float:
        return percentile(self.durations_s, 90)

    @property
    def size_range(self) -> str:
        """``"[4 MiB, 8 MiB)"``, or ``"0 B"``."""
        if self.bucket_bytes == 0:
            return "0 B"
        return f"[{fmt_bytes(self.bucket_bytes)}, {fmt_bytes(2 * self.bucket_bytes)})"


def size_bucket(nbytes: float) -> int:
    """Largest power of 2 <= ``nbytes`` (0 for empty messages)."""
    n = int(nbytes)
    return 0 if n <= 0 else 1 << (n.bit_length() - 1)


def percentile(sorted_values: Tuple[float, ...], q: float) -> float:
    """The ``q``-th percentile (0..100) of ascending values, linearly
    interpolated between closest ranks (numpy's default, "linear")."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def group_collectives(records: Iterable[OpRecord]) -> List[CollectiveStats]:
    """Records on the COLLECTIVE engine grouped by op name and message-size
    bucket (the bytes the collective was charged for, ``hbm_bytes`` of its
    record), ordered by op name, then size."""
    groups: Dict[Tuple[str, int], List[Tuple[float, float]]] = {}
    for r in records:
        if r.engine is not Engine.COLLECTIVE:
            continue
        groups.setdefault((r.name, size_bucket(r.hbm_bytes)), []).append(
            (r.duration_s, r.hbm_bytes))
    out = []
    for (name, bucket), calls in sorted(groups.items()):
        out.append(CollectiveStats(name, bucket, tuple(sorted(d for d, _ in calls)),
                                   sum(b for _, b in calls)))
    return out


def fmt_bytes(n: float) -> str:
    """``"512 B"``, ``"4 KiB"``, ``"1.5 MiB"`` (binary prefixes, as buckets are powers of 2)."""
    for prefix, scale in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {prefix}B"
    return f"{n:g} B"
