"""A PNG for readers who would rather look: per-engine timeline of the
profiled steps (top) and engine activity per device (bottom).

Needs matplotlib (``pip install matplotlib``, or the ``plot`` extra); the
rest of the profiler does not.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Union

from ..hw.cost import Engine
from ._records import ENGINE_NAMES

if TYPE_CHECKING:  # pragma: no cover
    from ._profile import profile

#: One colour per engine (matplotlib's tab10).
ENGINE_COLOURS = {
    Engine.TENSOR: "#1f77b4",
    Engine.VECTOR: "#2ca02c",
    Engine.SCALAR: "#ff7f0e",
    Engine.GPSIMD: "#9467bd",
    Engine.DMA: "#8c564b",
    Engine.COLLECTIVE: "#d62728",
}


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(
            "profile.plot() needs matplotlib, an optional dependency of torch_trn3: "
            "pip install matplotlib (or pip install 'torch_trn3[plot]'). "
            "summary() and export_chrome_trace() work without it."
        ) from e
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot(prof: "profile", path: Union[str, os.PathLike], title: Optional[str] = None) -> str:
    """Draws the timeline and activity chart of ``prof`` into ``path`` (PNG)."""
    plt = _pyplot()
    devices = prof.devices
    lanes = [(d, e) for d in devices for e in Engine]
    fig, (ax_t, ax_a) = plt.subplots(
        2, 1, figsize=(12, 2.0 + 0.35 * max(1, len(lanes)) + 0.3 * max(1, len(devices)) * 2),
        gridspec_kw={"height_ratios": [max(3, len(lanes)), max(2, 2 * len(devices))]})
    # Timeline: one horizontal lane per (device, engine), times in ms.
    origin = min((r.start_s for r in prof.records), default=0.0)
    bars = {lane: [] for lane in lanes}
    for r in prof.records:
        bars[(r.device, r.engine)].append(((r.start_s - origin) * 1e3, r.duration_s * 1e3))
    labels = []
    for i, (d, e) in enumerate(lanes):
        if bars[(d, e)]:
            ax_t.broken_barh(bars[(d, e)], (i - 0.4, 0.8), facecolors=ENGINE_COLOURS[e],
                             linewidth=0)
        labels.append(f"{prof.device_type}:{d} {ENGINE_NAMES[e]}")
    for step in prof.steps[1:]:
        start = min(s for s, _ in step.windows.values()) if step.windows else None
        if start is not None:
            ax_t.axvline((start - origin) * 1e3, color="grey", linestyle=":", linewidth=0.8)
    ax_t.set_yticks(range(len(lanes)))
    ax_t.set_yticklabels(labels)
    ax_t.invert_yaxis()
    ax_t.set_xlabel("modelled time (ms)")
    ax_t.set_title(title or (
        f"{prof.device_spec.chip.name} LNC={prof.device_spec.lnc}: step {prof.step_time_s * 1e3:.3f} ms"
        f" modelled, MFU {prof.mfu:.1%}, {len(prof.steps)} step(s)"))
    # Activity: grouped bars, % of step time each engine is busy.
    width = 0.8 / max(1, len(devices))
    for j, d in enumerate(devices):
        act = prof.device_engine_activity(d)
        xs = [e.value + j * width for e in Engine]
        ax_a.bar(xs, [act[ENGINE_NAMES[e]] * 100 for e in Engine], width=width,
                 color=[ENGINE_COLOURS[e] for e in Engine], edgecolor="black", linewidth=0.3)
    ax_a.set_xticks([e.value + 0.4 - width / 2 for e in Engine])
    ax_a.set_xticklabels([ENGINE_NAMES[e] for e in Engine])
    ax_a.set_ylabel("activity (% of step)")
    ax_a.set_ylim(0, 100)
    ax_a.grid(axis="y", linewidth=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
