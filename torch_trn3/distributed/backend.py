"""The ``trnccl`` c10d backend: collectives on ``trn`` tensors.

How it fits into c10d
---------------------
``torch.distributed`` runs every collective through a ``c10d::*`` operator
(``c10d::allreduce_``, ``c10d::alltoall_base_``, ...) whose per-device kernel
asks the process group for the backend of the tensors' device. The
functional collectives (``_c10d_functional::*``, DTensor, FSDP2) end in the
same operators. So:

1. ``trnccl`` is registered for the ``trn`` device; its backend object is a
   real ``ProcessGroupGloo`` (data moves through gloo's transport, so the
   same script runs across hosts; timeouts, abort and sequence numbers are
   gloo's).
2. This module installs the ``PrivateUse1`` (``trn``) kernels of the
   ``c10d::*`` operators. Each one checks its tensors, takes zero-copy CPU
   views of the device memory (``_C._cpu_view``), hands them to the group's
   ``trn`` backend, and charges the collective's modelled Trainium time
   (:mod:`.cost`) to the device's COLLECTIVE engine lane, which overlaps
   compute.
3. Reductions gloo lacks are built on its SUM: ``AVG`` is a SUM followed by
   an in-place divide of the received data when the work completes;
   ``PREMUL_SUM`` (NCCL's: each rank's input times a factor, then summed;
   FSDP2 uses it for gradient divide factors) scales the input first (in
   place where the input is the output, else a scaled host copy). Either is
   charged as the one collective it is on the device. The factor lives in
   the C++ ``ReduceOp`` but the TorchScript object the kernels receive
   exposes only ``op()``, so the reducing ``ProcessGroup`` methods that
   ``torch.distributed`` calls (``allreduce``, ``reduce``,
   ``reduce_scatter``, ``_reduce_scatter_base``, ...) are wrapped to hand the
   kernel the factor of a ``PREMUL_SUM`` (:func:`_pass_premul_factor`).

Each rank binds to ``trn:LOCAL_RANK`` when the backend is created.
"""
from __future__ import annotations

import datetime
import os
import threading
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch._C import _distributed_c10d as C10D

from .. import _C
from . import cost
from ..hw.cost import Engine

BACKEND_NAME = "trnccl"

#: Engine lane of collectives on the device timeline (hw.cost.Engine.COLLECTIVE).
COLLECTIVE_ENGINE = Engine.COLLECTIVE.value

_RedOp = C10D.ReduceOp.RedOpType
_REDOP_BY_VALUE = {int(v): v for v in _RedOp.__members__.values()}

#: Global ranks of every group this process created a trnccl backend for.
_GROUP_RANKS: Dict[str, Tuple[int, ...]] = {}

_device_name: str = "trn"
_lib: Optional[torch.library.Library] = None


# ---------------------------------------------------------------- creation
def _bind_local_device() -> None:
    """Make ``trn:LOCAL_RANK`` this process's current device (torchrun sets it)."""
    local = os.environ.get("LOCAL_RANK")
    if local is None:
        return
    mod = getattr(torch, _device_name)
    index = int(local)
    if index >= mod.device_count():
        raise RuntimeError(
            f"trnccl: LOCAL_RANK={index} but this machine has {mod.device_count()} {_device_name} "
            f"device(s) (TRN3_CHIPS x 8 / TRN3_LNC); run fewer ranks per node or set TRN3_CHIPS")
    mod.set_device(index)


def _create_backend(dist_opts, backend_opts=None):
    """c10d creator (extended API): a gloo backend serving ``trn`` tensors."""
    timeout = dist_opts.timeout
    gloo = C10D.ProcessGroupGloo(dist_opts.store, dist_opts.group_rank, dist_opts.group_size,
                                 timeout=timeout)
    ranks = tuple(dist_opts.global_ranks_in_group) or tuple(range(dist_opts.group_size))
    gloo.options.global_ranks_in_group = list(ranks)
    gloo.options.group_name = dist_opts.group_id
    gloo._set_sequence_number_for_group()
    _GROUP_RANKS[str(dist_opts.group_id)] = ranks
    _bind_local_device()
    return gloo


# ---------------------------------------------------------------- helpers
class _Call:
    """One collective call: its group, trn backend, device and ranks."""

    __slots__ = ("pg", "backend", "device", "ranks", "size")

    def __init__(self, pg_obj, tensors: Sequence[torch.Tensor], what: str):
        pg = dist.ProcessGroup.unbox(pg_obj)
        self.pg = pg
        self.device = _check_tensors(tensors, what)
        try:
            self.backend = pg._get_backend(torch.device(_device_name))
        except RuntimeError as exc:
            raise RuntimeError(
                f"{what}: process group {pg.group_name!r} has no backend for '{_device_name}' "
                f"tensors. Create it with backend '{BACKEND_NAME}' (the default for "
                f"'{_device_name}') or 'cpu:gloo,{_device_name}:{BACKEND_NAME}'.") from exc
        ranks = _GROUP_RANKS.get(pg.group_name)
        if ranks is None or len(ranks) != pg.size():
            try:
                ranks = tuple(dist.get_process_group_ranks(pg))
            except Exception:  # a group c10d does not know by name
                ranks = tuple(range(pg.size()))
        self.ranks = ranks
        self.size = pg.size()

    def charge(self, collective: str, nbytes: int, inputs, outputs) -> None:
        c = cost.price(collective, nbytes, self.ranks)
        _charge(collective, self.device, c.time_s, nbytes, inputs, outputs)


def _charge(collective: str, device: int, seconds: float, nbytes: int, inputs, outputs) -> None:
    """Schedules the collective on the device's COLLECTIVE lane. Its record
    carries the message size ``nbytes``; for HBM sharing only this rank's
    source read and destination write touch HBM (``cost.hbm_seconds``): the
    collective cores move data between hops SBUF to SBUF."""
    inputs, outputs = list(inputs), list(outputs)
    _C._charge(f"{BACKEND_NAME}::{collective}", device, COLLECTIVE_ENGINE, seconds, 0.0,
               float(nbytes), inputs, outputs, cost.hbm_seconds(inputs, outputs), seconds)
    cost.record(collective, nbytes, seconds)


def _check_tensors(tensors: Sequence[torch.Tensor], what: str) -> int:
    """All tensors on one trn device; returns its index."""
    index = None
    for i, t in enumerate(tensors):
        if t.device.type != _device_name:
            raise ValueError(
                f"{what}: tensor {i} is on '{t.device}', but the other tensors of this "
                f"collective are on '{_device_name}': move every tensor of one collective to "
                f"the same {_device_name} device")
        d = t.device.index
        if index is None:
            index = d
        elif d != index:
            raise ValueError(
                f"{what}: tensors are on different devices ({_device_name}:{index} and "
                f"{t.device}); a rank's collective must use one device")
    if index is None:
        raise ValueError(f"{what}: no tensors")
    return index


def _view(t: torch.Tensor) -> torch.Tensor:
    return _C._cpu_view(t)


def _views(ts: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    return [_C._cpu_view(t) for t in ts]


def _flat(lists) -> List[torch.Tensor]:
    return [t for ts in lists for t in ts]


def _nbytes(ts: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


def _redop(op_obj) -> "_RedOp":
    return _REDOP_BY_VALUE[int(op_obj.op())]


_premul = threading.local()  # .factor: PREMUL_SUM factor of the collective being dispatched


def _op_factor(arg):
    """The factor of a Python ``ReduceOp`` (or of an options object's
    ``reduceOp``) if it is a PREMUL_SUM, else None."""
    op = getattr(arg, "reduceOp", arg)
    if isinstance(op, C10D.ReduceOp) and op.op == _RedOp.PREMUL_SUM:
        return op.factor
    return None


def _pass_premul_factor(method):
    """Wraps a reducing ``ProcessGroup`` method so a PREMUL_SUM's factor
    reaches the trn kernel it dispatches to (in this thread)."""

    def wrapper(self, *args, **kwargs):
        factor = None
        for arg in (*args, *kwargs.values()):
            factor = _op_factor(arg)
            if factor is not None:
                break
        if factor is None:
            return method(self, *args, **kwargs)
        outer = getattr(_premul, "factor", None)
        _premul.factor = factor
        try:
            return method(self, *args, **kwargs)
        finally:
            _premul.factor = outer

    wrapper.__wrapped__ = method
    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


_REDUCING_METHODS = ("allreduce", "allreduce_coalesced", "reduce", "reduce_scatter",
                     "reduce_scatter_single", "reduce_scatter_single_coalesced",
                     "_reduce_scatter_base", "reduce_scatter_tensor_coalesced")


def _premul_factor(op_obj):
    """The factor of a ``PREMUL_SUM`` op (a number, or a one-element tensor
    as NCCL accepts, read back as a number); None for any other op."""
    if _redop(op_obj) != _RedOp.PREMUL_SUM:
        return None
    factor = getattr(_premul, "factor", None)
    if factor is None:
        raise ValueError(
            f"{BACKEND_NAME}: ReduceOp.PREMUL_SUM reached the c10d operator without its factor; "
            "call it through torch.distributed (all_reduce, reduce, reduce_scatter[_tensor]) or "
            "a ProcessGroup method, not torch.ops.c10d directly")
    if isinstance(factor, torch.Tensor):
        if factor.numel() != 1:
            raise ValueError(f"{BACKEND_NAME}: PREMUL_SUM factor must have one element, "
                             f"got shape {tuple(factor.shape)}")
        factor = (_view(factor) if factor.device.type == _device_name else factor).item()
    return factor


def _premul(views: Sequence[torch.Tensor], op_obj, in_place: bool) -> List[torch.Tensor]:
    """PREMUL_SUM's scaling of the input (CPU views, so not charged apart
    from the collective): in place when the input is also the output."""
    factor = _premul_factor(op_obj)
    if factor is None:
        return list(views)
    if in_place:
        for v in views:
            v.mul_(factor)
        return list(views)
    return [v.mul(factor).to(v.dtype) for v in views]


def _reduce_opts(cls, op_obj, async_op: bool, timeout: int):
    """Options with SUM in place of AVG and PREMUL_SUM (the caller scales
    PREMUL_SUM's input with :func:`_premul`); returns (opts, is_avg)."""
    op = _redop(op_obj)
    opts = cls()
    avg = op == _RedOp.AVG
    opts.reduceOp = C10D.ReduceOp(_RedOp.SUM if op in (_RedOp.AVG, _RedOp.PREMUL_SUM) else op)
    _common(opts, async_op, timeout)
    return opts, avg


def _common(opts, async_op: bool, timeout: int):
    opts.asyncOp = bool(async_op)
    if timeout is not None and timeout >= 0:
        opts.timeout = datetime.timedelta(milliseconds=timeout)
    return opts


def _divide(views: Sequence[torch.Tensor], n: int) -> None:
    for v in views:
        if v.is_floating_point() or v.is_complex():
            v.div_(n)
        else:
            v.copy_(torch.div(v, n, rounding_mode="floor"))


def _after(work, fn: Callable[[], None]):
    """A Work that completes when ``work`` has and ``fn`` ran (e.g. AVG's divide).

    Some gloo works have no future (e.g. ``_reduce_scatter_base``); those are
    waited for here, so the op completes before it returns."""
    try:
        fut = work.get_future()
    except RuntimeError:
        work.wait()
        fn()
        # gloo's future-less works redo their output copy on every wait():
        # hand back a finished Work instead.
        return _finished()

    def done(f):
        value = f.value()  # re-raises the collective's error
        fn()
        return value

    return C10D._create_work_from_future(fut.then(done))


def _all_of(works):
    """One Work for several (coalesced variants built from single ops)."""
    if len(works) == 1:
        return works[0]
    try:
        futs = [w.get_future() for w in works]
    except RuntimeError:  # works without futures: complete them here
        for w in works:
            w.wait()
        return _finished()
    fut = torch.futures.collect_all(futs)

    def done(f):
        for sub in f.value():
            sub.value()
        return []

    return C10D._create_work_from_future(fut.then(done))


def _finished():
    fut = torch.futures.Future()
    fut.set_result([])
    return C10D._create_work_from_future(fut)


def _boxed(work):
    return work.boxed()


# ---------------------------------------------------------------- kernels
# Each mirrors the PrivateUse1 kernel of torch/csrc/distributed/c10d/Ops.cpp
# (same schema, same return), with CPU views handed to the trn backend.

def _allreduce_(tensors, pg, reduce_op, sparse_indices=None, async_op=True, timeout=-1):
    call = _Call(pg, tensors, "all_reduce")
    if sparse_indices is not None:
        raise ValueError(f"{BACKEND_NAME}: sparse all_reduce is not supported")
    opts, avg = _reduce_opts(C10D.AllreduceOptions, reduce_op, async_op, timeout)
    views = _premul(_views(tensors), reduce_op, in_place=True)
    work = call.backend.allreduce(views, opts)
    if avg:
        work = _after(work, lambda: _divide(views, call.size))
    call.charge("all_reduce", _nbytes(tensors), tensors, tensors)
    return tensors, _boxed(work)


def _allreduce_coalesced_(tensors, pg, reduce_op, async_op=True, timeout=-1):
    call = _Call(pg, tensors, "all_reduce_coalesced")
    opts, avg = _reduce_opts(C10D.AllreduceCoalescedOptions, reduce_op, async_op, timeout)
    views = _premul(_views(tensors), reduce_op, in_place=True)
    work = call.backend.allreduce_coalesced(views, opts)
    if avg:
        work = _after(work, lambda: _divide(views, call.size))
    call.charge("all_reduce", _nbytes(tensors), tensors, tensors)
    return _boxed(work)


def _broadcast_(tensors, pg, root_rank, root_tensor, async_op=True, timeout=-1):
    call = _Call(pg, tensors, "broadcast")
    opts = _common(C10D.BroadcastOptions(), async_op, timeout)
    opts.rootRank, opts.rootTensor = root_rank, root_tensor
    work = call.backend.broadcast(_views(tensors), opts)
    call.charge("broadcast", _nbytes(tensors), tensors, tensors)
    return tensors, _boxed(work)


def _reduce_(tensors, pg, reduce_op, root_rank, root_tensor, async_op=True, timeout=-1):
    call = _Call(pg, tensors, "reduce")
    opts, avg = _reduce_opts(C10D.ReduceOptions, reduce_op, async_op, timeout)
    opts.rootRank, opts.rootTensor = root_rank, root_tensor
    # the root's tensor receives the result; other ranks' inputs stay as given
    views = _premul(_views(tensors), reduce_op, in_place=call.pg.rank() == root_rank)
    work = call.backend.reduce(views, opts)
    if avg and call.pg.rank() == root_rank:
        work = _after(work, lambda: _divide(views[root_tensor:root_tensor + 1], call.size))
    call.charge("reduce", _nbytes(tensors), tensors, tensors)
    return _boxed(work)


def _allgather_(output_tensors, input_tensors, pg, async_op=True, timeout=-1):
    call = _Call(pg, list(input_tensors) + _flat(output_tensors), "all_gather")
    opts = _common(C10D.AllgatherOptions(), async_op, timeout)
    _check_gather_lists(output_tensors, input_tensors, call.size, "all_gather")
    work = call.backend.allgather([_views(ts) for ts in output_tensors], _views(input_tensors), opts)
    call.charge("all_gather", _nbytes(_flat(output_tensors)), input_tensors, _flat(output_tensors))
    return output_tensors, _boxed(work)


def _check_gather_lists(output_lists, inputs, size, what):
    for ts in output_lists:
        if len(ts) != size:
            raise ValueError(f"{what}: expected a list of {size} output tensors (the group "
                             f"size), got {len(ts)}")


def _allgather_base_(output_tensor, input_tensor, pg, async_op=True, timeout=-1):
    call = _Call(pg, [output_tensor, input_tensor], "all_gather_into_tensor")
    if output_tensor.numel() != input_tensor.numel() * call.size:
        raise ValueError(
            f"all_gather_into_tensor: output has {output_tensor.numel()} elements, expected "
            f"input numel {input_tensor.numel()} x group size {call.size}")
    opts = _common(C10D.AllgatherOptions(), async_op, timeout)
    work = call.backend._allgather_base(_view(output_tensor), _view(input_tensor), opts)
    call.charge("all_gather", _nbytes([output_tensor]), [input_tensor], [output_tensor])
    return output_tensor, _boxed(work)


def _allgather_coalesced_(output_lists, input_list, pg, async_op=True):
    call = _Call(pg, list(input_list) + _flat(output_lists), "all_gather_coalesced")
    opts = _common(C10D.AllgatherOptions(), async_op, -1)
    work = call.backend.allgather_coalesced([_views(ts) for ts in output_lists],
                                            _views(input_list), opts)
    call.charge("all_gather", _nbytes(_flat(output_lists)), input_list, _flat(output_lists))
    return _boxed(work)


def _allgather_into_tensor_coalesced_(outputs, inputs, pg, async_op=True):
    call = _Call(pg, list(outputs) + list(inputs), "all_gather_into_tensor_coalesced")
    works = []
    for out, inp in zip(outputs, inputs):
        opts = _common(C10D.AllgatherOptions(), async_op, -1)
        works.append(call.backend._allgather_base(_view(out), _view(inp), opts))
    call.charge("all_gather", _nbytes(outputs), inputs, outputs)
    return _boxed(_all_of(works))


def _reduce_scatter_(output_tensors, input_tensors, pg, reduce_op, async_op=True, timeout=-1):
    call = _Call(pg, list(output_tensors) + _flat(input_tensors), "reduce_scatter")
    for ts in input_tensors:
        if len(ts) != call.size:
            raise ValueError(f"reduce_scatter: expected a list of {call.size} input tensors "
                             f"(the group size), got {len(ts)}")
    opts, avg = _reduce_opts(C10D.ReduceScatterOptions, reduce_op, async_op, timeout)
    out_views = _views(output_tensors)
    work = call.backend.reduce_scatter(
        out_views, [_premul(_views(ts), reduce_op, in_place=False) for ts in input_tensors], opts)
    if avg:
        work = _after(work, lambda: _divide(out_views, call.size))
    call.charge("reduce_scatter", _nbytes(_flat(input_tensors)), _flat(input_tensors),
                output_tensors)
    return output_tensors, _boxed(work)


def _reduce_scatter_base_(output_tensor, input_tensor, pg, reduce_op, async_op=True, timeout=-1):
    call = _Call(pg, [output_tensor, input_tensor], "reduce_scatter_tensor")
    if input_tensor.numel() != output_tensor.numel() * call.size:
        raise ValueError(
            f"reduce_scatter_tensor: input has {input_tensor.numel()} elements, expected "
            f"output numel {output_tensor.numel()} x group size {call.size}")
    opts, avg = _reduce_opts(C10D.ReduceScatterOptions, reduce_op, async_op, timeout)
    out_view = _view(output_tensor)
    (in_view,) = _premul([_view(input_tensor)], reduce_op, in_place=False)
    work = call.backend._reduce_scatter_base(out_view, in_view, opts)
    if avg:
        work = _after(work, lambda: _divide([out_view], call.size))
    call.charge("reduce_scatter", _nbytes([input_tensor]), [input_tensor], [output_tensor])
    return output_tensor, _boxed(work)


def _reduce_scatter_tensor_coalesced_(outputs, inputs, pg, reduce_op, async_op=True, timeout=-1):
    call = _Call(pg, list(outputs) + list(inputs), "reduce_scatter_tensor_coalesced")
    works, out_views = [], _views(outputs)
    avg = False
    for out_view, inp in zip(out_views, inputs):
        opts, avg = _reduce_opts(C10D.ReduceScatterOptions, reduce_op, async_op, timeout)
        (in_view,) = _premul([_view(inp)], reduce_op, in_place=False)
        works.append(call.backend._reduce_scatter_base(out_view, in_view, opts))
    work = _all_of(works)
    if avg:
        work = _after(work, lambda: _divide(out_views, call.size))
    call.charge("reduce_scatter", _nbytes(inputs), inputs, outputs)
    return _boxed(work)


def _gather_(output_tensors, input_tensors, pg, root_rank, async_op=True, timeout=-1):
    call = _Call(pg, list(input_tensors) + _flat(output_tensors), "gather")
    opts = _common(C10D.GatherOptions(), async_op, timeout)
    opts.rootRank = root_rank
    work = call.backend.gather([_views(ts) for ts in output_tensors], _views(input_tensors), opts)
    call.charge("gather", _nbytes(input_tensors) * call.size, input_tensors, _flat(output_tensors))
    return _boxed(work)


def _scatter_(output_tensors, input_tensors, pg, root_rank, async_op=True, timeout=-1):
    call = _Call(pg, list(output_tensors) + _flat(input_tensors), "scatter")
    opts = _common(C10D.ScatterOptions(), async_op, timeout)
    opts.rootRank = root_rank
    work = call.backend.scatter(_views(output_tensors), [_views(ts) for ts in input_tensors], opts)
    call.charge("scatter", _nbytes(output_tensors) * call.size, _flat(input_tensors),
                output_tensors)
    return output_tensors, _boxed(work)


def _check_splits(t: torch.Tensor, splits, size: int, what: str) -> None:
    if not splits:
        if t.dim() == 0 or t.size(0) % size:
            raise ValueError(f"all_to_all_single: {what} dim 0 ({t.size(0) if t.dim() else 0}) "
                             f"must divide evenly by the group size {size} when no split "
                             f"sizes are given")
        return
    if len(splits) != size:
        raise ValueError(f"all_to_all_single: {what} split sizes {list(splits)} have "
                         f"{len(splits)} entries, expected one per rank ({size})")
    if any(s < 0 for s in splits) or sum(splits) != (t.size(0) if t.dim() else 0):
        raise ValueError(f"all_to_all_single: {what} split sizes {list(splits)} sum to "
                         f"{sum(splits)}, but the {what} tensor has {t.size(0) if t.dim() else 0} "
                         f"rows (dim 0)")


def _alltoall_base_(output, input, pg, output_split_sizes, input_split_sizes, async_op=True,
                    timeout=-1):
    call = _Call(pg, [output, input], "all_to_all_single")
    _check_splits(input, input_split_sizes, call.size, "input")
    _check_splits(output, output_split_sizes, call.size, "output")
    opts = _common(C10D.AllToAllOptions(), async_op, timeout)
    work = call.backend.alltoall_base(_view(output), _view(input), list(output_split_sizes),
                                      list(input_split_sizes), opts)
    nbytes = max(_nbytes([input]), _nbytes([output]))
    call.charge("all_to_all", nbytes, [input], [output])
    return _boxed(work)


def _alltoall_(output_tensors, input_tensors, pg, async_op=True, timeout=-1):
    call = _Call(pg, list(output_tensors) + list(input_tensors), "all_to_all")
    if len(output_tensors) != call.size or len(input_tensors) != call.size:
        raise ValueError(f"all_to_all: expected {call.size} input and output tensors (the group "
                         f"size), got {len(input_tensors)} and {len(output_tensors)}")
    opts = _common(C10D.AllToAllOptions(), async_op, timeout)
    work = _alltoall_lists(call.backend, _views(output_tensors), _views(input_tensors), opts)
    nbytes = max(_nbytes(input_tensors), _nbytes(output_tensors))
    call.charge("all_to_all", nbytes, input_tensors, output_tensors)
    return output_tensors, _boxed(work)


def _alltoall_lists(backend, outs: List[torch.Tensor], ins: List[torch.Tensor], opts):
    """List all_to_all through gloo's alltoall_base (gloo has no list variant):
    pack the inputs into one buffer, exchange with splits, unpack on completion."""
    dtype = ins[0].dtype if ins else outs[0].dtype
    for t in list(outs) + list(ins):
        if t.dtype != dtype:
            raise ValueError("all_to_all: every input and output tensor must have the same dtype")
    send = torch.cat([t.reshape(-1) for t in ins]) if ins else torch.empty(0, dtype=dtype)
    recv = torch.empty(sum(t.numel() for t in outs), dtype=dtype)
    work = backend.alltoall_base(recv, send, [t.numel() for t in outs],
                                 [t.numel() for t in ins], opts)

    def unpack():
        offset = 0
        for t in outs:
            n = t.numel()
            t.copy_(recv[offset:offset + n].view(t.shape))
            offset += n

    return _after(work, unpack)


def _barrier(tensor, pg, device_ids, async_op=True, timeout=-1):
    call = _Call(pg, [tensor], "barrier")
    opts = _common(C10D.BarrierOptions(), async_op, timeout)
    opts.device_ids = list(device_ids)
    work = call.backend.barrier(opts)
    call.charge("barrier", 4, [], [])
    return _boxed(work)


def _send(tensors, pg, dst, tag):
    call = _Call(pg, tensors, "send")
    work = call.backend.send(_views(tensors), dst, tag)
    nbytes = _nbytes(tensors)
    c = cost.price_p2p(call.ranks[call.pg.rank()], call.ranks[dst], nbytes)
    _charge("send", call.device, c.time_s, nbytes, tensors, [])
    return _boxed(work)


def _recv_(tensors, pg, src, tag):
    call = _Call(pg, tensors, "recv")
    work = call.backend.recv(_views(tensors), src, tag)
    nbytes = _nbytes(tensors)
    c = cost.price_p2p(call.ranks[src], call.ranks[call.pg.rank()], nbytes)
    _charge("recv", call.device, c.time_s, nbytes, [], tensors)
    return _boxed(work)


def _recv_any_source_(tensors, pg, tag):
    call = _Call(pg, tensors, "recv")
    work = call.backend.recv_anysource(_views(tensors), tag)
    nbytes = _nbytes(tensors)
    c = cost.price("send_recv", nbytes, call.ranks)
    _charge("recv", call.device, c.time_s, nbytes, [], tensors)
    return _boxed(work)


def _monitored_barrier_(tensor, pg, device_ids, timeout, wait_all_ranks):
    call = _Call(pg, [tensor], "monitored_barrier")
    call.backend.monitored_barrier(datetime.timedelta(milliseconds=timeout), wait_all_ranks)


_KERNELS = {
    "allreduce_": _allreduce_,
    "allreduce_coalesced_": _allreduce_coalesced_,
    "broadcast_": _broadcast_,
    "reduce_": _reduce_,
    "allgather_": _allgather_,
    "_allgather_base_": _allgather_base_,
    "allgather_coalesced_": _allgather_coalesced_,
    "allgather_into_tensor_coalesced_": _allgather_into_tensor_coalesced_,
    "reduce_scatter_": _reduce_scatter_,
    "_reduce_scatter_base_": _reduce_scatter_base_,
    "reduce_scatter_tensor_coalesced_": _reduce_scatter_tensor_coalesced_,
    "gather_": _gather_,
    "scatter_": _scatter_,
    "alltoall_": _alltoall_,
    "alltoall_base_": _alltoall_base_,
    "barrier": _barrier,
    "send": _send,
    "recv_": _recv_,
    "recv_any_source_": _recv_any_source_,
    "monitored_barrier_": _monitored_barrier_,
}


# ---------------------------------------------------------------- registration
def register(device_name: str = "trn") -> None:
    """Registers ``trnccl`` (default backend of ``device_name``) and the
    ``device_name`` kernels of the c10d operators. Idempotent."""
    global _lib, _device_name
    if _lib is not None or not dist.is_available():
        return
    _device_name = device_name
    dist.Backend.register_backend(BACKEND_NAME, _create_backend, extended_api=True,
                                  devices=["cpu", device_name])
    lib = torch.library.Library("c10d", "IMPL")
    with warnings.catch_warnings():
        # PyTorch ships generic PrivateUse1 kernels for these ops; ours replace them.
        warnings.simplefilter("ignore")
        for name, fn in _KERNELS.items():
            lib.impl(name, fn, "PrivateUse1")
    for name in _REDUCING_METHODS:
        method = getattr(dist.ProcessGroup, name, None)
        if method is None:  # not in this torch version
            continue
        if not hasattr(method, "__wrapped__"):
            setattr(dist.ProcessGroup, name, _pass_premul_factor(method))
    _lib = lib
