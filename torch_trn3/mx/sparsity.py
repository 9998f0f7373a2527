"""N:M structured sparsity along the contraction dim (K).

Trainium3 keeps N of every M consecutive weights along K (4:16, 4:12, 4:8,
2:8, 2:4, 1:4, 1:2) and skips the rest, which is where its 4x sparse MXFP8
FLOPs come from. A ``StructuredSparseTensor`` stores only the kept values
(..., K*N/M), plain or MX-quantized along that compressed dim, and their
positions inside each group of M.
"""

from __future__ import annotations

from typing import Optional

import torch

from .. import chip_model
from ..hw.specs import dtype_bytes
from . import _checks
from .formats import MX_BLOCK_SIZE
from .mx_tensor import MXTensor, to_mx
from .nvfp4 import reject_nvfp4

#: (kept, group) patterns the NeuronCore-v3/v4 sparse Tensor Engine supports.
SPARSITY_PATTERNS = ((4, 16), (4, 12), (4, 8), (2, 8), (2, 4), (1, 4), (1, 2))


class StructuredSparseTensor:
    """Kept ``values`` (..., K*n/m) and their in-group ``indices`` (uint8,
    ascending within each group) of a dense tensor of shape ``shape``."""

    def __init__(self, values, indices: torch.Tensor, n: int, m: int, shape):
        self.values = values
        self.indices = indices
        self.n, self.m = n, m
        self.shape = torch.Size(shape)

    @property
    def device(self) -> torch.device:
        return self.indices.device

    def _dense_values(self) -> torch.Tensor:
        if isinstance(self.values, MXTensor):
            return self.values.dequantize(torch.float32)
        return self.values

    def to_dense(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The dense tensor: kept values in place, exact zeros elsewhere."""
        values = self._dense_values()
        groups = self.shape[-1] // self.m
        lead = self.shape[:-1]
        dense = values.new_zeros((*lead, groups, self.m))
        dense.scatter_(-1, self.indices.to(torch.int64).view(*lead, groups, self.n),
                       values.reshape(*lead, groups, self.n))
        dense = dense.view(self.shape)
        return dense if dtype is None else dense.to(dtype)

    def to_mx(self, elem_dtype: torch.dtype = torch.float8_e4m3fn,
              block_size: int = MX_BLOCK_SIZE, scale_mode: str = "floor") -> "StructuredSparseTensor":
        """Quantize the kept values to MX along the compressed K dim."""
        return StructuredSparseTensor(to_mx(self._dense_values(), elem_dtype, block_size, scale_mode),
                                      self.indices, self.n, self.m, self.shape)

    def __repr__(self) -> str:
        kind = "MX" if isinstance(self.values, MXTensor) else str(self.values.dtype)
        return f"StructuredSparseTensor({self.n}:{self.m}, shape={tuple(self.shape)}, values={kind})"


def prune_structured(w: torch.Tensor, n: int, m: int) -> StructuredSparseTensor:
    """Keep the ``n`` largest magnitudes of every ``m`` consecutive elements
    along the last dim (K) of ``w``.

    Ties keep the earlier position (stable sort), and NaN counts as largest,
    so the pattern is deterministic.
    """
    _checks.check_tensor("w", w)
    if (n, m) not in SPARSITY_PATTERNS:
        supported = ", ".join(f"{a}:{b}" for a, b in SPARSITY_PATTERNS)
        raise ValueError(f"unsupported sparsity {n}:{m}; Trainium3 supports {supported}")
    if w.ndim == 0 or w.shape[-1] % m:
        raise ValueError(f"last dim of w {tuple(w.shape)} must be a multiple of the group size {m}")
    groups = w.reshape(*w.shape[:-1], w.shape[-1] // m, m)
    order = torch.sort(groups.abs(), dim=-1, descending=True, stable=True).indices
    kept = order[..., :n].sort(dim=-1).values
    values = groups.gather(-1, kept)
    lead = w.shape[:-1]
    compressed = w.shape[-1] * n // m
    return StructuredSparseTensor(values.reshape(*lead, compressed),
                                  kept.to(torch.uint8).reshape(*lead, compressed), n, m, w.shape)


@torch.library.custom_op("torch_trn3::sparse_mm", mutates_args=())
def _sparse_mm_op(a: torch.Tensor, a_scales: Optional[torch.Tensor], a_block_size: int,
                  values: torch.Tensor, values_scales: Optional[torch.Tensor],
                  values_block_size: int, indices: torch.Tensor, n: int, m: int,
                  out_dtype: torch.dtype) -> torch.Tensor:
    """``a @ w.T`` for a structured-sparse ``w`` given as its kept ``values``
    (MX when ``values_scales`` is given), their ``indices`` and ``n``:``m``;
    ``a`` is MX when ``a_scales`` is given."""
    w = _weight(values, values_scales, values_block_size, indices, n, m)
    if a_scales is not None:
        dense_a = MXTensor(a, a_scales, a_block_size).dequantize(torch.float32)
    else:
        dense_a = a.to(torch.float32)
    with chip_model.uncharged():
        out = (dense_a @ w.to_dense(torch.float32).mT).to(out_dtype)
    # Modelled as the hardware runs it: MX compute at the sparse rate, and
    # HBM holds only the kept values (MXFP8) and their in-group indices.
    kept = w.n / w.m
    index_bytes = kept * max(1, (w.m - 1).bit_length()) / 8
    chip_model.charge_matmul("torch_trn3::sparse_mm",
                             chip_model.operands(a, a_scales, values, values_scales, indices), [out],
                             out.numel() // w.shape[0], w.shape[0], w.shape[-1], dtype="mxfp8", sparsity=f"{w.n}:{w.m}",
                             weight_bytes_per_element=kept * dtype_bytes("mxfp8") + index_bytes)
    return out


def _weight(values, values_scales, values_block_size, indices, n, m) -> "StructuredSparseTensor":
    if values_scales is not None:
        values = MXTensor(values, values_scales, values_block_size)
    return StructuredSparseTensor(values, indices, n, m, (indices.shape[0], indices.shape[-1] * m // n))


@_sparse_mm_op.register_fake
def _(a, a_scales, a_block_size, values, values_scales, values_block_size, indices, n, m, out_dtype):
    return a.new_empty((*a.shape[:-1], indices.shape[0]), dtype=out_dtype)


def _sparse_mm_setup(ctx, inputs, output):
    a, a_scales, a_block_size, values, values_scales, values_block_size, indices, n, m, _ = inputs
    ctx.config = (a_block_size, values_block_size, n, m)
    ctx.save_for_backward(a, a_scales, values, values_scales, indices)


def _sparse_mm_backward(ctx, grad):
    """Gradients for a plain ``a`` and plain kept ``values``, the ones autograd
    took through the dense formula: ``a`` gets ``grad @ W`` (float32, cast
    back), the values get ``grad.T @ a`` gathered at their positions."""
    a_block_size, values_block_size, n, m = ctx.config
    a, a_scales, values, values_scales, indices = ctx.saved_tensors
    grad_a = grad_values = None
    g = grad.to(torch.float32).reshape(-1, indices.shape[0])
    if ctx.needs_input_grad[0] and a_scales is None:
        w = _weight(values, values_scales, values_block_size, indices, n, m)
        grad_a = (g @ w.to_dense(torch.float32)).reshape(a.shape).to(a.dtype)
    if ctx.needs_input_grad[3] and values_scales is None:
        if a_scales is not None:
            dense_a = MXTensor(a, a_scales, a_block_size).dequantize(torch.float32)
        else:
            dense_a = a.to(torch.float32)
        a2d = dense_a.reshape(-1, dense_a.shape[-1])
        grad_dense = (g.t() @ a2d).to(values.dtype)
        groups = grad_dense.shape[-1] // m
        lead = grad_dense.shape[:-1]
        grad_values = grad_dense.view(*lead, groups, m).gather(
            -1, indices.to(torch.int64).view(*lead, groups, n)).reshape(values.shape)
    return grad_a, None, None, grad_values, None, None, None, None, None, None


_sparse_mm_op.register_autograd(_sparse_mm_backward, setup_context=_sparse_mm_setup)


def sparse_mm(a, w: StructuredSparseTensor, *, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``a @ w.T`` for activations ``a`` (..., K) (tensor or MXTensor) and a
    structured-sparse weight ``w`` (N, K).

    The skipped weights are exact zeros, so the FP32 sum over the kept ones
    equals the dense product of the pruned weight; the emulator computes it
    that way (decompress, dense FP32 matmul) so the two agree bit for bit.
    Result dtype: ``out_dtype``, else ``a``'s dtype (float32 for MX ``a``).
    Runs ``torch.ops.torch_trn3.sparse_mm``.
    """
    reject_nvfp4("a", a)
    if not isinstance(w, StructuredSparseTensor):
        raise TypeError(f"w must be a StructuredSparseTensor (see prune_structured), got "
                        f"{type(w).__name__}")
    if len(w.shape) != 2 or a.shape[-1] != w.shape[-1]:
        raise ValueError(f"shapes do not multiply as a @ w.T: a {tuple(a.shape)}, w {tuple(w.shape)}")
    if isinstance(a, MXTensor):
        a_data, a_scales, a_block_size, default = a.elements, a.scales, a.block_size, torch.float32
    else:
        _checks.check_tensor("a", a)
        a_data, a_scales, a_block_size, default = a, None, 0, a.dtype
    _checks.check_same_device(a=a_data, w=w.indices)
    if isinstance(w.values, MXTensor):
        values, values_scales, values_block_size = w.values.elements, w.values.scales, w.values.block_size
    else:
        values, values_scales, values_block_size = w.values, None, 0
    return _sparse_mm_op(a_data, a_scales, a_block_size, values, values_scales, values_block_size,
                         w.indices, w.n, w.m, out_dtype or default)
