"""``torch_trn3.nki.isa`` (``nisa``): NKI ISA instructions, run on CPU tensors.

Why this shape: each call is one instruction of one engine, as in the Neuron
2.33 ``nki.isa`` API (destination first: ``nisa.tensor_tensor(dst, a, b,
op=nl.add)``). It checks what the compiler checks (buffers, tile limits,
dtypes, engine abilities, shapes, memory nothing wrote), computes on whole
tiles with vectorised torch ops with the engine's numerics (inputs widened
to float32, FP32 accumulation in PSUM, one rounding to the destination
dtype on write) and charges its cost (:mod:`torch_trn3.hw.isa_cost`) to its
engine on the device timeline, named ``nki::<instruction>``.
"""
from __future__ import annotations

import enum
import math
from typing import Optional

import torch

from ..hw import isa_cost
from ..hw.cost import Engine
from . import ops as _ops
from .context import current
from .dtypes import (FLOAT_DTYPES, INT_DTYPES, MATMUL_DTYPES, PSUM_MATMUL_DTYPES, PackedDtype, float8_e4m3fn_x4,
                     float8_e5m2_x4,
                     dtype_name, hw_name, itemsize)
from .errors import (NkiBufferError, NkiDtypeError, NkiEngineError, NkiShapeError, NkiTileLimitError,
                     NkiUninitializedReadError, NkiUsageError)
from .memory import MATMUL_WRITTEN, MemoryRegion
from .tensor import NkiTensor

__all__ = [
    "engine", "reduce_cmd", "dge_mode", "oob_mode", "matmul_perf_mode", "nc_version", "get_nc_version",
    "dma_copy", "nc_matmul", "nc_matmul_mx", "quantize_mx", "nc_transpose", "activation",
    "activation_reduce", "tensor_tensor", "tensor_scalar", "scalar_tensor_tensor", "tensor_reduce",
    "tensor_copy", "memset", "iota", "bn_stats", "bn_aggr",
]


class engine(enum.Enum):
    """Engines an instruction may be sent to (``engine=``)."""

    unknown = 0
    tensor = 1
    vector = 2
    scalar = 3
    gpsimd = 4
    sync = 5


class reduce_cmd(enum.Enum):
    """What an accumulating instruction does with its engine's reduce registers."""

    idle = 0
    reset = 1
    reduce = 2
    reset_reduce = 3


class dge_mode(enum.Enum):
    unknown = 0
    none = 1
    swdge = 2
    hwdge = 3


class oob_mode(enum.Enum):
    error = 0
    skip = 1


class matmul_perf_mode(enum.Enum):
    none = 0
    double_row = 1


class nc_version(enum.IntEnum):
    """NeuronCore generations: Trainium2 is v3, Trainium3 is v4."""

    gen2 = 2
    gen3 = 3
    gen4 = 4


def get_nc_version() -> nc_version:
    """The NeuronCore version of the chip the current kernel runs on."""
    ctx = current("nki.isa.get_nc_version")
    return nc_version.gen4 if ctx.chip.tensor.mx_native else nc_version.gen3


_RC = reduce_cmd

_ENGINE_OF = {engine.tensor: Engine.TENSOR, engine.vector: Engine.VECTOR,
              engine.scalar: Engine.SCALAR, engine.gpsimd: Engine.GPSIMD}


# ------------------------------------------------------------------------- helpers
def _tile(x, instr: str, role: str) -> NkiTensor:
    if not isinstance(x, NkiTensor):
        raise NkiUsageError(instr, f"{role} must be an NKI tensor (nl.ndarray, a kernel argument or "
                            f"a slice of one), got {type(x).__name__}")
    return x


def _in(t: NkiTensor, instr: str, role: str, allowed, why: str = "") -> None:
    if t.alloc.buffer not in allowed:
        names = " or ".join(b.value.upper() for b in allowed)
        raise NkiBufferError(instr, f"{role} is in {t.alloc.buffer.value.upper()}, must be in {names}"
                             + (f" ({why})" if why else ""), tile=t.describe())


_ON_CHIP = (MemoryRegion.sbuf, MemoryRegion.psum)
_HBM = (MemoryRegion.hbm, MemoryRegion.shared_hbm, MemoryRegion.private_hbm)


def _on_chip(t, instr, role):
    t = _tile(t, instr, role)
    _in(t, instr, role, _ON_CHIP, "compute engines read and write SBUF/PSUM; move HBM data with nisa.dma_copy")
    return t


def _free(t: NkiTensor) -> int:
    """Elements per partition (a packed element counts once)."""
    data = t.data
    n = data.numel() // data.shape[0] if data.dim() else 1
    return n // t.alloc.dtype.pack if isinstance(t.alloc.dtype, PackedDtype) else n


def _float_in(t: NkiTensor, instr: str, role: str) -> None:
    if isinstance(t.dtype, PackedDtype) or t.dtype not in _ENGINE_DTYPES:
        raise NkiDtypeError(instr, f"{role} dtype {dtype_name(t.dtype)} is not taken",
                            tile=t.describe(), limit="float32/bfloat16/float16/fp8 or integer tiles")


def _same_partition_layout(instr: str, ref: NkiTensor, ref_role: str, other: NkiTensor, role: str,
                           ref_free: Optional[int] = None) -> None:
    """Operands of an element-wise instruction: same partitions and elements per partition."""
    if other.data.shape[0] != ref.data.shape[0] or _free(other) != (_free(ref) if ref_free is None else ref_free):
        raise NkiShapeError(instr, f"{role} {list(other.shape)} does not match {ref_role} {list(ref.shape)}",
                            tile=other.describe(),
                            limit="same partition size and same number of elements per partition")


def _as(x: torch.Tensor, shape) -> torch.Tensor:
    """``x`` viewed as ``shape`` (reshape costs microseconds: skip it when equal)."""
    return x if x.shape == shape else x.reshape(shape)


_ENGINE_DTYPES = FLOAT_DTYPES + INT_DTYPES


def _values(t: NkiTensor, ctx, instr: str, role: str) -> torch.Tensor:
    """``t``'s values as float32 (checking every element was written)."""
    ctx.check_read(t, instr, role)
    return t.data.float()


def _write(ctx, dst: NkiTensor, value: torch.Tensor, matmul: bool = False) -> None:
    """Rounds ``value`` (float32) once into ``dst``'s dtype."""
    dst.data.copy_(_as(value, dst.data.shape))
    ctx.mark_written(dst, matmul=matmul)


def _vector(operand, data: NkiTensor, ctx, instr: str, role: str):
    """A scalar operand, or a [P, 1] tile broadcast along the free dims of ``data``."""
    if operand is None:
        return None
    if isinstance(operand, NkiTensor):
        _on_chip(operand, instr, role)
        if operand.shape[0] != data.shape[0] or _free(operand) != 1:
            raise NkiShapeError(instr, f"{role} {list(operand.shape)} must be a [{data.shape[0]}, 1] vector "
                                "(one value per partition) or a scalar", tile=operand.describe())
        v = _values(operand, ctx, instr, role)
        return v.reshape((data.shape[0],) + (1,) * (data.data.dim() - 1))
    if isinstance(operand, (int, float)):
        return float(operand)
    raise NkiUsageError(instr, f"{role} must be a number or a [P, 1] tile, got {type(operand).__name__}")


def _pick_engine(instr: str, requested, default: Engine, allowed, tiles, reason: str = "") -> Engine:
    if requested is None or requested is engine.unknown:
        eng = default
    else:
        if requested not in _ENGINE_OF:
            raise NkiEngineError(instr, f"engine={requested!r} is not a compute engine")
        eng = _ENGINE_OF[requested]
    if eng not in allowed:
        raise NkiEngineError(instr, f"the {eng.name.title()} Engine cannot run {instr}" + (f" ({reason})" if reason else ""),
                             limit="engines: " + ", ".join(e.name.lower() for e in allowed))
    if eng is Engine.GPSIMD:
        for t in tiles:
            if isinstance(t, NkiTensor) and t.alloc.buffer is MemoryRegion.psum:
                raise NkiEngineError(instr, "the GpSimd Engine cannot access PSUM", tile=t.describe(),
                                     limit="GpSimd operands in SBUF")
    return eng


def _op(op, instr: str, kind: str) -> _ops.Op:
    if not isinstance(op, _ops.Op) or getattr(op, kind) is None:
        what = {"binary": "a binary math operator (nl.add, nl.multiply, nl.maximum, ...)",
                "unary": "an activation function (nl.exp, nl.gelu, nl.silu, nl.tanh, ...)",
                "reduce": "a reduction operator (nl.add, nl.maximum, nl.minimum, nl.multiply)"}[kind]
        raise NkiEngineError(instr, f"op={op!r} is not {what}")
    return op


# --------------------------------------------------------------------------- DMA
def dma_copy(dst, src, dst_rmw_op=None, oob_mode=oob_mode.error, dge_mode=dge_mode.unknown,
             engine=engine.unknown, name=None) -> None:
    """``dst = src`` (or ``dst = dst_rmw_op(dst, src)``, only ``nl.add``) on the DMA engines,
    between HBM and SBUF (either way, or within one). Casts when dtypes differ."""
    instr = "nki.isa.dma_copy"
    ctx = current(instr)
    dst = _tile(dst, instr, "dst")
    src = _tile(src, instr, "src")
    allowed = _HBM + (MemoryRegion.sbuf,)
    _in(src, instr, "src", allowed, "DMA moves data between HBM and SBUF")
    _in(dst, instr, "dst", allowed, "DMA moves data between HBM and SBUF")
    ctx.check_write(dst, instr)
    if math.prod(src.shape) != math.prod(dst.shape) or \
            [s for s in src.shape if s != 1] != [s for s in dst.shape if s != 1]:
        raise NkiShapeError(instr, f"src {list(src.shape)} and dst {list(dst.shape)} differ",
                            tile=f"src {src.describe()}, dst {dst.describe()}", limit="same shape")
    if isinstance(src.dtype, PackedDtype) != isinstance(dst.dtype, PackedDtype):
        raise NkiDtypeError(instr, "cannot copy between packed and unpacked dtypes",
                            tile=f"src {src.describe()}, dst {dst.describe()}")
    if dst_rmw_op is not None and dst_rmw_op is not _ops.add:
        raise NkiEngineError(instr, f"dst_rmw_op={dst_rmw_op!r}: DMA read-modify-write only adds",
                             limit="dst_rmw_op in (None, nl.add)")
    if src.alloc.buffer.on_chip:
        ctx.check_read(src, instr, "src")
    reads = [src]
    if dst_rmw_op is None:
        dst.data.copy_(_as(src.data, dst.data.shape))
    else:
        if dst.alloc.buffer.on_chip:
            ctx.check_read(dst, instr, "dst")
        dst.data.copy_(dst.data.float() + src.data.float().reshape(dst.data.shape))
        reads.append(dst)
    ctx.mark_written(dst)
    n = math.prod(src.data.shape)
    nbytes = n * src.data.element_size()
    hbm = (nbytes if src.alloc.buffer.is_hbm else 0) + \
        (n * dst.data.element_size() if dst.alloc.buffer.is_hbm else 0)
    cost = ctx.cost(isa_cost.dma, nbytes, hbm, ctx.logical.hbm_bytes_per_s)
    ctx.charge("nki::dma_copy", cost, reads, [dst], store=dst.alloc.buffer.is_hbm)


# ----------------------------------------------------------------- Tensor Engine
def _matmul_checks(instr, ctx, dst, stationary, moving, k_max: int, dtypes, dtype_text: str):
    dst = _tile(dst, instr, "dst")
    stationary = _tile(stationary, instr, "stationary")
    moving = _tile(moving, instr, "moving")
    _in(stationary, instr, "stationary", (MemoryRegion.sbuf,), "the Tensor Engine reads SBUF")
    _in(moving, instr, "moving", (MemoryRegion.sbuf,), "the Tensor Engine reads SBUF")
    _in(dst, instr, "dst", (MemoryRegion.psum,), "the Tensor Engine writes PSUM")
    for role, t in (("stationary", stationary), ("moving", moving)):
        if t.dtype not in dtypes:
            raise NkiDtypeError(instr, f"{role} dtype {dtype_name(t.dtype)} is not taken",
                                tile=t.describe(), limit=dtype_text)
    if dst.dtype not in PSUM_MATMUL_DTYPES:
        raise NkiDtypeError(instr, f"dst dtype {dtype_name(dst.dtype)} is not taken", tile=dst.describe(),
                            limit="PSUM result in float32 (or bfloat16)")
    lim = ctx.limits
    k, m, n = stationary.shape[0], _free(stationary), _free(moving)
    if moving.shape[0] != k:
        raise NkiShapeError(instr, f"contraction (partition) sizes differ: stationary K={k}, moving K={moving.shape[0]}",
                            tile=f"stationary {stationary.describe()}, moving {moving.describe()}",
                            limit="stationary.shape[0] == moving.shape[0]")
    if k > k_max:
        raise NkiTileLimitError(instr, f"contraction K={k} exceeds {k_max}", tile=stationary.describe(),
                                limit=f"K <= {k_max} (nl.tile_size.pmax)")
    if m > lim.gemm_stationary_fmax:
        raise NkiTileLimitError(instr, f"stationary free size M={m} exceeds {lim.gemm_stationary_fmax}",
                                tile=stationary.describe(),
                                limit=f"M <= nl.tile_size.gemm_stationary_fmax = {lim.gemm_stationary_fmax}")
    if n > lim.gemm_moving_fmax:
        raise NkiTileLimitError(instr, f"moving free size N={n} exceeds {lim.gemm_moving_fmax}",
                                tile=moving.describe(),
                                limit=f"N <= nl.tile_size.gemm_moving_fmax = {lim.gemm_moving_fmax}")
    if dst.shape[0] != m or _free(dst) != n:
        raise NkiShapeError(instr, f"dst {list(dst.shape)} must be [M={m}, N={n}]", tile=dst.describe(),
                            limit="dst = stationary.T @ moving")
    return dst, stationary, moving, k, m, n


def _accumulate_into(ctx, instr: str, dst: NkiTensor, a: torch.Tensor, b: torch.Tensor, accumulate) -> None:
    """Writes a matmul result into PSUM: overwrite, or add to what matmuls wrote there.

    ``accumulate=None`` continues an accumulation group: elements an earlier
    matmul wrote (and no other instruction overwrote since) are added to,
    the others overwritten. ``True`` adds to every element (each must have
    been written); ``False`` overwrites.
    """
    alloc = dst.alloc
    out2d = dst.data if dst.data.dim() == 2 and dst.dtype is torch.float32 else None
    if accumulate is None:
        if alloc.all_mm:
            mode = "add"
        elif alloc.state is None:
            mode = "overwrite"  # never written, or last written whole by another instruction
        else:
            mm = dst.state == MATMUL_WRITTEN
            mode = "add" if bool(mm.all()) else ("overwrite" if not bool(mm.any()) else "mixed")
    elif accumulate:
        ctx.check_read(dst, instr, "dst (accumulate=True)")
        mode = "add"
    else:
        mode = "overwrite"
    if out2d is not None and mode == "overwrite":
        torch.mm(a, b, out=out2d)
    elif out2d is not None and mode == "add":
        out2d.addmm_(a, b)  # FP32 accumulation in PSUM
    else:
        product = torch.mm(a, b).reshape(dst.data.shape)
        if mode == "overwrite":
            dst.data.copy_(product)
        elif mode == "add":
            dst.data.copy_(dst.data.float() + product)
        else:
            dst.data.copy_(torch.where(mm, dst.data.float() + product, product))
    ctx.mark_written(dst, matmul=True)


def nc_matmul(dst, stationary, moving, is_stationary_onezero=False, is_moving_onezero=False,
              is_transpose=False, accumulate=None, tile_position=(), tile_size=(),
              perf_mode=matmul_perf_mode.none, name=None) -> None:
    """``dst[M, N] (+)= stationary[K, M].T @ moving[K, N]`` on the Tensor Engine.

    Operands in SBUF (fp8/bf16/fp16/fp32), K <= 128, M <= 128, N <= 512; the
    product is exact and accumulates in FP32 in PSUM (see
    :func:`_accumulate_into` for ``accumulate``).
    """
    instr = "nki.isa.nc_matmul"
    ctx = current(instr)
    dst, stationary, moving, k, m, n = _matmul_checks(
        instr, ctx, dst, stationary, moving, ctx.limits.pmax, MATMUL_DTYPES,
        "float8_e4m3/float8_e5m2/bfloat16/float16/tfloat32/float32")
    a = _as(_values(stationary, ctx, instr, "stationary"), (k, m))
    b = _as(_values(moving, ctx, instr, "moving"), (k, n))
    # Products of bf16/fp16/fp8 values are exact in fp32; the sum accumulates in fp32.
    _accumulate_into(ctx, instr, dst, a.t(), b, accumulate)
    dtype = "fp32" if torch.float32 in (stationary.dtype, moving.dtype) else "bf16"
    cost = ctx.cost(isa_cost.nc_matmul, k, m, n, dtype)
    ctx.charge("nki::nc_matmul", cost, [stationary, moving], [dst])


def nc_transpose(dst, data, engine=engine.unknown, name=None) -> None:
    """``dst = data.T`` (partition and free dims swap): on the Tensor Engine (a
    matmul against identity, into PSUM, up to 128x128) or the Vector Engine
    (up to 32x32, SBUF/PSUM). Values pass through unchanged."""
    instr = "nki.isa.nc_transpose"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    data = _on_chip(data, instr, "data")
    if len(data.shape) != 2 or len(dst.shape) != 2 or tuple(dst.shape) != tuple(data.shape[::-1]):
        raise NkiShapeError(instr, f"dst {list(dst.shape)} must be data {list(data.shape)} transposed",
                            tile=dst.describe())
    default = Engine.TENSOR if dst.alloc.buffer is MemoryRegion.psum else Engine.VECTOR
    eng = _pick_engine(instr, engine, default, (Engine.TENSOR, Engine.VECTOR), (dst, data))
    p, f = data.shape
    if eng is Engine.TENSOR:
        _in(data, instr, "data", (MemoryRegion.sbuf,), "the Tensor Engine reads SBUF")
        _in(dst, instr, "dst", (MemoryRegion.psum,), "the Tensor Engine writes PSUM")
        if f > ctx.limits.gemm_stationary_fmax:
            raise NkiTileLimitError(instr, f"free size {f} exceeds {ctx.limits.gemm_stationary_fmax}",
                                    tile=data.describe(), limit="Tensor Engine transpose up to 128x128")
        cost = ctx.cost(isa_cost.nc_matmul, p, f, p, hw_name(data.dtype))
    else:
        block = ctx.chip.vector.lanes // 4
        if p > block or f > block:
            raise NkiTileLimitError(instr, f"Vector Engine transposes at most {block}x{block}, got {p}x{f}",
                                    tile=data.describe(), limit=f"{block}x{block} on the Vector Engine")
        cost = ctx.lane_cost(Engine.VECTOR, f)
    _write(ctx, dst, _values(data, ctx, instr, "data").t())
    ctx.charge("nki::nc_transpose", cost, [data], [dst])


# -------------------------------------------------------------- Scalar Engine
def _activation(instr, ctx, dst, op, data, bias, scale, engine_req):
    dst = _on_chip(dst, instr, "dst")
    data = _on_chip(data, instr, "data")
    op = _op(op, instr, "unary")
    _float_in(data, instr, "data")
    _same_partition_layout(instr, data, "data", dst, "dst")
    eng = _pick_engine(instr, engine_req, Engine.SCALAR, (Engine.SCALAR, Engine.GPSIMD), (dst, data, bias, scale))
    if eng is Engine.GPSIMD and not ctx.chip.tensor.mx_native:
        raise NkiEngineError(instr, "activation on GpSimd needs NeuronCore-v4 (Trainium3)",
                             limit="engine=nisa.engine.scalar on this chip")
    x = _values(data, ctx, instr, "data")
    s = _vector(scale, data, ctx, instr, "scale")
    b = _vector(bias, data, ctx, instr, "bias")
    if not (isinstance(s, float) and s == 1.0):
        x = x * (_scalar(s) if isinstance(s, float) else s)
    if b is not None:
        x = x + (_scalar(b) if isinstance(b, float) else b)
    if dst.alloc.dtype is torch.float32 and dst.data.shape == x.shape and op.unary in _UNARY_OUT:
        y = op.unary(x, out=dst.data)  # float32 result, no rounding: write in place
    else:
        y = op.unary(x)
    return dst, data, eng, op, y


def activation(dst, op, data, bias=None, scale=1.0, reduce_op=None, reduce_res=None,
               reduce_cmd=reduce_cmd.idle, engine=engine.scalar, name=None) -> None:
    """``dst = op(data * scale + bias)`` on the Scalar Engine (scale: number or
    [P, 1] tile; bias: [P, 1] tile or number), optionally summing the result
    along the free dims into the engine's reduce registers (``reduce_cmd``)
    and writing the registers to ``reduce_res`` ([P, 1])."""
    instr = "nki.isa.activation"
    ctx = current(instr)
    dst, data, eng, op, y = _activation(instr, ctx, dst, op, data, bias, scale, engine)
    res = None
    if reduce_op is not None or reduce_res is not None or reduce_cmd is not _RC.idle:
        if eng is not Engine.SCALAR:
            raise NkiEngineError(instr, "the reduce registers exist only on the Scalar Engine",
                                 limit="engine=nisa.engine.scalar with reduce_op/reduce_res")
        if reduce_op is not None and reduce_op is not _ops.add:
            raise NkiEngineError(instr, f"reduce_op={reduce_op!r}: the Scalar Engine's reduce registers only sum",
                                 limit="reduce_op=nl.add (use nisa.tensor_reduce for max/min)")
        p = data.shape[0]
        lanes = ctx.chip.scalar.lanes
        if reduce_cmd in (_RC.reset, _RC.reset_reduce) or ctx.act_regs is None:
            if reduce_cmd in (_RC.reset, _RC.reset_reduce):
                ctx.act_regs = torch.zeros(lanes, dtype=torch.float32)
        if reduce_cmd in (_RC.reduce, _RC.reset_reduce):
            if ctx.act_regs is None:
                raise NkiUninitializedReadError(instr, "reduce_cmd=reduce adds to reduce registers never reset",
                                                limit="reset them first (reduce_cmd=reset or reset_reduce)")
            ctx.act_regs[:p] += y.reshape(p, -1).sum(dim=1)
        if reduce_res is not None:
            res = _on_chip(reduce_res, instr, "reduce_res")
            if res.shape[0] != p or _free(res) != 1:
                raise NkiShapeError(instr, f"reduce_res {list(res.shape)} must be [{p}, 1]", tile=res.describe())
            if ctx.act_regs is None:
                raise NkiUninitializedReadError(instr, "reduce_res reads reduce registers nothing wrote "
                                                "(reduce_cmd=idle keeps them as they are)",
                                                tile=res.describe(), limit="use reduce_cmd=reset_reduce")
            ctx.check_write(res, instr, "reduce_res")
    if y is dst.data:
        ctx.mark_written(dst)
    else:
        _write(ctx, dst, y)
    writes = [dst]
    if res is not None:
        _write(ctx, res, ctx.act_regs[:data.shape[0]].clone())
        writes.append(res)
    cost = ctx.lane_cost(eng, _free(data), transcendental=op.transcendental)
    reads = [data] + [t for t in (bias, scale) if isinstance(t, NkiTensor)]
    ctx.charge("nki::activation", cost, reads, writes)


def activation_reduce(dst, op, data, reduce_op, reduce_res, bias=None, scale=1.0, name=None) -> None:
    """:func:`activation` with ``reduce_cmd=reset_reduce``: ``reduce_res`` gets the
    free-dim sum of ``dst``'s values (before rounding to ``dst``'s dtype)."""
    activation(dst, op, data, bias=bias, scale=scale, reduce_op=reduce_op, reduce_res=reduce_res,
               reduce_cmd=_RC.reset_reduce)


# -------------------------------------------------------------- Vector Engine
def tensor_tensor(dst, data1, data2, op, engine=engine.unknown, name=None) -> None:
    """``dst = data1 op data2`` element-wise on the Vector Engine (``nl.power``:
    GpSimd). Same partitions and elements per partition; not both inputs in PSUM."""
    instr = "nki.isa.tensor_tensor"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    data1 = _on_chip(data1, instr, "data1")
    data2 = _on_chip(data2, instr, "data2")
    op = _op(op, instr, "binary")
    _float_in(data1, instr, "data1")
    _float_in(data2, instr, "data2")
    free = _free(data1)
    _same_partition_layout(instr, data1, "data1", data2, "data2", free)
    _same_partition_layout(instr, data1, "data1", dst, "dst", free)
    if data1.alloc.buffer is MemoryRegion.psum and data2.alloc.buffer is MemoryRegion.psum:
        raise NkiBufferError(instr, "data1 and data2 cannot both be in PSUM",
                             tile=f"data1 {data1.describe()}, data2 {data2.describe()}",
                             limit="at most one PSUM input")
    default = Engine.GPSIMD if op.gpsimd_only else Engine.VECTOR
    allowed = (Engine.GPSIMD,) if op.gpsimd_only else (Engine.VECTOR, Engine.GPSIMD)
    eng = _pick_engine(instr, engine, default, allowed, (dst, data1, data2),
                       "nl.power runs on GpSimd" if op.gpsimd_only else "")
    if op.bitvec:
        for role, t in (("data1", data1), ("data2", data2), ("dst", dst)):
            if t.dtype not in INT_DTYPES:
                raise NkiDtypeError(instr, f"bit-vector {op!r} needs integer tiles; {role} is {dtype_name(t.dtype)}",
                                    tile=t.describe())
        ctx.check_read(data1, instr, "data1")
        ctx.check_read(data2, instr, "data2")
        y = op.binary(data1.data, data2.data.reshape(data1.data.shape))
    else:
        a = _values(data1, ctx, instr, "data1")
        b = _as(_values(data2, ctx, instr, "data2"), a.shape)
        if dst.alloc.dtype is torch.float32 and dst.data.shape == a.shape and op.binary in _OUT_OK:
            op.binary(a, b, out=dst.data)  # float32 result, no rounding: write in place
            ctx.mark_written(dst)
            ctx.charge("nki::tensor_tensor", ctx.lane_cost(eng, free), [data1, data2], [dst])
            return
        y = op.binary(a, b)
    _write(ctx, dst, y)
    ctx.charge("nki::tensor_tensor", ctx.lane_cost(eng, free), [data1, data2], [dst])


#: torch functions of activations that take ``out=``.
_UNARY_OUT = (torch.exp, torch.log, torch.tanh, torch.sigmoid, torch.erf, torch.sin, torch.cos, torch.sqrt,
              torch.rsqrt, torch.reciprocal, torch.abs, torch.sign, torch.neg, torch.square)

#: torch functions of binary operators that take ``out=``.
_OUT_OK = (torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum)

_SCALARS: dict = {}


def _scalar(value: float) -> torch.Tensor:
    """A cached 0-d float32 tensor of ``value`` (torch wraps Python numbers slowly)."""
    t = _SCALARS.get(value)
    if t is None:
        if len(_SCALARS) > 4096:
            _SCALARS.clear()
        t = _SCALARS[value] = torch.scalar_tensor(value, dtype=torch.float32)
    return t


def _scalar_op(x, op, operand, reverse, out=None):
    if isinstance(operand, float):
        operand = _scalar(operand)
    if out is not None and op.binary in _OUT_OK:
        return op.binary(operand, x, out=out) if reverse else op.binary(x, operand, out=out)
    return op.binary(operand, x) if reverse else op.binary(x, operand)


def tensor_scalar(dst, data, op0, operand0, reverse0=False, op1=None, operand1=None, reverse1=False,
                  engine=engine.unknown, name=None) -> None:
    """``dst = (data op0 operand0) op1 operand1``, each operand a number or a
    [P, 1] tile broadcast along the free dims (``reverse``: operand first)."""
    instr = "nki.isa.tensor_scalar"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    data = _on_chip(data, instr, "data")
    op0 = _op(op0, instr, "binary")
    if (op1 is None) != (operand1 is None):
        raise NkiUsageError(instr, "op1 and operand1 must be given together")
    _float_in(data, instr, "data")
    _same_partition_layout(instr, data, "data", dst, "dst")
    eng = _pick_engine(instr, engine, Engine.VECTOR, (Engine.VECTOR, Engine.SCALAR, Engine.GPSIMD),
                       (dst, data, operand0, operand1))
    x = _values(data, ctx, instr, "data")
    out = dst.data if dst.alloc.dtype is torch.float32 and dst.data.shape == x.shape else None
    v0 = _vector(operand0, data, ctx, instr, "operand0")
    if op1 is None:
        y = _scalar_op(x, op0, v0, reverse0, out)
    else:
        op1 = _op(op1, instr, "binary")
        y = _scalar_op(_scalar_op(x, op0, v0, reverse0), op1,
                       _vector(operand1, data, ctx, instr, "operand1"), reverse1, out)
    if y is out:
        ctx.mark_written(dst)
    else:
        _write(ctx, dst, y)
    reads = [data] + [t for t in (operand0, operand1) if isinstance(t, NkiTensor)]
    ctx.charge("nki::tensor_scalar", ctx.lane_cost(eng, _free(data)), reads, [dst])


def scalar_tensor_tensor(dst, data, op0, operand0, op1, operand1, reverse0=False, reverse1=False,
                         name=None) -> None:
    """``dst = (data op0 operand0) op1 operand1`` on the Vector Engine: ``operand0``
    a number or [P, 1] tile, ``operand1`` a tile shaped like ``data``."""
    instr = "nki.isa.scalar_tensor_tensor"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    data = _on_chip(data, instr, "data")
    operand1 = _on_chip(operand1, instr, "operand1")
    op0 = _op(op0, instr, "binary")
    op1 = _op(op1, instr, "binary")
    _same_partition_layout(instr, data, "data", dst, "dst")
    _same_partition_layout(instr, data, "data", operand1, "operand1")
    if data.alloc.buffer is MemoryRegion.psum and operand1.alloc.buffer is MemoryRegion.psum:
        raise NkiBufferError(instr, "data and operand1 cannot both be in PSUM", tile=operand1.describe())
    x = _values(data, ctx, instr, "data")
    y = _scalar_op(x, op0, _vector(operand0, data, ctx, instr, "operand0"), reverse0)
    z = _values(operand1, ctx, instr, "operand1").reshape(y.shape)
    y = op1.binary(z, y) if reverse1 else op1.binary(y, z)
    _write(ctx, dst, y)
    reads = [data, operand1] + ([operand0] if isinstance(operand0, NkiTensor) else [])
    ctx.charge("nki::scalar_tensor_tensor", ctx.lane_cost(Engine.VECTOR, _free(data)), reads, [dst])


def tensor_reduce(dst, op, data, axis, negate=False, keepdims=False, name=None) -> None:
    """Reduces ``data`` along free ``axis`` (the last dims; never the partition
    dim 0) with ``op`` on the Vector Engine, in float32; ``negate`` multiplies by -1."""
    instr = "nki.isa.tensor_reduce"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    data = _on_chip(data, instr, "data")
    op = _op(op, instr, "reduce")
    _float_in(data, instr, "data")
    nd = len(data.shape)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(sorted(a + nd if a < 0 else a for a in axes))
    if not axes or 0 in axes or axes != tuple(range(nd - len(axes), nd)):
        raise NkiShapeError(instr, f"axis={axis!r} must be the last free dims of a {nd}-d tile "
                            "(never the partition dim 0)", tile=data.describe(),
                            limit=f"e.g. axis={nd - 1} or axis=({', '.join(str(a) for a in range(1, nd))})")
    y = op.reduce(_values(data, ctx, instr, "data"), axes)
    if negate:
        y = -y
    if dst.shape[0] != data.shape[0] or _free(dst) != math.prod(y.shape[1:]):
        raise NkiShapeError(instr, f"dst {list(dst.shape)} cannot hold the reduction of {list(data.shape)} "
                            f"over {axes}", tile=dst.describe(),
                            limit=f"[{data.shape[0]}, {math.prod(y.shape[1:])} elements per partition]")
    _write(ctx, dst, y)
    ctx.charge("nki::tensor_reduce", ctx.lane_cost(Engine.VECTOR, _free(data)), [data], [dst])


def tensor_copy(dst, src, engine=engine.unknown, name=None) -> None:
    """``dst = src`` on chip (Vector by default; Scalar or GpSimd), rounding to
    ``dst``'s dtype: how PSUM results reach SBUF."""
    instr = "nki.isa.tensor_copy"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    src = _on_chip(src, instr, "src")
    _float_in(src, instr, "src")
    _same_partition_layout(instr, src, "src", dst, "dst")
    eng = _pick_engine(instr, engine, Engine.VECTOR, (Engine.VECTOR, Engine.SCALAR, Engine.GPSIMD), (dst, src))
    ctx.check_read(src, instr, "src")
    _write(ctx, dst, src.data)
    ctx.charge("nki::tensor_copy", ctx.lane_cost(eng, _free(src)), [src], [dst])


def memset(dst, value, engine=engine.unknown, name=None) -> None:
    """Fills ``dst`` with ``value`` (Vector Engine by default)."""
    instr = "nki.isa.memset"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    eng = _pick_engine(instr, engine, Engine.VECTOR, (Engine.VECTOR, Engine.SCALAR, Engine.GPSIMD), (dst,))
    dst.data.fill_(value)
    ctx.mark_written(dst)
    ctx.charge("nki::memset", ctx.lane_cost(eng, _free(dst)), [], [dst])


def iota(dst, expr=None, offset=0, partition_multiplier=0, free_multipliers=None, engine=engine.unknown,
         name=None) -> None:
    """Fills ``dst[p, f...] = offset + p * partition_multiplier + sum(f_i * free_multipliers[i])``
    on GpSimd (an index pattern, e.g. for masks). ``expr``, if given, is a
    ``(offset, partition_multiplier, free_multipliers)`` tuple."""
    instr = "nki.isa.iota"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    eng = _pick_engine(instr, engine, Engine.GPSIMD, (Engine.GPSIMD,), (dst,))
    if expr is not None:
        offset, partition_multiplier, free_multipliers = expr
    shape = dst.shape
    if free_multipliers is None:
        # Default: the row-major element index within the partition.
        free_multipliers = [math.prod(shape[i + 1:]) for i in range(1, len(shape))]
    free_multipliers = list(free_multipliers)
    if len(free_multipliers) != len(shape) - 1:
        raise NkiShapeError(instr, f"{len(free_multipliers)} free multipliers for {len(shape) - 1} free dims",
                            tile=dst.describe())
    value = torch.full(shape, float(offset), dtype=torch.float64)
    value += (torch.arange(shape[0], dtype=torch.float64) * partition_multiplier).reshape((-1,) + (1,) * (len(shape) - 1))
    for i, mult in enumerate(free_multipliers):
        dim = i + 1
        view = [1] * len(shape)
        view[dim] = shape[dim]
        value += (torch.arange(shape[dim], dtype=torch.float64) * mult).reshape(view)
    _write(ctx, dst, value)
    ctx.charge("nki::iota", ctx.lane_cost(eng, _free(dst)), [], [dst])


# --------------------------------------------------------------------------- MX
#: Partitions x packed elements of one MX scale group [NKI docs: "groups of
#: 8 partitions x 4 elements per partition"], i.e. the OCP block of 32.
_MX_GROUP_PARTITIONS = 8


def _require_v4(ctx, instr: str) -> None:
    if not ctx.chip.tensor.mx_native:
        raise NkiEngineError(instr, f"MX instructions need NeuronCore-v4; {ctx.chip.name} has no MX hardware",
                             limit="Trainium3 (platform_target='trn3')")


def quantize_mx(dst, src, dst_scale, name=None) -> None:
    """Quantizes ``src`` [P, F] (bf16/fp16, SBUF) to MXFP8 on the Vector Engine.

    ``dst`` is [P, F // 4] of ``nl.float8_e4m3fn_x4`` / ``nl.float8_e5m2_x4``:
    ``dst[p, f][j]`` holds ``src[p, 4 f + j]``. One scale covers the 32
    values of 8 partitions x 4 packed elements: ``dst_scale[g, f]``
    (``nl.float8_e8m0fnu`` or ``nl.uint8``, shape [P // 8, F // 4]) for
    partitions ``8 g .. 8 g + 7``. Numerics are ``torch_trn3.mx.to_mx(...,
    scale_mode="trn3")``: scale 2^(floor(log2 amax) - emax + 1), elements
    rounded to nearest even, never saturating.
    """
    from ..mx import to_mx

    instr = "nki.isa.quantize_mx"
    ctx = current(instr)
    _require_v4(ctx, instr)
    dst, src, dst_scale = (_tile(dst, instr, "dst"), _tile(src, instr, "src"), _tile(dst_scale, instr, "dst_scale"))
    for role, t in (("dst", dst), ("src", src), ("dst_scale", dst_scale)):
        _in(t, instr, role, (MemoryRegion.sbuf,), "quantize_mx reads and writes SBUF")
    if src.dtype not in (torch.bfloat16, torch.float16):
        raise NkiDtypeError(instr, f"src dtype {dtype_name(src.dtype)} is not taken", tile=src.describe(),
                            limit="float16 or bfloat16")
    if not isinstance(dst.dtype, PackedDtype):
        raise NkiDtypeError(instr, f"dst dtype {dtype_name(dst.dtype)} is not taken", tile=dst.describe(),
                            limit="nl.float8_e4m3fn_x4 or nl.float8_e5m2_x4")
    if dst_scale.dtype not in (torch.float8_e8m0fnu, torch.uint8):
        raise NkiDtypeError(instr, f"dst_scale dtype {dtype_name(dst_scale.dtype)} is not taken",
                            tile=dst_scale.describe(), limit="nl.float8_e8m0fnu or nl.uint8")
    pack, gp = dst.dtype.pack, _MX_GROUP_PARTITIONS
    if len(src.shape) != 2:
        raise NkiShapeError(instr, "src must be a 2-d tile [P, F]", tile=src.describe())
    p, f = src.shape
    if p % (4 * gp) or f % pack:
        raise NkiShapeError(instr, f"src [{p}, {f}]: P must be a multiple of {4 * gp}, F of {pack}",
                            tile=src.describe(), limit=f"P % {4 * gp} == 0, F % {pack} == 0")
    m = f // pack
    if tuple(dst.shape) != (p, m) or tuple(dst_scale.shape) != (p // gp, m):
        raise NkiShapeError(instr, f"dst must be [{p}, {m}] and dst_scale [{p // gp}, {m}]",
                            tile=f"dst {dst.describe()}, dst_scale {dst_scale.describe()}")
    ctx.check_read(src, instr, "src")
    blocks = src.data.reshape(p // gp, gp, m, pack).permute(0, 2, 1, 3).reshape(p // gp, m, gp * pack)
    mx = to_mx(blocks.contiguous(), dst.dtype.element, block_size=gp * pack, scale_mode="trn3")
    dst.data.copy_(mx.elements.reshape(p // gp, m, gp, pack).permute(0, 2, 1, 3).reshape(p, m, pack))
    dst_scale.data.copy_(mx.scales.view(torch.uint8).reshape(p // gp, m).view(dst_scale.data.dtype))
    ctx.mark_written(dst)
    ctx.mark_written(dst_scale)
    ctx.charge("nki::quantize_mx", ctx.lane_cost(Engine.VECTOR, f), [src], [dst, dst_scale])


def _mx_operand(t: NkiTensor, scale: NkiTensor, ctx, instr: str, role: str) -> torch.Tensor:
    """Dequantized [K, free] float32 values of an x4-packed MX tile (exact)."""
    from ..mx.scales import e8m0_to_float

    kp, free = t.shape[0], _free(t)
    gp = _MX_GROUP_PARTITIONS
    if scale.dtype not in (torch.float8_e8m0fnu, torch.uint8):
        raise NkiDtypeError(instr, f"{role}_scale dtype {dtype_name(scale.dtype)} is not taken",
                            tile=scale.describe(), limit="nl.float8_e8m0fnu or nl.uint8")
    if kp % gp or tuple(scale.shape) != (kp // gp, free):
        raise NkiShapeError(instr, f"{role}_scale {list(scale.shape)} must be [{kp // gp}, {free}] "
                            f"(one scale per {gp} partitions x 4 elements)", tile=scale.describe())
    ctx.check_read(t, instr, role)
    ctx.check_read(scale, instr, f"{role}_scale")
    pack = t.dtype.pack
    values = t.data.reshape(kp, free, pack).float()
    s = e8m0_to_float(scale.data.reshape(kp // gp, free)).repeat_interleave(gp, dim=0)
    values = values * s.unsqueeze(-1)
    # Contraction index k = 4 * partition + packed element.
    return values.permute(0, 2, 1).reshape(kp * pack, free)


def nc_matmul_mx(dst, stationary, moving, stationary_scale, moving_scale, tile_position=None, tile_size=None,
                 accumulate=None, name=None) -> None:
    """``dst[M, N] (+)= dequant(stationary)[K, M].T @ dequant(moving)[K, N]`` on the MX array.

    ``stationary`` [Kp, M] and ``moving`` [Kp, N] are x4-packed MXFP8 SBUF
    tiles (K = 4 Kp contraction elements, Kp <= 128), their scales as
    :func:`quantize_mx` makes them; FP32 accumulation in PSUM as ``nc_matmul``.
    """
    instr = "nki.isa.nc_matmul_mx"
    ctx = current(instr)
    _require_v4(ctx, instr)
    dst, stationary, moving, kp, m, n = _matmul_checks(
        instr, ctx, dst, stationary, moving, ctx.limits.pmax, (float8_e4m3fn_x4, float8_e5m2_x4),
        "nl.float8_e4m3fn_x4 / nl.float8_e5m2_x4")
    stationary_scale = _tile(stationary_scale, instr, "stationary_scale")
    moving_scale = _tile(moving_scale, instr, "moving_scale")
    for role, t in (("stationary_scale", stationary_scale), ("moving_scale", moving_scale)):
        _in(t, instr, role, (MemoryRegion.sbuf,), "the Tensor Engine reads SBUF")
    a = _mx_operand(stationary, stationary_scale, ctx, instr, "stationary")
    b = _mx_operand(moving, moving_scale, ctx, instr, "moving")
    _accumulate_into(ctx, instr, dst, a.t(), b, accumulate)
    cost = ctx.cost(isa_cost.nc_matmul_mx, kp * stationary.dtype.pack, m, n)
    ctx.charge("nki::nc_matmul_mx", cost, [stationary, moving, stationary_scale, moving_scale], [dst])


# ------------------------------------------------------------------ batch norm
#: Values ``bn_stats`` writes per partition: count, mean, M2 (sum of squared
#: deviations) of its chunk; ``bn_aggr`` combines chunks (Chan et al.).
_BN_STATS_WIDTH = 3


def bn_stats(dst, data, name=None) -> None:
    """Per-partition statistics of ``data`` [P, F] (F <= ``nl.tile_size.bn_stats_fmax``)
    on the Vector Engine: ``dst`` [P, 3] = (count, mean, M2). Concatenate the
    outputs of several ``bn_stats`` along the free dim and give them to
    :func:`bn_aggr`."""
    instr = "nki.isa.bn_stats"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    data = _on_chip(data, instr, "data")
    _float_in(data, instr, "data")
    p, f = data.shape[0], _free(data)
    if f > ctx.limits.lane_fmax:
        raise NkiTileLimitError(instr, f"free size {f} exceeds {ctx.limits.lane_fmax}", tile=data.describe(),
                                limit=f"nl.tile_size.bn_stats_fmax = {ctx.limits.lane_fmax}")
    if dst.shape[0] != p or _free(dst) != _BN_STATS_WIDTH:
        raise NkiShapeError(instr, f"dst {list(dst.shape)} must be [{p}, {_BN_STATS_WIDTH}]", tile=dst.describe())
    x = _values(data, ctx, instr, "data").reshape(p, f)
    mean = x.mean(dim=1, keepdim=True)
    m2 = ((x - mean) ** 2).sum(dim=1, keepdim=True)
    _write(ctx, dst, torch.cat([torch.full_like(mean, f), mean, m2], dim=1))
    ctx.charge("nki::bn_stats", ctx.lane_cost(Engine.VECTOR, f), [data], [dst])


def bn_aggr(dst, data, name=None) -> None:
    """Combines ``bn_stats`` outputs ``data`` [P, 3 k] into ``dst`` [P, 2] = (mean, variance)
    (population variance) on the Vector Engine."""
    instr = "nki.isa.bn_aggr"
    ctx = current(instr)
    dst = _on_chip(dst, instr, "dst")
    data = _on_chip(data, instr, "data")
    p, f = data.shape[0], _free(data)
    if f % _BN_STATS_WIDTH:
        raise NkiShapeError(instr, f"data free size {f} is not a multiple of {_BN_STATS_WIDTH} (bn_stats outputs)",
                            tile=data.describe())
    if dst.shape[0] != p or _free(dst) != 2:
        raise NkiShapeError(instr, f"dst {list(dst.shape)} must be [{p}, 2]", tile=dst.describe())
    s = _values(data, ctx, instr, "data").reshape(p, f // _BN_STATS_WIDTH, _BN_STATS_WIDTH).double()
    n, mean, m2 = s[..., 0], s[..., 1], s[..., 2]
    total = n.sum(dim=1, keepdim=True)
    mu = (n * mean).sum(dim=1, keepdim=True) / total
    m2_all = (m2 + n * (mean - mu) ** 2).sum(dim=1, keepdim=True)
    _write(ctx, dst, torch.cat([mu, m2_all / total], dim=1).float())
    ctx.charge("nki::bn_aggr", ctx.lane_cost(Engine.VECTOR, f), [data], [dst])
