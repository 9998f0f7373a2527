"""torch.compile(backend="aot_eager") on trn tensors."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_trn3  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.ln = nn.LayerNorm(16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(F.gelu(self.ln(self.fc1(x))))


def test_compiled_function_runs_on_trn():
    def f(x, y):
        return torch.sin(x) * y + x.sum(dim=-1, keepdim=True)

    x, y = torch.randn(4, 5), torch.randn(4, 5)
    compiled = torch.compile(f, backend="aot_eager")
    out = compiled(x.to("trn"), y.to("trn"))
    assert out.device == torch.device("trn", 0)
    torch.testing.assert_close(out.cpu(), f(x, y))


def test_compiled_module_forward_matches_eager():
    torch.manual_seed(0)
    model = MLP().to("trn")
    x = torch.randn(3, 8, device="trn")
    expected = model(x)
    compiled = torch.compile(model, backend="aot_eager")
    out = compiled(x)
    assert out.device.type == "trn"
    torch.testing.assert_close(out.detach().cpu(), expected.detach().cpu())


def test_compiled_training_step_matches_eager():
    torch.manual_seed(0)
    eager = MLP().to("trn")
    compiled_model = MLP().to("trn")
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model, backend="aot_eager")
    x = torch.randn(6, 8, device="trn")
    target = torch.tensor([0, 1, 2, 3, 0, 1], device="trn")

    F.cross_entropy(eager(x), target).backward()
    loss = F.cross_entropy(compiled(x), target)
    loss.backward()

    assert loss.device.type == "trn"
    for (name, p_eager), p_comp in zip(eager.named_parameters(), compiled_model.parameters()):
        assert p_comp.grad.device.type == "trn", name
        torch.testing.assert_close(p_comp.grad.cpu(), p_eager.grad.cpu(), msg=name)


def test_compiled_optimizer_loop_reduces_loss():
    torch.manual_seed(0)
    model = MLP().to("trn")
    compiled = torch.compile(model, backend="aot_eager")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(16, 8, device="trn")
    target = torch.randint(0, 4, (16,)).to("trn")
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(compiled(x), target)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_compiled_function_with_graph_break():
    def f(x):
        y = x * 2
        torch._dynamo.graph_break()
        return y + 1

    x = torch.arange(3.0)
    out = torch.compile(f, backend="aot_eager")(x.to("trn"))
    assert out.cpu().tolist() == [1.0, 3.0, 5.0]


def test_compiled_function_creates_trn_tensors():
    def f(x):
        return x + torch.ones(x.shape, device=x.device)

    out = torch.compile(f, backend="aot_eager")(torch.zeros(2, device="trn"))
    assert out.device.type == "trn"
    assert out.cpu().tolist() == [1.0, 1.0]


def test_compile_with_sdpa_on_trn():
    q, k, v = (torch.randn(1, 2, 8, 4) for _ in range(3))

    def attn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    out = torch.compile(attn, backend="aot_eager")(q.to("trn"), k.to("trn"), v.to("trn"))
    torch.testing.assert_close(out.cpu(), attn(q, k, v))


@pytest.mark.skipif(torch.trn.device_count() < 2, reason="needs 2 trn devices")
def test_compiled_function_on_second_device():
    x = torch.randn(4)
    out = torch.compile(lambda t: t.cos() + 1, backend="aot_eager")(x.to("trn:1"))
    assert out.device == torch.device("trn", 1)
    torch.testing.assert_close(out.cpu(), x.cos() + 1)
