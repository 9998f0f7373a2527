"""torch_trn3.compat: public torch APIs clients need that torch 2.13 lacks."""
import datetime

import torch
import torch.distributed as dist

import torch_trn3.compat as compat


def test_set_timeout_exists_after_import():
    assert callable(dist.set_timeout)
    # installed only where torch lacks it: torch's own wins on newer versions
    assert ("torch.distributed.set_timeout" in compat.INSTALLED) == (dist.set_timeout is compat.set_timeout)


def test_set_timeout_sets_every_backend_of_the_group(tmp_path):
    dist.init_process_group("cpu:gloo,trn:trnccl", init_method=f"file://{tmp_path}/store",
                            rank=0, world_size=1)
    try:
        dist.set_timeout(datetime.timedelta(seconds=77))
        group = dist.group.WORLD
        for device in ("cpu", "trn"):
            assert group._get_backend(torch.device(device)).options._timeout == datetime.timedelta(seconds=77)
        x = torch.ones(3, device="trn")
        dist.all_reduce(x)  # the group still works
        assert x.cpu().tolist() == [1.0, 1.0, 1.0]
    finally:
        dist.destroy_process_group()


def test_set_timeout_rejects_a_number():
    import pytest

    with pytest.raises(TypeError, match="timedelta"):
        compat.set_timeout(30)
