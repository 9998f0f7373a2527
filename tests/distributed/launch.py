"""Start ranks like ``torchrun`` does, on loopback, with a hard timeout.

``run_ranks(scenario, world_size)`` starts ``world_size`` processes of
``python tests/distributed/workers.py SCENARIO OUT_DIR``, each with the
environment torchrun gives its workers (MASTER_ADDR=127.0.0.1, a free
MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE). Each rank
writes ``rank{r}.json``: a dict of check name -> {"ok": bool, "detail": str}.
The call returns the exit codes, outputs and those dicts. Processes still
running at the deadline are killed (their own ids only).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKERS = os.path.join(HERE, "workers.py")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, world_size: int, port: int, extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    for var in ("TRN3_LNC", "NEURON_LOGICAL_NC_CONFIG", "TRN3_CHIPS", "TRN3_CHIP",
                "TORCH_TRN3_DEVICE", "TORCH_DISTRIBUTED_DEBUG"):
        env.pop(var, None)
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
        GLOO_SOCKET_IFNAME="lo",
        OMP_NUM_THREADS="1",
        # the checkout under test, whatever the editable install points at
        PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p),
    )
    env.update(extra or {})
    return env


@dataclass
class RankResult:
    rank: int
    returncode: Optional[int]  # None: killed at the deadline
    output: str
    checks: Dict[str, dict]


def run_ranks(scenario: str, world_size: int, timeout: float = 120.0,
              env: Optional[dict] = None) -> List[RankResult]:
    out_dir = tempfile.mkdtemp(prefix=f"trnccl_{scenario}_")
    port = free_port()
    procs = []
    logs = []
    for rank in range(world_size):
        log = open(os.path.join(out_dir, f"rank{rank}.log"), "w+")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, WORKERS, scenario, out_dir],
            cwd=REPO, env=torchrun_env(rank, world_size, port, env),
            stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    codes: List[Optional[int]] = [None] * world_size
    while time.monotonic() < deadline and any(c is None for c in codes):
        for i, p in enumerate(procs):
            if codes[i] is None:
                codes[i] = p.poll()
        time.sleep(0.1)
    for i, p in enumerate(procs):
        if codes[i] is None:
            p.kill()
            p.wait()
    results = []
    for rank, log in enumerate(logs):
        log.seek(0)
        output = log.read()
        log.close()
        path = os.path.join(out_dir, f"rank{rank}.json")
        checks = {}
        if os.path.exists(path):
            with open(path) as f:
                checks = json.load(f)
        results.append(RankResult(rank, codes[rank], output, checks))
    return results


def describe(results: List[RankResult]) -> str:
    """Exit codes and the tail of each rank's output, for assertion messages."""
    parts = []
    for r in results:
        parts.append(f"--- rank {r.rank} exit={r.returncode}\n{r.output[-3000:]}")
    return "\n".join(parts)
