"""FSDP2 on 2 trn ranks: all-gathers of the next block overlap the current
block's compute on the modelled timeline, and the profiler reports the
collective time hidden behind compute and the time exposed (overlap.py)."""
from __future__ import annotations

import pytest

from dist_harness import assert_check, launch_or_fail

CHECKS = [
    "fsdp2_step_is_shorter_than_compute_plus_communication",
    "forward_all_gathers_of_later_blocks_run_under_compute",
    "profiler_reports_exposed_and_hidden_communication",
]


@pytest.fixture(scope="module")
def ranks():
    return launch_or_fail("overlap", 2, timeout=120)


@pytest.mark.parametrize("name", CHECKS)
def test_overlap(ranks, name):
    assert_check(ranks, name)
