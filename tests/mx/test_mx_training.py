"""MXLinear / convert_to_mx_training: numerics of all three matmuls, autograd,
torch.compile, state_dict, and a short MXFP8-vs-BF16 training run."""

import copy

import pytest
import torch
from torch import nn

from torch_trn3.mx import MXLinear, convert_to_mx_training, mx_mm, to_mx

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """These models are tiny: OpenMP synchronisation dominates, and on a
    shared 2-core host a busy sibling core makes every parallel op wait
    (measured: the 200-step run took ~3 s on one thread, over 60 s on two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp(seed=0, width=128):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                         nn.Linear(width, 32))


def mx_nt(a, b, a_dtype, b_dtype):
    """Expected a @ b.T with both operands quantized along their last dim."""
    return mx_mm(to_mx(a, a_dtype, scale_mode="trn3"), to_mx(b, b_dtype, scale_mode="trn3"))


def test_conversion_keeps_parameters_and_state_dict():
    model = mlp()
    before = model.state_dict()
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    convert_to_mx_training(model)
    assert [type(m) for m in model][::2] == [MXLinear] * 3
    assert [m.weight for m in model if isinstance(m, MXLinear)] == weights   # same objects
    assert model.state_dict().keys() == before.keys()
    model.load_state_dict(before)
    plain = mlp(seed=1)
    plain.load_state_dict(model.state_dict())


def test_module_filter_keeps_the_head_in_high_precision():
    model = convert_to_mx_training(mlp(), module_filter=lambda fqn, mod: fqn != "4")
    assert type(model[0]) is MXLinear and type(model[4]) is nn.Linear


def test_forward_and_both_backward_matmuls_are_mx():
    torch.manual_seed(0)
    layer = MXLinear(64, 96)
    x = torch.randn(2, 32, 64, requires_grad=True)
    out = layer(x)
    x2d = x.detach().reshape(-1, 64)
    w = layer.weight.detach()
    assert torch.equal(out.detach().reshape(-1, 96), mx_nt(x2d, w, E4M3, E4M3) + layer.bias.detach())
    dy = torch.randn_like(out)
    out.backward(dy)
    dy2d = dy.reshape(-1, 96)
    # dx = dy @ W: contraction over out_features; dW = dy.T @ x: over the batch.
    assert torch.equal(x.grad.reshape(-1, 64), mx_nt(dy2d, w.t(), E5M2, E4M3))
    assert torch.equal(layer.weight.grad, mx_nt(dy2d.t(), x2d.t(), E5M2, E4M3))
    assert torch.equal(layer.bias.grad, dy2d.sum(0))


def test_gradients_are_close_to_fp32():
    torch.manual_seed(0)
    ref = nn.Linear(64, 96)
    layer = MXLinear.from_linear(copy.deepcopy(ref))
    x = torch.randn(128, 64)
    for module in (ref, layer):
        module(x).square().sum().backward()
    rel = (layer.weight.grad - ref.weight.grad).norm() / ref.weight.grad.norm()
    assert rel < 0.05


def test_odd_sizes_are_padded_along_the_contraction_dim():
    layer = MXLinear(40, 24)
    x = torch.randn(7, 40, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad.shape == (7, 40) and layer.weight.grad.shape == (24, 40)
    expected = mx_nt(nn.functional.pad(x.detach(), (0, 24)),
                     nn.functional.pad(layer.weight.detach(), (0, 24)), E4M3, E4M3)
    assert torch.equal(layer(x).detach(), expected + layer.bias.detach())


def test_bf16_master_weights():
    layer = MXLinear(64, 32, dtype=torch.bfloat16)
    x = torch.randn(8, 64, dtype=torch.bfloat16, requires_grad=True)
    out = layer(x)
    out.float().sum().backward()
    assert out.dtype == x.grad.dtype == layer.weight.grad.dtype == torch.bfloat16


def test_torch_compile_aot_eager_matches_eager():
    torch.manual_seed(0)
    model = convert_to_mx_training(nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 32)))
    compiled = torch.compile(copy.deepcopy(model), backend="aot_eager")
    x = torch.randn(64, 64)
    eager_out, compiled_out = model(x), compiled(x)
    assert torch.equal(eager_out, compiled_out)
    eager_out.sum().backward()
    compiled_out.sum().backward()
    for (name, p), q in zip(model.named_parameters(), compiled.parameters()):
        assert torch.equal(p.grad, q.grad), name


def train(model, steps, autocast_bf16, batch=256, noise=0.1, device="trn"):
    """Regress a fixed random teacher from fresh noisy samples every step.

    Fresh data means no overfitting, so the loss floors near noise^2 + the
    model's approximation error, and precision shows up as a gap above it.
    """
    torch.manual_seed(123)
    teacher = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 32)).to(device)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        x = torch.randn(batch, 64).to(device)
        with torch.no_grad():
            y = teacher(x) + noise * torch.randn(batch, 32).to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast_bf16):
            pred = model(x)
        loss = nn.functional.mse_loss(pred.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_mxfp8_training_tracks_bf16_on_trn():
    bf16 = train(mlp(), 200, autocast_bf16=True)
    mxfp8 = train(convert_to_mx_training(mlp()), 200, autocast_bf16=False)
    assert mxfp8[-1] < 0.2 * mxfp8[0]                      # it learns
    end_bf16, end_mx = sum(bf16[-20:]) / 20, sum(mxfp8[-20:]) / 20
    assert abs(end_mx - end_bf16) / end_bf16 < 0.03, (end_bf16, end_mx)   # measured ~1%
