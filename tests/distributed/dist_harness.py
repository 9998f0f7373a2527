"""Helpers that launch the multi-rank scenarios and read their checks."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from launch import describe, run_ranks  # noqa: E402


def launch_or_fail(scenario: str, world_size: int, timeout: float, env=None):
    """Runs ``scenario`` on ``world_size`` ranks; fails the test unless every
    rank exited 0 (tests that expect a rank to die call ``run_ranks``)."""
    results = run_ranks(scenario, world_size, timeout=timeout, env=env)
    for r in results:
        if r.returncode != 0:
            pytest.fail(f"rank {r.rank} exited with {r.returncode}:\n{describe(results)}")
    return results


def assert_check(results, name: str) -> None:
    """Every rank ran check ``name`` and it passed."""
    for r in results:
        if name not in r.checks:
            pytest.fail(f"rank {r.rank} did not record {name!r}\n{describe(results)}")
        entry = r.checks[name]
        if not entry["ok"]:
            pytest.fail(f"rank {r.rank}: {name} failed:\n{entry['detail']}")
