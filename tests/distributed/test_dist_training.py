"""FSDP2, DDP, tensor parallelism and MoE expert parallelism on 2 trn ranks,
each equal to a single-process run on trn (tolerances in training.py:
fp32 rtol 1e-4 / atol 2e-5; bf16 mixed precision: every element within
2 x lr x steps, 99% within 2e-3, mean difference < 5e-4; MoE forward and
gradients rtol 1e-4 / atol 1e-5)."""
from __future__ import annotations

import pytest

from dist_harness import assert_check, launch_or_fail

CHECKS = [
    "reference_trains",
    "fsdp2_fp32_matches_single_process",
    "fsdp2_bf16_mixed_precision_matches_single_process",
    "ddp_matches_single_process",
    "tensor_parallel_matches_single_process",
    "moe_expert_parallel_forward_backward_match_reference",
]


@pytest.fixture(scope="module")
def ranks():
    return launch_or_fail("training", 2, timeout=180)


@pytest.mark.parametrize("name", CHECKS)
def test_training(ranks, name):
    assert_check(ranks, name)
