"""Helpers shared by the torch_trn3 tests (fixtures live in conftest.py).

Kept out of conftest.py so test modules can import them by a unique name.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch_trn3  # noqa: F401  (registers the "trn" device if autoload did not)

# The environment variables that shape the emulated machine; subprocess
# tests start from a clean slate and set only what they test.
MACHINE_ENV_VARS = (
    "TRN3_LNC",
    "NEURON_LOGICAL_NC_CONFIG",
    "TRN3_CHIPS",
    "TRN3_CHIP",
    "TORCH_TRN3_DEVICE",
)

GIB = 2**30


def device_memory_snapshot():
    """Allocated bytes of every logical device, after collecting garbage."""
    gc.collect()
    return [torch.trn.memory_allocated(i) for i in range(torch.trn.device_count())]


def requires_devices(n: int):
    return pytest.mark.skipif(
        torch.trn.device_count() < n, reason=f"needs {n} trn devices (TRN3_LNC=1 or 2)"
    )


def clean_env(**overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in MACHINE_ENV_VARS}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    env.update(overrides)
    return env


def run_python(code: str, timeout: float = 120, **env_overrides: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter with the machine env vars given."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=clean_env(**env_overrides),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def raw_records(fn):
    """(fn's result, the C++ op records it produced): each record is the tuple
    ``torch_trn3._C._drain_records()`` returns (name, scope, device, stream,
    engine, start_s, end_s, flops, bytes, inputs, outputs, hbm_stall_s,
    folded_into)."""
    torch_trn3._C._drain_records()
    torch_trn3._C._set_recording(True)
    try:
        out = fn()
    finally:
        torch_trn3._C._set_recording(False)
    return out, torch_trn3._C._drain_records()

