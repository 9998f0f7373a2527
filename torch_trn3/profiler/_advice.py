"""Rule-based recommendations in plain words.

Each rule reads the profile's per-op groups (with the chip model's cost
breakdown and notes) and engine activity, and speaks only when the thing it
names takes a visible share of the step. A rule returns :class:`Advice`
with the share, so the list is sorted by what it would save at most.
"""
from __future__ import annotations

import re

from dataclasses import dataclass
from typing import List, TYPE_CHECKING

from ..hw.cost import Engine
from ._records import ENGINE_NAMES, base_name

if TYPE_CHECKING:  # pragma: no cover
    from ._profile import profile

#: A rule speaks when what it names takes at least this share of the step.
MIN_SHARE = 0.02
#: Element-wise/reduction ops that are memory-bound: worth fusing above this.
FUSE_SHARE = 0.10
#: The Tensor Engine is "underused" below this activity.
LOW_TENSOR_ACTIVITY = 0.5
#: Lane-engine groups dominated by issue overhead: worth batching above this.
ISSUE_SHARE = 0.10
#: DMA or GpSimd time worth a remark above this.
ENGINE_SHARE = 0.15
#: At most this many matmul shapes get their own array-fill remark.
MAX_FILL_ADVICE = 3


@dataclass(frozen=True)
class Advice:
    """One recommendation; ``share`` is the step-time share it concerns."""

    share: float
    rule: str
    text: str

    def __str__(self) -> str:
        return self.text


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 else f"{x:.1%}"


def _shapes(stats) -> str:
    """The first two input shapes (enough to recognise a matmul)."""
    from ._records import shapes_text

    text = shapes_text(stats.inputs[:2])
    return text + (", ..." if len(stats.inputs) > 2 else "")


def _where(stats) -> str:
    return f" in {stats.module}" if stats.module else ""


def _fill_phrase(note: str) -> str:
    """ "K=64 fills 50% of the 128-row array over 1 K tile(s)" -> "K=64 uses half
    of the 128-row array" (other notes pass through)."""
    words = {"50%": "half", "25%": "a quarter", "75%": "three quarters"}
    if " fills " in note:
        dim, _, rest = note.partition(" fills ")
        pct, _, what = rest.partition(" of the ")
        what = what.split(" over ")[0]
        return f"{dim} uses {words.get(pct, pct)} of the {what}"
    return note


def _pad_phrase(notes) -> str:
    """ "Pad or merge K to a multiple of 512" from the matmul's fill notes:
    the multiple is the array the note names (128 rows for BF16 and the
    split MX array, 512 for the whole MX array, 128 stationary columns)."""
    targets = []
    for note in notes:
        found = re.match(r"([KM])=\d+ fills \d+% of the (\d+)[- ]", note)
        if found:
            targets.append(f"{found.group(1)} to a multiple of {found.group(2)}")
    if not targets:
        return "Give every core more output tiles"
    return "Pad or merge " + " and ".join(dict.fromkeys(targets))


def recommend(prof: "profile") -> List[Advice]:
    """All rules over ``prof``; most important (largest share) first."""
    total = prof.total_time_s * max(1, len(prof.devices))
    if total <= 0:
        return []
    groups = prof.key_averages("shape")
    out: List[Advice] = []

    def share(seconds: float) -> float:
        return seconds / total

    # 1. Matmuls that leave part of the systolic array idle (the top few).
    fill_advice = 0
    for g in groups:
        if fill_advice == MAX_FILL_ADVICE:
            break
        if g.engine is not Engine.TENSOR or g.utilisation is None or g.utilisation >= 0.999:
            continue
        s = share(g.time_s)
        if s < MIN_SHARE:
            continue
        fills = [_fill_phrase(n) for n in g.notes if " fills " in n or "cores" in n]
        if not fills:
            continue
        fill_advice += 1
        out.append(Advice(s, "array_fill", (
            f"{base_name(g.name)} of {_shapes(g)}{_where(g)}: {'; '.join(fills)} "
            f"({_pct(g.utilisation)} of the PEs busy, {_pct(s)} of step time). "
            f"{_pad_phrase(g.notes)} (e.g. fuse heads or batch more rows per matmul).")))

    # 2. FP32 matmuls.
    fp32 = [g for g in groups if g.engine is Engine.TENSOR and g.dtype == "fp32"]
    s = share(sum(g.time_s for g in fp32))
    if fp32 and s >= MIN_SHARE:
        passes = prof.device_spec.chip.tensor.fp32_passes
        top = max(fp32, key=lambda g: g.time_s)
        out.append(Advice(s, "fp32_matmul", (
            f"FP32 matmul runs at 1/{passes} of the BF16 rate and takes {_pct(s)} of "
            f"step time ({sum(g.calls for g in fp32)} calls, e.g. {base_name(top.name)} of "
            f"{_shapes(top)}{_where(top)}); consider torch.autocast(\"{prof.device_type}\", "
            "dtype=torch.bfloat16).")))

    # 3. Memory-bound element-wise / reduction chains.
    lane = [g for g in groups if g.engine in (Engine.SCALAR, Engine.VECTOR) and g.bound == "memory"]
    s = share(sum(g.time_s for g in lane))
    if lane and s >= FUSE_SHARE:
        names = []
        for g in sorted(lane, key=lambda g: -g.time_s):
            if base_name(g.name) not in names:
                names.append(base_name(g.name))
            if len(names) == 4:
                break
        out.append(Advice(s, "fuse_elementwise", (
            f"memory-bound element-wise chain: {len(lane)} Scalar/Vector op shapes "
            f"({', '.join(names)}, ...) take {_pct(s)} of step time, each a full HBM "
            "round trip; torch.compile can fuse it so intermediates stay in SBUF.")))

    # 4. Issue-bound small ops.
    small = [g for g in groups if g.engine is not Engine.TENSOR and g.bound == "issue"]
    s = share(sum(g.time_s for g in small))
    if small and s >= ISSUE_SHARE:
        out.append(Advice(s, "issue_bound", (
            f"{sum(g.calls for g in small)} small ops are dominated by the fixed per-"
            f"instruction issue cost ({_pct(s)} of step time): work on larger tensors "
            "(bigger batch, fused/foreach ops) or let torch.compile fuse them.")))

    # 5. LNC=8 inter-core traffic.
    inter = sum(g.intercore_s for g in groups)
    s = share(inter)
    if inter > 0 and s >= MIN_SHARE:
        out.append(Advice(s, "intercore", (
            f"LNC={prof.device_spec.lnc}: inter-core barriers and traffic (intercore_s) "
            f"take {_pct(s)} of step time; LNC=2 (TRN3_LNC=2) pays none and does more "
            "work per core-second.")))

    # 6. An underused Tensor Engine.
    activity = prof.engine_activity
    te = activity.get("Tensor", 0.0)
    if prof.hardware_flops > 0 and te < LOW_TENSOR_ACTIVITY:
        busiest = max((k for k in activity if k != "Tensor"), key=activity.get)
        out.append(Advice(1.0 - te, "low_tensor_activity", (
            f"the Tensor Engine is busy only {_pct(te)} of the step; {busiest} "
            f"({_pct(activity[busiest])}) and data dependencies set the pace. "
            "Larger matmuls per step (batch, sequence) or fewer non-matmul ops raise MFU.")))

    # 7. Copies and gathers.
    for engine, what, hint in (
        (Engine.DMA, "copies, casts and layout changes on DMA",
         "keep tensors in the compute dtype and avoid .contiguous()/.clone() of large tensors"),
        (Engine.GPSIMD, "gathers, scatters and indexing on GpSimd",
         "prefer dense ops (masking, one-hot matmuls) where the sizes allow"),
    ):
        gs = [g for g in groups if g.engine is engine]
        s = share(sum(g.time_s for g in gs))
        if gs and s >= ENGINE_SHARE:
            top = max(gs, key=lambda g: g.time_s)
            out.append(Advice(s, engine.name.lower(), (
                f"{what} take {_pct(s)} of step time (top: {top.name} of {_shapes(top)}"
                f"{_where(top)}); {hint}.")))

    out.sort(key=lambda a: -a.share)
    return out


__all__ = ["Advice", "recommend", "ENGINE_NAMES"]
