"""Per-op cost: which engine runs an op and how long it takes.

Every op is a roofline plus fixed costs::

    time_s = max(compute_s, memory_s) + overhead_s + intercore_s

- ``compute_s``: the engine's busy time at the spec's clocks and widths,
  split over the device's LNC cores.
- ``memory_s``: the op's HBM traffic at the device's share of HBM bandwidth
  (operands are read once and results written once: SBUF reuse is assumed
  perfect, so this is a lower bound on traffic).
- ``overhead_s``: the fixed issue cost of each instruction the busiest core
  runs (DMA: one fixed cost per transfer). It is not hidden by the roofline
  because the engine stalls while it issues.
- ``intercore_s``: on a device of more cores than ``chip.intercore.free_lnc``
  (LNC=8), one barrier per op plus moving the share ``(lnc - 1) / lnc`` of
  the op's inputs that lives next to other cores. This is why LNC=8 never
  does more work per core-second than LNC=2: compute, HBM and issue
  core-seconds are at best equal, and LNC=8 alone pays this term.

All numbers come from the device's :class:`~.specs.ChipSpec`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from math import ceil
from typing import Optional, Tuple

from .lnc import LogicalDeviceSpec
from .specs import canonical_dtype, dtype_bytes

_MX_DTYPES = ("mxfp8", "mxfp4")


class Engine(enum.Enum):
    """The unit an op is charged to. ``value`` is a small int index."""

    def __new__(cls, index: int, doc: str):
        member = object.__new__(cls)
        member._value_ = index
        member.__doc__ = doc
        return member

    TENSOR = (0, "Systolic-array matmuls (mm, bmm, addmm, linear, conv, "
                 "_scaled_mm, _grouped_mm): out = stationary^T @ moving, "
                 "FP32 accumulation in PSUM over 128-row K tiles.")
    VECTOR = (1, "Ops where each output depends on many inputs: reductions, "
                 "softmax, layer/batch-norm statistics, scans.")
    SCALAR = (2, "1:1 element-wise ops (arithmetic, activations, exp); "
                 "transcendentals run at the spec's transcendental rate.")
    GPSIMD = (3, "General-purpose SIMD cores: gathers, scatters, indexing, "
                 "sort and custom ops (anything that is not a dense pattern).")
    DMA = (4, "DMA engines: copies, dtype casts by copy, concatenation and "
              "layout changes; transposes ride along at no compute cost.")
    COLLECTIVE = (5, "Dedicated collective-communication cores, separate "
                     "from compute, so collectives overlap compute.")


@dataclass(frozen=True)
class OpCost:
    """The modelled cost of one op on one logical device."""

    engine: Engine
    #: Arithmetic operations (matmul: 2*m*n*k dense-equivalent; lane
    #: engines: one per element processed; DMA: 0).
    flops: float
    #: Bytes read from plus written to HBM.
    hbm_bytes: int
    compute_s: float
    memory_s: float
    overhead_s: float
    intercore_s: float
    #: ``max(compute_s, memory_s) + overhead_s + intercore_s``.
    time_s: float
    #: Tensor Engine only: fraction of the array's PEs doing useful work
    #: while it streams (K fill x M fill).
    utilisation: Optional[float] = None
    #: Instructions issued on the busiest core (DMA: transfers).
    instructions: int = 0
    #: Plain-English remarks, e.g. "K=64 fills 50% of the 128-row array".
    notes: Tuple[str, ...] = ()

    @property
    def bound(self) -> str:
        """"compute" or "memory": which side of the roofline sets the time."""
        return "memory" if self.memory_s > self.compute_s else "compute"


def _zero_cost(engine: Engine) -> OpCost:
    return OpCost(engine, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)


def intercore_time(dev: LogicalDeviceSpec, input_bytes: float) -> float:
    """Inter-core cost of spreading one op with ``input_bytes`` over ``dev``.

    Zero up to ``free_lnc`` cores; beyond, one barrier plus the remote share
    ``(lnc - 1) / lnc`` of the inputs at the spec's core-to-core bandwidth
    (the model does not know where the compiler placed data, so it assumes
    inputs are spread evenly over the cores).
    """
    spec = dev.chip.intercore
    if dev.lnc <= spec.free_lnc:
        return 0.0
    remote = input_bytes * (dev.lnc - 1) / dev.lnc
    return spec.sync_s + remote / spec.bytes_per_s


def _roofline(dev, engine, flops, hbm_bytes, compute_s, overhead_s,
              input_bytes, utilisation=None, instructions=0, notes=()):
    """Assemble an :class:`OpCost` from its parts (the one place time is summed)."""
    hbm_bytes = int(ceil(hbm_bytes))
    memory_s = hbm_bytes / dev.hbm_bytes_per_s
    intercore_s = intercore_time(dev, input_bytes) if input_bytes else 0.0
    time_s = max(compute_s, memory_s) + overhead_s + intercore_s
    return OpCost(engine, flops, hbm_bytes, compute_s, memory_s, overhead_s,
                  intercore_s, time_s, utilisation, instructions, tuple(notes))


# ---------------------------------------------------------------------------
# Tensor Engine
# ---------------------------------------------------------------------------

def _default_out_dtype(dtype: str) -> str:
    """PSUM results leave as the input dtype, or BF16 for 8/4-bit inputs."""
    return "bf16" if dtype in ("fp8",) + _MX_DTYPES else dtype


@dataclass(frozen=True)
class _KSchedule:
    """How one core runs its output tiles' K passes on a systolic array."""

    #: "full" (the whole array per pass) or "split" (independent sub-arrays).
    mode: str
    #: Dense-equivalent K rows one pass covers (sparsity multiplies them).
    rows: int
    #: Passes each output tile makes over K.
    passes_per_tile: int
    #: Array steps on the busiest core; each is one instruction issue and
    #: streams the tile's moving columns once.
    steps: int
    #: Share of the (sub-)arrays that have work during those steps.
    occupancy: float


def _full_schedule(rows: int, k: int, tiles: int) -> _KSchedule:
    passes = ceil(k / rows)
    return _KSchedule("full", rows, passes, tiles * passes, 1.0)


def _split_schedule(rows: int, ways: int, k: int, tiles: int) -> _KSchedule:
    """``ways`` independent sub-arrays of ``rows`` K rows share ``tiles``
    output tiles of ``ceil(k / rows)`` passes each. A tile's passes run one
    after another (two sub-arrays never add into the same PSUM tile in the
    same cycle), so the busiest core needs ``max(passes, ceil(tiles * passes
    / ways))`` steps (McNaughton's bound: a tile may move between sub-arrays
    from one pass to the next). The sub-arrays of one step start together,
    so a step costs one issue [est.: the facts say they "push four results
    per cycle into PSUM", i.e. run in lockstep]."""
    passes = ceil(k / rows)
    steps = max(passes, ceil(tiles * passes / ways))
    return _KSchedule("split", rows, passes, steps, tiles * passes / (steps * ways))


def _k_schedule(tensor, array, k: int, tiles: int, speedup: float, passes: int,
                n_per_tile: float) -> _KSchedule:
    """The faster of running ``tiles`` output tiles on the whole array or,
    for the MX array of a chip that splits it, on its sub-arrays (what a
    compiler would pick per matmul)."""
    options = [_full_schedule(int(array.rows * speedup), k, tiles)]
    if array is tensor.mx_array and tensor.mx_split_ways > 1:
        options.append(_split_schedule(int(tensor.mx_sub_array_rows * speedup),
                                       tensor.mx_split_ways, k, tiles))
    cycles = lambda s: s.steps * (n_per_tile * passes + tensor.issue_overhead_cycles)  # noqa: E731
    return min(options, key=cycles)   # ties keep the full array


def matmul_cost(dev: LogicalDeviceSpec, m: int, n: int, k: int, batch: int = 1,
                dtype: str = "bf16", out_dtype: Optional[str] = None,
                sparsity: Optional[str] = None) -> OpCost:
    """Cost of ``batch`` matmuls ``[m, k] @ [k, n]`` on the Tensor Engine.

    Tiling follows the hardware instruction ``out[M, N] = stationary[K, M]^T
    @ moving[K, N]``: K in passes of the array's rows (128; 512 on the MX
    array), M in tiles of its 128 columns, N in chunks of up to 512 moving
    columns, one column per cycle plus a fixed issue cost per pass. Output
    tiles are spread over the device's cores (K stays on one core: PSUM
    accumulates locally). A partly filled pass still costs the full array,
    which is what ``utilisation`` reports.

    - MX split: on a chip whose MX array splits (Trainium3: 4 x 128 rows),
      a matmul with K short of 512 runs its output tiles on the sub-arrays
      side by side when that is faster, so K=128 or 256 reaches 4x BF16
      given at least 4 output tiles per core (:func:`_split_schedule`).
    - ``sparsity`` (an MX dtype only; "4:8", "4:16", ... as the spec lists):
      one pass covers the spec's dense-equivalent factor times more K, so
      both streaming and issue shrink by it (4:8 / 4:16: 4x dense MX).
      Patterns without a published rate run at the dense rate (a note says
      so). HBM traffic here counts dense operands; callers that store only
      the kept values price their bytes (:func:`torch_trn3.chip_model.charge_matmul`).

    Convolutions are charged as their GEMM.
    """
    if min(m, n, k, batch) < 0:
        raise ValueError(f"matmul dims must be >= 0, got m={m} n={n} k={k} batch={batch}")
    if 0 in (m, n, k, batch):
        return _zero_cost(Engine.TENSOR)
    name = canonical_dtype(dtype)
    out_name = canonical_dtype(out_dtype) if out_dtype else _default_out_dtype(name)
    tensor = dev.chip.tensor
    array, passes = tensor.array_for(name)
    notes = []

    speedup = 1.0
    if sparsity is not None:
        if name not in _MX_DTYPES:
            raise ValueError(
                f"structured sparsity {sparsity!r} needs an MX dtype "
                f"{list(_MX_DTYPES)}, got {dtype!r}"
            )
        speedup = tensor.sparse_factor(sparsity)
        if tensor.sparse_rate_published(sparsity):
            notes.append(f"{sparsity} sparsity: {speedup:g}x dense MX throughput")
        else:
            notes.append(f"{sparsity} sparsity: rate not published for {dev.chip.name}, "
                         "charged at the dense MX rate")
    if name in _MX_DTYPES and not tensor.mx_native:
        notes.append(f"{dev.chip.name} has no MX hardware: modelled at its FP8 rate")
    if passes > 1:
        notes.append(f"{name} takes {passes} passes through the array "
                     f"(1/{passes} of the BF16 rate)")

    m_tiles = ceil(m / array.cols)
    n_tiles = ceil(n / array.max_moving)
    # Each output tile (batch x M tile x N chunk) runs its K passes on one core.
    out_tiles = batch * m_tiles * n_tiles
    busiest = ceil(out_tiles / dev.cores)          # output tiles on the busiest core
    n_per_tile = n / n_tiles                       # moving columns per tile (mean)
    plan = _k_schedule(tensor, array, k, busiest, speedup, passes, n_per_tile)

    k_fill = k / (plan.passes_per_tile * plan.rows)
    m_fill = m / (m_tiles * array.cols)
    if plan.mode == "split":
        notes.append(f"MX array split into {tensor.mx_split_ways} independent "
                     f"{tensor.mx_sub_array_rows}-row arrays: {plan.occupancy:.0%} of them busy")
    if k_fill < 1:
        kind = "sub-array" if plan.mode == "split" else "array"
        notes.append(f"K={k} fills {k_fill:.0%} of the {plan.rows}-row {kind} "
                     f"over {plan.passes_per_tile} K tile(s)")
    if m_fill < 1:
        notes.append(f"M={m} fills {m_fill:.0%} of the {array.cols} stationary "
                     f"columns over {m_tiles} M tile(s)")
    if n < array.max_moving:
        notes.append(f"N={n} streams fewer than {array.max_moving} columns per "
                     "instruction, so the fixed issue cost weighs more")
    if out_tiles < dev.cores:
        notes.append(f"output tiles occupy only {out_tiles} of {dev.cores} cores")

    compute_s = plan.steps * n_per_tile * passes / tensor.clock_hz
    instructions = plan.steps
    overhead_s = instructions * tensor.issue_overhead_cycles / tensor.clock_hz

    in_bytes = batch * (m * k + k * n) * dtype_bytes(name)
    out_bytes = batch * m * n * dtype_bytes(out_name)
    if sparsity is not None:
        notes.append("HBM traffic counts dense operands")
    return _roofline(dev, Engine.TENSOR, 2.0 * batch * m * n * k,
                     in_bytes + out_bytes, compute_s, overhead_s, in_bytes,
                     utilisation=k_fill * m_fill * plan.occupancy,
                     instructions=instructions, notes=notes)


# ---------------------------------------------------------------------------
# Lane engines (Scalar, Vector, GpSimd)
# ---------------------------------------------------------------------------

def _lane_cost(dev, engine, spec, elems, elems_per_s_per_core, hbm_bytes,
               input_bytes, notes=()):
    """Cost of streaming ``elems`` elements through a lane engine of ``dev``."""
    if elems <= 0:
        return _zero_cost(engine)
    instructions = ceil(ceil(elems / spec.elems_per_instruction) / dev.cores)
    compute_s = elems / (elems_per_s_per_core * dev.cores)
    overhead_s = instructions * spec.issue_overhead_cycles / spec.clock_hz
    return _roofline(dev, engine, float(elems), hbm_bytes, compute_s,
                     overhead_s, input_bytes, instructions=instructions,
                     notes=notes)


def elementwise_cost(dev: LogicalDeviceSpec, numel: int, dtype: str,
                     transcendental: bool = False, n_inputs: int = 1) -> OpCost:
    """A 1:1 element-wise op on the Scalar Engine.

    Reads ``n_inputs`` tensors of ``numel`` elements and writes one.
    Transcendentals (exp, tanh, ...) run at the spec's transcendental rate
    (Trainium3: 4x Trainium2's per cycle).
    """
    scalar = dev.chip.scalar
    rate = scalar.transcendental_elems_per_s if transcendental else scalar.elems_per_s
    size = dtype_bytes(dtype)
    return _lane_cost(dev, Engine.SCALAR, scalar, numel, rate,
                      (n_inputs + 1) * numel * size, n_inputs * numel * size)


def reduction_cost(dev: LogicalDeviceSpec, numel_in: int, numel_out: int,
                   dtype: str) -> OpCost:
    """A reduction, norm or softmax on the Vector Engine.

    Streams ``numel_in`` elements and writes ``numel_out`` (a softmax or a
    norm writes as many as it reads; a sum writes fewer).
    """
    vector = dev.chip.vector
    size = dtype_bytes(dtype)
    return _lane_cost(dev, Engine.VECTOR, vector, numel_in, vector.elems_per_s,
                      (numel_in + numel_out) * size, numel_in * size)


def gpsimd_cost(dev: LogicalDeviceSpec, numel: int, dtype: str,
                passes: float = 1.0) -> OpCost:
    """A gather, scatter, indexing, sort or custom op on GpSimd.

    Reads and writes ``numel`` elements once; ``passes`` scales the work for
    ops that touch each element more than once (a sort: about log2(numel)).
    """
    gpsimd = dev.chip.gpsimd
    size = dtype_bytes(dtype)
    return _lane_cost(dev, Engine.GPSIMD, gpsimd, numel * passes,
                      gpsimd.elems_per_s, 2 * numel * size, numel * size)


# ---------------------------------------------------------------------------
# Attention (one flash-attention kernel)
# ---------------------------------------------------------------------------

def causal_kept_fraction(q_len: int, kv_len: int, block: int = 128, *,
                         align: str = "top_left") -> float:
    """Share of the ``block x block`` score blocks a causal mask keeps.

    Query row ``i`` sees key ``j`` when ``j <= i`` (``align="top_left"``,
    what torch's ``scaled_dot_product_attention(is_causal=True)`` and its CPU
    flash kernel use) or ``j <= i + kv_len - q_len`` (``"bottom_right"``,
    ``torch.nn.attention.bias.causal_lower_right``: the last query sees every
    key). A flash kernel skips a block only when all of it is masked, so
    diagonal blocks count whole. With ``q_len == kv_len`` = n blocks it keeps
    n(n+1)/2 of n^2, i.e. (n+1)/(2n): 4 blocks -> 10/16.
    """
    if min(q_len, kv_len) < 0 or block <= 0:
        raise ValueError(f"causal_kept_fraction needs q_len, kv_len >= 0 and block > 0, "
                         f"got q_len={q_len} kv_len={kv_len} block={block}")
    if align not in ("top_left", "bottom_right"):
        raise ValueError(f"align must be 'top_left' or 'bottom_right', got {align!r}")
    if q_len == 0 or kv_len == 0:
        return 0.0
    offset = 0 if align == "top_left" else kv_len - q_len
    q_blocks, kv_blocks = ceil(q_len / block), ceil(kv_len / block)
    kept = 0
    for qb in range(q_blocks):
        last_row = min((qb + 1) * block, q_len) - 1
        last_key = last_row + offset         # the furthest key any row of the block sees
        if last_key >= 0:
            kept += min(kv_blocks, last_key // block + 1)
    return kept / (q_blocks * kv_blocks)


@dataclass(frozen=True)
class AttentionWork:
    """What one flash-attention kernel asks of each engine of a device.

    Busy times include each engine's instruction issue cost; in a flash
    kernel the engines of a core run concurrently, so the kernel takes the
    longest of them (or of HBM), see :func:`attention_cost`.
    """

    tensor_s: float
    scalar_s: float
    vector_s: float
    #: exp evaluations (kept score elements; the backward recomputes P).
    exp_elems: float
    #: Elements the Vector Engine streams (row statistics, dS, rescales).
    vector_elems: float
    #: Tensor Engine FLOPs executed (kept blocks only).
    flops: float
    #: HBM bytes read plus written: Q, K, V, O, LSE (+ dO, dQ, dK, dV), masks.
    hbm_bytes: float
    #: Bytes of the kernel's inputs (the inter-core term spreads these).
    input_bytes: float
    #: Tensor Engine instructions on the busiest core.
    instructions: int
    #: PE fill of the matmuls, FLOP-weighted.
    utilisation: float
    #: Score tiles (q_tile_rows x score_tile_cols) the busiest core runs.
    tiles_per_core: int
    #: The matmuls' notes on array fill and core occupancy (deduplicated).
    matmul_notes: Tuple[str, ...] = ()

    @property
    def engine_s(self) -> "dict[Engine, float]":
        return {Engine.TENSOR: self.tensor_s, Engine.SCALAR: self.scalar_s,
                Engine.VECTOR: self.vector_s}


def _lane_busy(dev: LogicalDeviceSpec, spec, elems: float, elems_per_s_per_core: float,
               core_share: float) -> float:
    """Seconds the busiest core's lane engine streams ``elems`` (its share
    ``core_share`` of them), issue cost included."""
    if elems <= 0:
        return 0.0
    mine = elems * core_share
    instructions = ceil(mine / spec.elems_per_instruction)
    return mine / elems_per_s_per_core + instructions * spec.issue_overhead_cycles / spec.clock_hz


def attention_work(dev: LogicalDeviceSpec, batch_heads: int, q_len: int, kv_len: int,
                   head_dim: int, v_head_dim: int, dtype: str = "bf16", *,
                   kept_fraction: float = 1.0, backward: bool = False,
                   mask_bytes: float = 0, kv_batch_heads: Optional[int] = None) -> AttentionWork:
    """The per-engine work of one flash-attention kernel (see :func:`attention_cost`)."""
    if min(batch_heads, q_len, kv_len, head_dim, v_head_dim) < 0 or mask_bytes < 0:
        raise ValueError(
            f"attention dims must be >= 0, got batch_heads={batch_heads} q_len={q_len} "
            f"kv_len={kv_len} head_dim={head_dim} v_head_dim={v_head_dim} mask_bytes={mask_bytes}")
    if not 0.0 <= kept_fraction <= 1.0:
        raise ValueError(f"kept_fraction must be in [0, 1], got {kept_fraction}")
    name = canonical_dtype(dtype)
    fa = dev.chip.flash_attention
    bh, lq, lk, d, dv = batch_heads, q_len, kv_len, head_dim, v_head_dim
    kv_bh = batch_heads if kv_batch_heads is None else kv_batch_heads
    size = dtype_bytes(name)

    # HBM: every operand once; scores and probabilities never leave the core.
    q_b, k_b, v_b = bh * lq * d * size, kv_bh * lk * d * size, kv_bh * lk * dv * size
    o_b, lse_b = bh * lq * dv * size, bh * lq * dtype_bytes(fa.lse_dtype)
    if backward:   # read Q, K, V, O, dO, LSE (+mask); write dQ, dK, dV
        input_bytes = q_b + k_b + v_b + 2 * o_b + lse_b + mask_bytes
        hbm = input_bytes + q_b + k_b + v_b
    else:          # read Q, K, V (+mask); write O, LSE
        input_bytes = q_b + k_b + v_b + mask_bytes
        hbm = input_bytes + o_b + lse_b

    # Tensor Engine: each matmul oriented so 512 columns stream per
    # instruction (transposes of P and dS are free: TRN3_FACTS "zero cost
    # transposes"); only its compute and issue time are used, not its bytes.
    if backward:
        mms = [matmul_cost(dev, lq, lk, d, batch=bh, dtype=name),    # S = Q K^T (recomputed)
               matmul_cost(dev, dv, lk, lq, batch=bh, dtype=name),   # dV^T = dO^T P
               matmul_cost(dev, lq, lk, dv, batch=bh, dtype=name),   # dP = dO V^T
               matmul_cost(dev, d, lq, lk, batch=bh, dtype=name),    # dQ^T = K^T dS^T
               matmul_cost(dev, d, lk, lq, batch=bh, dtype=name)]    # dK^T = Q^T dS
    else:
        mms = [matmul_cost(dev, lq, lk, d, batch=bh, dtype=name),    # S = Q K^T
               matmul_cost(dev, dv, lq, lk, batch=bh, dtype=name)]   # O^T = V^T P^T
    kept = kept_fraction
    tensor_s = kept * sum(m.compute_s + m.overhead_s for m in mms)
    flops = kept * sum(m.flops for m in mms)
    raw_flops = sum(m.flops for m in mms)
    utilisation = (sum(m.flops * (m.utilisation or 0.0) for m in mms) / raw_flops) if raw_flops else 0.0
    instructions = ceil(kept * sum(m.instructions for m in mms))
    matmul_notes = tuple(dict.fromkeys(n for m in mms for n in m.notes
                                       if " fills " in n or "cores" in n))

    # Work splits over cores by query tiles (forward) or key tiles (backward:
    # each core owns its dK, dV rows), as matmul_cost splits output tiles.
    units = bh * ceil((lk if backward else lq) / fa.q_tile_rows)
    core_share = ceil(units / dev.cores) / units if units else 0.0

    scores = bh * lq * lk
    exp_elems = kept * scores
    if backward:   # dS = P * (dP - D), plus D = rowsum(dO * O) once per row
        vector_elems = kept * scores * fa.backward_vector_passes + bh * lq * dv
    else:          # row max per tile, O rescale per kv_tile keys, final O / l
        vector_elems = (kept * bh * lq * (lk * fa.forward_vector_passes + dv * ceil(lk / fa.kv_tile))
                        + bh * lq * dv)
    scalar, vector = dev.chip.scalar, dev.chip.vector
    scalar_s = _lane_busy(dev, scalar, exp_elems, scalar.transcendental_elems_per_s, core_share)
    vector_s = _lane_busy(dev, vector, vector_elems, vector.elems_per_s, core_share)

    tiles = kept * bh * ceil(lq / fa.q_tile_rows) * ceil(lk / fa.score_tile_cols)
    tiles_per_core = ceil(tiles * core_share) if tiles else 0
    return AttentionWork(tensor_s, scalar_s, vector_s, exp_elems, vector_elems, flops, hbm,
                         input_bytes, instructions, utilisation, tiles_per_core, matmul_notes)


def attention_cost(dev: LogicalDeviceSpec, batch_heads: int, q_len: int, kv_len: int,
                   head_dim: int, v_head_dim: int, dtype: str = "bf16", *,
                   kept_fraction: float = 1.0, backward: bool = False,
                   mask_bytes: float = 0, kv_batch_heads: Optional[int] = None) -> OpCost:
    """Cost of one flash-attention kernel (charged to the Tensor Engine).

    ``batch_heads`` (query) heads of ``q_len`` queries attend ``kv_len``
    keys; Q and K rows have ``head_dim`` elements, V and O rows
    ``v_head_dim``. ``kv_batch_heads`` (default ``batch_heads``) is the
    number of K/V heads when several query heads share them (GQA).

    - HBM: Q, K, V, O and the fp32 row log-sum-exp once each; the backward
      reads Q, K, V, O, dO, LSE and writes dQ, dK, dV. Scores and
      probabilities stay in SBUF/PSUM. ``mask_bytes`` (an attention mask, a
      FlexAttention block mask) is read once, in both directions.
    - Tensor Engine: QK^T and PV (backward: recomputed S, dV, dP, dQ, dK)
      priced by :func:`matmul_cost` (compute and issue time).
    - Scalar Engine: one exp per kept score element at the spec's
      transcendental rate (Trainium3: 4x Trainium2's per cycle).
    - Vector Engine: the row statistics, ``chip.flash_attention`` passes
      per kept score element.
    - ``kept_fraction``: share of score blocks computed (a causal mask skips
      masked blocks: :func:`causal_kept_fraction`); scales all score-sized
      work (matmuls, exp, row statistics), not the HBM traffic.

    The engines of a core run concurrently, so ``compute_s`` is the busiest
    engine's time and ``time_s = max(compute_s, memory_s) + overhead_s +
    intercore_s``, where ``overhead_s`` is the pipeline fill: N score tiles
    through stages of per-tile times t take ``N*max(t) + sum(t) - max(t)``.
    """
    if 0 in (batch_heads, q_len, kv_len) and min(batch_heads, q_len, kv_len) >= 0:
        return _zero_cost(Engine.TENSOR)
    work = attention_work(dev, batch_heads, q_len, kv_len, head_dim, v_head_dim, dtype,
                          kept_fraction=kept_fraction, backward=backward,
                          mask_bytes=mask_bytes, kv_batch_heads=kv_batch_heads)
    busy = work.engine_s
    compute_s = max(busy.values())
    if work.tiles_per_core:
        per_tile = [t / work.tiles_per_core for t in busy.values()]
        overhead_s = sum(per_tile) - max(per_tile)
    else:
        overhead_s = 0.0
    bound = max(busy, key=busy.get)
    names = {Engine.TENSOR: "Tensor", Engine.SCALAR: "Scalar", Engine.VECTOR: "Vector"}
    notes = ["flash attention: scores stay in SBUF/PSUM",
             "engines busy: " + ", ".join(f"{names[e]} {t * 1e6:.2f} us" for e, t in busy.items())]
    if kept_fraction < 1.0:
        notes.append(f"mask keeps {kept_fraction:.1%} of the score blocks")
    if work.hbm_bytes / dev.hbm_bytes_per_s <= compute_s:
        notes.append(f"bound by the {names[bound]} Engine")
    notes.extend(work.matmul_notes)
    return _roofline(dev, Engine.TENSOR, work.flops, work.hbm_bytes, compute_s, overhead_s,
                     work.input_bytes, utilisation=work.utilisation,
                     instructions=work.instructions, notes=notes)


# ---------------------------------------------------------------------------
# DMA
# ---------------------------------------------------------------------------

def dma_cost(dev: LogicalDeviceSpec, nbytes: int, transpose: bool = False) -> OpCost:
    """A device-to-device copy of ``nbytes`` on the DMA engines.

    The copy reads and writes ``nbytes`` of HBM. A transposing copy costs the
    same: the hardware transposes in the background, at zero compute, but the
    bytes still move. (A transpose that is only a view is not an op at all.)
    The chip's DMA engines reach all of HBM, so there is no inter-core term.
    """
    if nbytes <= 0:
        return _zero_cost(Engine.DMA)
    notes = ("transpose is free: done by the hardware during the copy",) if transpose else ()
    return _roofline(dev, Engine.DMA, 0.0, 2 * nbytes,
                     nbytes / dev.dma_bytes_per_s, dev.chip.dma.issue_overhead_s,
                     0, instructions=1, notes=notes)


# ---------------------------------------------------------------------------
# ATen op classification
# ---------------------------------------------------------------------------

#: Attention ops, each priced as one flash-attention kernel
#: (:func:`attention_cost`; ``torch_trn3.chip_model`` reads their layouts),
#: never as a matmul of their head dim.
ATTENTION_OPS = frozenset({
    "_scaled_dot_product_attention_math", "scaled_dot_product_attention",
    "_scaled_dot_product_fused_attention_overrideable",
    "_scaled_dot_product_fused_attention_overrideable_backward",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_efficient_attention_backward",
    "_efficient_attention_forward", "_efficient_attention_backward",
    "_flash_attention_forward", "_flash_attention_backward",
})

_TENSOR_OPS = frozenset({
    "mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "dot",
    "vdot", "mv", "addmv", "addr", "outer", "einsum", "tensordot",
    "convolution", "convolution_overrideable", "convolution_backward",
    "convolution_backward_overrideable", "_convolution", "conv1d", "conv2d",
    "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "_scaled_mm", "_scaled_grouped_mm", "_grouped_mm", "_int_mm",
}) | ATTENTION_OPS

_VECTOR_OPS = frozenset({
    "sum", "nansum", "mean", "nanmean", "prod", "max", "min", "amax", "amin",
    "aminmax", "argmax", "argmin", "all", "any", "var", "std", "var_mean",
    "std_mean", "norm", "linalg_vector_norm", "logsumexp", "count_nonzero",
    "softmax", "_softmax", "log_softmax", "_log_softmax",
    "_softmax_backward_data", "_log_softmax_backward_data",
    "layer_norm", "native_layer_norm", "native_layer_norm_backward",
    "rms_norm", "_fused_rms_norm", "_fused_rms_norm_backward",
    "group_norm", "native_group_norm", "native_group_norm_backward",
    "batch_norm", "native_batch_norm", "native_batch_norm_backward",
    "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_batch_norm_with_update", "batch_norm_backward",
    "cumsum", "cumprod", "cummax", "cummin", "logcumsumexp",
    "max_pool2d", "max_pool2d_with_indices", "max_pool2d_with_indices_backward",
    "avg_pool2d", "avg_pool2d_backward", "adaptive_avg_pool2d",
    "_adaptive_avg_pool2d", "_adaptive_avg_pool2d_backward",
    "nll_loss", "nll_loss_forward", "nll_loss_backward", "cross_entropy_loss",
    "mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy",
    "_foreach_norm",
})

_GPSIMD_OPS = frozenset({
    "index", "_index_put_impl", "index_put", "index_select", "index_add",
    "index_copy", "index_fill", "gather", "scatter", "scatter_add",
    "scatter_reduce", "masked_select", "masked_scatter", "take",
    "take_along_dim", "embedding", "embedding_dense_backward",
    "embedding_backward", "_embedding_bag", "_embedding_bag_backward",
    "sort", "argsort", "topk", "kthvalue", "median", "nanmedian", "mode",
    "unique", "_unique", "_unique2", "unique_consecutive", "unique_dim",
    "nonzero", "nonzero_static", "searchsorted", "bucketize", "histc",
    "bincount", "multinomial", "randperm", "repeat_interleave",
    "put", "flip", "roll",
})

_DMA_OPS = frozenset({
    "copy", "_copy_from", "_copy_from_and_resize", "_to_copy", "to", "clone",
    "contiguous", "cat", "_cat", "stack", "hstack", "vstack", "repeat",
    "narrow_copy", "slice_copy", "select_copy", "transpose_copy",
    "permute_copy", "t_copy", "expand_copy", "view_copy", "unfold_copy",
    "split_copy", "split_with_sizes_copy", "constant_pad_nd", "pad",
    "fill", "zero", "zeros_like", "ones_like", "full_like", "empty_like",
    "new_zeros", "new_ones", "new_full", "_foreach_copy", "tril", "triu",
})

#: Binary ``max``/``min`` overloads are element-wise, not reductions.
_ELEMENTWISE_OVERLOADS = frozenset({"other", "out_other"})

#: Namespaces of the collective ops (c10d and functional collectives).
_COLLECTIVE_NAMESPACES = frozenset({"c10d", "_c10d_functional",
                                    "_c10d_functional_autograd", "_dtensor",
                                    "symm_mem"})

_TRANSCENDENTAL_OPS = frozenset({
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sigmoid",
    "log_sigmoid", "log_sigmoid_forward", "logit", "tanh", "sin", "cos",
    "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "asinh", "acosh",
    "atanh", "erf", "erfc", "erfinv", "gelu", "gelu_backward", "silu",
    "silu_backward", "mish", "mish_backward", "softplus", "elu", "selu",
    "celu", "pow", "float_power", "sqrt", "rsqrt", "lgamma", "digamma",
    "logaddexp", "logaddexp2", "xlogy", "special_erfcx", "glu",
    "softplus_backward", "elu_backward",
})


def _split_name(aten_name: str) -> "tuple[str, str, str]":
    """("aten", "add", "Tensor") from "aten::add_.Tensor"; in-place "_" dropped."""
    namespace, sep, rest = aten_name.partition("::")
    if not sep:
        namespace, rest = "aten", aten_name
    base, _, overload = rest.partition(".")
    if base.endswith("_") and not base.endswith("__"):
        base = base[:-1]
    return namespace, base, overload


def engine_for_op(aten_name: str) -> Engine:
    """The engine an op named like ``"aten::add_.Tensor"`` is charged to.

    Explicit tables pick matmul-class, reduction/norm, gather/sort and copy
    ops; any other ``aten`` op is taken as 1:1 element-wise (Scalar). Ops of
    other namespaces are custom ops and run on GpSimd, except collectives.
    """
    namespace, base, overload = _split_name(aten_name)
    if namespace in _COLLECTIVE_NAMESPACES:
        return Engine.COLLECTIVE
    if namespace not in ("aten", "prims"):
        return Engine.GPSIMD
    if base in _TENSOR_OPS:
        return Engine.TENSOR
    if base in _VECTOR_OPS:
        if base in ("max", "min") and overload in _ELEMENTWISE_OVERLOADS:
            return Engine.SCALAR
        return Engine.VECTOR
    if base in _GPSIMD_OPS:
        return Engine.GPSIMD
    if base in _DMA_OPS:
        return Engine.DMA
    return Engine.SCALAR


def is_transcendental(aten_name: str) -> bool:
    """True for element-wise ops the Scalar Engine runs at its exp rate."""
    return _split_name(aten_name)[1] in _TRANSCENDENTAL_OPS
