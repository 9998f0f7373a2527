"""LNC mapping: a logical device of LNC cores gets LNC/8 of the chip."""
import pytest

from torch_trn3.hw.lnc import ALLOWED_LNC, logical_device
from torch_trn3.hw.specs import GIB, TRN2, TRN3


def test_allowed_lnc_values():
    assert ALLOWED_LNC == (1, 2, 8)


def test_lnc2_device_gets_36_gib_and_a_quarter_of_the_bandwidth():
    dev = logical_device(TRN3, 2)
    assert dev.cores == 2
    assert dev.hbm_bytes == 36 * GIB               # 144 GiB * 2/8
    assert dev.hbm_bytes_per_s == pytest.approx(1.225e12)   # 4.9e12 / 4
    assert dev.devices_per_chip == 4


def test_lnc1_device_gets_an_eighth_of_the_chip():
    dev = logical_device(TRN3, 1)
    assert dev.hbm_bytes == 18 * GIB
    assert dev.hbm_bytes_per_s == pytest.approx(4.9e12 / 8)
    assert dev.devices_per_chip == 8


def test_lnc8_device_is_the_whole_chip():
    dev = logical_device(TRN3, 8)
    assert dev.hbm_bytes == TRN3.hbm_bytes
    assert dev.hbm_bytes_per_s == TRN3.hbm_bytes_per_s
    assert dev.devices_per_chip == 1


def test_peaks_scale_with_cores():
    # LNC=2: 2 x 78.6432 = 157.29 BF16 TFLOPS; 2 x 314.57 = 629.15 MX TFLOPS
    dev = logical_device(TRN3, 2)
    assert dev.peak_bf16_flops == pytest.approx(157.2864e12)
    assert dev.peak_fp32_flops == pytest.approx(157.2864e12 / 4)
    assert dev.peak_mx_flops == pytest.approx(629.1456e12)
    assert dev.peak_flops("bf16") == dev.peak_bf16_flops


def test_sparse_peak_counts_dense_equivalent_flops():
    dev = logical_device(TRN3, 2)
    assert dev.peak_flops("mxfp8", sparsity="4:16") == 4 * dev.peak_mx_flops


def test_trn2_device_uses_trn2_numbers():
    dev = logical_device(TRN2, 2)
    assert dev.hbm_bytes == 24 * GIB               # 96 GiB * 2/8
    assert dev.dma_bytes_per_s == pytest.approx(3.5e12 / 4)


@pytest.mark.parametrize("bad", [0, 3, 4, 16, True, "2"])
def test_bad_lnc_names_the_value_and_allowed_values(bad):
    with pytest.raises(ValueError) as err:
        logical_device(TRN3, bad)
    assert repr(bad) in str(err.value)
    assert "(1, 2, 8)" in str(err.value)
