"""``scaled_dot_product_attention`` on trn as one flash-attention kernel.

On trn, SDPA picks the CPU's backend (csrc/aten/Attention.cpp), usually
``aten::_scaled_dot_product_flash_attention_for_cpu`` and, for the backward,
``..._backward``. Through the boxed fallback the chip model would only see
their tensor shapes, not ``is_causal``. These kernels run the same CPU
kernels on zero-copy CPU views of the trn tensors (so values and gradients
are the CPU's, bit for bit), copy the results into device memory, and charge
the whole op once with :func:`torch_trn3.chip_model.charge_attention`:
a causal mask skips the masked score blocks
(:func:`torch_trn3.hw.cost.causal_kept_fraction`), an ``attn_mask`` adds its
bytes to the HBM traffic. Autograd is the op's own derivative formula: these
are backend kernels, below autograd.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _C, _aten_kernels, chip_model
from .hw.cost import causal_kept_fraction
from .hw.specs import FLASH_ATTENTION

_FORWARD = "_scaled_dot_product_flash_attention_for_cpu"
_BACKWARD = "_scaled_dot_product_flash_attention_for_cpu_backward"


def _check_devices(op: str, *tensors: Optional[torch.Tensor]) -> None:
    device = tensors[0].device
    for t in tensors:
        if t is not None and t.device != device:
            raise RuntimeError(
                "Expected all tensors to be on the same device, but found at least two devices, "
                f"{device} and {t.device}! (when running aten::{op})")


def _cpu(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else _C._cpu_view(t)


def mask_bytes(mask: Optional[torch.Tensor]) -> int:
    """HBM bytes a kernel reads for ``mask``: its distinct elements (a
    broadcast dimension, stride 0, is read once)."""
    if mask is None:
        return 0
    distinct = 1
    for size, stride in zip(mask.shape, mask.stride()):
        if stride != 0:
            distinct *= size
    return distinct * mask.element_size()


def _kept(is_causal: bool, query: torch.Tensor, key: torch.Tensor) -> float:
    if not is_causal:
        return 1.0
    # torch's is_causal is top-left aligned (the CPU kernel's too).
    return causal_kept_fraction(query.shape[-2], key.shape[-2], FLASH_ATTENTION.q_tile_rows)


def flash_attention_for_cpu(query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None,
                            scale=None):
    """The trn kernel of ``aten::_scaled_dot_product_flash_attention_for_cpu``."""
    _check_devices(_FORWARD, query, key, value, attn_mask)
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
    with chip_model.uncharged():
        out, lse = op(_cpu(query), _cpu(key), _cpu(value), dropout_p, is_causal,
                      attn_mask=_cpu(attn_mask), scale=scale)
        out, lse = out.to(query.device), lse.to(query.device)
    chip_model.charge_attention(f"aten::{_FORWARD}", query, key, value, [out, lse],
                                kept_fraction=_kept(is_causal, query, key),
                                mask_bytes=mask_bytes(attn_mask),
                                inputs=[t for t in (query, key, value, attn_mask) if t is not None])
    return out, lse


def flash_attention_for_cpu_backward(grad_out, query, key, value, out, logsumexp, dropout_p, is_causal,
                                     *, attn_mask=None, scale=None):
    """The trn kernel of ``aten::_scaled_dot_product_flash_attention_for_cpu_backward``."""
    _check_devices(_BACKWARD, query, grad_out, key, value, out, logsumexp, attn_mask)
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default
    with chip_model.uncharged():
        grads = op(_cpu(grad_out), _cpu(query), _cpu(key), _cpu(value), _cpu(out), _cpu(logsumexp),
                   dropout_p, is_causal, attn_mask=_cpu(attn_mask), scale=scale)
        grads = tuple(g.to(query.device) for g in grads)
    reads = [grad_out, query, key, value, out, logsumexp] + ([attn_mask] if attn_mask is not None else [])
    chip_model.charge_attention(f"aten::{_BACKWARD}", query, key, value, list(grads),
                                kept_fraction=_kept(is_causal, query, key), backward=True,
                                mask_bytes=mask_bytes(attn_mask), inputs=reads)
    return grads


_lib = None


def register(device_key: str = "PrivateUse1") -> None:
    """Registers the kernels for the trn dispatch key (once)."""
    global _lib
    if _lib is not None:
        return
    _lib = _aten_kernels.register({_FORWARD: flash_attention_for_cpu,
                                   _BACKWARD: flash_attention_for_cpu_backward}, device_key)
