"""Bad input fails early with a message naming the problem."""

import pytest
import torch

from torch_trn3.mx import MXTensor, convert_to_mx_training, mx_mm, to_mx

E4M3 = torch.float8_e4m3fn


def test_last_dim_not_divisible_by_block():
    with pytest.raises(ValueError, match="last dim 48 is not a positive multiple of the block size 32"):
        to_mx(torch.randn(4, 48), E4M3)


def test_unsupported_element_dtype():
    with pytest.raises(TypeError, match="unsupported MX element dtype torch.bfloat16"):
        to_mx(torch.randn(4, 32), torch.bfloat16)


def test_unsupported_input_dtype():
    with pytest.raises(TypeError, match="x has dtype torch.int32"):
        to_mx(torch.ones(4, 32, dtype=torch.int32), E4M3)


def test_unknown_scale_mode():
    with pytest.raises(ValueError, match="unknown MX scale_mode 'ceil'"):
        to_mx(torch.randn(4, 32), E4M3, scale_mode="ceil")


def test_bad_block_size():
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        to_mx(torch.randn(4, 32), E4M3, block_size=0)
    with pytest.raises(ValueError, match="odd"):
        to_mx(torch.randn(4, 33), torch.float4_e2m1fn_x2, block_size=3)


def test_scale_tensor_of_wrong_shape():
    mx = to_mx(torch.randn(4, 64), E4M3)
    with pytest.raises(ValueError, match=r"scales has shape \(4, 1\); expected \(4, 2\)"):
        MXTensor(mx.elements, mx.scales[:, :1])


def test_scale_tensor_of_wrong_dtype():
    mx = to_mx(torch.randn(4, 64), E4M3)
    with pytest.raises(TypeError, match="scales must have dtype torch.float8_e8m0fnu"):
        MXTensor(mx.elements, mx.scales.view(torch.uint8))
    with pytest.raises(TypeError, match="scales must have dtype"):
        MXTensor(mx.elements, mx.scales.float())


def test_uint8_elements_need_explicit_fp4():
    mx = to_mx(torch.randn(4, 64), torch.float4_e2m1fn_x2)
    with pytest.raises(TypeError, match="uint8 elements are ambiguous"):
        MXTensor(mx.elements.view(torch.uint8), mx.scales)


def test_mixing_devices():
    mx = to_mx(torch.randn(4, 64), E4M3)
    meta_scales = torch.empty(mx.scales.shape, dtype=mx.scales.dtype, device="meta")
    with pytest.raises(ValueError, match="one device.*elements on cpu, scales on meta"):
        MXTensor(mx.elements, meta_scales)
    with pytest.raises(ValueError, match="one device"):
        mx_mm(mx, mx, bias=torch.zeros(4, device="meta"))


def test_mm_operand_checks():
    a, b = to_mx(torch.randn(4, 64), E4M3), to_mx(torch.randn(4, 96), E4M3)
    with pytest.raises(ValueError, match="contraction dims differ"):
        mx_mm(a, b)
    with pytest.raises(TypeError, match="b must be an MXTensor"):
        mx_mm(a, torch.randn(4, 64))
    with pytest.raises(ValueError, match="block sizes differ"):
        mx_mm(a, to_mx(torch.randn(4, 64), E4M3, block_size=16))


def test_training_config_checked_up_front():
    with pytest.raises(TypeError, match="unsupported MX element dtype"):
        convert_to_mx_training(torch.nn.Linear(32, 32), elem_dtype=torch.float16)
