"""torch.compile for trn: inductor code generation for the device, the
``trn3`` graph compiler, and the compile report (:func:`explain`).

``import torch`` does not import dynamo or inductor: :mod:`._hooks`
registers the pieces when dynamo is first imported.
"""
from __future__ import annotations


def explain(fn, *args, backend: str = "trn3", **kwargs):
    """Compiles ``fn`` with ``backend``, runs it on ``args`` (trn tensors)
    and returns a :class:`~.report.CompileReport` of its graphs, graph
    breaks and kernels (``print()`` it). See :mod:`.report`."""
    from .report import explain as _explain

    return _explain(fn, *args, backend=backend, **kwargs)


__all__ = ["explain"]
