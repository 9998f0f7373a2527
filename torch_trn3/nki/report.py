"""The per-kernel summary: modelled time, engine utilisation, where it is bound.

Why: a kernel author tuning tiles needs to know which engine limits the
kernel (the Tensor Engine at full rate is the goal of a matmul; a DMA-bound
kernel needs bigger tiles or more reuse) and how far from the Tensor
Engine's peak it runs, the figures Neuron Explorer's summary page shows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict


@dataclass
class KernelReport:
    """Summary of one ``@nki.jit`` call (``torch_trn3.nki.last_kernel_report()``).

    ``elapsed_s`` is modelled device time from the kernel's start to its last
    instruction's end; ``busy_s`` the seconds each engine executed its
    instructions (without waits); ``utilisation`` their ratio.
    """

    kernel: str
    device: str
    chip: str
    elapsed_s: float
    busy_s: Dict[str, float]
    instructions: Dict[str, int]
    flops: float
    hbm_bytes: float
    peak_bf16_flops: float
    sbuf_peak_bytes_per_partition: int = 0
    psum_peak_banks: int = 0
    utilisation: Dict[str, float] = field(init=False)

    def __post_init__(self):
        t = self.elapsed_s
        self.utilisation = {e: (b / t if t > 0 else 0.0) for e, b in self.busy_s.items()}

    @property
    def bound(self) -> str:
        """The engine busy the longest ("tensor", "dma", ...): what limits the kernel."""
        return max(self.busy_s, key=self.busy_s.get)

    @property
    def tensor_engine_peak_fraction(self) -> float:
        """Achieved FLOP/s over one core's BF16 Tensor Engine peak."""
        return self.flops / (self.elapsed_s * self.peak_bf16_flops) if self.elapsed_s > 0 else 0.0

    def __str__(self) -> str:
        lines = [f"NKI kernel {self.kernel} on {self.device} ({self.chip}): "
                 f"{self.elapsed_s * 1e6:.2f} us modelled, bound by {self.bound}, "
                 f"{100 * self.tensor_engine_peak_fraction:.1f}% of BF16 Tensor Engine peak"]
        for engine, busy in self.busy_s.items():
            lines.append(f"  {engine:<7} {self.instructions[engine]:>7} instr  {busy * 1e6:>12.2f} us busy  "
                         f"{100 * self.utilisation[engine]:5.1f}%")
        lines.append(f"  HBM {self.hbm_bytes / 1e6:.3f} MB, SBUF peak {self.sbuf_peak_bytes_per_partition} B/partition, "
                     f"PSUM peak {self.psum_peak_banks} banks")
        return "\n".join(lines)
