"""Shared pieces of the benchmarks: a training step of the small decoder the
tests use too (:class:`torch_trn3.testing.TinyDecoder` at
:data:`~torch_trn3.testing.BENCHMARK_DECODER` size) and alternating timing
(these machines are noisy, so every figure is a ratio of two measurements
interleaved in one process)."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from torch_trn3.testing import BENCHMARK_DECODER, TinyDecoder


def make_train_step(device: str, autocast_dtype=None, seed: int = 0, batch: int = 8, seq: int = 128,
                    compile_backend=None):
    """A closure running one AdamW training step of the benchmark decoder on
    ``device`` (the model compiled with ``compile_backend`` when given)."""
    torch.manual_seed(seed)
    sizes = dict(BENCHMARK_DECODER, seq=seq)
    model = TinyDecoder(**sizes).to(device)
    run = torch.compile(model, backend=compile_backend) if compile_backend else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, sizes["vocab"], (batch, seq + 1), generator=gen).to(device)
    device_type = torch.device(device).type

    def step() -> float:
        with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            logits = run(tokens[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def alternate(fns: Dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> Dict[str, List[float]]:
    """Runs each fn ``repeats`` times, interleaved, returning wall times."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: List[float]) -> float:
    return statistics.median(xs)
