"""FlexAttention (torch.nn.attention.flex_attention) on trn: eager and
compiled, forward and backward, against the dense math computed on the CPU
with plain torch ops, and charged to the chip model as one flash-attention
kernel per pass."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch_trn3.profiler as tp
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

B, H, L, D = 1, 2, 256, 16
FP32 = dict(rtol=1e-5, atol=1e-5)
FORWARD_OP = "higher_order::flex_attention"
BACKWARD_OP = "higher_order::flex_attention_backward"


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# ---------------------------------------------------------------- masks and score mods
def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def sliding_window(b, h, q_idx, kv_idx):
    return (q_idx >= kv_idx) & (q_idx - kv_idx < 64)


def document_mask(document_ids):
    def mask_mod(b, h, q_idx, kv_idx):
        return document_ids[q_idx] == document_ids[kv_idx]
    return mask_mod


def alibi(score, b, h, q_idx, kv_idx):
    slope = torch.exp2(-8.0 * (h + 1) / H)
    return score - slope * (q_idx - kv_idx)


def relative_bias(bias):
    def score_mod(score, b, h, q_idx, kv_idx):
        return score + bias[q_idx - kv_idx + L - 1]
    return score_mod


#: Three documents of 100, 80 and 76 tokens; with 64-token blocks the block
#: mask skips the blocks between documents.
DOCUMENTS = torch.tensor([0] * 100 + [1] * 80 + [2] * 76)


# ---------------------------------------------------------------- the reference
def dense_attention(q, k, v, score_mod=None, mask_mod=None):
    """softmax(score_mod(q @ k^T * scale) masked with -inf) @ v, with plain
    torch ops on broadcast (b, h, q_idx, kv_idx) index grids."""
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))
    b, h, m, n = (torch.arange(s).view([-1 if i == d else 1 for i in range(4)])
                  for d, s in enumerate(scores.shape))
    if score_mod is not None:
        scores = score_mod(scores, b, h, m, n)
    if mask_mod is not None:
        scores = scores.masked_fill(~mask_mod(b, h, m, n).expand(scores.shape), -math.inf)
    return torch.softmax(scores, dim=-1) @ v


def qkv(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return [torch.randn(B, H, L, D, dtype=dtype) for _ in range(3)]


def on_trn(*tensors):
    return [t.to("trn").requires_grad_() for t in tensors]


def reference(q, k, v, score_mod=None, mask_mod=None, extra=()):
    """Output and gradients (of q, k, v and ``extra``) of the CPU dense math for
    the loss sum(out**2)."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = dense_attention(q, k, v, score_mod, mask_mod)
    out.square().sum().backward()
    return out.detach(), [t.grad for t in (q, k, v, *extra)]


def run_on_trn(attention, q, k, v, extra=(), **kwargs):
    q, k, v = on_trn(q, k, v)
    out = attention(q, k, v, **kwargs)
    out.square().sum().backward()
    return out.detach().cpu(), [t.grad.cpu() for t in (q, k, v, *extra)]


def assert_matches(actual, expected):
    (out, grads), (ref_out, ref_grads) = actual, expected
    torch.testing.assert_close(out, ref_out, **FP32)
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref, **FP32)


# ---------------------------------------------------------------- eager
def test_eager_causal_forward_and_backward_match_dense_math(no_device_leaks):
    q, k, v = qkv()
    block_mask = create_block_mask(causal, 1, 1, L, L, device="trn")
    assert block_mask.kv_num_blocks.device.type == "trn"
    assert_matches(run_on_trn(flex_attention, q, k, v, block_mask=block_mask),
                   reference(q, k, v, mask_mod=causal))


def test_eager_document_mask_matches_dense_math():
    q, k, v = qkv()
    mask_mod = document_mask(DOCUMENTS.to("trn"))
    block_mask = create_block_mask(mask_mod, 1, 1, L, L, device="trn", BLOCK_SIZE=64)
    assert block_mask.sparsity() > 0      # blocks between documents are skipped
    assert_matches(run_on_trn(flex_attention, q, k, v, block_mask=block_mask),
                   reference(q, k, v, mask_mod=document_mask(DOCUMENTS)))


def test_eager_sliding_window_matches_dense_math():
    q, k, v = qkv()
    block_mask = create_block_mask(sliding_window, 1, 1, L, L, device="trn", BLOCK_SIZE=64)
    assert_matches(run_on_trn(flex_attention, q, k, v, block_mask=block_mask),
                   reference(q, k, v, mask_mod=sliding_window))


def test_eager_alibi_score_mod_with_causal_mask_matches_dense_math():
    q, k, v = qkv()
    block_mask = create_block_mask(causal, 1, 1, L, L, device="trn")
    assert_matches(run_on_trn(flex_attention, q, k, v, score_mod=alibi, block_mask=block_mask),
                   reference(q, k, v, score_mod=alibi, mask_mod=causal))


def test_eager_bf16_matches_dense_math_within_bf16_rounding():
    q, k, v = qkv(torch.bfloat16)
    block_mask = create_block_mask(causal, 1, 1, L, L, device="trn")
    out, grads = run_on_trn(flex_attention, q, k, v, block_mask=block_mask)
    assert out.dtype == torch.bfloat16 and grads[0].dtype == torch.bfloat16
    # reference in fp32 from the same bf16 inputs; the kernel rounds the
    # probabilities and its results to bf16 (8 significant bits): within two
    # bf16 roundings (2**-7) of the largest value
    ref_out, ref_grads = reference(*(t.float() for t in (q, k, v)), mask_mod=causal)
    for got, ref in zip([out, *grads], [ref_out, *ref_grads]):
        torch.testing.assert_close(got.float(), ref, rtol=2**-7, atol=2**-7 * ref.abs().max().item())


# ---------------------------------------------------------------- compiled
def test_compiled_flex_attention_forward_and_backward_match_dense_math():
    q, k, v = qkv()
    block_mask = create_block_mask(causal, 1, 1, L, L, device="trn")
    assert_matches(run_on_trn(torch.compile(flex_attention), q, k, v, score_mod=alibi,
                              block_mask=block_mask),
                   reference(q, k, v, score_mod=alibi, mask_mod=causal))


def test_compiled_document_mask_and_learned_bias_get_dense_math_gradients():
    q, k, v = qkv()
    bias = torch.randn(2 * L - 1) * 0.1
    bias_trn = bias.to("trn").requires_grad_()
    mask_mod = document_mask(DOCUMENTS.to("trn"))
    block_mask = create_block_mask(mask_mod, 1, 1, L, L, device="trn", BLOCK_SIZE=64)
    actual = run_on_trn(torch.compile(flex_attention), q, k, v, extra=[bias_trn],
                        score_mod=relative_bias(bias_trn), block_mask=block_mask)
    bias_cpu = bias.clone().requires_grad_()
    expected = reference(q, k, v, score_mod=relative_bias(bias_cpu),
                         mask_mod=document_mask(DOCUMENTS), extra=[bias_cpu])
    assert_matches(actual, expected)


def test_compiled_create_block_mask_on_trn_equals_eager():
    compiled = torch.compile(create_block_mask)(sliding_window, 1, 1, L, L, device="trn",
                                                BLOCK_SIZE=64)
    eager = create_block_mask(sliding_window, 1, 1, L, L, device="cpu", BLOCK_SIZE=64)
    assert compiled.kv_num_blocks.device.type == "trn"
    for got, want in zip(compiled.as_tuple()[2:10], eager.as_tuple()[2:10]):
        assert torch.equal(got.cpu(), want)
    assert compiled.sparsity() == eager.sparsity() > 0


def test_trn3_backend_forward_and_backward_match_dense_math():
    q, k, v = qkv()
    block_mask = create_block_mask(sliding_window, 1, 1, L, L, device="trn", BLOCK_SIZE=64)
    assert_matches(run_on_trn(torch.compile(flex_attention, backend="trn3"), q, k, v,
                              block_mask=block_mask),
                   reference(q, k, v, mask_mod=sliding_window))


def test_compiled_code_from_inductor_cache_in_a_new_process_is_correct(python_subprocess, tmp_path):
    code = """
        import torch
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        torch.manual_seed(0)
        q, k, v = (torch.randn(1, 2, 128, 16) for _ in range(3))
        bm = create_block_mask(lambda b, h, q, k: q >= k, 1, 1, 128, 128, device="trn")
        qt, kt, vt = (t.to("trn").requires_grad_() for t in (q, k, v))
        out = torch.compile(flex_attention)(qt, kt, vt, block_mask=bm)
        out.sum().backward()
        from torch._dynamo.utils import counters
        print("hits", counters["inductor"]["fxgraph_cache_hit"])
        s = (q @ k.transpose(-2, -1) / 4).masked_fill(~torch.ones(128, 128).bool().tril(), -float("inf"))
        torch.testing.assert_close(out.detach().cpu(), s.softmax(-1) @ v, rtol=1e-5, atol=1e-5)
    """
    env = dict(TORCHINDUCTOR_CACHE_DIR=str(tmp_path))
    first, second = (python_subprocess(code, **env) for _ in range(2))
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert "hits 0" in first.stdout and "hits 2" in second.stdout  # forward and backward


# ---------------------------------------------------------------- training
class TinyAttention(nn.Module):
    """One causal self-attention layer; ``attention(q, k, v)`` is flex
    attention on trn and the dense math on the CPU (torch 2.13 refuses
    FlexAttention's backward on CPU)."""

    def __init__(self, attention, width=32, heads=H):
        super().__init__()
        self.attention, self.heads = attention, heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x):
        b, length, width = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = self.attention(q, k, v).transpose(1, 2).reshape(b, length, width)
        return self.out(y)


def train(model, x, target, steps=5):
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(steps):
        loss = (model(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_training_loss_decreases_and_matches_the_cpu_run(compiled):
    torch.manual_seed(0)
    x = torch.randn(1, 128, 32)
    target = x.roll(1, dims=1)                           # copy the previous token
    block_mask = create_block_mask(causal, 1, 1, 128, 128, device="trn")
    cpu_model = TinyAttention(lambda q, k, v: dense_attention(q, k, v, mask_mod=causal))
    trn_model = TinyAttention(lambda q, k, v: flex_attention(q, k, v, block_mask=block_mask))
    trn_model.load_state_dict(cpu_model.state_dict())
    trn_model.to("trn")
    expected = train(cpu_model, x, target)
    losses = train(torch.compile(trn_model) if compiled else trn_model, x.to("trn"), target.to("trn"))
    assert losses[-1] < 0.9 * losses[0]
    assert losses == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- chip model
def profiled_step(attention, q, k, v, **kwargs):
    q, k, v = on_trn(q, k, v)
    attention(q, k, v, **kwargs).sum().backward()        # warm up (compiles)
    with tp.profile(with_modules=False) as prof:
        attention(q, k, v, **kwargs).sum().backward()
    return prof.records


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_each_pass_is_one_flash_attention_op_on_the_tensor_engine(compiled):
    attention = torch.compile(flex_attention) if compiled else flex_attention
    block_mask = create_block_mask(causal, 1, 1, L, L, device="trn")
    records = profiled_step(attention, *qkv(), score_mod=alibi, block_mask=block_mask)
    attention_ops = [r for r in records if "flex_attention" in r.name]
    assert [r.name for r in attention_ops] == [FORWARD_OP, BACKWARD_OP]
    assert {r.engine.name for r in attention_ops} == {"TENSOR"}
    # its math (score matmuls, softmax, the vmapped score_mod) is not charged apart
    assert [r.name for r in records if r.engine.name == "TENSOR"] == [FORWARD_OP, BACKWARD_OP]
    assert not any("softmax" in r.name or "exp" in r.name for r in records)


def test_causal_is_modelled_faster_than_full_attention_in_proportion_to_the_kept_blocks():
    q, k, v = qkv()
    block_mask = create_block_mask(causal, 1, 1, L, L, device="trn")
    kept = 1 - block_mask.sparsity() / 100
    assert kept == 0.75                                  # 3 of the 2 x 2 blocks of 128
    causal_ops = {r.name: r for r in profiled_step(flex_attention, q, k, v, block_mask=block_mask)}
    full_ops = {r.name: r for r in profiled_step(flex_attention, q, k, v)}
    # forward: Q K^T and P V, 2 * L * L * D multiply-adds per head, kept blocks only
    assert causal_ops[FORWARD_OP].flops == kept * 2 * (2 * B * H * L * L * D)
    for op in (FORWARD_OP, BACKWARD_OP):
        assert causal_ops[op].flops == pytest.approx(kept * full_ops[op].flops)
        assert causal_ops[op].duration_s < full_ops[op].duration_s


# ---------------------------------------------------------------- installation
@pytest.mark.parametrize("first", ["torch.nn.attention.flex_attention", "torch._dynamo"])
def test_flex_attention_works_whichever_is_imported_first(python_subprocess, first):
    result = python_subprocess(f"""
        import sys
        import torch
        import {first}
        from torch.nn.attention.flex_attention import flex_attention
        if "{first}" != "torch._dynamo":
            assert "torch._dynamo" not in sys.modules and "torch._inductor" not in sys.modules
        q = torch.randn(1, 1, 128, 16, device="trn", requires_grad=True)
        flex_attention(q, q, q).sum().backward()
        print(q.grad.device)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "trn:0"
