"""Shared fixtures for the torch_trn3 tests.

``import torch`` may already have loaded the backend (autoload entry point);
importing ``torch_trn3`` explicitly as well makes the tests work either way.
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

from trn_testing import device_memory_snapshot, run_python

@pytest.fixture
def no_device_leaks():
    """Fails the test if it leaves device memory allocated once its tensors are gone."""
    before = device_memory_snapshot()
    yield
    after = device_memory_snapshot()
    assert after == before, f"device memory leaked: before {before}, after {after}"


@pytest.fixture(autouse=True)
def _restore_current_device():
    """Tests that change the current device or stream must not leak it to the next test."""
    yield
    for index in range(torch.trn.device_count()):
        current = torch.accelerator.current_stream(index)
        if current.stream_id != 0:
            torch.accelerator.set_stream(
                torch.Stream(stream_id=0, device_index=index, device_type=current.device_type)
            )
    torch.trn.set_device(0)


@pytest.fixture
def python_subprocess():
    return run_python
