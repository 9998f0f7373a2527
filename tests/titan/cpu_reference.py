"""Runs ``torchtitan.train`` on the CPU: the reference for the trn runs.

torchtitan 0.3.0 has no device option: it takes whatever
``torch._utils._get_available_device_type()`` reports, falling back to
"cuda". This launcher (tests only; torchtitan itself is unchanged) turns the
trn backend off (``TORCH_DEVICE_BACKEND_AUTOLOAD=0``, set by the caller),
reports "cpu", and gives torchtitan a ``torch.cpu``-based device module with
the CUDA-style calls it makes (names, memory stats). Arguments are
torchtitan's.

FlexAttention: torch 2.13 refuses its backward on CPU, and inductor's CPU
lowering is forward-only, so here torchtitan's compiled ``flex_attention``
is replaced by eager ``flex_attention``, which runs the HOPs' dense math
(``sdpa_dense`` / ``sdpa_dense_backward``): the math trn runs, eager or
compiled. ``create_block_mask`` stays compiled (inductor on CPU).
"""
import os
import sys
import types

import torch
import torch._utils

assert os.environ.get("TORCH_DEVICE_BACKEND_AUTOLOAD") == "0", "run with TORCH_DEVICE_BACKEND_AUTOLOAD=0"


def _cpu_device_module() -> types.ModuleType:
    m = types.ModuleType("cpu_for_torchtitan")
    for name in ("device_count", "current_device", "synchronize", "is_available", "Stream", "Event",
                 "stream", "current_stream"):
        if hasattr(torch.cpu, name):
            setattr(m, name, getattr(torch.cpu, name))
    m.current_device = lambda: 0
    m.set_device = lambda device: None
    m.get_device_name = lambda device=None: "cpu"
    m.get_device_properties = lambda device=None: types.SimpleNamespace(
        name="cpu", total_memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    m.memory_stats = lambda device=None: {
        "active_bytes.all.peak": 0, "reserved_bytes.all.peak": 0,
        "num_alloc_retries": 0, "num_ooms": 0}
    m.reset_peak_memory_stats = lambda device=None: None
    m.empty_cache = lambda: None
    return m


_module = _cpu_device_module()
_orig_get_device_module = torch._utils._get_device_module
torch._utils._get_available_device_type = lambda: "cpu"
torch._utils._get_device_module = lambda device_type: (
    _module if device_type == "cpu" else _orig_get_device_module(device_type))


def _flex_attention_on_cpu() -> None:
    from torch.nn.attention import flex_attention as api

    upstream = api._validate_device

    def _validate_device(query, key, value):
        if query.device.type != "cpu":
            upstream(query, key, value)

    api._validate_device = _validate_device
    from torchtitan.models.common.attention import FlexAttention

    FlexAttention._compiled_flex_attn = staticmethod(api.flex_attention)


def _set_timeout() -> None:
    # torch_trn3.compat adds this to torch 2.13 when trn is loaded; here trn is off.
    import torch.distributed as dist

    if not hasattr(dist, "set_timeout"):
        dist.set_timeout = lambda timeout, group=None: (
            group or dist.distributed_c10d._get_default_group()).set_timeout(timeout)


def _gloo_premul_sum() -> None:
    """gloo refuses ReduceOp.PREMUL_SUM, which FSDP2 uses for its gradient
    divide factor; trnccl implements it as "scale the input, then SUM" and so
    does this reference, for the two calls FSDP2 makes."""
    import torch.distributed as dist
    from torch._C import _distributed_c10d as C10D

    PREMUL = C10D.ReduceOp.RedOpType.PREMUL_SUM

    def factor_of(opts):
        op = opts.reduceOp
        if op.op != PREMUL:
            return None
        f = op.factor
        return f.item() if isinstance(f, torch.Tensor) else f

    def as_sum(opts, cls):
        new = cls()
        new.reduceOp = dist.ReduceOp.SUM
        new.timeout, new.asyncOp = opts.timeout, opts.asyncOp
        return new

    rs = dist.ProcessGroup.reduce_scatter_single

    def reduce_scatter_single(self, output, input, opts):
        f = factor_of(opts)
        if f is None:
            return rs(self, output, input, opts)
        return rs(self, output, input.mul(f).to(input.dtype), as_sum(opts, dist.ReduceScatterOptions))

    ar = dist.ProcessGroup.allreduce

    def allreduce(self, tensors, opts=None, *rest):
        if not isinstance(opts, dist.AllreduceOptions) or factor_of(opts) is None:
            return ar(self, tensors, *(() if opts is None else (opts,)), *rest)
        f = factor_of(opts)
        for t in tensors:
            t.mul_(f)
        return ar(self, tensors, as_sum(opts, dist.AllreduceOptions))

    dist.ProcessGroup.reduce_scatter_single = reduce_scatter_single
    dist.ProcessGroup.allreduce = allreduce


if __name__ == "__main__":
    _set_timeout()
    _gloo_premul_sum()
    _flex_attention_on_cpu()
    import runpy

    sys.argv = ["torchtitan.train", *sys.argv[1:]]
    runpy.run_module("torchtitan.train", run_name="__main__", alter_sys=True)
