"""torchtitan options the trn backend cannot honour fail at start-up.

Some torchtitan 0.3.0 configurations call CUDA-only kernels. Unchecked,
they either stop with a CUDA-worded message, or start training and crash
inside the first forward (``--config llama3_debugmodel_varlen_attn`` dies
in ``aten::_flash_attention_forward``). When torchtitan would run on the
trn device, these raise :class:`TitanOptionError` while torchtitan builds
its config, naming the option, why trn cannot run it and what to use:

- attention backend ``varlen`` (``VarlenAttention``: torch's
  ``varlen_attn``, CUDA flash-attention kernels) and ``flex_flash``
  (FlexAttention with ``kernel_options={"BACKEND": "FLASH"}``: the
  CuTe-DSL flash kernels for Hopper/Blackwell). ``flex`` runs on trn.
- the float8 model converter (``Float8LinearConverter``, configs
  ``*_float8``) with a hardware recipe: torchao's float8 training calls
  CUDA SM89+ float8 GEMMs. ``emulate=True`` is accepted (plain matmuls).

Hooks are installed when torchtitan's modules are imported (nothing of
torchtitan is imported here); on CPU/CUDA runs they do nothing.
"""
from __future__ import annotations

from ._wrapping import wrap_once

_CONFIG_UTILS = "torchtitan.models.common.config_utils"
_FLOAT8 = "torchtitan.components.quantization.float8"


class TitanOptionError(ValueError):
    """A torchtitan option the trn backend cannot honour."""


def _on_trn() -> bool:
    """torchtitan picks the device with ``_get_available_device_type()``."""
    import torch

    from . import DEVICE_NAME

    return torch._utils._get_available_device_type() == DEVICE_NAME


_ATTENTION = {
    "varlen": "VarlenAttention calls torch's varlen_attn (CUDA flash-attention kernels)",
    "flex_flash": ("FlexAttention with kernel_options BACKEND=FLASH calls the CuTe-DSL "
                   "flash kernels (CUDA Hopper/Blackwell)"),
}


def check_attention_backend(backend: str) -> None:
    if backend in _ATTENTION and _on_trn():
        from . import DEVICE_NAME

        raise TitanOptionError(
            f"torchtitan attention backend {backend!r} (attn_backend, e.g. --config "
            f"*_{'varlen_attn' if backend == 'varlen' else backend}) cannot run on "
            f"{DEVICE_NAME}: {_ATTENTION[backend]}. Use attn_backend 'flex' (the debug "
            f"configs' default), which runs on {DEVICE_NAME}.")


def check_float8(config) -> None:
    if getattr(config, "emulate", False) or not _on_trn():
        return
    from . import DEVICE_NAME

    raise TitanOptionError(
        f"torchtitan float8 model converter (Float8LinearConverter, recipe "
        f"{getattr(config, 'recipe_name', '?')!r}, e.g. --config llama3_debugmodel_float8) "
        f"cannot run on {DEVICE_NAME}: torchao float8 training needs CUDA SM89+ float8 "
        f"GEMM kernels. Set the converter's emulate=True, or use torch_trn3.mx for "
        f"Trainium MX formats.")


def _check_attention_first(get_attention_config):
    def checked(backend, *args, **kwargs):
        check_attention_backend(backend)
        return get_attention_config(backend, *args, **kwargs)
    return checked


def _check_float8_first(init):
    def checked(self, config, *args, **kwargs):
        check_float8(config)
        init(self, config, *args, **kwargs)
    return checked


def _wrap_config_utils() -> None:
    import sys

    wrap_once(sys.modules[_CONFIG_UTILS], "get_attention_config", _check_attention_first)


def _wrap_float8() -> None:
    import sys

    wrap_once(sys.modules[_FLOAT8].Float8LinearConverter, "__init__", _check_float8_first)


def install() -> None:
    from .compiler._hooks import _after_import

    _after_import(_CONFIG_UTILS, _wrap_config_utils)
    _after_import(_FLOAT8, _wrap_float8)
