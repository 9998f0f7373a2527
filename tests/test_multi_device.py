"""Several trn devices in one process, and CUDA's rules for mixing devices."""
from __future__ import annotations

import pytest
import torch
import torch_trn3  # noqa: F401

from trn_testing import requires_devices

pytestmark = requires_devices(2)

SAME_DEVICE = "Expected all tensors to be on the same device"


# ---------------------------------------------------------------- placement and copies
def test_tensors_live_on_the_device_asked_for():
    a = torch.ones(3, device="trn:0")
    b = torch.ones(3, device="trn:1")
    assert a.device == torch.device("trn", 0)
    assert b.device == torch.device("trn", 1)
    assert a.get_device() == 0 and b.get_device() == 1


def test_ops_keep_results_on_the_input_device():
    x = torch.arange(6.0, device="trn:1").reshape(2, 3)
    y = (x * 2).sum(dim=0)
    assert y.device == torch.device("trn", 1)
    assert y.cpu().tolist() == [6.0, 10.0, 14.0]  # (0+3, 1+4, 2+5) * 2


def test_copy_between_devices_with_to():
    src = torch.randn(4, 5)
    a = src.to("trn:0")
    b = a.to("trn:1")
    assert b.device == torch.device("trn", 1)
    assert torch.equal(b.cpu(), src)


def test_copy_between_devices_with_copy_():
    src = torch.randn(7)
    a = src.to("trn:0")
    b = torch.zeros(7, device="trn:1")
    b.copy_(a)
    assert torch.equal(b.cpu(), src)
    assert b.device.index == 1


def test_cross_device_copy_converts_dtype():
    a = torch.tensor([1.5, -2.25, 3.0], device="trn:0")
    b = torch.empty(3, dtype=torch.float64, device="trn:1")
    b.copy_(a)
    assert b.cpu().tolist() == [1.5, -2.25, 3.0]


def test_cross_device_copy_of_non_contiguous_view():
    src = torch.arange(12.0).reshape(3, 4)
    a = src.to("trn:0")
    b = a.t().to("trn:1")
    assert torch.equal(b.cpu(), src.t())


def test_cross_device_copy_charges_the_target_device(no_device_leaks):
    a = torch.empty(1024, device="trn:0")
    before = torch.trn.memory_allocated(1)
    b = a.to("trn:1")
    assert torch.trn.memory_allocated(1) - before == 4096
    del b


def test_results_on_other_device_under_device_context():
    """Ops follow their inputs' device, not the current device."""
    x = torch.ones(2, device="trn:1")
    with torch.trn.device(0):
        y = x + 1
    assert y.device == torch.device("trn", 1)


def test_module_to_second_device_and_forward():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    expected = model(x)
    model.to("trn:1")
    out = model(x.to("trn:1"))
    assert out.device == torch.device("trn", 1)
    assert torch.equal(out.detach().cpu(), expected.detach())


def test_backward_on_second_device():
    w = torch.tensor([1.0, 2.0, 3.0], device="trn:1", requires_grad=True)
    (w * w).sum().backward()
    assert w.grad.device == torch.device("trn", 1)
    assert w.grad.cpu().tolist() == [2.0, 4.0, 6.0]


# ---------------------------------------------------------------- mixing devices
def test_mixing_two_trn_devices_raises_like_cuda():
    a = torch.ones(3, device="trn:0")
    b = torch.ones(3, device="trn:1")
    with pytest.raises(RuntimeError, match=SAME_DEVICE) as info:
        a + b
    assert "trn:0" in str(info.value) and "trn:1" in str(info.value)


def test_mixing_devices_in_matmul_raises():
    a = torch.ones(2, 2, device="trn:0")
    b = torch.ones(2, 2, device="trn:1")
    with pytest.raises(RuntimeError, match=SAME_DEVICE):
        torch.mm(a, b)


def test_mixing_devices_in_cat_raises():
    with pytest.raises(RuntimeError, match=SAME_DEVICE):
        torch.cat([torch.ones(2, device="trn:0"), torch.ones(2, device="trn:1")])


def test_mixing_devices_in_inplace_op_raises():
    a = torch.ones(3, device="trn:0")
    with pytest.raises(RuntimeError, match=SAME_DEVICE):
        a.add_(torch.ones(3, device="trn:1"))
    assert a.cpu().tolist() == [1.0, 1.0, 1.0]


def test_mixing_devices_in_out_argument_raises():
    out = torch.empty(3, device="trn:1")
    with pytest.raises(RuntimeError, match=SAME_DEVICE):
        torch.add(torch.ones(3, device="trn:0"), 1, out=out)


def test_mixing_trn_and_cpu_tensor_raises_like_cuda():
    with pytest.raises(RuntimeError, match=SAME_DEVICE) as info:
        torch.ones(3, device="trn") + torch.ones(3)
    assert "cpu" in str(info.value)


def test_mixing_trn_and_cpu_in_linear_raises():
    model = torch.nn.Linear(3, 2).to("trn")
    with pytest.raises(RuntimeError, match=SAME_DEVICE):
        model(torch.ones(1, 3))


def test_zero_dim_cpu_tensor_is_allowed_like_cuda():
    x = torch.tensor([1.0, 2.0], device="trn:1")
    y = x * torch.tensor(3.0)
    assert y.device == torch.device("trn", 1)
    assert y.cpu().tolist() == [3.0, 6.0]


def test_zero_dim_cpu_tensor_allowed_in_inplace_op():
    x = torch.tensor([1.0, 2.0], device="trn")
    x.add_(torch.tensor(0.5))
    assert x.cpu().tolist() == [1.5, 2.5]


def test_index_with_cpu_indices_is_allowed_like_cuda():
    x = torch.arange(5.0, device="trn:1")
    y = x[torch.tensor([4, 0])]
    assert y.device == torch.device("trn", 1)
    assert y.cpu().tolist() == [4.0, 0.0]


def test_where_with_zero_dim_cpu_scalar():
    x = torch.tensor([-1.0, 2.0], device="trn")
    y = torch.where(x > 0, x, torch.tensor(0.0))
    assert y.cpu().tolist() == [0.0, 2.0]
