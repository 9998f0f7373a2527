"""Connects torch.compile to trn without importing dynamo at ``import torch``.

Importing ``torch._dynamo`` takes ~1.5 s, so the backend must not do it at
autoload. Instead, the moment dynamo is first imported (by ``torch.compile``
or anything else), its device interface for trn and inductor's code
generation for trn are registered (the code generation modules themselves
are imported when inductor first compiles a trn graph).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_DYNAMO = "torch._dynamo"


def _on_dynamo_imported() -> None:
    from . import device_interface, inductor_support

    device_interface.register()
    inductor_support.register_backend()


class _AfterDynamoImport(importlib.abc.MetaPathFinder):
    """Runs :func:`_on_dynamo_imported` right after ``torch._dynamo`` executes."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _DYNAMO:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _on_dynamo_imported()

        spec.loader.exec_module = exec_then_register
        return spec


def install() -> None:
    if _DYNAMO in sys.modules:
        _on_dynamo_imported()
    elif not any(isinstance(f, _AfterDynamoImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterDynamoImport())
