"""Kernel bugs raise typed errors naming the instruction, the tile, the limit and the kernel line."""
import inspect
import os

import pytest
import torch

import torch_trn3
import torch_trn3.nki as nki
import torch_trn3.nki.isa as nisa
import torch_trn3.nki.language as nl

DEV = torch_trn3.DEVICE_NAME
HERE = os.path.basename(__file__)


def _line_of(fn, text):
    """Line number of the first source line of ``fn`` containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


def _run(kernel, *shapes, dtype=torch.float32):
    return kernel(*[torch.randn(s).to(dtype).to(DEV) for s in shapes])


def _raises(kernel, error, *shapes, match=(), marker=None, dtype=torch.float32):
    with pytest.raises(error) as info:
        _run(kernel, *shapes, dtype=dtype)
    message = str(info.value)
    assert isinstance(info.value, nki.NkiError)
    for m in match:
        assert m in message, message
    if marker is not None:
        assert f"{HERE}:{_line_of(kernel.func, marker)}" in message, message
    return message


def test_partition_dim_over_128():
    @nki.jit
    def k(x):
        t = nl.ndarray((256, 4), nl.float32, buffer=nl.sbuf)  # BAD
        return x

    _raises(k, nki.NkiTileLimitError, (4, 4), match=("nki.language.ndarray", "partition dim 256", "pmax = 128"),
            marker="# BAD")


@pytest.mark.parametrize("shape_a,shape_b,what", [
    ((128, 129), (128, 64), "M=129"),     # stationary free > 128
    ((128, 64), (128, 513), "N=513"),     # moving free > 512
])
def test_matmul_tile_over_its_limits(shape_a, shape_b, what):
    @nki.jit
    def k(a, b):
        ta, tb = nl.load(a), nl.load(b)
        acc = nl.ndarray((min(128, ta.shape[1]), min(512, tb.shape[1])), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(acc, ta, tb)  # BAD
        return a

    _raises(k, nki.NkiTileLimitError, shape_a, shape_b, match=("nki.isa.nc_matmul", what), marker="# BAD")


def test_matmul_contraction_mismatch():
    @nki.jit
    def k(a, b):
        ta, tb = nl.load(a), nl.load(b)
        acc = nl.ndarray((64, 64), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(acc, ta, tb)  # BAD
        return a

    _raises(k, nki.NkiShapeError, (128, 64), (64, 64), match=("stationary K=128, moving K=64",), marker="# BAD")


def test_sbuf_capacity_trn3_and_trn2():
    def big(x):
        keep = []
        for i in nl.affine_range(65):  # 4 KiB per partition each: the 65th overflows 256 KiB
            keep.append(nl.ndarray((128, 1024), nl.float32, buffer=nl.sbuf))  # BAD
        return x

    k3 = nki.jit(big)
    msg = _raises(k3, nki.NkiCapacityError, (4, 4), match=("SBUF full", "32 MiB SBUF per core", "Trainium3"),
                  marker="# BAD")
    assert "262144 B per partition" in msg
    # 24 MiB on Trainium2 (192 KiB per partition): 50 tiles of 4 KiB per partition fit on Trn3 but not Trn2.
    def fits_trn3(x):
        keep = [nl.ndarray((128, 1024), nl.float32, buffer=nl.sbuf) for _ in range(50)]
        return x

    nki.jit(fits_trn3)(torch.ones(1, device=DEV))
    with pytest.raises(nki.NkiCapacityError, match="24 MiB SBUF per core.*Trainium2"):
        nki.jit(fits_trn3, platform_target="trn2")(torch.ones(1, device=DEV))


def test_tiles_released_when_rebound_in_a_loop():
    @nki.jit
    def k(x):
        for i in nl.affine_range(100):   # 100 x 128 KiB per partition would not fit if all were live
            t = nl.ndarray((128, 32768), nl.float32, buffer=nl.sbuf)
        return x

    k(torch.ones(1, device=DEV))
    assert k.last_report.sbuf_peak_bytes_per_partition == 2 * 32768 * 4


def test_psum_over_8_banks():
    @nki.jit
    def k(x):
        banks = [nl.ndarray((128, 512), nl.float32, buffer=nl.psum) for _ in range(8)]
        extra = nl.ndarray((128, 128), nl.float32, buffer=nl.psum)  # BAD
        return x

    _raises(k, nki.NkiCapacityError, (4, 4), match=("PSUM full", "8 banks", "2048 B per partition"), marker="# BAD")


def test_matmul_operands_in_wrong_buffers():
    @nki.jit
    def from_hbm(a, b):
        acc = nl.ndarray((64, 64), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(acc, a, nl.load(b))  # BAD
        return a

    _raises(from_hbm, nki.NkiBufferError, (64, 64), (64, 64),
            match=("stationary is in HBM, must be in SBUF", "Tensor Engine reads SBUF"), marker="# BAD")

    @nki.jit
    def into_sbuf(a, b):
        out = nl.ndarray((64, 64), nl.float32, buffer=nl.sbuf)
        nisa.nc_matmul(out, nl.load(a), nl.load(b))  # BAD
        return a

    _raises(into_sbuf, nki.NkiBufferError, (64, 64), (64, 64), match=("dst is in SBUF, must be in PSUM",),
            marker="# BAD")


def test_dtype_an_instruction_does_not_take():
    @nki.jit
    def k(a, b):
        ta = nl.ndarray(a.shape, nl.int32, buffer=nl.sbuf)
        nisa.iota(ta)
        acc = nl.ndarray((64, 64), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(acc, ta, nl.load(b))  # BAD
        return a

    _raises(k, nki.NkiDtypeError, (64, 64), (64, 64), match=("stationary dtype int32", "bfloat16"), marker="# BAD")

    @nki.jit
    def q(a):
        d = nl.ndarray((32, 1), nl.float8_e4m3fn_x4, buffer=nl.sbuf)
        s = nl.ndarray((4, 1), nl.float8_e8m0fnu, buffer=nl.sbuf)
        nisa.quantize_mx(d, nl.load(a), s)  # BAD (fp32 source)
        return a

    _raises(q, nki.NkiDtypeError, (32, 4), match=("nki.isa.quantize_mx", "float16 or bfloat16"), marker="# BAD")


def test_engine_asked_for_what_it_cannot_do():
    @nki.jit
    def gpsimd_psum(a, b):
        acc = nl.ndarray((64, 64), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(acc, nl.load(a), nl.load(b))
        o = nl.ndarray((64, 64), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(o, acc, engine=nisa.engine.gpsimd)  # BAD
        return a

    _raises(gpsimd_psum, nki.NkiEngineError, (64, 64), (64, 64), match=("GpSimd Engine cannot access PSUM",),
            marker="# BAD")

    @nki.jit
    def max_on_scalar(a):
        t = nl.load(a)
        y = nl.ndarray(t.shape, t.dtype, buffer=nl.sbuf)
        r = nl.ndarray((t.shape[0], 1), t.dtype, buffer=nl.sbuf)
        nisa.activation(y, nl.exp, t, reduce_op=nl.maximum, reduce_res=r,  # BAD
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        return a

    _raises(max_on_scalar, nki.NkiEngineError, (8, 8), match=("reduce registers only sum",), marker="# BAD")

    @nki.jit
    def mx_on_trn2(a):
        d = nl.ndarray((32, 1), nl.float8_e4m3fn_x4, buffer=nl.sbuf)
        s = nl.ndarray((4, 1), nl.float8_e8m0fnu, buffer=nl.sbuf)
        nisa.quantize_mx(d, nl.load(a), s)  # BAD
        return a

    mx_on_trn2.platform_target = "trn2"
    _raises(mx_on_trn2, nki.NkiEngineError, (32, 4), match=("Trainium2 has no MX hardware",), marker="# BAD",
            dtype=torch.bfloat16)


def test_out_of_bounds_slice():
    @nki.jit
    def k(a):
        t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a[0:128, 0:64])  # BAD
        return a

    _raises(k, nki.NkiIndexError, (64, 64), match=("slice 0:128 out of bounds on dim 0", "0 <= start <= stop <= 64"),
            marker="# BAD")


def test_reading_psum_before_any_matmul_wrote_it():
    @nki.jit
    def k(a):
        acc = nl.ndarray((64, 64), nl.float32, buffer=nl.psum)
        o = nl.ndarray((64, 64), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(o, acc)  # BAD
        return a

    _raises(k, nki.NkiUninitializedReadError, (4, 4), match=("reads psum before any matmul wrote it",),
            marker="# BAD")

    @nki.jit
    def half(a, b):
        acc = nl.ndarray((64, 128), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(acc[:, 0:64], nl.load(a), nl.load(b))
        o = nl.ndarray((64, 128), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(o, acc)  # BAD: right half never written
        return a

    _raises(half, nki.NkiUninitializedReadError, (64, 64), (64, 64), marker="# BAD")


def test_mismatched_shapes():
    @nki.jit
    def k(a, b):
        out = nl.ndarray((64, 32), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(out, nl.load(a), nl.load(b), op=nl.add)  # BAD
        return a

    _raises(k, nki.NkiShapeError, (64, 32), (64, 16), match=("nki.isa.tensor_tensor", "data2 [64, 16]"),
            marker="# BAD")


def test_inputs_are_read_only_and_untouched_on_failure():
    @nki.jit
    def k(a):
        t = nl.load(a)
        nisa.dma_copy(dst=a, src=t)  # BAD
        return a

    a = torch.randn(8, 8, device=DEV)
    before = a.cpu().clone()
    with pytest.raises(nki.NkiBufferError, match="kernel input"):
        k(a)
    assert torch.equal(a.cpu(), before)


def test_error_classes_are_standard_exceptions_too():
    assert issubclass(nki.NkiShapeError, ValueError)
    assert issubclass(nki.NkiIndexError, IndexError)
    assert issubclass(nki.NkiCapacityError, MemoryError)


def test_accumulate_true_onto_psum_no_matmul_wrote():
    @nki.jit
    def k(a, b):
        acc = nl.ndarray((64, 64), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(acc, nl.load(a), nl.load(b), accumulate=True)  # BAD
        return a

    _raises(k, nki.NkiUninitializedReadError, (64, 64), (64, 64),
            match=("dst (accumulate=True) reads psum before any matmul wrote it",), marker="# BAD")


def test_reduce_res_from_registers_nothing_wrote():
    @nki.jit
    def k(a):
        t = nl.load(a)
        y = nl.ndarray(t.shape, t.dtype, buffer=nl.sbuf)
        r = nl.ndarray((t.shape[0], 1), t.dtype, buffer=nl.sbuf)
        nisa.activation(y, nl.exp, t, reduce_op=nl.add, reduce_res=r)  # BAD: reduce_cmd=idle
        return a

    _raises(k, nki.NkiUninitializedReadError, (8, 8), match=("reduce registers nothing wrote", "reset_reduce"),
            marker="# BAD")


def test_power_runs_only_on_gpsimd():
    @nki.jit
    def k(a):
        t = nl.load(a)
        y = nl.ndarray(t.shape, t.dtype, buffer=nl.sbuf)
        nisa.tensor_tensor(y, t, t, op=nl.power, engine=nisa.engine.vector)  # BAD
        return a

    _raises(k, nki.NkiEngineError, (8, 8), match=("Vector Engine cannot run", "nl.power runs on GpSimd"),
            marker="# BAD")


def test_dma_cannot_reach_psum():
    @nki.jit
    def k(a):
        acc = nl.ndarray((8, 8), nl.float32, buffer=nl.psum)
        nisa.dma_copy(dst=acc, src=a)  # BAD
        return a

    _raises(k, nki.NkiBufferError, (8, 8), match=("dst is in PSUM, must be in HBM",), marker="# BAD")
