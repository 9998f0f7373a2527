"""Maps each ATen op run on a trn device to the chip model's cost.

The C++ core calls :func:`op_cost` once per distinct (op, shapes, dtypes)
signature and memoizes the answer, so this runs rarely and may be plain
Python. It reads shapes the way the hardware would tile the op (matmul M, N,
K; element counts for the lane engines; bytes for DMA) and prices them with
:mod:`torch_trn3.hw.cost` on this process's logical device spec.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from math import ceil, log2, prod
from typing import List, Optional, Sequence, Tuple

from .hw.cost import (
    ATTENTION_OPS,
    Engine,
    OpCost,
    attention_cost,
    dma_cost,
    elementwise_cost,
    engine_for_op,
    gpsimd_cost,
    is_transcendental,
    matmul_cost,
    reduction_cost,
)
from .hw.lnc import LogicalDeviceSpec

TensorDesc = Tuple[Tuple[int, ...], str]  # (sizes, c10 dtype name)

#: c10 ScalarType names -> (hw dtype, elements per stored element).
_DTYPES = {
    "Float": ("fp32", 1), "BFloat16": ("bf16", 1), "Half": ("fp16", 1),
    "Double": ("fp64", 1), "Long": ("int64", 1), "Int": ("int32", 1),
    "Short": ("int16", 1), "Char": ("int8", 1), "Byte": ("uint8", 1),
    "Bool": ("bool", 1), "ComplexFloat": ("fp32", 2), "ComplexDouble": ("fp64", 2),
    "ComplexHalf": ("fp16", 2), "Float8_e4m3fn": ("fp8", 1), "Float8_e5m2": ("fp8", 1),
    "Float8_e4m3fnuz": ("fp8", 1), "Float8_e5m2fnuz": ("fp8", 1),
    "Float8_e8m0fnu": ("uint8", 1), "Float4_e2m1fn_x2": ("uint8", 1),
    "UInt16": ("int16", 1), "UInt32": ("int32", 1), "UInt64": ("int64", 1),
}


#: Dtypes the Tensor Engine multiplies (others fall back to GpSimd).
_TENSOR_ENGINE_DTYPES = ("fp32", "bf16", "fp16", "fp8", "mxfp8", "mxfp4")


def _dtype(desc: TensorDesc) -> str:
    return _DTYPES.get(desc[1], ("uint8", 1))[0]


def _numel(desc: TensorDesc) -> int:
    return prod(desc[0]) * _DTYPES.get(desc[1], ("uint8", 1))[1]


def _nbytes(desc: TensorDesc) -> int:
    from .hw.specs import dtype_bytes

    return int(_numel(desc) * dtype_bytes(_dtype(desc)))


def _matmul_dtype(descs: Sequence[TensorDesc]) -> str:
    """The Tensor Engine mode: MX when E8M0 block scales come along."""
    names = {d[1] for d in descs}
    if "Float4_e2m1fn_x2" in names:
        return "mxfp4"
    if "Float8_e8m0fnu" in names:
        return "mxfp8"
    return _dtype(descs[0])


def _sum_costs(costs: List[OpCost]) -> OpCost:
    """Several Tensor Engine passes of one op, back to back."""
    first = costs[0]
    return OpCost(
        engine=first.engine,
        flops=sum(c.flops for c in costs),
        hbm_bytes=sum(c.hbm_bytes for c in costs),
        compute_s=sum(c.compute_s for c in costs),
        memory_s=sum(c.memory_s for c in costs),
        overhead_s=sum(c.overhead_s for c in costs),
        intercore_s=sum(c.intercore_s for c in costs),
        time_s=sum(c.time_s for c in costs),
        utilisation=first.utilisation,
        instructions=sum(c.instructions for c in costs),
        notes=first.notes,
    )


#: Fused attention ops: (query layout, backward?, index of query among the
#: op's tensor inputs, index of the attention mask when present). Layout
#: "bhle" is (batch, heads, length, head_dim); "blhe" is (batch, length,
#: heads, head_dim) (the CUDA flash / efficient kernels). The mask index is
#: given only where the op's defined-tensor list makes it unambiguous.
_ATTENTION_OPS = {
    "scaled_dot_product_attention": ("bhle", False, 0, 3),
    "_scaled_dot_product_attention_math": ("bhle", False, 0, None),
    "_scaled_dot_product_flash_attention_for_cpu": ("bhle", False, 0, 3),
    "_scaled_dot_product_flash_attention_for_cpu_backward": ("bhle", True, 1, 6),
    "_scaled_dot_product_flash_attention": ("bhle", False, 0, None),
    "_scaled_dot_product_flash_attention_backward": ("bhle", True, 1, None),
    "_scaled_dot_product_fused_attention_overrideable": ("bhle", False, 0, 3),
    "_scaled_dot_product_fused_attention_overrideable_backward": ("bhle", True, 1, None),
    "_scaled_dot_product_efficient_attention": ("bhle", False, 0, None),
    "_scaled_dot_product_efficient_attention_backward": ("bhle", True, 1, None),
    "_efficient_attention_forward": ("blhe", False, 0, None),
    "_efficient_attention_backward": ("blhe", True, 1, None),
    "_flash_attention_forward": ("blhe", False, 0, None),
    "_flash_attention_backward": ("blhe", True, 1, None),
}


if set(_ATTENTION_OPS) != ATTENTION_OPS:  # one list of attention ops (hw.cost's)
    raise RuntimeError(f"chip_model attention layouts out of step with hw.cost.ATTENTION_OPS: "
                       f"{sorted(set(_ATTENTION_OPS) ^ ATTENTION_OPS)}")


def _attention_dims(q: TensorDesc, k: TensorDesc, v: TensorDesc, layout: str = "bhle"):
    """(batch_heads, kv_batch_heads, q_len, kv_len, head_dim, v_head_dim)."""
    if layout == "blhe":
        *batch, lq, heads, e = q[0]
        kv_heads, lk, ev = k[0][-2], k[0][-3], v[0][-1]
        b = prod(batch)
        return b * heads, b * kv_heads, lq, lk, e, ev
    *batch, lq, e = q[0]
    lk, ev = k[0][-2], v[0][-1]
    return prod(batch), prod(k[0][:-2]), lq, lk, e, ev


def _attention_cost(dev: LogicalDeviceSpec, base: str, ins: List[TensorDesc]) -> OpCost:
    """One flash-attention kernel (hw.cost.attention_cost) from an op's
    tensor descriptions. Shapes alone do not say ``is_causal``, so this is
    the unmasked kernel; the trn kernels (torch_trn3.attention) charge
    through :func:`charge_attention` with the kept fraction instead."""
    layout, backward, first, mask_at = _ATTENTION_OPS[base]
    q, k, v = ins[first:first + 3]
    bh, kv_bh, lq, lk, e, ev = _attention_dims(q, k, v, layout)
    mask_bytes = _nbytes(ins[mask_at]) if mask_at is not None and len(ins) > mask_at else 0
    return _flash_cost(dev, bh, kv_bh, lq, lk, e, ev, _dtype(q), 1.0, backward, mask_bytes)


@lru_cache(maxsize=4096)
def _flash_cost(dev, bh, kv_bh, lq, lk, e, ev, dtype, kept_fraction, backward, mask_bytes) -> OpCost:
    """Memoized like the C++ core's per-signature cost (training repeats shapes)."""
    if dtype not in _TENSOR_ENGINE_DTYPES:
        # fp64 / integer attention has no Tensor Engine mode (like matmuls):
        # its multiply-adds run on the general-purpose cores.
        macs = kept_fraction * bh * lq * lk * ((e + ev) if not backward else (3 * e + 2 * ev))
        return gpsimd_cost(dev, ceil(macs), dtype)
    return attention_cost(dev, bh, lq, lk, e, ev, dtype, kept_fraction=kept_fraction,
                          backward=backward, mask_bytes=mask_bytes, kv_batch_heads=kv_bh)


def _conv_cost(dev: LogicalDeviceSpec, x: TensorDesc, w: TensorDesc, out: TensorDesc, passes: int) -> OpCost:
    """A convolution as its GEMM: M = out channels per group, N = batch x
    output pixels, K = in channels per group x kernel size."""
    cout, cin_g, *kernel = w[0]
    groups = max(1, x[0][1] // max(1, cin_g))
    n = out[0][0] * prod(out[0][2:])
    gemm = matmul_cost(dev, cout // groups, n, cin_g * prod(kernel), batch=groups, dtype=_dtype(x))
    return _sum_costs([gemm] * passes)


def _tensor_engine_cost(dev: LogicalDeviceSpec, base: str, ins: List[TensorDesc], outs: List[TensorDesc]) -> OpCost:
    if base in _ATTENTION_OPS:
        return _attention_cost(dev, base, ins)
    if base == "convolution_overrideable":
        return _conv_cost(dev, ins[0], ins[1], outs[0], passes=1)
    if base == "convolution_backward_overrideable":
        return _conv_cost(dev, ins[1], ins[2], ins[0], passes=2)
    dtype = _matmul_dtype(ins)
    operands = [d for d in ins if len(d[0]) >= 1] or ins
    # add*(self, a, b): the two operands come last; others: first.
    pair = operands[-2:] if base.startswith("add") else operands[:2]
    a = pair[0][0]
    b = pair[-1][0]
    if base in ("addr", "outer", "ger"):              # outer product: K = 1
        m, n, k, batch = (a[0] if a else 1), (b[0] if b else 1), 1, 1
    else:
        k = (a[-1] if a else 1) * (2 if dtype == "mxfp4" else 1)
        m = a[-2] if len(a) >= 2 else 1
        n = b[-1] if len(b) >= 2 else 1
        batch = prod(a[:-2]) if len(a) > 2 else 1
    if dtype not in _TENSOR_ENGINE_DTYPES:
        # Integer / fp64 matmuls have no Tensor Engine mode: general-purpose cores.
        return gpsimd_cost(dev, batch * m * n * k, dtype)
    return matmul_cost(dev, m, n, k, batch=batch, dtype=dtype)


def cost_of(dev: LogicalDeviceSpec, op: str, inputs: List[TensorDesc], outputs: List[TensorDesc]) -> OpCost:
    """The modelled cost of ``op`` (e.g. "aten::mm") on ``dev``."""
    engine = engine_for_op(op)
    base = op.partition("::")[2].partition(".")[0]
    descs = inputs + outputs
    if not descs:
        return dma_cost(dev, 0)
    largest = max(descs, key=_numel)
    if engine is Engine.TENSOR and inputs:
        return _tensor_engine_cost(dev, base, inputs, outputs)
    if engine is Engine.VECTOR:
        n_in = max((_numel(d) for d in inputs), default=0)
        n_out = sum(_numel(d) for d in outputs)
        return reduction_cost(dev, n_in, n_out, _dtype(largest))
    if engine is Engine.GPSIMD:
        n = _numel(largest)
        passes = max(1.0, log2(n)) if base in ("sort", "argsort", "topk", "unique", "_unique2") and n > 1 else 1.0
        return gpsimd_cost(dev, n, _dtype(largest), passes=passes)
    if engine is Engine.DMA:
        return dma_cost(dev, max(_nbytes(d) for d in descs))
    out = max(outputs, key=_numel) if outputs else largest
    return elementwise_cost(dev, _numel(out), _dtype(out), transcendental=is_transcendental(op),
                            n_inputs=max(1, len(inputs)))


_warned = set()


def _warn_once(op: str, error: Exception) -> None:
    if op not in _warned:
        _warned.add(op)
        import warnings

        warnings.warn(f"torch_trn3 chip model: no cost for {op} ({error}); charged as a copy of its bytes")


def make_op_cost(dev: LogicalDeviceSpec):
    """The callback the C++ core memoizes: (op, inputs, outputs) -> (engine,
    seconds, flops, bytes, memory_s, compute_s); the last two let the
    timeline share HBM bandwidth between concurrent engines."""

    def op_cost(op: str, inputs: List[TensorDesc], outputs: List[TensorDesc]):
        try:
            cost = cost_of(dev, op, list(inputs), list(outputs))
        except Exception as error:  # a model gap must never fail the user's op
            _warn_once(op, error)
            descs = list(inputs) + list(outputs)
            cost = dma_cost(dev, max((_nbytes(d) for d in descs), default=0))
        return timeline_charge(cost)

    return op_cost


def timeline_charge(cost: OpCost) -> Tuple[int, float, float, float, float, float]:
    """(engine, seconds, flops, hbm bytes, memory_s, compute_s) of ``cost``, the
    fields ``_C._charge`` schedules: ``memory_s`` is its HBM traffic time at
    the device's full bandwidth and ``compute_s`` the work that overlaps it,
    so concurrent ops on other engines share HBM (see csrc/runtime/TrnClock.h)."""
    return (cost.engine.value, cost.time_s, cost.flops, float(cost.hbm_bytes),
            cost.memory_s, cost.compute_s)


# ---------------------------------------------------------------- kernels written in Python
_C10_NAMES = None


def describe(t) -> TensorDesc:
    """(sizes, c10 dtype name) of a tensor, as the C++ core describes it."""
    global _C10_NAMES
    if _C10_NAMES is None:
        import torch

        _C10_NAMES = {
            torch.float32: "Float", torch.bfloat16: "BFloat16", torch.float16: "Half",
            torch.float64: "Double", torch.int64: "Long", torch.int32: "Int", torch.int16: "Short",
            torch.int8: "Char", torch.uint8: "Byte", torch.bool: "Bool",
            torch.float8_e4m3fn: "Float8_e4m3fn", torch.float8_e5m2: "Float8_e5m2",
            torch.float8_e8m0fnu: "Float8_e8m0fnu", torch.float4_e2m1fn_x2: "Float4_e2m1fn_x2",
        }
    return tuple(t.shape), _C10_NAMES.get(t.dtype, "Byte")


@contextmanager
def uncharged():
    """Ops inside are not charged: a kernel written in Python in terms of other
    ops (MX matmuls dequantize then multiply) charges itself once instead."""
    import torch

    from . import _C

    if torch.compiler.is_compiling():  # traced graphs charge the ops they run
        yield
        return
    previous = _C._model_enabled()
    _C._set_model_enabled(False)
    try:
        yield
    finally:
        _C._set_model_enabled(previous)


def charge(op: str, inputs: Sequence, outputs: Sequence, **cost_kwargs) -> OpCost:
    """Charges ``op`` on the device of its first output with the model's cost."""
    from . import _C, machine

    cost = cost_of(machine.logical, op, [describe(t) for t in inputs], [describe(t) for t in outputs])
    device = outputs[0].device.index
    engine, seconds, flops, nbytes, memory_s, compute_s = timeline_charge(cost)
    _C._charge(op, device, engine, seconds, flops, nbytes, list(inputs), list(outputs),
               memory_s, compute_s)
    return cost


def operands(*tensors) -> list:
    """The tensors a Python kernel reads, optional ones (None) left out: the
    op starts on the timeline only once every one of them is ready (an MX
    matmul waits for its scales as well as its elements)."""
    return [t for t in tensors if t is not None]


def charge_matmul(op: str, inputs: Sequence, outputs: Sequence, m: int, n: int, k: int, *,
                  batch: int = 1, dtype: str = "mxfp8", sparsity: Optional[str] = None,
                  weight_bytes_per_element: Optional[float] = None) -> Optional[OpCost]:
    """Charges one Tensor Engine matmul for a kernel written in Python (run
    its body under :func:`uncharged`). No-op unless the outputs are on trn.

    ``sparsity`` (a pattern the spec lists) runs at the spec's sparse MX rate;
    ``weight_bytes_per_element`` prices the (n, k) operand's HBM bytes in
    another format than ``dtype`` (W4A8: MXFP4 weights in HBM, MXFP8
    compute; sparse weights: only the kept values and their indices).
    """
    import torch

    from . import DEVICE_NAME, _C, machine
    from .hw.specs import dtype_bytes

    if torch.compiler.is_compiling():
        return None  # see uncharged(): compiled graphs charge their ops one by one
    if not outputs or outputs[0].device.type != DEVICE_NAME or not _C._model_enabled():
        return None  # not on trn, or inside another kernel's uncharged() body
    dev = machine.logical
    cost = matmul_cost(dev, m, n, k, batch=batch, dtype=dtype, sparsity=sparsity)
    time_s, hbm, memory_s = cost.time_s, float(cost.hbm_bytes), cost.memory_s
    if weight_bytes_per_element is not None:
        hbm -= batch * n * k * (dtype_bytes(dtype) - weight_bytes_per_element)
        memory_s = hbm / dev.hbm_bytes_per_s
        time_s = max(cost.compute_s, memory_s) + cost.overhead_s + cost.intercore_s
    _C._charge(op, outputs[0].device.index, Engine.TENSOR.value, time_s, cost.flops, hbm,
               list(inputs), list(outputs), memory_s, cost.compute_s)
    return cost


def charge_attention(op: str, query, key, value, outputs: Sequence, *, kept_fraction: float = 1.0,
                     backward: bool = False, mask_bytes: int = 0,
                     inputs: Optional[Sequence] = None) -> Optional[OpCost]:
    """Charges one flash-attention kernel (:func:`torch_trn3.hw.cost.attention_cost`)
    on the device of ``outputs[0]``, for an attention written in Python (run
    its body under :func:`uncharged`).

    ``query`` is (..., q_len, head_dim), ``key`` (..., kv_len, head_dim) and
    ``value`` (..., kv_len, v_head_dim), leading dims batch x heads (fewer
    K/V heads: GQA). ``kept_fraction`` is the share of score blocks the
    kernel computes (causal: :func:`~torch_trn3.hw.cost.causal_kept_fraction`;
    FlexAttention: the block mask's density); ``mask_bytes`` are mask bytes
    it reads from HBM. For the backward pass the forward's Q, K, V and
    ``backward=True``. ``inputs`` are the tensors the kernel waits for on the
    device timeline (default: query, key, value). No-op (None) unless the
    outputs are on trn and the model is on (not inside another kernel's
    :func:`uncharged` body, not while torch.compile traces).
    """
    import torch

    from . import DEVICE_NAME, _C, machine

    if torch.compiler.is_compiling():
        return None  # see uncharged(): compiled graphs charge their ops one by one
    if not outputs or outputs[0].device.type != DEVICE_NAME or not _C._model_enabled():
        return None
    bh, kv_bh, lq, lk, e, ev = _attention_dims(describe(query), describe(key), describe(value))
    cost = _flash_cost(machine.logical, bh, kv_bh, lq, lk, e, ev, _dtype(describe(query)),
                       kept_fraction, backward, mask_bytes)
    reads = [query, key, value] if inputs is None else inputs
    _C._charge(op, outputs[0].device.index, cost.engine.value, cost.time_s, cost.flops,
               float(cost.hbm_bytes), [t for t in reads if t is not None], list(outputs),
               cost.memory_s, cost.compute_s)
    return cost
