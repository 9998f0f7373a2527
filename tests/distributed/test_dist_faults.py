"""A dead or stalled rank makes the others fail within the timeout instead of
hanging; misuse without a process group gives PyTorch's clear error."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from launch import run_ranks

TIMEOUT_S = 5


@pytest.mark.parametrize("mode", ["crash", "hang"])
def test_peer_failure_raises_within_timeout(mode):
    results = run_ranks("fault", 2, timeout=60,
                        env={"FAULT_MODE": mode, "FAULT_TIMEOUT": str(TIMEOUT_S)})
    survivor, dead = results
    assert dead.returncode == 17, dead.output[-2000:]
    assert survivor.returncode == 0, survivor.output[-3000:]
    assert survivor.checks["survivor_errors"]["ok"], survivor.checks
    elapsed = float(survivor.checks["elapsed"]["detail"])
    # a crash closes the connection at once; a stall hits the group's timeout
    assert elapsed < TIMEOUT_S + 5, elapsed
    if mode == "hang":
        assert elapsed >= TIMEOUT_S * 0.9, elapsed
    error = survivor.checks["error"]["detail"].lower()
    if mode == "crash":
        assert "peer" in error or "closed" in error, error
    else:
        assert "timed out" in error, error


def test_collective_without_process_group_is_a_clear_error():
    assert not dist.is_initialized()
    x = torch.ones(2, device="trn")
    with pytest.raises(ValueError, match="Default process group has not been initialized"):
        dist.all_reduce(x)


def test_trnccl_is_the_default_backend_for_trn():
    assert dist.Backend.default_device_backend_map["trn"] == "trnccl"
    assert dist.Backend.backend_capability["trnccl"] == ["cpu", "trn"]
