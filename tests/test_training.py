"""Train a small transformer end to end on trn and compare with the same run on the CPU.

The model is the tests' and benchmarks' shared decoder
(:class:`torch_trn3.testing.TinyDecoder`): an embedding, a learned position
table, LayerNorm, causal SDPA attention, dropout, a GELU MLP and a
cross-entropy loss, trained with AdamW. In fp32 the trn run executes
the CPU's kernels and draws dropout masks from the same random stream, so its
losses and weights must be bit-equal to the CPU run's, step for step.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_trn3  # noqa: F401
from torch_trn3.testing import TinyDecoder

VOCAB, DIM, HEADS, LAYERS, SEQ, BATCH, STEPS = 64, 32, 4, 2, 16, 4, 5


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(0)
    return TinyDecoder(vocab=VOCAB, dim=DIM, heads=HEADS, layers=LAYERS, seq=SEQ, dropout=0.1)


@pytest.fixture(scope="module")
def batches():
    g = torch.Generator().manual_seed(1)
    data = torch.randint(0, VOCAB, (STEPS, BATCH, SEQ + 1), generator=g)
    return [(d[:, :-1], d[:, 1:]) for d in data]


def train(base_model, batches, device, *, foreach, autocast_dtype=None, seed=1234):
    """Trains a copy of ``base_model`` on ``device``; returns (losses, final weights on CPU)."""
    model = copy.deepcopy(base_model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1, foreach=foreach)
    torch.manual_seed(seed)  # seeds the CPU generator and the trn generators alike
    losses = []
    for inputs, targets in batches:
        inputs, targets = inputs.to(device), targets.to(device)
        with torch.autocast(device, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            logits = model(inputs)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=foreach)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return losses, weights


# ---------------------------------------------------------------- fp32: bit-equal to the CPU
def test_fp32_training_losses_bit_equal_to_cpu_foreach_false(base_model, batches):
    cpu_losses, _ = train(base_model, batches, "cpu", foreach=False)
    trn_losses, _ = train(base_model, batches, "trn", foreach=False)
    assert trn_losses == cpu_losses


def test_fp32_training_weights_bit_equal_to_cpu_foreach_false(base_model, batches):
    _, cpu_weights = train(base_model, batches, "cpu", foreach=False)
    _, trn_weights = train(base_model, batches, "trn", foreach=False)
    for name, w in cpu_weights.items():
        assert torch.equal(trn_weights[name], w), name


def test_fp32_training_bit_equal_to_cpu_foreach_true(base_model, batches):
    cpu_losses, cpu_weights = train(base_model, batches, "cpu", foreach=True)
    trn_losses, trn_weights = train(base_model, batches, "trn", foreach=True)
    assert trn_losses == cpu_losses
    for name, w in cpu_weights.items():
        assert torch.equal(trn_weights[name], w), name


def test_training_reduces_the_loss_on_trn(base_model, batches):
    # Same batch over and over: the loss must go down.
    losses, _ = train(base_model, [batches[0]] * STEPS, "trn", foreach=False)
    assert losses[-1] < losses[0]


def test_dropout_changes_the_result_with_the_seed(base_model, batches):
    """Dropout is really random on trn: another seed gives another loss curve."""
    a, _ = train(base_model, batches[:2], "trn", foreach=False, seed=1)
    b, _ = train(base_model, batches[:2], "trn", foreach=False, seed=2)
    assert a[0] != b[0]


def test_adamw_defaults_to_foreach_on_trn_like_cuda():
    model = nn.Linear(4, 4).to("trn")
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 4, device="trn")).sum().backward()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    names = {e.name for e in prof.events()}
    assert any(n.startswith("aten::_foreach_") for n in names), sorted(names)


def test_adamw_defaults_to_single_tensor_on_cpu():
    model = nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 4)).sum().backward()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    assert not any(e.name.startswith("aten::_foreach_") for e in prof.events())


def test_parameter_grads_live_on_trn(base_model, batches):
    model = copy.deepcopy(base_model).to("trn")
    inputs, targets = batches[0]
    F.cross_entropy(model(inputs.to("trn")).reshape(-1, VOCAB), targets.to("trn").reshape(-1)).backward()
    assert all(p.grad is not None and p.grad.device.type == "trn" for p in model.parameters())


# ---------------------------------------------------------------- autocast bf16
def test_autocast_linear_runs_in_bfloat16():
    x = torch.randn(2, 4, device="trn")
    lin = nn.Linear(4, 3).to("trn")
    with torch.autocast("trn", dtype=torch.bfloat16):
        y = lin(x)
    assert y.dtype == torch.bfloat16


def test_autocast_matmul_runs_in_bfloat16_and_matches_manual_cast():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    with torch.autocast("trn", dtype=torch.bfloat16):
        y = torch.mm(a.to("trn"), b.to("trn"))
    expected = torch.mm(a.bfloat16(), b.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.cpu(), expected, rtol=0, atol=0)


def test_autocast_layer_norm_runs_in_float32_like_cuda():
    x = torch.randn(2, 8, device="trn", dtype=torch.bfloat16)
    with torch.autocast("trn", dtype=torch.bfloat16):
        y = F.layer_norm(x, (8,))
    assert y.dtype == torch.float32


def test_autocast_log_softmax_runs_in_float32_like_cuda():
    x = torch.randn(2, 8, device="trn", dtype=torch.bfloat16)
    with torch.autocast("trn", dtype=torch.bfloat16):
        y = F.log_softmax(x, dim=-1)
    assert y.dtype == torch.float32


def test_autocast_is_enabled_for_trn_inside_the_context():
    with torch.autocast("trn", dtype=torch.bfloat16):
        assert torch.is_autocast_enabled("trn")
        assert torch.get_autocast_dtype("trn") == torch.bfloat16
    assert not torch.is_autocast_enabled("trn")


class ManualBf16(nn.Module):
    """TinyDecoder's forward with CUDA's autocast policy applied by hand, for a CPU run:
    linear and SDPA in bf16; layer_norm and nll_loss in fp32; everything else
    in the dtype of its inputs. Dropout runs as torch.native_dropout: for a
    trn tensor (as for CUDA) F.dropout takes that fused op, while for a CPU
    tensor it takes a composite whose bf16 backward rounds differently."""

    def __init__(self, model: TinyDecoder):
        super().__init__()
        self.m = model

    @staticmethod
    def linear(mod, x):
        bias = None if mod.bias is None else mod.bias.bfloat16()
        return F.linear(x.bfloat16(), mod.weight.bfloat16(), bias)

    @staticmethod
    def layer_norm(mod, x):
        return F.layer_norm(x.float(), mod.normalized_shape, mod.weight, mod.bias, mod.eps)

    @staticmethod
    def dropout(mod, x):
        return torch.native_dropout(x, mod.p, mod.training)[0]

    def attention(self, attn, x):
        b, s, _ = x.shape
        q, k, v = (self.linear(p, x).view(b, s, -1, attn.head_dim).transpose(1, 2)
                   for p in (attn.q, attn.k, attn.v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.linear(attn.o, a.transpose(1, 2).reshape(b, s, -1))

    def block(self, blk, x):
        x = x + self.dropout(blk.drop, self.attention(blk.attn, self.layer_norm(blk.ln1, x)))
        h = F.gelu(self.linear(blk.mlp.w1, self.layer_norm(blk.ln2, x)))
        return x + self.dropout(blk.drop, self.linear(blk.mlp.w2, h))

    def forward(self, idx):
        x = self.m.tok(idx) + self.m.pos[: idx.shape[1]]
        for blk in self.m.blocks:
            x = self.block(blk, x)
        return self.linear(self.m.head, self.layer_norm(self.m.ln, x))


def train_manual_bf16_on_cpu(base_model, batches, seed=1234):
    model = copy.deepcopy(base_model)
    wrapper = ManualBf16(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1, foreach=False)
    torch.manual_seed(seed)
    losses = []
    for inputs, targets in batches:
        logits = wrapper(inputs)
        # CUDA's lists have no entry for cross_entropy: it calls log_softmax with
        # dtype=input dtype (so it stays bf16), then nll_loss runs in fp32.
        log_probs = F.log_softmax(logits.reshape(-1, VOCAB), dim=-1)
        loss = F.nll_loss(log_probs.float(), targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=False)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def test_autocast_bf16_training_matches_cpu_with_the_same_casts(base_model, batches):
    """Compared: trn under torch.autocast("trn", bf16) vs. a CPU run (no autocast)
    that casts exactly the ops CUDA's autocast policy casts (ManualBf16). Today
    both run the same CPU bf16 kernels and agree bit for bit; the tolerance
    (well under one bf16 ulp of the loss) leaves room for the Tensor Engine's
    own bf16 rounding model."""
    expected = train_manual_bf16_on_cpu(base_model, batches)
    actual, _ = train(base_model, batches, "trn", foreach=False, autocast_dtype=torch.bfloat16)
    torch.testing.assert_close(actual, expected, rtol=1e-3, atol=0)


def test_autocast_bf16_training_close_to_cpu_autocast(base_model, batches):
    """Compared: trn autocast-bf16 vs. torch.autocast("cpu", bf16). The CPU
    autocast lists differ from CUDA's (which trn follows), so only a loose,
    bf16-level tolerance holds."""
    expected, _ = train(base_model, batches, "cpu", foreach=False, autocast_dtype=torch.bfloat16)
    actual, _ = train(base_model, batches, "trn", foreach=False, autocast_dtype=torch.bfloat16)
    torch.testing.assert_close(actual, expected, rtol=2e-2, atol=2e-2)


def test_autocast_bf16_training_close_to_fp32(base_model, batches):
    fp32, _ = train(base_model, batches, "cpu", foreach=False)
    bf16, _ = train(base_model, batches, "trn", foreach=False, autocast_dtype=torch.bfloat16)
    torch.testing.assert_close(bf16, fp32, rtol=3e-2, atol=3e-2)


def test_grad_scaler_on_trn_skips_step_with_inf_grads_and_backs_off():
    model = nn.Linear(2, 1).to("trn")
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler("trn", init_scale=1024.0)
    before = model.weight.detach().cpu().clone()
    loss = model(torch.ones(1, 2, device="trn")).sum()
    scaler.scale(loss).backward()
    model.weight.grad[0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    assert torch.equal(model.weight.detach().cpu(), before)  # step skipped
    assert scaler.get_scale() == 512.0  # backoff_factor 0.5
