"""Real torchtitan 0.3.0, unchanged, trains its llama3 debug model on trn.

Each test runs torchtitan's own entry point in a subprocess from a folder
holding the tokenizer and ``c4_test`` data the tests build
(:mod:`_assets`). torchtitan picks the device itself: torch's
``_get_available_device_type()`` reports the autoloaded ``trn``. The CPU
reference is the same run with the backend off (:mod:`cpu_reference`).
"""
import pytest

import titan_run

STEPS = 4
ARGS = [*titan_run.LLAMA3_DEBUG, "--training.steps", str(STEPS)]

_runs = {}


def _started(workdir, name, args, **kw):
    """Each configuration runs once per session; tests share the runs."""
    if name not in _runs:
        _runs[name] = titan_run.start(workdir, name, args, **kw)
    return _runs[name]


def _finished(pending):
    run = pending.wait()
    assert run.returncode == 0, run.log[-6000:]
    assert sorted(run.losses) == list(range(1, STEPS + 1)), run.log[-3000:]
    return run


def _rel(a, b):
    return abs(a - b) / abs(b)


def test_llama3_debugmodel_trains_on_trn_with_cpu_losses(titan_workdir):
    trn = _started(titan_workdir, "trn_eager", ARGS)
    cpu = _started(titan_workdir, "cpu_eager", ARGS, device="cpu")  # runs alongside
    trn, cpu = _finished(trn), _finished(cpu)
    assert "device_type=trn" in trn.log or "TRN memory usage" in trn.log, trn.log[-3000:]
    # Dense ops are the CPU's kernels on zero-copy views, FlexAttention is the
    # same dense math on both: fp32 losses and grad norms are bit-equal.
    assert trn.loss_list() == cpu.loss_list(), (trn.losses, cpu.losses)
    assert trn.grad_norms == cpu.grad_norms
    assert trn.losses[STEPS] < trn.losses[1]
