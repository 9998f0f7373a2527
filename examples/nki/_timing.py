"""Modelled-time comparison every NKI example prints.

Why one helper: each example shows its kernel's modelled Trainium3 time next
to the same computation as plain torch ops on ``trn``, eager and compiled,
measured the same way (``torch.trn.Event`` pairs read the device's simulated
clock; wall-clock time is never shown as device time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch


def modelled_ms(fn: Callable, *args, warmup: int = 0):
    """(result, modelled milliseconds) of one call of ``fn(*args)`` on ``trn``.

    ``warmup`` calls run first (compilation happens there, not in the window).
    """
    for _ in range(warmup):
        fn(*args)
    start = torch.trn.Event(enable_timing=True)
    end = torch.trn.Event(enable_timing=True)
    start.record()
    out = fn(*args)
    end.record()
    end.synchronize()
    return out, start.elapsed_time(end)


@dataclass
class Comparison:
    """Modelled times of one computation three ways (milliseconds)."""
    name: str
    nki_ms: float
    eager_ms: float
    compiled_ms: float

    def report(self) -> str:
        return (f"{self.name}: modelled Trainium3 time  NKI kernel {self.nki_ms * 1e3:9.2f} us | "
                f"torch eager {self.eager_ms * 1e3:9.2f} us | "
                f"torch.compile(trn3) {self.compiled_ms * 1e3:9.2f} us")


def compare(name: str, nki_fn: Callable, torch_fn: Callable, *args,
            nki_ms: Optional[float] = None) -> Comparison:
    """Time ``nki_fn(*args)`` (unless ``nki_ms`` is given), ``torch_fn(*args)``
    eagerly and ``torch.compile(torch_fn, backend="trn3")``."""
    if nki_ms is None:
        _, nki_ms = modelled_ms(nki_fn, *args)
    _, eager_ms = modelled_ms(torch_fn, *args)
    compiled = torch.compile(torch_fn, backend="trn3", fullgraph=True)
    _, compiled_ms = modelled_ms(compiled, *args, warmup=1)
    return Comparison(name, nki_ms, eager_ms, compiled_ms)
