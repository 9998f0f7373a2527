"""Every collective of torch.distributed on trn tensors through ``trnccl``,
4 ranks (LNC=2: all four share chip 0), against hand-computed values.

One launch runs all checks (``workers.scenario_collectives``); each test
asserts one of them on every rank.
"""
from __future__ import annotations

import pytest

from dist_harness import assert_check, launch_or_fail

WORLD = 4

COLLECTIVES = [
    "init_trnccl",
    *(f"all_reduce_{op}" for op in ("sum", "product", "min", "max", "avg", "band", "bor", "bxor")),
    "all_reduce_bf16_async_wait",
    "all_reduce_avg_async_int",
    "broadcast",
    "reduce_sum_and_avg",
    "all_gather_list",
    "all_gather_into_tensor",
    "reduce_scatter_list",
    "reduce_scatter_tensor_sum",
    "reduce_scatter_tensor_avg",
    "all_reduce_premul_sum",
    "all_reduce_premul_sum_tensor_factor",
    "reduce_scatter_tensor_premul_sum",
    "reduce_scatter_list_premul_sum",
    "reduce_premul_sum",
    "all_to_all_single_even",
    "all_to_all_single_uneven",
    "all_to_all_list_uneven",
    "gather",
    "scatter",
    "send_recv_ring",
    "isend_irecv",
    "batch_isend_irecv",
    "barrier",
    "all_reduce_coalesced_manager",
    "all_gather_into_tensor_coalesced",
    "reduce_scatter_tensor_coalesced_avg",
    "all_gather_coalesced_legacy",
    "all_reduce_coalesced_legacy",
    "object_collectives",
    "cpu_tensors_same_group",
    "subgroup_all_reduce",
]

FUNCTIONAL = [
    "functional_all_reduce",
    "functional_all_reduce_avg",
    "functional_all_gather_tensor",
    "functional_reduce_scatter_tensor",
    "functional_all_to_all_single_uneven",
    "functional_broadcast",
    "functional_autograd_all_to_all_single",
    "functional_autograd_all_gather_reduce_scatter",
]

BAD_INPUT = [
    "error_split_sizes_do_not_sum",
    "error_split_sizes_wrong_count",
    "error_tensor_on_wrong_device",
    "error_all_gather_into_tensor_bad_size",
    "group_usable_after_errors",
]

COST = ["cost_charged_to_collective_engine", "cost_premul_sum_is_one_all_reduce", "cost_event_timing"]

INIT = [
    "init_device_id_default_backend",
    "init_cpu_gloo_trn_trnccl",
    "init_device_mesh_dtensor",
    "init_device_mesh_2d",
]


@pytest.fixture(scope="module")
def ranks():
    return launch_or_fail("collectives", WORLD, timeout=150)


@pytest.mark.parametrize("name", COLLECTIVES)
def test_collective(ranks, name):
    assert_check(ranks, name)


@pytest.mark.parametrize("name", FUNCTIONAL)
def test_functional_collective(ranks, name):
    assert_check(ranks, name)


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input(ranks, name):
    assert_check(ranks, name)


@pytest.mark.parametrize("name", COST)
def test_modelled_cost(ranks, name):
    assert_check(ranks, name)


@pytest.mark.parametrize("name", INIT)
def test_init_variants(ranks, name):
    assert_check(ranks, name)


def test_no_check_left_unasserted(ranks):
    listed = set(COLLECTIVES + FUNCTIONAL + BAD_INPUT + COST + INIT)
    recorded = set(ranks[0].checks)
    assert recorded == listed, (recorded - listed, listed - recorded)
