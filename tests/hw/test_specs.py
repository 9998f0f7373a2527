"""Chip specs: the numbers match TRN3_FACTS.md and the env selects the chip."""
import dataclasses

import pytest

from torch_trn3.hw.specs import (
    CHIPS, GIB, MIB, TRN2, TRN3, canonical_dtype, chip_from_env, dtype_bytes,
    get_chip,
)


def test_trn3_has_8_cores_and_144_gib_of_hbm_at_4_9_tb_per_s():
    assert TRN3.cores_per_chip == 8
    assert TRN3.hbm_bytes == 144 * GIB
    assert TRN3.hbm_bytes_per_s == 4.9e12


def test_trn2_has_8_cores_and_96_gib_of_hbm_at_2_9_tb_per_s():
    assert TRN2.cores_per_chip == 8
    assert TRN2.hbm_bytes == 96 * GIB
    assert TRN2.hbm_bytes_per_s == 2.9e12


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TRN3.hbm_bytes = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        TRN3.tensor.clock_hz = 1.0


def test_specs_are_hashable():
    assert len({TRN3, TRN2}) == 2


def test_per_core_bf16_peak_is_128x128_macs_at_2_4_ghz():
    # 2 * 128 * 128 * 2.4e9 = 78.64 TFLOPS ("~79" in the Neuron docs)
    assert TRN3.tensor.peak_flops_per_core("bf16") == pytest.approx(78.6432e12)


def test_per_core_fp32_peak_is_a_quarter_of_bf16():
    # 78.6432 / 4 = 19.66 TFLOPS ("~20")
    assert TRN3.tensor.peak_flops_per_core("fp32") == pytest.approx(19.6608e12)


def test_per_core_mx_peak_is_512x128_macs_at_2_4_ghz():
    # 2 * 512 * 128 * 2.4e9 = 314.57 TFLOPS ("~315"); x8 = 2,517 per chip
    assert TRN3.tensor.peak_flops_per_core("mxfp8") == pytest.approx(314.5728e12)
    assert TRN3.peak_flops("mxfp8") == pytest.approx(2516.58e12, rel=1e-5)


def test_mxfp4_runs_at_the_mxfp8_rate():
    assert TRN3.peak_flops("mxfp4") == TRN3.peak_flops("mxfp8")


def test_trn2_fp8_is_half_of_trn3_mx():
    assert TRN2.peak_flops("fp8") == pytest.approx(TRN3.peak_flops("mxfp8") / 2)


def test_bf16_rate_is_unchanged_from_trn2():
    assert TRN2.peak_flops("bf16") == TRN3.peak_flops("bf16")


def test_trn3_mx_is_4x_its_bf16_and_trn2_fp8_is_2x_its_bf16():
    assert TRN3.peak_flops("mxfp8") / TRN3.peak_flops("bf16") == 4
    assert TRN2.peak_flops("fp8") / TRN2.peak_flops("bf16") == 2


def test_tensor_engine_arrays_and_clock():
    pe = TRN3.tensor
    assert (pe.bf16_array.rows, pe.bf16_array.cols, pe.bf16_array.max_moving) == (128, 128, 512)
    assert (pe.mx_array.rows, pe.mx_array.cols) == (512, 128)
    assert pe.clock_hz == 2.4e9


def test_vector_clock_is_1_25x_trn2():
    assert TRN3.vector.clock_hz == 1.2e9
    assert TRN2.vector.clock_hz == 0.96e9
    assert TRN3.vector.clock_hz / TRN2.vector.clock_hz == pytest.approx(1.25)


def test_scalar_clock_is_1_2_ghz_and_exp_per_cycle_is_4x_trn2():
    assert TRN3.scalar.clock_hz == TRN2.scalar.clock_hz == 1.2e9
    assert (TRN3.scalar.transcendental_per_lane_cycle
            / TRN2.scalar.transcendental_per_lane_cycle) == 4


def test_sbuf_is_32_mib_and_psum_2_mib_with_128_partitions():
    mem = TRN3.core_memory
    assert mem.sbuf_bytes == 32 * MIB
    assert mem.psum_bytes == 2 * MIB        # 128 partitions x 8 banks x 2 KiB
    assert mem.partitions == 128


def test_scale_up_is_1_2_tb_per_s_and_dma_4_9_tb_per_s():
    assert TRN3.scale_up_bytes_per_s == 1.2e12
    assert TRN3.dma.bytes_per_s == 4.9e12
    assert TRN3.dma.engines == 128


def test_structured_sparsity_is_4x_on_trn3_only():
    assert TRN3.tensor.sparse_factor("4:8") == 4
    assert TRN3.tensor.sparse_factor("4:16") == 4
    with pytest.raises(ValueError, match="4:8"):
        TRN2.tensor.sparse_factor("4:8")


def test_get_chip_rejects_unknown_names():
    assert get_chip("trn3") is TRN3
    with pytest.raises(ValueError, match="trn2"):
        get_chip("trn4")


def test_chip_from_env_defaults_to_trn3():
    assert chip_from_env({}) is TRN3


def test_chip_from_env_reads_trn3_chip():
    assert chip_from_env({"TRN3_CHIP": "trn2"}) is TRN2


def test_chip_from_env_reads_the_real_environment(monkeypatch):
    monkeypatch.setenv("TRN3_CHIP", "trn2")
    assert chip_from_env() is TRN2


def test_chip_from_env_names_the_variable_and_allowed_values():
    with pytest.raises(ValueError) as err:
        chip_from_env({"TRN3_CHIP": "h100"})
    message = str(err.value)
    assert "TRN3_CHIP" in message and "'h100'" in message
    assert "trn2" in message and "trn3" in message


def test_dtype_bytes_include_mx_scales():
    assert dtype_bytes("bf16") == 2
    assert dtype_bytes("mxfp8") == 1 + 1 / 32      # one E8M0 byte per 32
    assert dtype_bytes("mxfp4") == 0.5 + 1 / 32


def test_torch_dtype_spellings_are_accepted():
    assert canonical_dtype("torch.bfloat16") == "bf16"
    assert canonical_dtype("float32") == "fp32"
    with pytest.raises(ValueError, match="complex32"):
        canonical_dtype("complex32")


def test_tensor_engine_refuses_integer_matmul():
    with pytest.raises(ValueError, match="int64"):
        TRN3.tensor.array_for("int64")


def test_every_chip_is_registered():
    assert set(CHIPS) == {"trn2", "trn3"}
