"""Element storage: scaled values <-> the raw element tensor of each format.

``encode_elements`` takes values already divided by their block scale (in
float32) and applies the element rule: round to nearest even, clamp finite
overflow to the max normal keeping the sign. ``decode_elements`` is exact.
"""

from __future__ import annotations

import torch

from . import fp4
from .formats import ElemFormat


def storage_last_dim(size: int, fmt: ElemFormat) -> int:
    """Storage length of ``size`` logical elements (FP4 packs two per byte)."""
    return size // 2 if fmt.is_packed else size


def encode_elements(scaled: torch.Tensor, fmt: ElemFormat, out: torch.Tensor) -> torch.Tensor:
    """Write float32 scaled values (..., K) into ``out`` (..., storage K); return it.

    ``scaled`` is consumed (clamped in place). The clamp is skipped only when
    torch's own cast to the format is known to saturate (E4M3 on torch 2.x
    today; older torch overflowed to NaN), and always done for E5M2, whose
    cast overflows to Inf. NaN passes through the clamp unchanged.
    """
    if not _CAST_SATURATES[fmt]:
        scaled.clamp_(-fmt.max_normal, fmt.max_normal)
    if fmt.is_packed:
        out.view(torch.uint8).copy_(fp4.pack_fp4(fp4.encode_e2m1(scaled)))
    else:
        out.copy_(scaled)
    return out


def _cast_saturates(fmt: ElemFormat) -> bool:
    """Does float32 -> fmt in this torch clamp overflow to +-max normal (RNE)?

    Probed on CPU with values just past the max normal, the largest float32
    and Inf, so a torch that stops saturating cannot go unnoticed.
    """
    if fmt.is_packed:
        return True    # FP4 rounding is ours: fp4.encode_e2m1 saturates
    probe = torch.tensor([fmt.max_normal * 1.1, -3.0e38, float("inf")], dtype=torch.float32)
    got = probe.to(fmt.dtype).to(torch.float32).tolist()
    return got == [fmt.max_normal, -fmt.max_normal, fmt.max_normal]


# Probed once at import (a few CPU ops), not lazily, so torch.compile traces a
# plain dict lookup.
_CAST_SATURATES = {fmt: _cast_saturates(fmt) for fmt in ElemFormat}


def decode_table(fmt: ElemFormat, device) -> torch.Tensor:
    """float32 value of every FP8 byte (256 entries), for ``decode_elements``.

    A gather from this table is ~5x faster on CPU than torch's element-wise
    float8 -> float32 conversion, which is what builds the table (exactly).
    Built per call, not cached, so nothing outlives its device.
    """
    codes = torch.arange(256, dtype=torch.int32, device=device).to(torch.uint8)
    return codes.view(fmt.dtype).to(torch.float32)


def decode_elements(elements: torch.Tensor, fmt: ElemFormat,
                    table: torch.Tensor | None = None) -> torch.Tensor:
    """Raw elements -> exact float32 values, shape (..., K).

    ``table`` (from ``decode_table``) can be passed in when decoding many
    chunks of one FP8 tensor.
    """
    if fmt.is_packed:
        return fp4.decode_e2m1(fp4.unpack_fp4(elements))
    if table is None:
        table = decode_table(fmt, elements.device)
    index = elements.view(torch.uint8).reshape(-1).to(torch.int32)
    return torch.index_select(table, 0, index).view(elements.shape)


def zero_rows(elements: torch.Tensor, rows: torch.Tensor) -> None:
    """Set the storage rows (blocks) selected by bool ``rows`` (n,) to +0, in place.

    Works on the raw bytes, so it is the same for every format. The rows are
    viewed as the widest integers that tile them (a 32-byte FP8 block is four
    int64s): a broadcast multiply over 4 lanes instead of 32 is ~4x faster.
    """
    raw = elements.view(torch.uint8)
    width = raw.shape[-1]
    lane = next(d for d in _LANES if width % d.itemsize == 0)
    keep = rows.logical_not().to(lane).unsqueeze(-1)
    raw.view(lane).mul_(keep)


_LANES = (torch.int64, torch.int32, torch.int16, torch.uint8)
