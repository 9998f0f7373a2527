"""torch.compile for trn: inductor code generation for the device, the
``trn3`` graph compiler, and the compile report (:func:`explain`).

``import torch`` does not import dynamo or inductor: :mod:`._hooks`
registers the pieces when dynamo is first imported.
"""
from __future__ import annotations


def explain(fn, *args, backend: str = "trn3", **kwargs):
    """See :func:`torch_trn3.compiler.explain.explain`."""
    from .explain import explain as _explain

    return _explain(fn, *args, backend=backend, **kwargs)


__all__ = ["explain"]
