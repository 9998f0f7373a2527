"""trn accepts what CUDA accepts where the CPU kernel refuses the dtype
(torch_trn3/cuda_parity.py), with CUDA's semantics.

The sweep: OpInfo's CUDA dtypes minus its CPU dtypes, each checked against
the CPU kernel. Every entry is either fixed on trn, accepted by the CPU after
all (OpInfo's CPU list is stale), or left alone with its reason; a new entry
or a fixed one that breaks fails here.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._pytree import tree_map

import torch_trn3  # noqa: F401
from torch_trn3 import cuda_parity

DEV = torch_trn3.DEVICE_NAME  # "trn", or "neuron" with TORCH_TRN3_DEVICE=neuron
I8, U8, I16, I32, I64 = torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
C32, C64, C128, BOOL = torch.complex32, torch.complex64, torch.complex128, torch.bool
_FFT = "cuFFT takes Half only for power-of-two sizes; the CPU (MKL/pocketfft) has no Half FFT"
_CHALF = "ComplexHalf element-wise/reduction math: a Python kernel on these hot ops would slow every dtype"

# Sweep result on torch 2.13.0: OpInfo name -> (dtypes CUDA accepts beyond CPU, status).
SWEEP = {
    "histc": ((I8, I16, I32, I64, U8), "fixed"),
    "trace": ((BOOL, C32), "fixed: bool; left: complex32 (" + _CHALF + ")"),
    "nansum": ((C32, C64, C128), "fixed: complex64/128; left: complex32"),
    "nanmean": ((C32, C64, C128), "fixed: complex64/128; left: complex32"),
    "nn.functional.avg_pool3d": ((BF16, F16), "fixed"),
    "nn.functional.multi_margin_loss": ((BF16, F16), "fixed"),
    "nn.functional.multilabel_margin_loss": ((BF16, F16), "fixed"),
    "_upsample_bilinear2d_aa": ((BF16, F16), "fixed"),
    "abs": ((BOOL,), "left: hot op"),
    "nn.functional.softsign": ((BOOL,), "left: calls abs"),
    "nn.functional.rrelu": ((F16,), "left: random op mutating its noise tensor"),
    "torch.ops.aten._flash_attention_forward": ((F16,), "left: CUDA-only kernel"),
    "torch.ops.aten._efficient_attention_forward": ((F16, F32), "left: CUDA-only kernel"),
    # OpInfo lists these for CUDA only, but the CPU kernel accepts them too.
    "diag": ((C32,), "cpu accepts"),
    "nn.functional.batch_norm.without_cudnn": ((BF16, F16, F32, F64), "cpu accepts"),
    "round.decimals_3": ((F16,), "cpu accepts"),
    "round.decimals_neg_3": ((F16,), "cpu accepts"),
    **{f"polygamma.polygamma_n_{n}": ((F16,), "cpu accepts") for n in range(1, 5)},
    **{f"nn.functional.conv{t}{d}d": ((C32,), "cpu accepts") for t in ("", "_transpose") for d in (1, 2, 3)},
    **{name: ((C32,), "left: " + _CHALF) for name in (
        "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh",
        "exp", "log", "sqrt", "rsqrt", "sigmoid", "angle", "div.no_rounding_mode", "true_divide",
        "logaddexp", "pow", "lerp", "prod", "sum")},
    **{f"fft.{k}{s}": ((C32, F16), "left: " + _FFT)
       for k in ("fft", "hfft", "ifft", "irfft") for s in ("", "2", "n")},
    **{f"fft.{k}{s}": ((F16,), "left: " + _FFT) for k in ("rfft", "ihfft") for s in ("", "2", "n")},
}


@pytest.fixture(scope="module")
def op_db():
    from torch.testing._internal.common_methods_invocations import op_db
    return {op.name + (f".{op.variant_test_name}" if op.variant_test_name else ""): op for op in op_db}


def _names(dtypes):
    return sorted(str(d).removeprefix("torch.") for d in dtypes)


def test_sweep_cuda_dtypes_beyond_cpu_are_all_classified(op_db):
    found = {name: _names(set(op.supported_dtypes("cuda")) - set(op.supported_dtypes("cpu")))
             for name, op in op_db.items()}
    found = {name: d for name, d in found.items() if d}
    assert found == {name: _names(d) for name, (d, _) in SWEEP.items()}


def test_sweep_fixed_entries_match_the_module():
    fixed = {name: _names(d) for name, d in cuda_parity.FIXED.items()}
    for name, dtypes in fixed.items():
        assert SWEEP[name][1].startswith("fixed"), name
        assert set(dtypes) <= set(_names(SWEEP[name][0]))


def _to(tree, device):
    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, tree)


def _wide_reference(op, sample, dtype):
    """CUDA's computation for Half/BFloat16: float32, rounded once."""
    wide = tree_map(lambda t: t.float() if isinstance(t, torch.Tensor) and t.dtype == dtype else t,
                    (sample.input, sample.args, sample.kwargs))
    out = op(wide[0], *wide[1], **wide[2])
    return tree_map(lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t, out)


def _histc_reference(x, bins=100, min=0, max=0):
    """CUDA's integer histc via the CPU float64 kernel: the bounds truncated
    to integers first, as CUDA converts them to the input's dtype."""
    return torch.histc(x.double(), bins=bins, min=math.trunc(min), max=math.trunc(max)).to(x.dtype)


def _nan_reference(name, x, *args, **kwargs):
    zero_nan = torch.where(torch.isnan(x.real) | torch.isnan(x.imag), 0, x)
    total = torch.sum(zero_nan, *args, **kwargs)
    if name == "nansum":
        return total
    count = torch.sum((~(torch.isnan(x.real) | torch.isnan(x.imag))).to(x.real.dtype), *args, **kwargs)
    return total / count


FIXED_CASES = [(name, dtype) for name, dtypes in cuda_parity.FIXED.items() for dtype in dtypes]


@pytest.mark.parametrize("name,dtype", FIXED_CASES, ids=[f"{n}-{_names([d])[0]}" for n, d in FIXED_CASES])
def test_fixed_op_runs_opinfo_samples_on_trn_with_cuda_semantics(op_db, name, dtype):
    op = op_db[name]
    samples = list(op.sample_inputs("cpu", dtype, requires_grad=False))[:12]
    assert samples
    for s in samples:
        got = op(*_to((s.input, *s.args), DEV), **_to(s.kwargs, DEV))
        if name == "histc":
            want = _histc_reference(s.input, *s.args, **s.kwargs)
        elif name == "trace":
            want = s.input.diagonal().sum()  # CUDA: an int64 count
        elif name in ("nansum", "nanmean"):
            want = _nan_reference(name, s.input, *s.args, **s.kwargs)
        else:
            want = _wide_reference(op, s, dtype)
        torch.testing.assert_close(_to(got, "cpu"), want, equal_nan=True)


@pytest.mark.parametrize("name", ["nn.functional.avg_pool3d", "nn.functional.multi_margin_loss",
                                  "nn.functional.multilabel_margin_loss", "_upsample_bilinear2d_aa"])
@pytest.mark.parametrize("dtype", [F16, BF16])
def test_fixed_op_backward_on_trn_matches_float32_rounded(op_db, name, dtype):
    op = op_db[name]
    samples = list(op.sample_inputs("cpu", F32, requires_grad=True))[:4]
    assert samples
    for s in samples:
        x = s.input.detach().to(dtype)
        xt = x.to(DEV).requires_grad_()
        out = op(xt, *_to(s.args, DEV), **_to(s.kwargs, DEV))
        grad = torch.ones_like(out)
        (gx,) = torch.autograd.grad(out, xt, grad)
        xw = x.float().requires_grad_()
        ow = op(xw, *s.args, **s.kwargs)
        (gw,) = torch.autograd.grad(ow, xw, torch.ones_like(ow))
        assert gx.dtype == dtype and out.dtype == dtype
        torch.testing.assert_close(gx.cpu(), gw.to(dtype))


# --- hand-computed --------------------------------------------------------------


def test_histc_int32_expert_counts_as_transformers_uses_it():
    # transformers' MoE: torch.histc(expert_ids.int(), bins=E, min=0, max=E - 1) on non-CPU devices
    ids = torch.tensor([0, 0, 1, 3, 3, 3, 5], dtype=I32, device=DEV)
    counts = torch.histc(ids, bins=4, min=0, max=3)
    assert counts.device.type == DEV and counts.dtype == I32
    assert counts.cpu().tolist() == [2, 1, 0, 3]  # 5 is out of range and dropped


@pytest.mark.parametrize("dtype", [U8, I8, I16, I32, I64])
def test_histc_integer_bins_are_integer_arithmetic(dtype):
    x = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], dtype=dtype, device=DEV)
    # bin = (x - 0) * 3 // 9, the last bin closed: 0,0,0 | 1,1,1 | 2,2,2,2
    assert torch.histc(x, bins=3, min=0, max=9).cpu().tolist() == [3, 3, 4]


def test_histc_integer_bounds_truncate_to_the_input_dtype():
    x = torch.tensor([0, 1, 2, 3, 4], dtype=I64, device=DEV)
    # CUDA: min 0.7 -> 0, max 3.9 -> 3; bins of [0, 3]: 0 | 1 | 2,3 (4 dropped)
    assert torch.histc(x, bins=3, min=0.7, max=3.9).cpu().tolist() == [1, 1, 2]


def test_histc_integer_min_equal_max_takes_the_data_extremes():
    x = torch.tensor([2, 4, 4, 6], dtype=I32, device=DEV)
    assert torch.histc(x, bins=2, min=0, max=0).cpu().tolist() == [1, 3]  # [2, 4) | [4, 6]
    same = torch.tensor([5, 5], dtype=I32, device=DEV)  # widened to [4, 6]: bins [4,5) [5,6]
    assert torch.histc(same, bins=2, min=0, max=0).cpu().tolist() == [0, 2]


def test_histc_integer_errors_like_cuda():
    x = torch.tensor([1, 2], dtype=I32, device=DEV)
    with pytest.raises(RuntimeError, match="bins must be > 0"):
        torch.histc(x, bins=0)
    with pytest.raises(RuntimeError, match="max must be larger than min"):
        torch.histc(x, bins=2, min=3, max=1)


def test_histc_out_and_float_input_unchanged():
    x = torch.tensor([0, 1, 1, 3], dtype=I32, device=DEV)
    out = torch.empty(0, dtype=I32, device=DEV)
    torch.histc(x, bins=4, min=0, max=3, out=out)
    assert out.cpu().tolist() == [1, 2, 0, 1]
    xf = torch.rand(100)
    assert torch.equal(torch.histc(xf.to(DEV), bins=7).cpu(), torch.histc(xf, bins=7))


def test_out_variants_take_the_cuda_dtypes_too():
    x = torch.arange(8, dtype=F16).reshape(1, 1, 2, 2, 2) + 0.5
    out = torch.empty(0, dtype=F16, device=DEV)
    torch.ops.aten.avg_pool3d.out(x.to(DEV), [2, 2, 2], [2, 2, 2], [0, 0, 0], False, True, None, out=out)
    assert out.shape == (1, 1, 1, 1, 1) and out.item() == 4.0
    loss = torch.empty(0, dtype=BF16, device=DEV)
    is_target = torch.empty(0, dtype=BF16, device=DEV)
    scores = torch.tensor([[0.1, 0.2, 0.4, 0.8]], dtype=BF16)
    target = torch.tensor([[3, 0, -1, 1]])
    torch.ops.aten.multilabel_margin_loss_forward.output(scores.to(DEV), target.to(DEV), 1,
                                                          output=loss, is_target=is_target)
    want = F.multilabel_margin_loss(scores.float(), target).to(BF16)
    assert loss.item() == want.item()
    assert is_target.cpu().tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_trace_bool_counts_the_true_diagonal():
    m = torch.tensor([[True, True, False], [False, False, True], [True, False, True]], device=DEV)
    t = torch.trace(m)
    assert t.dtype == I64 and t.item() == 2


def test_nansum_and_nanmean_complex_treat_a_nan_part_as_missing():
    z = torch.tensor([1 + 1j, complex(math.nan, 2), complex(3, math.nan), 2 - 3j], device=DEV)
    assert torch.nansum(z).item() == 3 - 2j
    assert torch.nanmean(z).item() == 1.5 - 1j
    rows = z.reshape(2, 2)
    assert torch.nansum(rows, dim=1).cpu().tolist() == [1 + 1j, 2 - 3j]


def test_avg_pool3d_bfloat16_is_the_mean_rounded_once():
    x = torch.arange(8, dtype=BF16).reshape(1, 1, 2, 2, 2) + 0.5
    y = F.avg_pool3d(x.to(DEV), 2)
    assert y.dtype == BF16 and y.cpu().item() == 4.0  # (0.5 + ... + 7.5) / 8


def test_multi_margin_loss_half_matches_the_formula():
    x = torch.tensor([[0.1, 0.8, 0.3]], dtype=F16)
    y = torch.tensor([1])
    loss = F.multi_margin_loss(x.to(DEV), y.to(DEV))
    # mean over i != y of max(0, 1 - x[y] + x[i]) / C = ((1 - .8 + .1) + (1 - .8 + .3)) / 3
    want = ((1 - 0.8 + 0.1) + (1 - 0.8 + 0.3)) / 3
    assert loss.dtype == F16
    assert abs(loss.item() - want) < 1e-3


def test_histc_integer_under_torch_compile():
    f = torch.compile(lambda ids: torch.histc(ids, bins=4, min=0, max=3) * 2)
    ids = torch.tensor([0, 1, 1, 3, 3, 3, 7], dtype=I32, device=DEV)
    assert f(ids).cpu().tolist() == [2, 4, 0, 6]


def test_fixed_ops_are_charged_to_the_chip_model():
    before = getattr(torch, DEV).Event(enable_timing=True)
    after = getattr(torch, DEV).Event(enable_timing=True)
    x = torch.randint(0, 8, (1 << 16,), dtype=I32, device=DEV)
    before.record()
    torch.histc(x, bins=8, min=0, max=7)
    after.record()
    after.synchronize()
    assert before.elapsed_time(after) > 0
