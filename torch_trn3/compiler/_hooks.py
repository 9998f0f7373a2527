"""Connects torch.compile to trn without importing dynamo at ``import torch``.

Importing ``torch._dynamo`` takes ~1.5 s, so the backend must not do it at
autoload. Instead, the moment dynamo is first imported (by ``torch.compile``
or anything else), its device interface for trn and inductor's code
generation for trn and the ``trn3`` backend are registered (the code
generation modules themselves are imported when inductor first compiles a
trn graph). Likewise FlexAttention is made to accept trn tensors when
``torch.nn.attention.flex_attention`` is first imported (:mod:`.flex_attention`).
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_DYNAMO = "torch._dynamo"
#: FlexAttention's public API, whose device check trn adapts (.flex_attention).
_FLEX_ATTENTION = "torch.nn.attention.flex_attention"


def _on_dynamo_imported() -> None:
    from . import backend, device_interface, inductor_support

    device_interface.register()
    inductor_support.register_backend()
    backend.register()


def _on_flex_attention_imported() -> None:
    from . import flex_attention

    flex_attention.install()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback`` right after module ``name`` executes."""

    def __init__(self, name: str, callback) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            self.callback()

        spec.loader.exec_module = exec_then_register
        return spec


def _after_import(name: str, callback) -> None:
    if name in sys.modules:
        callback()
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))


def install() -> None:
    _after_import(_DYNAMO, _on_dynamo_imported)
    _after_import(_FLEX_ATTENTION, _on_flex_attention_imported)
