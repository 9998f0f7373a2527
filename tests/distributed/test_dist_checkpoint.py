"""torch.distributed.checkpoint on trn: an FSDP2 model and its AdamW state
saved by N ranks (``dcp.save`` of ``get_state_dict``) and loaded resharded
into M ranks (``dcp.load`` + ``set_state_dict``): parameters and optimizer
state equal what was saved (exactly), and the next training step equals the
N-rank run's (fp32 rtol 1e-4 / atol 2e-5: reduction order only).
Scenarios: checkpointing.py."""
from __future__ import annotations

import pytest

from dist_harness import assert_check, launch_or_fail

LOAD_CHECKS = [
    "load_resharded_model_and_optimizer",
    "loaded_parameters_equal_saved",
    "loaded_optimizer_state_equals_saved",
    "resumed_step_matches_saving_world",
]


@pytest.fixture(scope="module", params=[(2, 1), (4, 2)], ids=["2to1", "4to2"])
def resharded(request, tmp_path_factory):
    saved_by, loaded_by = request.param
    ckpt = str(tmp_path_factory.mktemp(f"dcp_{saved_by}to{loaded_by}"))
    saved = launch_or_fail("checkpoint_save", saved_by, timeout=90, env={"CKPT_DIR": ckpt})
    loaded = launch_or_fail("checkpoint_load", loaded_by, timeout=90, env={"CKPT_DIR": ckpt})
    return saved, loaded


def test_save_writes_every_ranks_shards(resharded):
    saved, _ = resharded
    assert_check(saved, "save_fsdp2_model_and_optimizer")


@pytest.mark.parametrize("name", LOAD_CHECKS)
def test_load_resharded(resharded, name):
    _, loaded = resharded
    assert_check(loaded, name)
