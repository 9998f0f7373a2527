"""``torch.ops.symm_mem.all_to_all_vdev_2d`` (MoE dispatch),
``all_to_all_vdev_2d_offset`` (combine) and ``all_to_all_vdev`` on trn
tensors, 3 ranks, against the pure-Python reference below (PyTorch 2.13's
documented semantics, as its test_nvshmem.py checks them). Scenario:
symm_mem_checks.py.

Reference conventions: ``npes`` ranks, ``ne`` local experts per rank; every
split counts rows of dim 0.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import pytest
import torch

from dist_harness import assert_check, launch_or_fail

WORLD = 3


# ---------------------------------------------------------------- reference
def _exclusive(xs: Sequence[int]) -> List[int]:
    out, acc = [], 0
    for x in xs:
        out.append(acc)
        acc += x
    return out


def ref_dispatch(inputs: Sequence[torch.Tensor], in_splits: Sequence[Sequence[int]], ne: int,
                 align: int, rank: int) -> Tuple[List[int], List[int], List[Tuple[int, torch.Tensor]]]:
    """What ``all_to_all_vdev_2d`` gives rank ``rank``.

    ``inputs[s]`` / ``in_splits[s]``: rank s's input (rank-major, packed: chunk
    (peer p, expert e) is ``in_splits[s][p * ne + e]`` rows) and splits.
    Returns (out_splits, out_offsets, [(offset, rows)]) in expert-major order
    (index e * npes + src). Each expert's total is padded up to a multiple of
    ``align`` and to at least ``align``; the padding follows its last chunk."""
    npes = len(inputs)
    splits, chunks = [], []
    for e in range(ne):
        for src in range(npes):
            c = rank * ne + e
            start = sum(in_splits[src][:c])
            n = in_splits[src][c]
            splits.append(n)
            chunks.append(inputs[src][start:start + n])
    padded = list(splits)
    for e in range(ne):
        total = sum(splits[e * npes:(e + 1) * npes])
        aligned = max((total + align - 1) // align * align, align)
        padded[e * npes + npes - 1] += aligned - total
    offsets = _exclusive(padded)
    return splits, offsets, list(zip(offsets, chunks))


def ref_combine(inputs: Sequence[torch.Tensor], in_splits: Sequence[Sequence[int]],
                in_offsets: Sequence[Sequence[int]], ne: int, rank: int):
    """What ``all_to_all_vdev_2d_offset`` gives rank ``rank``: rank-major packed
    rows; chunk (src, e) is rank src's chunk (expert e, peer rank)."""
    npes = len(inputs)
    splits, rows = [], []
    for src in range(npes):
        for e in range(ne):
            c = e * npes + rank
            n, o = in_splits[src][c], in_offsets[src][c]
            splits.append(n)
            rows.append(inputs[src][o:o + n])
    return splits, _exclusive(splits), torch.cat(rows)


def ref_vdev(inputs, in_splits, rank: int):
    """``all_to_all_vdev``: rank-packed in, source-packed out."""
    splits, rows = [], []
    for src in range(len(inputs)):
        start = sum(in_splits[src][:rank])
        n = in_splits[src][rank]
        splits.append(n)
        rows.append(inputs[src][start:start + n])
    return splits, _exclusive(splits), torch.cat(rows)


def test_reference_matches_hand_computed_dispatch():
    # 2 ranks, 2 experts each; rank 0 sends [1, 0 | 2, 1], rank 1 [0, 2 | 1, 0]
    ins = [torch.arange(4.0).view(4, 1), 10 + torch.arange(3.0).view(3, 1)]
    spl = [[1, 0, 2, 1], [0, 2, 1, 0]]
    # rank 1 gets expert 2 from r0 (rows 1,2) and r1 (row 12); expert 3: r0 row 3
    splits, offsets, chunks = ref_dispatch(ins, spl, ne=2, align=4, rank=1)
    assert splits == [2, 1, 1, 0]
    assert offsets == [0, 2, 4, 5]          # expert 2: 3 rows padded to 4
    assert [c.flatten().tolist() for _, c in chunks] == [[1.0, 2.0], [12.0], [3.0], []]
    # expert 3 on rank 0 ... an empty expert still takes `align` rows
    splits, offsets, _ = ref_dispatch(ins, spl, ne=2, align=4, rank=0)
    assert splits == [1, 0, 0, 2] and offsets == [0, 1, 4, 4]


# ---------------------------------------------------------------- multi-rank
CHECKS = [
    "schemas_are_pytorch_2_13s",
    "dispatch_2d_align1_matches_reference",
    "dispatch_2d_align8_matches_reference",
    "dispatch_2d_leaves_padding_and_inputs_untouched",
    "combine_2d_offset_matches_reference",
    "dispatch_then_combine_moe_round_trip",
    "all_to_all_vdev_matches_reference",
    "symm_mem_empty_and_rendezvous_on_trn",
    "charged_as_all_to_all_on_collective_engine",
    "error_out_too_small",
    "error_splits_not_multiple_of_group",
]


@pytest.fixture(scope="module")
def ranks():
    return launch_or_fail("symm_mem", WORLD, timeout=90)


@pytest.mark.parametrize("name", CHECKS)
def test_symm_mem(ranks, name):
    assert_check(ranks, name)


def test_no_check_left_unasserted(ranks):
    assert set(ranks[0].checks) == set(CHECKS), set(ranks[0].checks) ^ set(CHECKS)
