"""trn autocast accepts float32 as CUDA does: torchtitan's MoE router runs
``torch.autocast(x.device.type, dtype=torch.float32)`` to keep routing
scores in fp32; before, trn warned and disabled autocast there."""
import warnings

import torch

import torch_trn3  # noqa: F401


def test_float32_autocast_on_trn_runs_matmuls_in_float32():
    a = torch.randn(8, 16, dtype=torch.bfloat16)
    b = torch.randn(16, 4, dtype=torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "target dtype is not supported" would raise here
        with torch.autocast("trn", dtype=torch.float32):
            out = torch.mm(a.to("trn"), b.to("trn"))
    assert out.dtype == torch.float32
    assert torch.equal(out.cpu(), torch.mm(a.float(), b.float()))
