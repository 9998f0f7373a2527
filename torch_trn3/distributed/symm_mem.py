"""``torch.ops.symm_mem`` all-to-all-v ops (MoE dispatch/combine) on ``trn``.

PyTorch implements these with NVSHMEM on CUDA. Here they are ``PrivateUse1``
kernels built on trnccl's ``all_to_all_single``: first the split sizes are
exchanged (a small all_to_all of int64 counts), then the rows; each exchange
is charged to the COLLECTIVE engine like any trnccl all_to_all. Splits count
rows of dim 0 of ``input``/``out`` (trailing dims are carried along).

Same schemas and semantics as PyTorch 2.13
(``torch.ops.symm_mem.<op>.default._schema``):

``all_to_all_vdev(input, out, in_splits, out_splits_offsets, group_name)``
    ``in_splits[npes]``: rows for each peer, packed from row 0 of ``input``.
    Writes ``out_splits_offsets[0]`` (rows received from each peer) and
    ``[1]`` (their exclusive-scan offsets in ``out``); rows land packed.

``all_to_all_vdev_2d(input, out, in_splits, out_splits_offsets, group_name, major_align=None)``
    MoE dispatch. ``input`` is rank-major: chunk ``(peer p, expert e)`` of
    ``in_splits[p * ne + e]`` rows, packed, ``ne = in_splits.numel() // npes``
    local experts per rank. ``out`` is expert-major: for each local expert
    ``e``, the chunks from ranks 0..npes-1. ``out_splits_offsets[0][e * npes
    + src]`` is the received split, ``[1]`` its offset in ``out``. Each
    expert's segment starts at a multiple of ``major_align`` (default 1):
    its total is rounded up to ``major_align`` and to at least
    ``major_align`` (an empty expert still gets one aligned block, as
    CUTLASS grouped GEMMs need non-empty groups); the padding follows the
    expert's last chunk and is left untouched.

``all_to_all_vdev_2d_offset(input, out, in_splits_offsets, out_splits_offsets, group_name)``
    MoE combine, the reverse. ``input`` is expert-major: chunk ``(local
    expert e, peer p)`` has ``in_splits_offsets[0][e * npes + p]`` rows at
    row ``in_splits_offsets[1][e * npes + p]`` (any offsets, e.g. the
    dispatch's padded ones) and goes back to rank ``p``. ``out`` is
    rank-major and packed: ``out_splits_offsets[0][src * ne + e]`` rows from
    rank ``src``'s expert ``e``, ``[1]`` the exclusive-scan offsets.

Difference from CUDA: symmetric memory is not required. Any ``trn`` tensors
work (every rank of the group must call the op, as with a collective);
``out`` only needs enough rows. ``symm_mem.empty(..., device="trn")``
returns an ordinary trn tensor and ``symm_mem.rendezvous`` of a trn tensor
returns a :class:`TrnSymmMemHandle` (rank, world size, group, ``barrier``):
there is no peer-mapped memory between processes, so ``get_buffer`` /
``get_remote_tensor`` / signal pads are not available.
"""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence

import torch
import torch.distributed as dist

from .. import _C

_device_name = "trn"
_lib: Optional[torch.library.Library] = None
_OPS = ("all_to_all_vdev", "all_to_all_vdev_2d", "all_to_all_vdev_2d_offset")


# ---------------------------------------------------------------- helpers
def _group(group_name: str, what: str):
    from torch.distributed.distributed_c10d import _resolve_process_group
    try:
        return _resolve_process_group(group_name)
    except Exception as exc:  # noqa: BLE001 - re-raised with the op's name
        raise ValueError(f"symm_mem.{what}: no process group named {group_name!r} "
                         f"(pass dist.group.WORLD.group_name or a subgroup's group_name)") from exc


def _ints(t: torch.Tensor) -> List[int]:
    return (_C._cpu_view(t) if t.device.type == _device_name else t).tolist()


def _check(what: str, input, out, splits: torch.Tensor, out_so: torch.Tensor, npes: int) -> None:
    for name, t in (("input", input), ("out", out), ("in_splits", splits),
                    ("out_splits_offsets", out_so)):
        if t.device.type != _device_name:
            raise ValueError(f"symm_mem.{what}: {name} is on '{t.device}', expected a "
                             f"'{_device_name}' tensor")
    if input.dtype != out.dtype:
        raise ValueError(f"symm_mem.{what}: input is {input.dtype} but out is {out.dtype}")
    if input.dim() == 0 or input.shape[1:] != out.shape[1:]:
        raise ValueError(f"symm_mem.{what}: input {tuple(input.shape)} and out "
                         f"{tuple(out.shape)} must have the same trailing dims (splits count "
                         f"rows of dim 0)")
    if splits.dtype != torch.int64 or out_so.dtype != torch.int64:
        raise ValueError(f"symm_mem.{what}: splits and offsets must be int64")
    n = splits.shape[-1]
    if n % npes or n == 0:
        raise ValueError(f"symm_mem.{what}: {n} splits is not a multiple of the group size "
                         f"{npes}")
    if tuple(out_so.shape) != (2, n):
        raise ValueError(f"symm_mem.{what}: out_splits_offsets must have shape (2, {n}), got "
                         f"{tuple(out_so.shape)}")
    if not out.is_contiguous() or not input.is_contiguous():
        raise ValueError(f"symm_mem.{what}: input and out must be contiguous")


def _a2a(out_rows: torch.Tensor, in_rows: torch.Tensor, out_sizes: Sequence[int],
         in_sizes: Sequence[int], pg) -> None:
    """trnccl all_to_all_single (charged on the COLLECTIVE engine)."""
    dist.all_to_all_single(out_rows, in_rows, list(out_sizes), list(in_sizes), group=pg)


def _exchange_counts(send: List[int], pg, device) -> List[int]:
    """Each rank sends ``len(send) // npes`` counts to each peer; returns the
    received counts, source-rank-major."""
    s = torch.tensor(send, dtype=torch.int64, device=device)
    r = torch.empty_like(s)
    _a2a(r, s, [], [], pg)
    return _ints(r)


def _write(out_so: torch.Tensor, splits: List[int], offsets: List[int]) -> None:
    v = _C._cpu_view(out_so)
    v[0].copy_(torch.tensor(splits, dtype=torch.int64))
    v[1].copy_(torch.tensor(offsets, dtype=torch.int64))


def _exclusive_scan(xs: Sequence[int]) -> List[int]:
    out, acc = [], 0
    for x in xs:
        out.append(acc)
        acc += x
    return out


def _need_rows(what: str, t: torch.Tensor, name: str, rows: int) -> None:
    if rows > t.shape[0]:
        raise ValueError(f"symm_mem.{what}: {name} has {t.shape[0]} rows but {rows} are "
                         f"needed; allocate it for the worst case")


# ---------------------------------------------------------------- kernels
def _all_to_all_vdev(input, out, in_splits, out_splits_offsets, group_name):
    what = "all_to_all_vdev"
    pg = _group(group_name, what)
    npes = pg.size()
    _check(what, input, out, in_splits, out_splits_offsets, npes)
    if in_splits.numel() != npes:
        raise ValueError(f"symm_mem.{what}: in_splits needs one entry per rank ({npes}), got "
                         f"{in_splits.numel()}")
    send = _ints(in_splits)
    _need_rows(what, input, "input", sum(send))
    recv = _exchange_counts(send, pg, in_splits.device)
    total = sum(recv)
    _need_rows(what, out, "out", total)
    _a2a(out[:total], input[:sum(send)], recv, send, pg)
    _write(out_splits_offsets, recv, _exclusive_scan(recv))


def _dispatch_offsets(recv_em: List[List[int]], align: int) -> List[int]:
    """Expert-major offsets: each expert's segment aligned to ``align`` and at
    least ``align`` long; ``recv_em[e][src]`` rows."""
    offsets, base = [], 0
    for per_src in recv_em:
        acc = base
        for n in per_src:
            offsets.append(acc)
            acc += n
        total = acc - base
        base += max(-(-total // align) * align, align)
    return offsets


def _all_to_all_vdev_2d(input, out, in_splits, out_splits_offsets, group_name,
                        major_align=None):
    what = "all_to_all_vdev_2d"
    pg = _group(group_name, what)
    npes = pg.size()
    _check(what, input, out, in_splits, out_splits_offsets, npes)
    align = 1 if major_align is None else int(major_align)
    if align < 1:
        raise ValueError(f"symm_mem.{what}: major_align must be >= 1, got {major_align}")
    send = _ints(in_splits.reshape(-1))  # [peer][expert], rank-major
    ne = len(send) // npes
    send_rows = sum(send)
    _need_rows(what, input, "input", send_rows)
    recv = _exchange_counts(send, pg, in_splits.device)  # [src][my expert]
    recv_em = [[recv[src * ne + e] for src in range(npes)] for e in range(ne)]
    offsets = _dispatch_offsets(recv_em, align)
    splits_em = [n for per_src in recv_em for n in per_src]
    _need_rows(what, out, "out", max(o + n for o, n in zip(offsets, splits_em)))
    per_peer_send = [sum(send[p * ne:(p + 1) * ne]) for p in range(npes)]
    per_peer_recv = [sum(recv[s * ne:(s + 1) * ne]) for s in range(npes)]
    staging = torch.empty((sum(per_peer_recv),) + tuple(input.shape[1:]), dtype=input.dtype,
                          device=input.device)
    _a2a(staging, input[:send_rows], per_peer_recv, per_peer_send, pg)
    # rank-major staging -> expert-major out (the rows the NVSHMEM kernel
    # puts straight into place)
    src_rows, out_v = _C._cpu_view(staging), _C._cpu_view(out)
    row = 0
    for src in range(npes):
        for e in range(ne):
            n = recv[src * ne + e]
            if n:
                dst = offsets[e * npes + src]
                out_v[dst:dst + n].copy_(src_rows[row:row + n])
            row += n
    _write(out_splits_offsets, splits_em, offsets)


def _all_to_all_vdev_2d_offset(input, out, in_splits_offsets, out_splits_offsets, group_name):
    what = "all_to_all_vdev_2d_offset"
    pg = _group(group_name, what)
    npes = pg.size()
    _check(what, input, out, in_splits_offsets, out_splits_offsets, npes)
    if in_splits_offsets.dim() != 2 or in_splits_offsets.shape[0] != 2:
        raise ValueError(f"symm_mem.{what}: in_splits_offsets must have shape (2, ne * npes), "
                         f"got {tuple(in_splits_offsets.shape)}")
    splits, offs = _ints(in_splits_offsets)
    ne = len(splits) // npes
    for c, (n, o) in enumerate(zip(splits, offs)):
        if n < 0 or o < 0 or o + n > input.shape[0]:
            raise ValueError(f"symm_mem.{what}: chunk {c} (expert {c // npes}, peer {c % npes}) "
                             f"has rows [{o}, {o + n}) outside input's {input.shape[0]} rows")
    # to peer p: my experts' chunks for p, expert order
    send = [splits[e * npes + p] for p in range(npes) for e in range(ne)]
    recv = _exchange_counts(send, pg, in_splits_offsets.device)  # [src][src's expert]
    total = sum(recv)
    _need_rows(what, out, "out", total)
    in_v = _C._cpu_view(input)
    packed = torch.empty((sum(send),) + tuple(input.shape[1:]), dtype=input.dtype,
                         device=input.device)
    pv, row = _C._cpu_view(packed), 0
    for p in range(npes):
        for e in range(ne):
            n, o = splits[e * npes + p], offs[e * npes + p]
            pv[row:row + n].copy_(in_v[o:o + n])
            row += n
    per_peer_send = [sum(send[p * ne:(p + 1) * ne]) for p in range(npes)]
    per_peer_recv = [sum(recv[s * ne:(s + 1) * ne]) for s in range(npes)]
    _a2a(out[:total], packed, per_peer_recv, per_peer_send, pg)
    _write(out_splits_offsets, recv, _exclusive_scan(recv))


_KERNELS = {
    "all_to_all_vdev": _all_to_all_vdev,
    "all_to_all_vdev_2d": _all_to_all_vdev_2d,
    "all_to_all_vdev_2d_offset": _all_to_all_vdev_2d_offset,
}


# ---------------------------------------------------------------- symm_mem.empty / rendezvous
class TrnSymmMemHandle:
    """What ``symm_mem.rendezvous`` returns for a ``trn`` tensor: the group's
    rank and size and a ``barrier``. There is no peer-mapped memory between
    processes, so buffer/remote-tensor/signal-pad methods raise."""

    def __init__(self, tensor: torch.Tensor, group_name: str):
        self._pg = _group(group_name, "rendezvous")
        self.group_name = group_name
        self.rank = self._pg.rank()
        self.world_size = self._pg.size()
        self.tensor = tensor

    def barrier(self, channel: int = 0, timeout_ms: int = 0) -> None:
        dist.barrier(group=self._pg)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise NotImplementedError(
            f"symm_mem handle.{name}: trn tensors have no peer-mapped symmetric memory; the "
            f"torch.ops.symm_mem all_to_all_vdev* ops work on ordinary trn tensors")


def _patch_symm_mem_api() -> None:
    """``symm_mem.empty(device="trn")`` -> a plain trn tensor; ``rendezvous``
    of a trn tensor -> :class:`TrnSymmMemHandle`. Other devices unchanged."""
    import torch.distributed._symmetric_memory as sm

    if getattr(sm.empty, "_trn_wrapped", False):
        return
    orig_empty, orig_rendezvous = sm.empty, sm.rendezvous

    def empty(*size, dtype=None, device=None):
        dev = torch.device(device) if device is not None else torch.get_default_device()
        if dev.type != _device_name:
            return orig_empty(*size, dtype=dtype, device=device)
        if len(size) == 1 and isinstance(size[0], Sequence):
            size = tuple(size[0])
        return torch.empty(size, dtype=dtype or torch.get_default_dtype(), device=dev)

    def rendezvous(tensor, group):
        if tensor.device.type != _device_name:
            return orig_rendezvous(tensor, group)
        name = group if isinstance(group, str) else group.group_name
        return TrnSymmMemHandle(tensor, name)

    empty.__doc__ = orig_empty.__doc__
    rendezvous.__doc__ = orig_rendezvous.__doc__
    empty._trn_wrapped = rendezvous._trn_wrapped = True
    sm.empty, sm.rendezvous = empty, rendezvous


def register(device_name: str = "trn") -> None:
    """Installs the ``device_name`` kernels of the symm_mem all-to-all-v ops
    (if this torch build defines them). Idempotent."""
    global _lib, _device_name
    if _lib is not None or not dist.is_available():
        return
    _device_name = device_name
    try:
        import torch.distributed._symmetric_memory  # noqa: F401 - defines the schemas' Meta kernels
        for name in _OPS:
            getattr(torch.ops.symm_mem, name)
    except (ImportError, AttributeError, RuntimeError):
        return
    lib = torch.library.Library("symm_mem", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in _KERNELS.items():
            lib.impl(name, fn, "PrivateUse1")
    _lib = lib
    _patch_symm_mem_api()
