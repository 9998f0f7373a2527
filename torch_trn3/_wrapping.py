"""Replacing a function of another library by a wrapper, exactly once.

Why one helper: the torchtitan hooks (:mod:`torch_trn3.titan_report`,
:mod:`torch_trn3.titan_checks`) each wrap a torchtitan function or method
when its module is imported; the import hook can fire again (a module
reloaded, ``install()`` called twice), and wrapping a wrapper would report
or check twice. The wrapper keeps the original as ``__wrapped__``, as
``functools.wraps`` does, so ``inspect.unwrap`` finds it.
"""
from __future__ import annotations

from typing import Any, Callable

#: Attribute set on every wrapper this module installs.
_MARK = "_torch_trn3_wrapper"


def wrap_once(owner: Any, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    """Sets ``owner.name`` to ``make_wrapper(original)`` unless it is already
    a wrapper installed here."""
    original = getattr(owner, name)
    if getattr(original, _MARK, False):
        return
    wrapper = make_wrapper(original)
    setattr(wrapper, _MARK, True)
    wrapper.__wrapped__ = original
    setattr(owner, name, wrapper)
