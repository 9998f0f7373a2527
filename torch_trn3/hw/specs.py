"""Chip specs as data: every number the emulator uses, with its source.

The numbers come from ``shared/TRN3_FACTS.md`` (a public Trainium3 deep dive,
December 2025, and the AWS Neuron docs / NKI guide). Code reads these specs;
it never repeats a hardware literal.

Source tags used in the comments:

- ``[deep dive]``  the December 2025 Trainium3 deep dive (TRN3_FACTS "Chip").
- ``[neuron]``     the AWS Neuron docs / NKI guide table (TRN3_FACTS
  "Per-NeuronCore numbers").
- ``[derived]``    computed from stated numbers (the formula is beside it).
- ``[est.]``       not published: a named, documented guess. Change it here
  and every cost follows; nothing else hard-codes it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping, Optional

GIB = 1 << 30
MIB = 1 << 20
KIB = 1 << 10


# ---------------------------------------------------------------------------
# Data formats (not chip numbers, but the byte sizes every HBM cost needs)
# ---------------------------------------------------------------------------

#: OCP MX block size: one E8M0 scale byte per 32 elements [deep dive; OCP MX].
MX_BLOCK_SIZE = 32

#: Bytes per element of each dtype name the model understands. MX formats
#: include their share of the E8M0 scale (1 byte per ``MX_BLOCK_SIZE``).
DTYPE_BYTES: Mapping[str, float] = {
    "fp32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,        # float8_e4m3fn / float8_e5m2
    "mxfp8": 1 + 1 / MX_BLOCK_SIZE,
    "mxfp4": 0.5 + 1 / MX_BLOCK_SIZE,   # E2M1, two per byte
    "fp64": 8,       # host-only dtype; only its bytes are modelled
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}

#: Other spellings (torch's dtype names) accepted for the names above.
DTYPE_ALIASES: Mapping[str, str] = {
    "float32": "fp32", "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16", "half": "fp16",
    "float8_e4m3fn": "fp8", "float8_e5m2": "fp8",
    "float8_e4m3fnuz": "fp8", "float8_e5m2fnuz": "fp8",
    "float64": "fp64", "double": "fp64",
    "long": "int64", "int": "int32", "short": "int16",
}


def canonical_dtype(dtype: str) -> str:
    """``dtype`` as one of the names in :data:`DTYPE_BYTES` (ValueError if unknown).

    Accepts torch spellings (``"bfloat16"``, ``"torch.float32"``) so callers
    can pass ``str(tensor.dtype)`` without their own table.
    """
    name = dtype[6:] if dtype.startswith("torch.") else dtype
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_BYTES:
        raise ValueError(
            f"unknown dtype {dtype!r}: expected one of {sorted(DTYPE_BYTES)} "
            f"(or a torch alias such as {sorted(DTYPE_ALIASES)[:3]})"
        )
    return name


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype`` (MX formats include their scale bytes)."""
    return DTYPE_BYTES[canonical_dtype(dtype)]


# ---------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SystolicArraySpec:
    """One systolic array of the Tensor Engine.

    An instruction keeps a ``rows x cols`` stationary tile (K x M) in the PEs
    and streams up to ``max_moving`` moving columns (N) through it, one column
    per cycle, so the array does ``rows * cols`` MACs per cycle when full.
    """

    #: Contraction (K) rows per pass: the SBUF partitions fed in one cycle.
    rows: int
    #: Stationary (M) columns: output rows produced per pass.
    cols: int
    #: Moving (N) columns one instruction streams (one PSUM bank of fp32).
    max_moving: int

    @property
    def macs_per_cycle(self) -> int:
        return self.rows * self.cols


#: Speed-up charged for a sparsity pattern the chip supports but whose rate
#: is not published: none (the dense MX rate). Inventing one would be a
#: guess; the sparse weight still saves HBM traffic (only kept values move).
UNPUBLISHED_SPARSE_FACTOR = 1.0


@dataclass(frozen=True)
class TensorEngineSpec:
    """The matmul engine: a BF16 array and a low-precision (MX/FP8) array."""

    clock_hz: float
    #: Runs BF16 and FP16 at one column per cycle, FP32 at 1/``fp32_passes``.
    bf16_array: SystolicArraySpec
    #: Runs MXFP8, MXFP4 and plain FP8.
    mx_array: SystolicArraySpec
    #: FP32 matmuls take this many passes through the BF16 array.
    fp32_passes: int
    #: True if the chip has MX hardware; if False MX dtypes are modelled at
    #: the chip's FP8 rate (what a software MX path would at best reach).
    mx_native: bool
    #: Structured-sparsity patterns (kept:group along K) of MX matmuls and
    #: their throughput in dense-equivalent FLOPs relative to dense MX, as
    #: ``((pattern, factor), ...)`` (a tuple keeps the spec hashable). A
    #: factor of ``None`` means the chip supports the pattern but its rate is
    #: not published: the model then claims no speed-up
    #: (:data:`UNPUBLISHED_SPARSE_FACTOR`) and says so in the op's notes.
    sparse_speedup: "tuple[tuple[str, Optional[float]], ...]"
    #: Fixed cycles each matmul instruction costs besides streaming columns.
    issue_overhead_cycles: int
    #: The MX array can run as this many independent arrays of
    #: ``mx_array.rows // mx_split_ways`` K rows each (1: it cannot split).
    #: A matmul whose K is short of the full array's rows keeps every PE
    #: busy by giving each sub-array its own output tiles.
    mx_split_ways: int = 1

    def __post_init__(self):
        if self.mx_split_ways < 1 or self.mx_array.rows % self.mx_split_ways:
            raise ValueError(f"mx_split_ways={self.mx_split_ways} must divide the "
                             f"MX array's {self.mx_array.rows} rows")

    def array_for(self, dtype: str) -> "tuple[SystolicArraySpec, int]":
        """(array, passes) a matmul in ``dtype`` runs on; ValueError if none."""
        name = canonical_dtype(dtype)
        if name in ("bf16", "fp16"):
            return self.bf16_array, 1
        if name == "fp32":
            return self.bf16_array, self.fp32_passes
        if name in ("fp8", "mxfp8", "mxfp4"):
            return self.mx_array, 1
        raise ValueError(
            f"the Tensor Engine has no {dtype!r} matmul: expected one of "
            "['bf16', 'fp16', 'fp32', 'fp8', 'mxfp8', 'mxfp4']"
        )

    def _sparse_entry(self, pattern: str) -> Optional[float]:
        factors = dict(self.sparse_speedup)
        if pattern not in factors:
            raise ValueError(
                f"sparsity {pattern!r} is not modelled on this chip: "
                f"allowed values are {sorted(factors)}"
            )
        return factors[pattern]

    def sparse_factor(self, pattern: str) -> float:
        """Dense-equivalent speed-up the model charges for MX sparsity
        ``pattern`` ("4:8", ...): the published rate, or
        :data:`UNPUBLISHED_SPARSE_FACTOR` when none is published."""
        factor = self._sparse_entry(pattern)
        return UNPUBLISHED_SPARSE_FACTOR if factor is None else factor

    def sparse_rate_published(self, pattern: str) -> bool:
        """True when the speed-up of ``pattern`` is a published figure."""
        return self._sparse_entry(pattern) is not None

    @property
    def mx_sub_array_rows(self) -> int:
        """K rows of one of the MX array's independent sub-arrays."""
        return self.mx_array.rows // self.mx_split_ways

    def peak_flops_per_core(self, dtype: str) -> float:
        """Dense peak FLOP/s of one core: 2 x MACs/cycle x clock / passes."""
        array, passes = self.array_for(dtype)
        return 2.0 * array.macs_per_cycle * self.clock_hz / passes


@dataclass(frozen=True)
class LaneEngineSpec:
    """An engine that streams elements through SIMD lanes (Vector, GpSimd).

    Throughput is ``lanes x clock_hz`` elements per second per core. An
    instruction covers at most ``elems_per_instruction`` elements and costs
    ``issue_overhead_cycles`` on top of its streaming cycles.
    """

    clock_hz: float
    lanes: int
    elems_per_instruction: int
    issue_overhead_cycles: int

    @property
    def elems_per_s(self) -> float:
        return self.lanes * self.clock_hz


@dataclass(frozen=True)
class ScalarEngineSpec(LaneEngineSpec):
    """The 1:1 element-wise engine, with a slower path for transcendentals."""

    #: Transcendental (exp, tanh, ...) results per lane per cycle; plain
    #: element-wise ops do one per lane per cycle.
    transcendental_per_lane_cycle: float = 1.0

    @property
    def transcendental_elems_per_s(self) -> float:
        return self.elems_per_s * self.transcendental_per_lane_cycle


@dataclass(frozen=True)
class DmaSpec:
    """The chip's DMA engines (copies, layout changes; transposes ride free)."""

    engines: int
    #: Aggregate DMA bandwidth of the whole chip, bytes/s.
    bytes_per_s: float
    #: Fixed cost of one DMA op (descriptor setup and queue latency), s.
    issue_overhead_s: float


@dataclass(frozen=True)
class CoreMemorySpec:
    """On-core SRAMs of one NeuronCore."""

    sbuf_bytes: int
    psum_bytes: int
    partitions: int
    psum_banks: int


@dataclass(frozen=True)
class InterCoreSpec:
    """What it costs to spread one op over the cores of a logical device.

    Only devices of more than ``free_lnc`` cores pay: each op pays one
    barrier (``sync_s``) and moves the share of its inputs that lives next to
    other cores, ``(lnc - 1) / lnc`` of them, at ``bytes_per_s``.
    """

    #: Largest LNC whose cores split work without inter-core traffic.
    free_lnc: int
    #: One cross-core barrier per op, s.
    sync_s: float
    #: Bandwidth of core-to-core exchange, bytes/s.
    bytes_per_s: float


@dataclass(frozen=True)
class FlashAttentionSpec:
    """How a flash-attention kernel uses the engines of a core.

    A flash kernel keeps each tile of scores S = QK^T and probabilities
    P = softmax(S) in PSUM/SBUF, so HBM sees only Q, K, V, O and the
    row log-sum-exp. Per score tile the Tensor Engine runs the matmuls, the
    Scalar Engine one exp activation (its scale, the ``-max`` bias and the
    row sum ride in the same instruction), and the Vector Engine the row
    statistics. The kernel is written by software, so these are the
    estimates of a good kernel, not chip facts (hence the defaults here,
    the same for every chip). Used by :func:`torch_trn3.hw.cost.attention_cost`.
    """

    #: Query rows per tile: one per SBUF partition [neuron: 128 partitions].
    #: Also the granularity at which causal masks skip whole blocks.
    q_tile_rows: int = 128
    #: Key columns per QK^T instruction: one 2 KiB PSUM bank of fp32 per
    #: partition [neuron: nc_matmul N <= 512]. One score tile is
    #: ``q_tile_rows x score_tile_cols``.
    score_tile_cols: int = 512
    #: Keys per online-softmax step: the running max and sum are updated and
    #: the O accumulator rescaled once per this many keys [est.: the NKI
    #: flash_fwd kernel's FlashConfig.seq_tile_size default, 2048].
    kv_tile: int = 2048
    #: Vector Engine passes over each score element in the forward: the row
    #: max of every score tile [est.: exp, the row sum and the max
    #: subtraction are one Scalar activation instruction with accumulate].
    forward_vector_passes: float = 1.0
    #: Vector Engine passes over each score element in the backward:
    #: dS = P * (dP - D) as one fused tensor-scalar-tensor instruction
    #: [est.; D = rowsum(dO * O) is per row and counted apart].
    backward_vector_passes: float = 1.0
    #: dtype of the row log-sum-exp the forward saves for the backward
    #: [torch's CPU flash kernel and the NKI kernels keep it in fp32].
    lse_dtype: str = "fp32"


#: The flash-attention kernel model every chip uses (see the class).
FLASH_ATTENTION = FlashAttentionSpec()


# ---------------------------------------------------------------------------
# Chip
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChipSpec:
    """One Trainium package (chip)."""

    name: str
    #: NeuronCores per package (Trn2 and Trn3 both have 8).
    cores_per_chip: int
    #: HBM capacity per chip in bytes. 4 stacks of 12-high HBM3E built from
    #: 24 Gbit dies = 4 x 36 GiB = 144 GiB (the Neuron docs table says GiB).
    hbm_bytes: int
    #: HBM bandwidth per chip, bytes/s (Trn3 ~4.9 TB/s est., Trn2 ~2.9 TB/s).
    hbm_bytes_per_s: float
    tensor: TensorEngineSpec
    vector: LaneEngineSpec
    scalar: ScalarEngineSpec
    gpsimd: LaneEngineSpec
    dma: DmaSpec
    core_memory: CoreMemorySpec
    intercore: InterCoreSpec
    #: Scale-up (NeuronLink) bandwidth per chip per direction, bytes/s. The
    #: torus and switched system models (:mod:`.systems`) build their links
    #: from it; scale-out (EFA) lives in :mod:`.systems` with its options.
    scale_up_bytes_per_s: float
    #: How a flash-attention kernel uses the engines (software estimates).
    flash_attention: FlashAttentionSpec = FLASH_ATTENTION
    #: Published BF16 Tensor Engine peak per NeuronCore, FLOP/s: ~79 TFLOPS
    #: for NeuronCore-v3 and v4 [neuron: neuron-core-v3/v4 pages]. AWS and
    #: torchtitan (``get_peak_flops``: 79e12 x LNC) quote MFU against it; the
    #: model's time uses the array-derived rate (2 x 128 x 128 x 2.4 GHz =
    #: 78.6 TFLOPS per core), so the profiler reports MFU against both.
    published_bf16_flops_per_core: float = 79e12

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s of the whole chip in ``dtype``."""
        return self.cores_per_chip * self.tensor.peak_flops_per_core(dtype)


# Numbers shared by both chips, named once.

#: 128 SBUF partitions feed the arrays' K rows [neuron].
_PARTITIONS = 128
#: BF16 array 128x128 PEs, N <= 512 per instruction [neuron; NKI nc_matmul].
_BF16_ARRAY = SystolicArraySpec(rows=_PARTITIONS, cols=128, max_moving=512)
#: Tensor Engine clock 2.4 GHz on both generations [neuron].
_PE_CLOCK_HZ = 2.4e9
#: 79 BF16 vs 20 FP32 TFLOPS per core -> FP32 is 4 passes [neuron].
_FP32_PASSES = 4
#: Fixed cycles per matmul instruction [est.: NKI advises N=512 to amortise
#: it; 64 cycles = 12.5% of a 512-column instruction].
_PE_ISSUE_CYCLES = 64
#: Lanes of Vector/Scalar: one per SBUF partition [est.].
_ACT_LANES = _PARTITIONS
#: Elements per Vector/Scalar instruction: 128 partitions x 512 free
#: elements (one 2 KiB PSUM bank of fp32 per partition) [est.].
_ACT_ELEMS_PER_INSTRUCTION = _PARTITIONS * 512
#: Fixed cycles per Vector/Scalar/GpSimd instruction [est., like the PE's].
_ACT_ISSUE_CYCLES = 64
#: GpSimd: 8 programmable 512-bit vector processors per core [est.: the
#: NeuronCore-v2 architecture page; Trn3 only says "several"], 16 fp32 lanes
#: each -> 128 lanes.
_GPSIMD_LANES = 8 * (512 // 32)
#: GpSimd clock [est.: not published; taken equal to the Scalar clock].
_GPSIMD_CLOCK_HZ = 1.2e9
#: Scalar Engine clock 1.2 GHz on both generations [neuron].
_SCALAR_CLOCK_HZ = 1.2e9
#: Trn2 exp results per lane per cycle [est.: transcendental = 4 passes].
_TRN2_EXP_PER_LANE_CYCLE = 0.25
#: Trn3 exp throughput per cycle is 4x Trn2's [deep dive].
_TRN3_EXP_SPEEDUP = 4
#: PSUM: 128 partitions x 8 banks x 2 KiB = 2 MiB on both [neuron].
_PSUM_BANKS = 8
_PSUM_BYTES = _PARTITIONS * _PSUM_BANKS * 2 * KIB
#: 128 DMA engines on both generations [neuron].
_DMA_ENGINES = 128
#: Fixed cost of one DMA op [est.: order of a DMA queue round trip].
_DMA_ISSUE_S = 1e-6
#: Inter-core cost of spreading one op over LNC=8 [est.]: LNC=1/2 "always
#: perform better than LNC=8" [deep dive], so pairs are modelled as free;
#: one barrier per op; the exchange goes through HBM (a write and a read),
#: so it runs at half the chip's HBM bandwidth (set per chip below).
_INTERCORE_FREE_LNC = 2
_INTERCORE_SYNC_S = 1e-6


#: Trn3 HBM bandwidth per chip [deep dive est. ~1.7x Trn2's; neuron table
#: ~4.9 TB/s; the NKI guide says 4.7].
_TRN3_HBM_BYTES_PER_S = 4.9e12
#: Trn2 HBM bandwidth per chip [neuron: ~2.9 TB/s].
_TRN2_HBM_BYTES_PER_S = 2.9e12
#: Scale-up (NeuronLink v4) per chip per direction [deep dive: 1.2 TB/s].
_TRN3_SCALE_UP_BYTES_PER_S = 1.2e12
#: Scale-up (NeuronLink v3) per chip per direction [neuron: 1.28 TB/s per
#: Trainium2 chip, counted over both directions as the 2.56 TB/s the same
#: docs give Trainium3 (twice Trn2's); 1.28 / 2 = 0.64 TB/s each way].
_TRN2_SCALE_UP_BYTES_PER_S = 1.28e12 / 2

TRN3 = ChipSpec(
    name="Trainium3",
    cores_per_chip=8,                    # [deep dive]
    hbm_bytes=144 * GIB,                 # [neuron] (deep dive says "144 GB")
    hbm_bytes_per_s=_TRN3_HBM_BYTES_PER_S,
    tensor=TensorEngineSpec(
        clock_hz=_PE_CLOCK_HZ,
        bf16_array=_BF16_ARRAY,          # BF16 array unchanged [deep dive]
        # 512x128 MXFP8/MXFP4 array [deep dive]; contraction up to 512 per
        # nc_matmul_mx [neuron] -> 2*512*128*2.4e9 = 314.6 TFLOPS/core (~315).
        mx_array=SystolicArraySpec(rows=512, cols=128, max_moving=512),
        # "The 512x128 array can be split into 4 independent 128x128 arrays
        # that push four results per cycle into PSUM" [deep dive].
        mx_split_ways=4,
        fp32_passes=_FP32_PASSES,
        mx_native=True,
        # MXFP8 4:8 and 4:16 give 4x dense FLOPs [deep dive]. 4:12, 2:8, 2:4,
        # 1:4 and 1:2 are supported by NeuronCore-v4 [neuron] but their rate
        # is not published: None (charged at the dense MX rate, see above).
        sparse_speedup=(("4:8", 4.0), ("4:16", 4.0), ("4:12", None), ("2:8", None),
                        ("2:4", None), ("1:4", None), ("1:2", None)),
        issue_overhead_cycles=_PE_ISSUE_CYCLES,
    ),
    vector=LaneEngineSpec(
        clock_hz=1.2e9,                  # [neuron]; = 1.25 x 0.96 [deep dive]
        lanes=_ACT_LANES,
        elems_per_instruction=_ACT_ELEMS_PER_INSTRUCTION,
        issue_overhead_cycles=_ACT_ISSUE_CYCLES,
    ),
    scalar=ScalarEngineSpec(
        clock_hz=_SCALAR_CLOCK_HZ,
        lanes=_ACT_LANES,
        elems_per_instruction=_ACT_ELEMS_PER_INSTRUCTION,
        issue_overhead_cycles=_ACT_ISSUE_CYCLES,
        transcendental_per_lane_cycle=_TRN2_EXP_PER_LANE_CYCLE * _TRN3_EXP_SPEEDUP,
    ),
    gpsimd=LaneEngineSpec(
        clock_hz=_GPSIMD_CLOCK_HZ,
        lanes=_GPSIMD_LANES,
        elems_per_instruction=_ACT_ELEMS_PER_INSTRUCTION,
        issue_overhead_cycles=_ACT_ISSUE_CYCLES,
    ),
    dma=DmaSpec(
        engines=_DMA_ENGINES,
        bytes_per_s=4.9e12,              # [neuron] per chip
        issue_overhead_s=_DMA_ISSUE_S,
    ),
    core_memory=CoreMemorySpec(
        sbuf_bytes=32 * MIB,             # [neuron]
        psum_bytes=_PSUM_BYTES,
        partitions=_PARTITIONS,
        psum_banks=_PSUM_BANKS,
    ),
    intercore=InterCoreSpec(
        free_lnc=_INTERCORE_FREE_LNC,
        sync_s=_INTERCORE_SYNC_S,
        bytes_per_s=_TRN3_HBM_BYTES_PER_S / 2,   # [est.] half of HBM (see above)
    ),
    scale_up_bytes_per_s=_TRN3_SCALE_UP_BYTES_PER_S,
)

#: Trainium2 is Trainium3 with the fields below changed; everything not
#: named (cores, BF16 array, PE and Scalar clocks, PSUM, DMA engines, issue
#: costs) is the same on both generations [neuron table].
TRN2 = replace(
    TRN3,
    name="Trainium2",
    hbm_bytes=96 * GIB,                  # [neuron] (deep dive says "96 GB")
    hbm_bytes_per_s=_TRN2_HBM_BYTES_PER_S,
    tensor=replace(
        TRN3.tensor,
        # FP8 runs at 2x BF16 (~1,299 vs ~667 TFLOPS/chip [neuron]), half of
        # Trn3's MX rate [deep dive]. Modelled as two K rows per PE per cycle
        # [est.: "double row" FP8 mode], i.e. a 256x128 contraction.
        mx_array=SystolicArraySpec(rows=2 * _PARTITIONS, cols=128, max_moving=512),
        # No split of the FP8 array is stated for Trainium2 [est.: none].
        mx_split_ways=1,
        mx_native=False,                 # MX is new in NeuronCore-v4 [neuron]
        # NeuronCore-v3 lists the same patterns [neuron], but Trn2 has no MX
        # matmul and no sparse rate is published [est.: not modelled].
        sparse_speedup=(),
    ),
    vector=replace(TRN3.vector, clock_hz=0.96e9),                       # [neuron]
    scalar=replace(TRN3.scalar, transcendental_per_lane_cycle=_TRN2_EXP_PER_LANE_CYCLE),
    dma=replace(TRN3.dma, bytes_per_s=3.5e12),                          # [neuron] per chip
    # [neuron] "24-28 MiB": the low end.
    core_memory=replace(TRN3.core_memory, sbuf_bytes=24 * MIB),
    intercore=replace(TRN3.intercore, bytes_per_s=_TRN2_HBM_BYTES_PER_S / 2),  # [est.]
    scale_up_bytes_per_s=_TRN2_SCALE_UP_BYTES_PER_S,
)

CHIPS = {"trn3": TRN3, "trn2": TRN2}

#: Environment variable that selects the emulated chip.
CHIP_ENV_VAR = "TRN3_CHIP"
DEFAULT_CHIP = "trn3"


def get_chip(name: str) -> ChipSpec:
    """The spec called ``name`` ("trn3" or "trn2"); ValueError otherwise."""
    try:
        return CHIPS[name]
    except KeyError:
        raise ValueError(
            f"unknown chip {name!r}: expected one of {sorted(CHIPS)}"
        ) from None


def chip_from_env(environ: Optional[Mapping[str, str]] = None) -> ChipSpec:
    """The chip named by ``$TRN3_CHIP`` (default "trn3").

    Raises ValueError naming the variable and the allowed values, so a typo
    fails at import instead of silently emulating the wrong chip.
    """
    env = os.environ if environ is None else environ
    name = env.get(CHIP_ENV_VAR, DEFAULT_CHIP).strip().lower() or DEFAULT_CHIP
    if name not in CHIPS:
        raise ValueError(
            f"{CHIP_ENV_VAR}={env.get(CHIP_ENV_VAR)!r} is not a known chip: "
            f"allowed values are {sorted(CHIPS)}"
        )
    return CHIPS[name]


#: Elements per partition a fused element-wise kernel keeps on chip per
#: buffer while it streams tiles through SBUF [est.: one 2 KiB PSUM bank of
#: fp32, the free size NKI kernels tile element-wise work by]. Used for the
#: SBUF working set of compiled kernels (torch_trn3.compiler).
SBUF_STREAM_TILE_ELEMS = 512
