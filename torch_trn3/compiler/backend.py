"""``torch.compile(model, backend="trn3")``: the Trainium3 graph compiler.

It is inductor with the trn code generation (AOTAutograd forward and
backward graphs, inductor's decompositions, element-wise and reduction
chains fused into one kernel each) plus what a Neuron-style compiler adds:
``neuron_fusion``, which folds the element-wise epilogue of a matmul (bias,
activation, residual) into the matmul as one Tensor Engine kernel whose
epilogue runs on the Scalar Engine out of PSUM. Also registered as
``"neuron"`` (the name AWS's native backend uses) and under the device name.

Graph breaks behave as on the real day-0 stack: data-dependent control flow
breaks the graph (dynamo's default) and the pieces run eagerly on trn.
"""
from __future__ import annotations

import functools

from .. import DEVICE_NAME

#: Names the backend answers to in ``torch.compile(backend=...)``.
BACKEND_NAMES = tuple(dict.fromkeys(("trn3", "neuron", DEVICE_NAME)))


def _inner_compile_with_neuron_fusion(gm, example_inputs, **kwargs):
    """inductor's per-graph compile with trn3's options on (used for the
    forward and the backward graph alike)."""
    from torch._inductor.compile_fx import compile_fx_inner

    from . import config

    with config.patch(neuron_fusion=True):
        return compile_fx_inner(gm, example_inputs, **kwargs)


def trn3(gm, example_inputs, **kwargs):
    """The dynamo backend: inductor, with trn3's options for every graph.

    The options are on for the whole compile, so AOTAutograd's cache key
    sees them too, and again in each per-graph compile, which for a backward
    graph may run later, outside this call."""
    from torch._inductor.compile_fx import compile_fx

    from . import config

    with config.patch(neuron_fusion=True):
        return compile_fx(gm, example_inputs, inner_compile=_inner_compile_with_neuron_fusion,
                          **kwargs)


@functools.cache
def register() -> None:
    from torch._dynamo.backends.registry import register_backend

    for name in BACKEND_NAMES:
        register_backend(compiler_fn=trn3, name=name)
