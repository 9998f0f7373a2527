"""N:M structured sparsity along the contraction dim (K).

Trainium3 keeps N of every M consecutive weights along K (4:16, 4:12, 4:8,
2:8, 2:4, 1:4, 1:2) and skips the rest, which is where its 4x sparse MXFP8
FLOPs come from. A ``StructuredSparseTensor`` stores only the kept values
(..., K*N/M), plain or MX-quantized along that compressed dim, and their
positions inside each group of M.
"""

from __future__ import annotations

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


def sparse_mm(a, w: StructuredSparseTensor, *, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``a @ w.T`` for activations ``a`` (..., K) (tensor or MXTensor) and a
    structured-sparse weight ``w`` (N, K).

    The skipped weights are exact zeros, so the FP32 sum over the kept ones
    equals the dense product of the pruned weight; the emulator computes it
    that way (decompress, dense FP32 matmul) so the two agree bit for bit.
    Result dtype: ``out_dtype``, else ``a``'s dtype (float32 for MX ``a``).
    """
    reject_nvfp4("a", a)
    if not isinstance(w, StructuredSparseTensor):
        raise TypeError(f"w must be a StructuredSparseTensor (see prune_structured), got "
                        f"{type(w).__name__}")
    if len(w.shape) != 2 or a.shape[-1] != w.shape[-1]:
        raise ValueError(f"shapes do not multiply as a @ w.T: a {tuple(a.shape)}, w {tuple(w.shape)}")
    if isinstance(a, MXTensor):
        dense_a, default = a.dequantize(torch.float32), torch.float32
    else:
        _checks.check_tensor("a", a)
        dense_a, default = a.to(torch.float32), a.dtype
    _checks.check_same_device(a=dense_a, w=w.indices)
    with chip_model.uncharged():
        out = (dense_a @ w.to_dense(torch.float32).mT).to(out_dtype or default)
    # Modelled as the hardware runs it: MX compute at the sparse rate, and
    # HBM holds only the kept values (MXFP8) and their in-group indices.
    kept = w.n / w.m
    index_bytes = kept * max(1, (w.m - 1).bit_length()) / 8
    chip_model.charge_matmul("torch_trn3::sparse_mm", [w.indices], [out], out.numel() // w.shape[0],
                             w.shape[0], w.shape[-1], dtype="mxfp8", sparsity=f"{w.n}:{w.m}",
                             weight_bytes_per_element=kept * dtype_bytes("mxfp8") + index_bytes)
    return out
