"""nki.language: tensors, buffers, slicing, loops, tile_size, launch grids."""
import pytest
import torch

import torch_trn3
import torch_trn3.nki as nki
import torch_trn3.nki.isa as nisa
import torch_trn3.nki.language as nl
from torch_trn3.hw.specs import TRN2, TRN3

DEV = torch_trn3.DEVICE_NAME


def test_tile_size_reads_the_spec():
    mem = TRN3.core_memory
    assert nl.tile_size.pmax == mem.partitions == 128
    assert nl.tile_size.gemm_stationary_fmax == TRN3.tensor.bf16_array.cols == 128
    assert nl.tile_size.gemm_moving_fmax == TRN3.tensor.bf16_array.max_moving == 512
    # One 2 KiB PSUM bank of fp32 per partition, 8 banks.
    assert nl.tile_size.psum_fmax == mem.psum_bytes // mem.partitions // mem.psum_banks // 4 == 512
    assert nl.tile_size.psum_num_banks == 8
    assert nl.tile_size.sbuf_fmax_bytes == 32 * 2**20 // 128


def test_dtypes_are_torch_dtypes():
    assert nl.bfloat16 is torch.bfloat16 and nl.float32 is torch.float32
    assert nl.float8_e4m3 is torch.float8_e4m3fn and nl.float8_e5m2 is torch.float8_e5m2


def test_kernel_returns_trn_tensor_with_slices_and_loops():
    @nki.jit
    def flip_halves(x):
        P, F = x.shape
        out = nl.ndarray((P, F), x.dtype, buffer=nl.shared_hbm)
        half = F // 2
        for i in nl.affine_range(2):
            t = nl.ndarray((P, half), x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x[:, i * half:(i + 1) * half])
            nisa.dma_copy(dst=out[:, nl.ds((1 - i) * half, half)], src=t)
        return out

    x = torch.randn(128, 64)
    y = flip_halves(x.to(DEV))
    assert y.device.type == DEV
    torch.testing.assert_close(y.cpu(), torch.cat([x[:, 32:], x[:, :32]], dim=1), rtol=0, atol=0)


def test_load_store_spellings_and_value_ops():
    @nki.jit
    def exp_plus_one(x):
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        t = nl.load(x)
        e = nl.exp(t)
        nl.store(out, nl.add(e, 1.0))
        return out

    x = torch.randn(64, 32)
    torch.testing.assert_close(exp_plus_one(x.to(DEV)).cpu(), torch.exp(x) + 1.0)


def test_zeros_and_sequential_range_accumulate():
    @nki.jit
    def rowsum_by_chunks(x):
        P, F = x.shape
        out = nl.ndarray((P, 1), nl.float32, buffer=nl.shared_hbm)
        acc = nl.zeros((P, 1), nl.float32, buffer=nl.sbuf)
        for c in nl.sequential_range(F // 16):
            t = nl.ndarray((P, 16), x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x[:, c * 16:(c + 1) * 16])
            part = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
            nisa.tensor_reduce(part, nl.add, t, axis=1)
            nisa.tensor_tensor(acc, acc, part, op=nl.add)
        nisa.dma_copy(dst=out, src=acc)
        return out

    x = torch.randn(32, 64)
    torch.testing.assert_close(rowsum_by_chunks(x.to(DEV)).cpu(), x.sum(1, keepdim=True), rtol=1e-5, atol=1e-5)


def test_launch_grid_program_id():
    @nki.jit
    def scale_rows(x):
        P = x.shape[0] // nl.num_programs(0)
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        i = nl.program_id(0)
        t = nl.load(x[i * P:(i + 1) * P, :])
        s = nl.ndarray(t.shape, t.dtype, buffer=nl.sbuf)
        nisa.tensor_scalar(s, t, nl.multiply, float(i + 1))
        nisa.dma_copy(dst=out[i * P:(i + 1) * P, :], src=s)
        return out

    x = torch.ones(8, 4)
    y = scale_rows[2](x.to(DEV)).cpu()
    assert torch.equal(y[:4], torch.ones(4, 4)) and torch.equal(y[4:], torch.full((4, 4), 2.0))


def test_platform_target_trn2_uses_its_sbuf():
    seen = {}

    @nki.jit(platform_target="trn2")
    def probe(x):
        seen["sbuf"] = nl.tile_size.sbuf_size_bytes
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=nl.load(x))
        return out

    probe(torch.ones(4, 4, device=DEV))
    assert seen["sbuf"] == TRN2.core_memory.sbuf_bytes == 24 * 2**20
    assert nl.tile_size.sbuf_size_bytes == TRN3.core_memory.sbuf_bytes  # outside: the machine's chip


def test_nki_calls_outside_a_kernel_raise():
    with pytest.raises(nki.NkiUsageError, match="outside an @nki.jit kernel"):
        nl.ndarray((128, 4), nl.float32, buffer=nl.sbuf)


def test_kernel_on_cpu_tensors_runs_untimed():
    from kernels import elementwise

    a, b = torch.randn(16, 8), torch.randn(16, 8)
    out = elementwise(a, b, nl.multiply)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, a * b)
