"""Argument checks shared by the MX entry points, so every bad input fails the
same way: TypeError for a wrong kind or dtype, ValueError for a wrong shape,
size or device, each message naming the argument and what was expected."""

from __future__ import annotations

import torch

#: Input dtypes ``to_mx`` quantizes from their own precision.
QUANTIZABLE_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_quantizable(name: str, x) -> torch.Tensor:
    check_tensor(name, x)
    if x.dtype not in QUANTIZABLE_DTYPES:
        allowed = ", ".join(str(d) for d in QUANTIZABLE_DTYPES)
        raise TypeError(f"{name} has dtype {x.dtype}; quantizing needs one of {allowed}")
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dim (blocks run along the last)")
    return x


def check_block_size(block_size, packed: bool) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    if packed and block_size % 2:
        raise ValueError(
            f"FP4 blocks must hold whole bytes (two elements each); block_size {block_size} is odd")
    return block_size


def check_divisible(name: str, size: int, block_size: int) -> None:
    if size == 0 or size % block_size:
        raise ValueError(
            f"{name}: last dim {size} is not a positive multiple of the block size "
            f"{block_size} (MX scales cover whole blocks; pad the tensor first)")


def check_same_device(**tensors) -> None:
    """ValueError naming each tensor's device if they are not all on one."""
    present = {k: v for k, v in tensors.items() if v is not None}
    devices = {v.device for v in present.values()}
    if len(devices) > 1:
        where = ", ".join(f"{k} on {v.device}" for k, v in present.items())
        raise ValueError(f"MX operands must be on one device, got {where}")


def check_scale_tensor(name: str, scales, dtype: torch.dtype, expected_shape) -> None:
    check_tensor(name, scales)
    if scales.dtype != dtype:
        hint = f" (raw bytes: .view({dtype}))" if scales.dtype == torch.uint8 else ""
        raise TypeError(f"{name} must have dtype {dtype}, got {scales.dtype}{hint}")
    if tuple(scales.shape) != tuple(expected_shape):
        raise ValueError(
            f"{name} has shape {tuple(scales.shape)}; expected {tuple(expected_shape)} "
            f"(one scale per block along the last dim)")
