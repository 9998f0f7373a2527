"""Cost of one NKI ISA instruction on one NeuronCore, from the chip spec.

Why a second cost model next to :mod:`torch_trn3.hw.cost`: that one prices
whole ATen ops (a matmul tiled by the compiler); an NKI kernel issues the
instructions itself, so each one is priced as the engine executes it:

- Tensor Engine (``nc_matmul``): the stationary tile [K, M] sits in the
  array, the moving tile streams N columns, one per cycle (FP32: the spec's
  ``fp32_passes`` per column), plus the spec's fixed issue cycles. MX
  matmuls (``nc_matmul_mx``) run on the MX array (K up to its rows).
- Vector / Scalar / GpSimd: one lane per partition streams the elements of
  its partition, one per cycle (Scalar transcendentals at the spec's rate),
  with the spec's issue cycles as the minimum initiation interval MIN_II:
  ``max(MIN_II, N) + MIN_II`` cycles, the estimate the NKI ISA docs give
  (``nki.isa.activation_reduce``, ``tensor_scalar_reduce``: "max(MIN_II, N)
  + MIN_II engine cycles, MIN_II roughly 64").
- DMA: bytes over one core's share of the chip's DMA bandwidth (a kernel
  runs on one NeuronCore) plus the spec's fixed cost per DMA divided by the
  core's DMA queues (``dma.engines / cores_per_chip``, 16): the fixed cost is
  a latency that the queues overlap (the compiler spreads DMAs over them),
  so back-to-back DMAs occupy the DMA lane for 1/16 of it each. Only bytes
  that touch HBM count as HBM traffic (``memory_s``), so the device timeline
  shares HBM bandwidth with the other engines' traffic.

All numbers come from :mod:`torch_trn3.hw.specs`; nothing here is a
hardware literal.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .cost import Engine
from .specs import ChipSpec


@dataclass(frozen=True)
class IsaLimits:
    """Tile limits of one NeuronCore as NKI states them (``nl.tile_size``)."""

    #: Partitions of SBUF/PSUM, the largest partition dim of a tile (``pmax``).
    pmax: int
    #: Largest stationary free size of a matmul (``gemm_stationary_fmax``).
    gemm_stationary_fmax: int
    #: Largest moving free size of a matmul (``gemm_moving_fmax``).
    gemm_moving_fmax: int
    #: Largest contraction (partition) size of an MX matmul, in elements.
    mx_contraction_max: int
    #: Bytes per partition of one PSUM bank, and the number of banks.
    psum_bank_bytes: int
    psum_banks: int
    #: SBUF bytes per partition.
    sbuf_bytes_per_partition: int
    #: Largest free size of one Vector/Scalar instruction per partition
    #: (``bn_stats_fmax``: elements per instruction over the lanes).
    lane_fmax: int

    @property
    def psum_bank_fmax(self) -> int:
        """FP32 elements per partition of one PSUM bank (``psum_fmax``)."""
        return self.psum_bank_bytes // 4

    @property
    def psum_bytes_per_partition(self) -> int:
        return self.psum_bank_bytes * self.psum_banks


@lru_cache(maxsize=None)
def limits(chip: ChipSpec) -> IsaLimits:
    """The :class:`IsaLimits` ``chip``'s spec implies."""
    mem = chip.core_memory
    bf16 = chip.tensor.bf16_array
    return IsaLimits(
        pmax=mem.partitions,
        gemm_stationary_fmax=bf16.cols,
        gemm_moving_fmax=bf16.max_moving,
        mx_contraction_max=chip.tensor.mx_array.rows,
        psum_bank_bytes=mem.psum_bytes // (mem.partitions * mem.psum_banks),
        psum_banks=mem.psum_banks,
        sbuf_bytes_per_partition=mem.sbuf_bytes // mem.partitions,
        lane_fmax=chip.vector.elems_per_instruction // chip.vector.lanes,
    )


@dataclass(frozen=True)
class InstructionCost:
    """What one instruction costs: the fields ``_C._charge`` schedules."""

    engine: Engine
    seconds: float
    flops: float = 0.0
    #: Bytes of HBM this instruction reads or writes.
    hbm_bytes: float = 0.0
    #: ``hbm_bytes`` at the device's full HBM bandwidth (0: no HBM traffic).
    memory_s: float = 0.0
    #: Work of the instruction that overlaps its HBM traffic.
    compute_s: float = 0.0


def _tensor_passes(chip: ChipSpec, dtype: str) -> int:
    """Passes per moving column: FP32 takes ``fp32_passes``, BF16/FP16/FP8 one."""
    return chip.tensor.fp32_passes if dtype == "fp32" else 1


@lru_cache(maxsize=4096)
def nc_matmul(chip: ChipSpec, k: int, m: int, n: int, dtype: str) -> InstructionCost:
    """``dst[M, N] = stationary[K, M].T @ moving[K, N]`` on the BF16 array:
    ``N x passes + issue`` cycles at the Tensor Engine clock."""
    te = chip.tensor
    cycles = n * _tensor_passes(chip, dtype) + te.issue_overhead_cycles
    return InstructionCost(Engine.TENSOR, cycles / te.clock_hz, flops=2.0 * k * m * n)


@lru_cache(maxsize=4096)
def nc_matmul_mx(chip: ChipSpec, k: int, m: int, n: int) -> InstructionCost:
    """An MX matmul of ``k`` contraction elements on the MX array: N columns
    plus issue cycles (the array takes up to ``mx_array.rows`` K per pass)."""
    te = chip.tensor
    passes = -(-k // te.mx_array.rows)
    cycles = n * passes + te.issue_overhead_cycles
    return InstructionCost(Engine.TENSOR, cycles / te.clock_hz, flops=2.0 * k * m * n)


def _lane_spec(chip: ChipSpec, engine: Engine):
    return {Engine.VECTOR: chip.vector, Engine.SCALAR: chip.scalar, Engine.GPSIMD: chip.gpsimd}[engine]


@lru_cache(maxsize=4096)
def lane(chip: ChipSpec, engine: Engine, free_elems: int, passes: float = 1.0,
         transcendental: bool = False) -> InstructionCost:
    """An instruction streaming ``free_elems`` per partition through the lanes of
    ``engine``: ``max(MIN_II, N) + MIN_II`` cycles (N scaled by ``passes`` and,
    for Scalar transcendentals, by the spec's transcendental rate)."""
    spec = _lane_spec(chip, engine)
    n = free_elems * passes
    if transcendental and engine is Engine.SCALAR:
        n = n / chip.scalar.transcendental_per_lane_cycle
    min_ii = spec.issue_overhead_cycles
    cycles = max(min_ii, n) + min_ii
    return InstructionCost(engine, cycles / spec.clock_hz)


def core_dma_queues(chip: ChipSpec) -> int:
    """DMA queues (engines) one NeuronCore drives: its share of the chip's."""
    return max(1, chip.dma.engines // chip.cores_per_chip)


def core_dma_bytes_per_s(chip: ChipSpec) -> float:
    """DMA bandwidth one NeuronCore's queues reach: its share of the chip's."""
    return chip.dma.bytes_per_s / chip.cores_per_chip


@lru_cache(maxsize=4096)
def dma(chip: ChipSpec, nbytes: int, hbm_bytes: int, hbm_bytes_per_s: float) -> InstructionCost:
    """One DMA of ``nbytes``: bytes over one core's DMA bandwidth plus the spec's
    fixed DMA cost shared by the core's DMA queues. ``hbm_bytes`` of it touch HBM (read or written), priced at the
    device's HBM bandwidth ``hbm_bytes_per_s`` for the shared-HBM timeline."""
    transfer_s = nbytes / core_dma_bytes_per_s(chip)
    seconds = chip.dma.issue_overhead_s / core_dma_queues(chip) + transfer_s
    memory_s = hbm_bytes / hbm_bytes_per_s if hbm_bytes else 0.0
    return InstructionCost(Engine.DMA, seconds, hbm_bytes=float(hbm_bytes), memory_s=memory_s,
                           compute_s=transfer_s if hbm_bytes else 0.0)
