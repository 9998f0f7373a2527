"""Views, in-place ops, out= ops, complex tensors and conj/neg views on trn.

Each expectation is the same code run on the CPU (or a hand-computed value).
"""
from __future__ import annotations

import pytest
import torch
import torch_trn3  # noqa: F401


def trn(t: torch.Tensor) -> torch.Tensor:
    return t.to("trn")


# ---------------------------------------------------------------- views
def test_view_shares_memory_with_base():
    x = torch.zeros(2, 3, device="trn")
    v = x.view(6)
    v[4] = 7.0
    assert x.cpu().tolist() == [[0.0, 0.0, 0.0], [0.0, 7.0, 0.0]]
    assert v._base is x


def test_transpose_is_a_strided_view():
    x = trn(torch.arange(6.0).reshape(2, 3))
    t = x.t()
    assert t.stride() == (1, 3)
    assert not t.is_contiguous()
    assert t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    assert torch.equal(t.cpu(), torch.arange(6.0).reshape(2, 3).t())


def test_slice_with_step_and_offset():
    x = trn(torch.arange(10.0))
    s = x[1::3]
    assert s.storage_offset() == 1
    assert s.stride() == (3,)
    assert s.cpu().tolist() == [1.0, 4.0, 7.0]


def test_write_through_a_non_contiguous_view():
    x = torch.zeros(3, 4, device="trn")
    x[:, 1].fill_(5.0)
    expected = torch.zeros(3, 4)
    expected[:, 1] = 5.0
    assert torch.equal(x.cpu(), expected)


def test_ops_on_non_contiguous_views_match_cpu():
    a = torch.randn(5, 6)
    expected = (a.t()[1:4] * 2 + 1).sum(dim=1)
    actual = (trn(a).t()[1:4] * 2 + 1).sum(dim=1)
    assert torch.equal(actual.cpu(), expected)


def test_unfold_view():
    x = trn(torch.arange(6.0))
    u = x.unfold(0, 3, 2)
    assert u.cpu().tolist() == [[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]]


def test_expand_then_contiguous():
    x = trn(torch.tensor([[1.0], [2.0]]))
    e = x.expand(2, 3)
    assert e.stride() == (1, 0)
    assert e.contiguous().cpu().tolist() == [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]


def test_as_strided_view():
    x = trn(torch.arange(9.0))
    v = x.as_strided((2, 2), (3, 1), 1)
    assert v.cpu().tolist() == [[1.0, 2.0], [4.0, 5.0]]


def test_reshape_of_non_contiguous_copies():
    x = trn(torch.arange(6.0).reshape(2, 3))
    r = x.t().reshape(6)
    assert r.cpu().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_view_dtype_reinterprets_bits():
    x = trn(torch.tensor([1.0, -2.0]))
    bits = x.view(torch.int32)
    assert bits.dtype == torch.int32
    assert bits.cpu().tolist() == [0x3F800000, -0x40000000]  # IEEE-754 of 1.0 and -2.0


def test_view_dtype_changing_element_size():
    x = trn(torch.tensor([1.0], dtype=torch.float32))
    b = x.view(torch.uint8)
    assert b.shape == (4,)
    assert b.cpu().tolist() == [0, 0, 128, 63]  # 0x3F800000 little-endian


def test_view_dtype_bfloat16_pairs_to_int32():
    x = trn(torch.tensor([1.0, 2.0], dtype=torch.bfloat16))
    assert x.view(torch.int32).cpu().tolist() == torch.tensor([1.0, 2.0], dtype=torch.bfloat16).view(torch.int32).tolist()


# ---------------------------------------------------------------- in-place ops
def test_inplace_ops_keep_identity_and_storage():
    x = trn(torch.tensor([1.0, 2.0, 3.0]))
    ptr = x.data_ptr()
    y = x.mul_(2).add_(1)
    assert y is x
    assert x.data_ptr() == ptr
    assert x.cpu().tolist() == [3.0, 5.0, 7.0]


def test_inplace_bumps_version_counter():
    x = torch.ones(2, device="trn")
    v = x._version
    x.add_(1)
    assert x._version == v + 1


def test_inplace_on_view_updates_base():
    x = torch.zeros(4, device="trn")
    x[1:3].add_(torch.tensor([1.0, 2.0], device="trn"))
    assert x.cpu().tolist() == [0.0, 1.0, 2.0, 0.0]


def test_inplace_with_broadcast():
    x = torch.ones(2, 3, device="trn")
    x.mul_(trn(torch.tensor([1.0, 2.0, 3.0])))
    assert x.cpu().tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]


def test_inplace_dtype_promotion_error_matches_cpu():
    with pytest.raises(RuntimeError, match="can't be cast"):
        torch.ones(2, dtype=torch.int64).add_(torch.tensor([0.5, 0.5]))
    with pytest.raises(RuntimeError, match="can't be cast"):
        torch.ones(2, dtype=torch.int64, device="trn").add_(trn(torch.tensor([0.5, 0.5])))


def test_index_put_inplace():
    x = torch.zeros(5, device="trn")
    x[torch.tensor([0, 3], device="trn")] = trn(torch.tensor([1.0, 2.0]))
    assert x.cpu().tolist() == [1.0, 0.0, 0.0, 2.0, 0.0]


def test_inplace_on_leaf_that_requires_grad_is_refused():
    w = torch.ones(2, device="trn", requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w.add_(1)


# ---------------------------------------------------------------- out= ops
def test_out_writes_into_given_tensor():
    out = torch.empty(3, device="trn")
    ptr = out.data_ptr()
    result = torch.add(trn(torch.tensor([1.0, 2.0, 3.0])), 10, out=out)
    assert result is out
    assert out.data_ptr() == ptr
    assert out.cpu().tolist() == [11.0, 12.0, 13.0]


def test_out_resizes_empty_tensor():
    a = torch.randn(4, 5)
    b = torch.randn(5, 3)
    out = torch.empty(0, device="trn")
    torch.mm(trn(a), trn(b), out=out)
    assert out.shape == (4, 3)
    assert out.device.type == "trn"
    assert torch.equal(out.cpu(), torch.mm(a, b))


def test_out_with_non_contiguous_destination():
    out = torch.zeros(3, 2, device="trn").t()  # (2, 3), strides (1, 2)
    torch.mul(trn(torch.ones(2, 3)), 4, out=out)
    assert out.stride() == (1, 2)
    assert out.cpu().tolist() == [[4.0] * 3] * 2


def test_out_with_multiple_outputs():
    x = trn(torch.tensor([[3.0, 1.0], [2.0, 5.0]]))
    values = torch.empty(0, device="trn")
    indices = torch.empty(0, dtype=torch.int64, device="trn")
    torch.max(x, dim=1, out=(values, indices))
    assert values.cpu().tolist() == [3.0, 5.0]
    assert indices.cpu().tolist() == [0, 1]


def test_out_dtype_mismatch_error_matches_cpu():
    with pytest.raises(RuntimeError, match="can't be cast"):
        torch.add(torch.tensor([0.5]), 1, out=torch.empty(1, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="can't be cast"):
        torch.add(trn(torch.tensor([0.5])), 1, out=torch.empty(1, dtype=torch.int64, device="trn"))


def test_out_on_cpu_for_trn_inputs_is_refused():
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.add(torch.ones(2, device="trn"), 1, out=torch.empty(2))


# ---------------------------------------------------------------- complex tensors
def test_complex_arithmetic_matches_cpu():
    a = torch.tensor([1 + 2j, -3 + 0.5j], dtype=torch.complex64)
    b = torch.tensor([2 - 1j, 1j], dtype=torch.complex64)
    assert torch.equal((trn(a) * trn(b) + trn(a) / trn(b)).cpu(), a * b + a / b)


def test_complex_matmul_matches_cpu():
    a = torch.randn(3, 4, dtype=torch.complex64)
    b = torch.randn(4, 2, dtype=torch.complex64)
    torch.testing.assert_close((trn(a) @ trn(b)).cpu(), a @ b)


def test_complex_abs_and_angle():
    z = trn(torch.tensor([3 + 4j], dtype=torch.complex128))
    assert z.abs().cpu().tolist() == [5.0]
    assert z.real.cpu().tolist() == [3.0] and z.imag.cpu().tolist() == [4.0]


def test_view_as_real_shares_memory():
    z = trn(torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64))
    r = torch.view_as_real(z)
    assert r.dtype == torch.float32
    assert r.shape == (2, 2)
    assert r.cpu().tolist() == [[1.0, 2.0], [3.0, -4.0]]
    r[0, 1] = 9.0
    assert z.cpu().tolist() == [1 + 9j, 3 - 4j]


def test_view_as_complex_of_trn_tensor():
    r = trn(torch.tensor([[1.0, 2.0], [3.0, -4.0]]))
    z = torch.view_as_complex(r)
    assert z.dtype == torch.complex64
    assert z.device.type == "trn"
    assert z.cpu().tolist() == [1 + 2j, 3 - 4j]


def test_complex_view_dtype_to_float():
    z = trn(torch.tensor([1 + 2j], dtype=torch.complex64))
    assert z.view(torch.float32).cpu().tolist() == [1.0, 2.0]


def test_complex_abs_backward():
    """Backward of abs/sgn produces storage-less ZeroTensors inside autograd."""
    zc = torch.tensor([3 + 4j, 1 - 1j], dtype=torch.complex64, requires_grad=True)
    zc.abs().sum().backward()
    zt = trn(zc.detach()).requires_grad_()
    zt.abs().sum().backward()
    torch.testing.assert_close(zt.grad.cpu(), zc.grad)


# ---------------------------------------------------------------- conj / neg views
def test_conj_is_a_lazy_view():
    z = trn(torch.tensor([1 + 2j], dtype=torch.complex64))
    c = z.conj()
    assert c.is_conj()
    assert c.untyped_storage().data_ptr() == z.untyped_storage().data_ptr()


def test_conj_view_to_cpu_resolves():
    z = trn(torch.tensor([1 + 2j, -3 - 4j], dtype=torch.complex64))
    c = z.conj().cpu()
    assert c.tolist() == [1 - 2j, -3 + 4j]


def test_resolve_conj_materializes():
    z = trn(torch.tensor([1 + 2j], dtype=torch.complex64))
    r = z.conj().resolve_conj()
    assert not r.is_conj()
    assert r.device.type == "trn"
    assert r.cpu().tolist() == [1 - 2j]
    assert z.cpu().tolist() == [1 + 2j]  # the base is untouched


def test_ops_on_conj_view_match_cpu():
    a = torch.tensor([1 + 2j, 2 - 1j], dtype=torch.complex64)
    expected = a.conj() * a
    actual = trn(a).conj() * trn(a)
    assert torch.equal(actual.cpu(), expected)


def test_conj_view_matmul_matches_cpu():
    a = torch.randn(3, 3, dtype=torch.complex64)
    torch.testing.assert_close((trn(a).mH @ trn(a)).cpu(), a.mH @ a)


def test_copy_into_conj_view_writes_conjugate():
    z = torch.zeros(1, dtype=torch.complex64, device="trn")
    z.conj().copy_(trn(torch.tensor([1 + 2j], dtype=torch.complex64)))
    assert z.cpu().tolist() == [1 - 2j]


def test_view_as_real_of_conj_view_is_refused_like_cpu():
    with pytest.raises(RuntimeError, match="view_as_real doesn't work on unresolved conjugated tensors"):
        torch.view_as_real(torch.tensor([1j]).conj())
    with pytest.raises(RuntimeError, match="view_as_real doesn't work on unresolved conjugated tensors"):
        torch.view_as_real(trn(torch.tensor([1j])).conj())


def test_neg_view_from_conj_of_imag():
    z = trn(torch.tensor([1 + 2j], dtype=torch.complex64))
    im = z.conj().imag  # a negative view
    assert im.is_neg()
    assert im.cpu().tolist() == [-2.0]
    assert im.resolve_neg().cpu().tolist() == [-2.0]


def test_neg_view_arithmetic():
    z = trn(torch.tensor([1 + 2j, 3 + 5j], dtype=torch.complex64))
    im = z.conj().imag
    assert (im + 1).cpu().tolist() == [-1.0, -4.0]


def test_complex_tensor_round_trip_through_conj_physical():
    a = torch.tensor([2 + 3j], dtype=torch.complex128)
    assert torch.conj_physical(trn(a)).cpu().tolist() == [2 - 3j]
