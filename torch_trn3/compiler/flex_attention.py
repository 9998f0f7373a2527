"""FlexAttention (``torch.nn.attention.flex_attention``) on trn, eager and compiled.

torch 2.13 runs FlexAttention on CUDA/XPU/HPU (Triton kernels), CPU and MPS
(forward only); on any other device the public API refuses the inputs
(``_validate_device``) and inductor's lowering of the ``flex_attention``
HOPs (torch/_inductor/kernel/flex/) would pick the Triton templates. On trn
both passes run the HOPs' own dense math (``sdpa_dense`` /
``sdpa_dense_backward``, what eager FlexAttention runs on every device), so
values and gradients are exactly the eager ones, and each pass is charged to
the chip model as ONE flash-attention kernel that computes only the block
mask's kept (q-block, kv-block) pairs (:func:`charge`).

- Eager (and ``backend="eager"``/``"aot_eager"``): :func:`install` accepts
  the trn device in ``_validate_device`` and registers :func:`dense_forward` /
  :func:`dense_backward` as the HOPs' kernels for the PrivateUse1 key (and
  an autocast kernel, as torch has for CPU/CUDA). It runs when
  ``torch.nn.attention.flex_attention`` is imported (:mod:`._hooks`), which
  neither imports dynamo nor inductor.
- Inductor: :func:`lower_forward` / :func:`lower_backward` lower the HOPs on
  trn to one fallback kernel each, the custom ops ``trn3::flex_attention`` and
  ``trn3::flex_attention_backward``, which call the same two functions at run
  time (installed by ``inductor_support._lower_flex_attention_on_trn``).
  The score_mod / mask_mod / joint graphs travel inside the generated code as
  one string constant (a pickle), so code that inductor's on-disk cache
  serves to another process carries its graphs with it.
"""
from __future__ import annotations

import base64
import functools
import math
import pickle
from contextlib import contextmanager
from typing import List, Optional, Sequence, Tuple

import torch

from .. import DEVICE_NAME, _C, chip_model

#: Op names the two kernels are charged and profiled under (the HOPs' names).
FORWARD_OP = "higher_order::flex_attention"
BACKWARD_OP = "higher_order::flex_attention_backward"

# Positions in BlockMask.as_tuple() (torch 2.13): q_len, kv_len, then
# kv_num_blocks, kv_indices, full_kv_num_blocks, full_kv_indices, q_num_blocks,
# q_indices, full_q_num_blocks, full_q_indices, four optional dq-order
# entries, Q_BLOCK_SIZE, KV_BLOCK_SIZE, mask_mod.
_KV_LEN, _KV_NUM_BLOCKS, _FULL_KV_NUM_BLOCKS = 1, 2, 4
_KV_INDEX_TENSORS = slice(2, 6)   # what the forward kernel reads
_ALL_INDEX_TENSORS = slice(2, 10)  # the backward (dQ over kv blocks, dK/dV over q blocks)
_KV_BLOCK = -2


# ---------------------------------------------------------------- chip model
def _host(t: torch.Tensor) -> torch.Tensor:
    return _C._cpu_view(t) if t.device.type == DEVICE_NAME else t


def block_density(block_mask: tuple) -> float:
    """Fraction of (q-block, kv-block) pairs the block mask keeps (partial
    plus full blocks), i.e. ``1 - BlockMask.sparsity() / 100``."""
    kv_num_blocks = block_mask[_KV_NUM_BLOCKS]
    full = block_mask[_FULL_KV_NUM_BLOCKS]
    kv_blocks = math.ceil(block_mask[_KV_LEN] / block_mask[_KV_BLOCK])
    kept = int(_host(kv_num_blocks).sum())
    if full is not None:
        kept += int(_host(full).sum())
    return min(1.0, kept / max(1, kv_num_blocks.numel() * kv_blocks))


def _index_tensors(block_mask: tuple, backward: bool) -> List[torch.Tensor]:
    part = block_mask[_ALL_INDEX_TENSORS if backward else _KV_INDEX_TENSORS]
    return [t for t in part if isinstance(t, torch.Tensor)]


def charge(op: str, query, key, value, outputs: Sequence, block_mask: tuple, *,
           backward: bool, waits_for: Sequence = ()) -> None:
    """Charges one pass of FlexAttention as one flash-attention kernel: it
    computes the block mask's kept blocks only and reads its index tensors
    from HBM. The one place flex attention meets the chip model."""
    if not _C._model_enabled() or outputs[0].device.type != DEVICE_NAME:
        return
    indices = _index_tensors(block_mask, backward)
    chip_model.charge_attention(
        op, query, key, value, outputs,
        kept_fraction=block_density(block_mask), backward=backward,
        mask_bytes=sum(t.numel() * t.element_size() for t in indices),
        inputs=[query, key, value, *waits_for, *indices])


# ---------------------------------------------------------------- the two kernels
def dense_forward(query, key, value, score_mod, block_mask, scale, kernel_options,
                  score_mod_other_buffers=(), mask_mod_other_buffers=()):
    """The ``flex_attention`` HOP on trn: torch's dense math, charged once."""
    from torch._higher_order_ops.flex_attention import sdpa_dense

    with chip_model.uncharged():
        out, lse, max_scores = sdpa_dense(query, key, value, score_mod, block_mask, scale,
                                          kernel_options, score_mod_other_buffers,
                                          mask_mod_other_buffers)
    charge(FORWARD_OP, query, key, value, (out, lse), block_mask, backward=False)
    return out, lse, max_scores


def dense_backward(query, key, value, out, logsumexp, grad_out, grad_logsumexp, fw_graph,
                   joint_graph, block_mask, scale, kernel_options, score_mod_other_buffers=(),
                   mask_mod_other_buffers=()):
    """The ``flex_attention_backward`` HOP on trn: torch's dense math, charged once."""
    from torch._higher_order_ops.flex_attention import sdpa_dense_backward

    with chip_model.uncharged():
        grads = sdpa_dense_backward(query, key, value, out, logsumexp, grad_out, grad_logsumexp,
                                    fw_graph, joint_graph, block_mask, scale, kernel_options,
                                    score_mod_other_buffers, mask_mod_other_buffers)
    charge(BACKWARD_OP, query, key, value, grads[:3], block_mask, backward=True,
           waits_for=[t for t in (out, grad_out) if t is not None])
    return grads


def autocast_forward(query, key, value, *args):
    """The ``flex_attention`` HOP under ``torch.autocast("trn")``: Q, K, V in
    the autocast dtype, as torch's AutocastCPU/AutocastCUDA kernels do (theirs
    re-dispatch with only the CPU and CUDA autocast keys excluded)."""
    from torch._C import DispatchKey, DispatchKeySet
    from torch._higher_order_ops.flex_attention import flex_attention
    from torch.amp.autocast_mode import _cast

    dtype = torch.get_autocast_dtype(DEVICE_NAME)
    query, key, value = (_cast(t, DEVICE_NAME, dtype) for t in (query, key, value))
    with torch._C._ExcludeDispatchKeyGuard(DispatchKeySet(DispatchKey.AutocastPrivateUse1)):
        return flex_attention(query, key, value, *args)


# ---------------------------------------------------------------- eager install
_installed = False


def install() -> None:
    """Makes ``torch.nn.attention.flex_attention`` work on trn tensors (see
    the module docstring). Idempotent; imports neither dynamo nor inductor."""
    # (importing the API may itself run install(), from torch_trn3's import hook)
    import torch.nn.attention.flex_attention as api

    global _installed
    if _installed:
        return
    _installed = True
    from torch._C import DispatchKey
    from torch._higher_order_ops.flex_attention import flex_attention, flex_attention_backward

    upstream = api._validate_device

    def _validate_device(query, key, value):
        # torch 2.13 accepts only {cuda, cpu, xpu, hpu, mps} and refuses
        # backward on cpu; trn runs forward and backward (dense_forward/backward).
        if query.device.type != DEVICE_NAME:
            upstream(query, key, value)

    _validate_device.__wrapped__ = upstream
    api._validate_device = _validate_device
    flex_attention.py_impl(DispatchKey.PrivateUse1)(dense_forward)
    flex_attention.py_impl(DispatchKey.AutocastPrivateUse1)(autocast_forward)
    flex_attention_backward.py_impl(DispatchKey.PrivateUse1)(dense_backward)
    # HOPs fall through AutocastCPU/CUDA/XPU by default (torch 2.13
    # _HIGHER_ORDER_OP_DEFAULT_FALLTHROUGH_DISPATCH_KEYS); AOTAutograd traces
    # the backward under the forward's autocast state.
    flex_attention_backward.fallthrough(DispatchKey.AutocastPrivateUse1)
    _define_ops()


# ---------------------------------------------------------------- inductor fallback
class _Tensor:
    """Marks a tensor argument's position in a packed HOP call."""

    def __init__(self, index: int):
        self.index = index


class _Size:
    """Marks a symbolic size's position in a packed HOP call."""

    def __init__(self, index: int):
        self.index = index


class _Graph:
    """A score_mod / mask_mod / joint graph as the Python source of its
    ``forward``. Unpickling a GraphModule re-traces its code, which turns
    factory calls (``full``, a constant mask) into tensor constants made
    under whatever fake mode is active; running the source does not."""

    def __init__(self, gm):
        from torch.fx.graph_module import _format_import_block
        from torch.package import sys_importer

        for node in gm.graph.nodes:
            if node.op in ("get_attr", "call_module"):
                raise NotImplementedError(
                    f"flex_attention on {DEVICE_NAME} under inductor: score_mod/mask_mod graphs "
                    f"with module attributes are not supported ({node.op} {node.target})")
        python_code = gm._real_recompile() if hasattr(gm, "_real_recompile") else gm.recompile()
        self.source = _format_import_block(python_code.globals, sys_importer) + python_code.src
        self._fn = None

    def __getstate__(self):
        return {"source": self.source}

    def __setstate__(self, state):
        self.source = state["source"]
        self._fn = None

    def function(self):
        if self._fn is None:
            namespace: dict = {}
            exec(compile(self.source, "<flex_attention subgraph>", "exec"), namespace)
            self._fn = functools.partial(namespace["forward"], None)  # forward(self, ...)
        return self._fn


def _pack(args: Sequence, is_tensor, is_symbolic) -> Tuple[list, list, list]:
    """Splits a HOP's (nested-tuple) arguments into (tensors, symbolic sizes,
    a template of everything else with markers where those went)."""
    tensors: list = []
    sizes: list = []

    def walk(value):
        if isinstance(value, (tuple, list)):
            return type(value)(walk(v) for v in value)
        if is_tensor(value):
            tensors.append(value)
            return _Tensor(len(tensors) - 1)
        if is_symbolic(value):
            sizes.append(value)
            return _Size(len(sizes) - 1)
        return value

    return tensors, sizes, walk(list(args))


def _unpack(template, tensors: Sequence, sizes: Sequence) -> list:
    def walk(value):
        if isinstance(value, (tuple, list)):
            return type(value)(walk(v) for v in value)
        if isinstance(value, _Tensor):
            return tensors[value.index]
        if isinstance(value, _Size):
            return sizes[value.index]
        if isinstance(value, _Graph):
            return value.function()
        return value

    return walk(template)


@functools.lru_cache(maxsize=None)
def _spec_of(spec: str):
    """(argument template, which captured buffers get gradients) of a spec."""
    return pickle.loads(base64.b64decode(spec))


def _captured_grad_mask(joint_graph) -> List[bool]:
    """Which of score_mod's captured buffers get a gradient: the joint
    graph returns grads for (score, b, h, q_idx, kv_idx, *buffers), None
    for those that need none."""
    output = next(n for n in reversed(joint_graph.graph.nodes) if n.op == "output")
    return [o is not None for o in output.args[0][5:]]


#: functorch's dispatch keys: the dense math vmaps score_mod and mask_mod.
_FUNCTORCH_KEYS = ("FuncTorchDynamicLayerFrontMode", "FuncTorchDynamicLayerBackMode",
                   "FuncTorchBatched", "FuncTorchVmapMode", "FuncTorchGradWrapper")


@contextmanager
def _functorch_enabled():
    """On a compiled graph's first call, AOTAutograd runs its custom ops under
    a dispatch mode (``_AnalyzeCustomOpInputOutputMode``), i.e. with every
    key above Python excluded, functorch's too; the dense math vmaps, so
    those keys are let through again, as for the HOP's eager kernel."""
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for name in _FUNCTORCH_KEYS:
        exclude = exclude.remove(getattr(torch._C.DispatchKey, name))
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude):
        yield


def _run_forward(tensors: List[Optional[torch.Tensor]], sizes: List[int], spec: str
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    template, _ = _spec_of(spec)
    with torch.no_grad(), _functorch_enabled():
        return tuple(dense_forward(*_unpack(template, tensors, sizes)))


def _run_backward(tensors: List[Optional[torch.Tensor]], sizes: List[int], spec: str
                  ) -> List[torch.Tensor]:
    template, captured_grads = _spec_of(spec)
    args = _unpack(template, tensors, sizes)
    # sdpa_dense_backward allocates a captured buffer's gradient only if the
    # buffer requires grad; in compiled code none does, so the buffers that
    # get one (per the joint graph) are flagged, on aliases.
    args[12] = tuple(b.detach().requires_grad_(True) if needed else b
                     for b, needed in zip(args[12], captured_grads))
    with torch.no_grad(), _functorch_enabled():
        grad_q, grad_k, grad_v, captured = dense_backward(*args)
    return [grad_q, grad_k, grad_v, *(g for g in captured if g is not None)]


def _fake_forward(tensors, sizes, spec):
    from torch._higher_order_ops.flex_attention import flex_attention_fake_impl

    return flex_attention_fake_impl(*_unpack(_spec_of(spec)[0], tensors, sizes))


def _fake_backward(tensors, sizes, spec):
    from torch._higher_order_ops.flex_attention import flex_attention_backward_fake_tensor_mode

    template, captured_grads = _spec_of(spec)
    grad_q, grad_k, grad_v, captured = flex_attention_backward_fake_tensor_mode(
        *_unpack(template, tensors, sizes))
    return [grad_q, grad_k, grad_v, *(g for g, needed in zip(captured, captured_grads) if needed)]


_ops_defined = False


def _define_ops() -> None:
    """``trn3::flex_attention(Tensor?[] tensors, SymInt[] sizes, str spec)``
    and its backward: a HOP call packed by :func:`_pack_for_lowering`, run
    by the dense kernels above. Defined at :func:`install`, so code loaded
    from inductor's cache finds them without a lowering in this process."""
    global _ops_defined
    if _ops_defined:
        return
    schema_args = "(Tensor?[] tensors, SymInt[] sizes, str spec)"
    lib = torch.library.Library("trn3", "FRAGMENT")
    lib.define(f"flex_attention{schema_args} -> (Tensor, Tensor, Tensor)")
    lib.define(f"flex_attention_backward{schema_args} -> Tensor[]")
    for name, kernel, fake in (("flex_attention", _run_forward, _fake_forward),
                               ("flex_attention_backward", _run_backward, _fake_backward)):
        lib.impl(name, kernel, "CompositeExplicitAutograd")
        torch.library.register_fake(f"trn3::{name}", fake, lib=lib)
    _define_ops.lib = lib  # keeps the registrations alive
    _ops_defined = True


def _pack_for_lowering(args: Sequence, captured_grads: Optional[List[bool]] = None):
    """(tensors, sizes, spec) of a HOP call in inductor's lowering: IR nodes
    are the tensors, sympy expressions with free symbols the sizes; the
    subgraphs and every constant go into ``spec``, a string constant of the
    generated code (so code from inductor's cache carries its graphs)."""
    import sympy
    from torch._inductor import ir

    def plain(value):
        if isinstance(value, ir.Subgraph):
            return _Graph(value.graph_module)
        if isinstance(value, sympy.Integer):
            return int(value)
        if isinstance(value, (tuple, list)):
            return type(value)(plain(v) for v in value)
        return value

    tensors, sizes, template = _pack(
        plain(list(args)),
        is_tensor=lambda v: isinstance(v, ir.IRNode),
        is_symbolic=lambda v: isinstance(v, sympy.Expr))
    spec = base64.b64encode(pickle.dumps((template, captured_grads))).decode("ascii")
    return tensors, sizes, spec


def lower_forward(*args):
    """inductor lowering of ``flex_attention`` on trn: one fallback kernel."""
    from torch._inductor.lowering import fallback_handler

    tensors, sizes, spec = _pack_for_lowering(args)
    out, lse, max_scores = fallback_handler(torch.ops.trn3.flex_attention.default,
                                            add_to_fallback_set=False)(tensors, sizes, spec)
    return out, lse, max_scores


def lower_backward(*args):
    """inductor lowering of ``flex_attention_backward`` on trn: one fallback
    kernel; captured buffers the joint graph gives no gradient get None, as
    in torch's lowering."""
    from torch._inductor.lowering import fallback_handler

    captured_grads = _captured_grad_mask(args[8].graph_module)
    tensors, sizes, spec = _pack_for_lowering(args, captured_grads)
    grad_q, grad_k, grad_v, *grads = fallback_handler(
        torch.ops.trn3.flex_attention_backward.default,
        add_to_fallback_set=False)(tensors, sizes, spec)
    grads = iter(grads)
    return grad_q, grad_k, grad_v, tuple(next(grads) if needed else None
                                         for needed in captured_grads)
