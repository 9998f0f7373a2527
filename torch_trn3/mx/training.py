"""MXFP8 training: ``MXLinear`` and ``convert_to_mx_training``.

All three matmuls of a linear layer run in MX, each operand blocked along
that matmul's contraction dim, as the Tensor Engine requires:

====================  =====================  ==================================
matmul                contraction            operands (blocked along last dim)
====================  =====================  ==================================
y  = x @ W.T          in_features            x (M, K), W (N, K)    elem dtype
dx = dy @ W           out_features           dy (M, N) grad dtype, W.T (K, N)
dW = dy.T @ x         batch rows             dy.T (N, M) grad dtype, x.T (K, M)
====================  =====================  ==================================

Master weights keep their dtype (fp32 or bf16) and are quantized on the fly,
so the optimizer, state_dict and checkpoints see an ordinary linear layer.
Dims that are not a multiple of the block size are zero-padded along the
contraction dim (zeros add nothing to the FP32 sums).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .formats import MX_BLOCK_SIZE, ElemFormat, ScaleMode
from .matmul import mx_mm
from .mx_tensor import to_mx


def _mx_matmul_nt(a: torch.Tensor, b: torch.Tensor, a_dtype: torch.dtype, b_dtype: torch.dtype,
                  block_size: int, scale_mode: str) -> torch.Tensor:
    """float32 ``a @ b.T`` with both operands MX-quantized along their last dim."""
    pad = -a.shape[-1] % block_size
    if pad:
        a, b = F.pad(a, (0, pad)), F.pad(b, (0, pad))
    return mx_mm(to_mx(a, a_dtype, block_size, scale_mode),
                 to_mx(b, b_dtype, block_size, scale_mode))


class _MXLinearFunction(torch.autograd.Function):
    """Linear layer whose forward and both backward matmuls run in MX."""

    @staticmethod
    def forward(ctx, x, weight, bias, elem_dtype, grad_elem_dtype, block_size, scale_mode):
        ctx.config = (elem_dtype, grad_elem_dtype, block_size, scale_mode)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        x2d = x.reshape(-1, x.shape[-1])
        out = _mx_matmul_nt(x2d, weight, elem_dtype, elem_dtype, block_size, scale_mode)
        if bias is not None:
            out = out + bias.to(torch.float32)
        return out.to(x.dtype).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        elem_dtype, grad_elem_dtype, block_size, scale_mode = ctx.config
        dy = grad_out.reshape(-1, weight.shape[0])
        x2d = x.reshape(-1, x.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _mx_matmul_nt(dy, weight.t(), grad_elem_dtype, elem_dtype,
                                   block_size, scale_mode).to(x.dtype).view(x.shape)
        if ctx.needs_input_grad[1]:
            grad_w = _mx_matmul_nt(dy.t(), x2d.t(), grad_elem_dtype, elem_dtype,
                                   block_size, scale_mode).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = dy.sum(dim=0, dtype=torch.float32)
        return grad_x, grad_w, grad_b, None, None, None, None


def mx_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
              elem_dtype: torch.dtype = torch.float8_e4m3fn,
              grad_elem_dtype: torch.dtype = torch.float8_e5m2,
              block_size: int = MX_BLOCK_SIZE, scale_mode: str = "trn3") -> torch.Tensor:
    """Functional ``F.linear`` with MX forward and backward matmuls."""
    return _MXLinearFunction.apply(x, weight, bias, elem_dtype, grad_elem_dtype,
                                   block_size, scale_mode)


class MXLinear(nn.Module):
    """Drop-in ``nn.Linear`` (same ``weight``/``bias`` names and shapes) whose
    matmuls run in MX; built by ``convert_to_mx_training`` or directly."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 elem_dtype: torch.dtype = torch.float8_e4m3fn,
                 grad_elem_dtype: torch.dtype = torch.float8_e5m2,
                 scale_mode: str = "trn3", block_size: int = MX_BLOCK_SIZE,
                 device=None, dtype=None):
        super().__init__()
        _validate_config(elem_dtype, grad_elem_dtype, scale_mode, block_size)
        self.in_features, self.out_features = in_features, out_features
        self.elem_dtype, self.grad_elem_dtype = elem_dtype, grad_elem_dtype
        self.scale_mode, self.block_size = ScaleMode.parse(scale_mode).value, block_size
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        if self.weight.device.type != "meta":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation (uniform, bound 1/sqrt(in_features))."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_linear(cls, linear: nn.Linear, **config) -> "MXLinear":
        """Wrap ``linear``'s own Parameter objects (no copy), so optimizers and
        tied weights keep pointing at them."""
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                  device="meta", **config)
        new.weight = linear.weight
        new.bias = linear.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mx_linear(x, self.weight, self.bias, elem_dtype=self.elem_dtype,
                         grad_elem_dtype=self.grad_elem_dtype, block_size=self.block_size,
                         scale_mode=self.scale_mode)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, elem_dtype={self.elem_dtype}, "
                f"grad_elem_dtype={self.grad_elem_dtype}, scale_mode={self.scale_mode!r}, "
                f"block_size={self.block_size}")


def _validate_config(elem_dtype, grad_elem_dtype, scale_mode, block_size) -> None:
    ElemFormat.from_dtype(elem_dtype)
    ElemFormat.from_dtype(grad_elem_dtype)
    ScaleMode.parse(scale_mode)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2 \
            or block_size % 2:
        raise ValueError(f"block_size must be an even int >= 2, got {block_size!r}")


def convert_to_mx_training(model: nn.Module, elem_dtype: torch.dtype = torch.float8_e4m3fn,
                           grad_elem_dtype: torch.dtype = torch.float8_e5m2,
                           scale_mode: str = "trn3", block_size: int = MX_BLOCK_SIZE,
                           module_filter=None) -> nn.Module:
    """Swap every ``nn.Linear`` in ``model`` (in place) for an ``MXLinear``.

    ``module_filter(fqn, linear) -> bool`` can keep some layers (e.g. the
    output head) in high precision. Parameters are reused, not copied, so
    state_dict keys, existing optimizers and checkpoints are unaffected.
    Returns the model (a new module if ``model`` itself is an ``nn.Linear``).
    """
    _validate_config(elem_dtype, grad_elem_dtype, scale_mode, block_size)
    config = dict(elem_dtype=elem_dtype, grad_elem_dtype=grad_elem_dtype,
                  scale_mode=scale_mode, block_size=block_size)

    def wanted(fqn, module):
        return isinstance(module, nn.Linear) and (module_filter is None or module_filter(fqn, module))

    if wanted("", model):
        return MXLinear.from_linear(model, **config)
    for fqn, module in list(model.named_modules()):
        for name, child in list(module.named_children()):
            child_fqn = f"{fqn}.{name}" if fqn else name
            if wanted(child_fqn, child):
                setattr(module, name, MXLinear.from_linear(child, **config))
    return model
