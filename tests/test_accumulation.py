"""torch_trn3.set_matmul_accumulation("bf16"): the Tensor Engine's BF16
accumulation mode (FP32 within each 128-element K chunk, BF16 between)."""
import pytest
import torch

import torch_trn3


@pytest.fixture
def bf16_accumulation():
    torch_trn3.set_matmul_accumulation("bf16")
    yield
    torch_trn3.set_matmul_accumulation("fp32")


def test_default_is_fp32_and_equals_cpu():
    assert torch_trn3.get_matmul_accumulation() == "fp32"
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 300, generator=g).bfloat16(), torch.randn(300, 5, generator=g).bfloat16()
    assert torch.equal((a.trn() @ b.trn()).cpu(), a @ b)


def test_bf16_mode_rounds_between_chunks(bf16_accumulation):
    """Hand-computed: K = 256 = two chunks. Chunk 0 sums to 256 + 1 (exact in
    FP32), which rounds to 256 in BF16 (8 significant bits); chunk 1 adds 1
    more: 256 + 1 rounds to 256 again. FP32 accumulation would give 258."""
    a = torch.zeros(1, 256, dtype=torch.bfloat16)
    b = torch.zeros(256, 1, dtype=torch.bfloat16)
    a[0, 0], b[0, 0] = 16, 16       # 256 in chunk 0
    a[0, 1], b[1, 0] = 1, 1         # +1 in chunk 0 -> 257 in FP32 -> 256 in BF16
    a[0, 128], b[128, 0] = 1, 1     # chunk 1: 1 -> 256 + 1 -> 256 in BF16
    assert (a.float() @ b.float()).item() == 258.0
    out = a.trn() @ b.trn()
    assert out.dtype == torch.bfloat16
    assert out.item() == 256.0


def test_bf16_mode_matches_a_reference_written_from_the_rule(bf16_accumulation):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, 40, 300, generator=g).bfloat16(), torch.randn(4, 3, 300, 7, generator=g).bfloat16()
    ref = None
    for k in range(0, 300, 128):
        chunk = (a[..., k:k + 128].double() @ b[..., k:k + 128, :].double()).float().bfloat16()
        ref = chunk if ref is None else (ref.float() + chunk.float()).bfloat16()
    out = torch.matmul(a.trn(), b.trn())   # batched: bmm
    torch.testing.assert_close(out.cpu().float(), ref.float(), rtol=0, atol=2 ** -7 * ref.float().abs().max().item())
    bias = torch.randn(7, generator=g).bfloat16()
    lin = torch.nn.functional.linear(a[0, 0].trn(), b[0, 0].t().trn(), bias.trn())  # addmm
    lin_ref = None
    for k in range(0, 300, 128):
        chunk = (a[0, 0, :, k:k + 128].float() @ b[0, 0, k:k + 128].float()).bfloat16()
        lin_ref = chunk if lin_ref is None else (lin_ref.float() + chunk.float()).bfloat16()
    assert torch.equal(lin.cpu(), (bias.float() + lin_ref.float()).bfloat16())


def test_fp32_matmuls_keep_fp32_accumulation_in_bf16_mode(bf16_accumulation):
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 300, generator=g), torch.randn(300, 4, generator=g)
    assert torch.equal((a.trn() @ b.trn()).cpu(), a @ b)


def test_mode_switches_back_and_rejects_unknown_modes():
    torch_trn3.set_matmul_accumulation("bf16")
    torch_trn3.set_matmul_accumulation("fp32")
    assert torch_trn3.get_matmul_accumulation() == "fp32"
    a = torch.zeros(1, 256, dtype=torch.bfloat16)
    a[0, 0], a[0, 1], a[0, 128] = 16, 1, 1
    b = a.t().contiguous()
    assert (a.trn() @ b.trn()).item() == 258.0
    with pytest.raises(ValueError, match="allowed values"):
        torch_trn3.set_matmul_accumulation("fp16")
