"""to_mx / MXTensor.dequantize against hand-computed cases and the reference."""

import math

import ml_dtypes
import numpy as np
import pytest
import torch

import mx_reference as ref
from torch_trn3.mx import MXTensor, from_mx, to_mx

FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
ALL = {**FP8, "e2m1": torch.float4_e2m1fn_x2}
MODES = ("floor", "rceil", "trn3")
NAN, INF = math.nan, math.inf


def block(*head, size=32, fill=0.0):
    """One block: ``head`` followed by ``fill``."""
    return list(head) + [fill] * (size - len(head))


def scale_bytes(mx):
    return mx.scales.view(torch.uint8)


def elem_bytes(mx):
    return mx.elements.view(torch.uint8)


# ---- hand-computed cases ------------------------------------------------------

@pytest.mark.parametrize("mode, scale, elem0", [
    # amax 1: floor -> 2^(0-8), element 256 = 2^8 -> E4M3 0.1111.000
    ("floor", 127 - 8, 0x78),
    # rceil: ceil(log2(1/448)) = ceil(-8.81) = -8, same as floor here
    ("rceil", 127 - 8, 0x78),
    # trn3: one step larger, 2^-7, element 128 -> 0.1110.000
    ("trn3", 127 - 7, 0x70),
])
def test_amax_one_e4m3(mode, scale, elem0):
    mx = to_mx(torch.tensor([block(1.0)]), torch.float8_e4m3fn, scale_mode=mode)
    assert scale_bytes(mx).tolist() == [[scale]]
    assert elem_bytes(mx)[0, 0].item() == elem0
    assert elem_bytes(mx)[0, 1:].eq(0).all()


def test_floor_saturates_where_rceil_and_trn3_do_not():
    # amax 500: floor(log2 500) = 8 -> scale 2^0, 500 > 448 clamps to 448 (0x7E).
    # rceil: 500/448 = 1.12 -> ceil(log2) = 1 -> scale 2^1, 250 rounds to 256 (0x78).
    # Note a nearest-power-of-two cast (.to(float8_e8m0fnu)) would pick 2^0.
    x = torch.tensor([block(500.0, 1.0)])
    floor = to_mx(x, torch.float8_e4m3fn, scale_mode="floor")
    rceil = to_mx(x, torch.float8_e4m3fn, scale_mode="rceil")
    trn3 = to_mx(x, torch.float8_e4m3fn, scale_mode="trn3")
    assert scale_bytes(floor)[0, 0] == 127 and elem_bytes(floor)[0, 0] == 0x7E
    assert scale_bytes(rceil)[0, 0] == 128 and elem_bytes(rceil)[0, 0] == 0x78
    assert scale_bytes(trn3)[0, 0] == 128 and elem_bytes(trn3)[0, 0] == 0x78
    assert floor.dequantize()[0, 0] == 448.0 and rceil.dequantize()[0, 0] == 512.0


def test_amax_at_max_normal():
    # 448 = 1.75 * 2^8: floor and rceil both give scale 1 and keep 448 exactly.
    for mode in ("floor", "rceil"):
        mx = to_mx(torch.tensor([block(448.0)]), torch.float8_e4m3fn, scale_mode=mode)
        assert scale_bytes(mx)[0, 0] == 127 and elem_bytes(mx)[0, 0] == 0x7E
    # 449 needs rceil's next step (449 > 448) but rounds back to 448 under floor.
    mx = to_mx(torch.tensor([block(449.0)]), torch.float8_e4m3fn, scale_mode="rceil")
    assert scale_bytes(mx)[0, 0] == 128


def test_zero_and_negative_zero_blocks_take_smallest_scale():
    x = torch.tensor([block(0.0), block(-0.0, fill=-0.0)])
    for name, dtype in ALL.items():
        mx = to_mx(x, dtype)
        assert scale_bytes(mx).flatten().tolist() == [0, 0]   # 2^-127
        assert mx.dequantize().eq(0).all()
        neg = 0x88 if name == "e2m1" else 0x80   # -0 keeps its sign bit
        assert elem_bytes(mx)[1].eq(neg).all()


@pytest.mark.parametrize("special", [NAN, INF, -INF])
def test_nan_or_inf_poisons_the_block(special):
    x = torch.tensor([block(1.0, special, 3.0), block(1.0)])
    for dtype in ALL.values():
        mx = to_mx(x, dtype)
        assert scale_bytes(mx)[0, 0] == 0xFF
        assert elem_bytes(mx)[0].eq(0).all()
        assert mx.dequantize()[0].isnan().all()
        assert not mx.dequantize()[1].isnan().any()


def test_scales_shape_and_dtype():
    mx = to_mx(torch.randn(3, 5, 96), torch.float8_e4m3fn)
    assert mx.scales.dtype == torch.float8_e8m0fnu and mx.scales.shape == (3, 5, 3)
    assert mx.elements.dtype == torch.float8_e4m3fn and mx.elements.shape == (3, 5, 96)
    fp4 = to_mx(torch.randn(3, 5, 96), torch.float4_e2m1fn_x2, block_size=16)
    assert fp4.elements.dtype == torch.float4_e2m1fn_x2 and fp4.elements.shape == (3, 5, 48)
    assert fp4.scales.shape == (3, 5, 6) and fp4.shape == (3, 5, 96)


def test_quantizes_from_the_input_precision_not_via_bf16():
    # 1.0625 + 2^-20 rounds to 1.125 in E4M3 (above the 1.0625 midpoint);
    # going through bf16 first would land exactly on the midpoint and tie to 1.0.
    v = 1.0625 + 2.0 ** -20
    x = torch.tensor([block(v, 1.5)])
    assert to_mx(x, torch.float8_e4m3fn, scale_mode="trn3").dequantize()[0, 0] == 1.125
    via_bf16 = to_mx(x.bfloat16(), torch.float8_e4m3fn, scale_mode="trn3").dequantize()
    assert via_bf16[0, 0] == 1.0


def test_float64_input_rounds_once():
    # float64 -> float32 -> E4M3 would double-round 1.0625 + 2^-40 down to 1.0.
    x = torch.tensor([block(1.0625 + 2.0 ** -40, 1.5)], dtype=torch.float64)
    assert to_mx(x, torch.float8_e4m3fn, scale_mode="trn3").dequantize()[0, 0] == 1.125


def test_trn3_never_saturates():
    x = torch.randn(64, 256) * torch.logspace(-30, 30, 64, base=2).unsqueeze(-1)
    for name, dtype in ALL.items():
        values = to_mx(x, dtype, scale_mode="trn3")
        scaled_max = ref.FORMATS[name].emax
        elements = from_mx(values) / torch.exp2(
            scale_bytes(values).float() - 127).repeat_interleave(32, dim=-1)
        assert elements.abs().max() <= 2.0 ** scaled_max


# ---- reference comparison -------------------------------------------------------

def edge_case_rows():
    """Blocks (32 each) that exercise every rule."""
    tiny = 2.0 ** -149          # smallest float32 subnormal
    p = 2.0 ** 5
    below = float(np.nextafter(np.float32(p), np.float32(0)))
    above = float(np.nextafter(np.float32(p), np.float32(np.inf)))
    return [
        block(0.0),                                   # all zeros
        block(-0.0, 0.0, -0.0),                       # negative zeros
        block(tiny, -3 * tiny, 2.0 ** -130),          # float32 subnormals only
        block(1.0, 2.0 ** -15, 2.0 ** -16, 3 * 2.0 ** -17, -(2.0 ** -18), 5 * 2.0 ** -19,
              2.0 ** -20, -(2.0 ** -24)),             # element subnormals and underflow
        block(below, 1.0, -below / 3),                # amax just below 2^5
        block(p, -1.0, p / 3),                        # amax exactly 2^5
        block(above, 0.3, -above),                    # amax just above 2^5
        block(448.0, 449.0, 464.0, 480.0, -500.0),    # around E4M3 max normal
        block(57344.0, 61440.0, -65535.0, 1.0),       # around E5M2 max normal
        block(6.0, 5.0, 7.0, -5.5, 0.25, 0.75),       # E2M1 ties and saturation
        block(-6.0, 5.0, -2.5, 0.25, 1.75, 3.5),      # amax exactly E2M1's max normal
        block(3.0e38, -1.0e38, 1.0),                  # near float32 max
        block(1.0, NAN),                              # NaN
        block(INF, 1.0),                              # Inf
        block(-INF, 2.0),                             # -Inf
        [(-1) ** i * (1 + i / 32) * 2.0 ** (i - 16) for i in range(32)],  # wide range
        [1.0 + i / 16 for i in range(32)],            # ties on every grid
    ]


def random_rows(rng, n):
    exps = rng.integers(-140, 120, size=(n, 1))
    return (rng.standard_normal((n, 32)) * np.exp2(exps)).astype(np.float32)


def check_against_reference(x: torch.Tensor, x_np: np.ndarray, name: str, mode: str, block_size=32):
    mx = to_mx(x, ALL[name], block_size=block_size, scale_mode=mode)
    want_scales, want_elems = ref.quantize(x_np, name, block_size, mode)
    np.testing.assert_array_equal(scale_bytes(mx).numpy(), want_scales)
    np.testing.assert_array_equal(elem_bytes(mx).numpy(), want_elems)
    want_values = ref.dequantize(want_scales, want_elems, name, block_size)
    np.testing.assert_array_equal(mx.dequantize(torch.float64).numpy(), want_values)


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("mode", MODES)
def test_edge_cases_match_reference_fp32(name, mode):
    x_np = np.array(edge_case_rows(), dtype=np.float32)
    check_against_reference(torch.from_numpy(x_np), x_np, name, mode)


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("mode", MODES)
def test_random_wide_range_matches_reference(name, mode):
    rng = np.random.default_rng([list(ALL).index(name), MODES.index(mode)])
    x_np = random_rows(rng, 48).reshape(3, 2, 256)     # odd leading shape
    check_against_reference(torch.from_numpy(x_np), x_np, name, mode)


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("half", ["bfloat16", "float16"])
def test_half_precision_input_matches_reference(name, mode, half):
    # The reference sees the bf16/fp16 values themselves: one rounding, from them.
    rng = np.random.default_rng(7)
    rows = np.concatenate([np.array(edge_case_rows(), np.float32), random_rows(rng, 16)])
    np_dtype = ml_dtypes.bfloat16 if half == "bfloat16" else np.float16
    with np.errstate(over="ignore"):
        x_np = rows.astype(np_dtype)
    x = torch.from_numpy(x_np.view(np.int16)).view(getattr(torch, half))
    check_against_reference(x, x_np, name, mode)


@pytest.mark.parametrize("name", list(ALL))
def test_float64_input_matches_reference(name):
    rng = np.random.default_rng(11)
    x_np = rng.standard_normal((8, 64)) * 2.0 ** rng.integers(-60, 60, size=(8, 1))
    # amax 300 gives E4M3 floor scale 1, where 1.0625 + 2^-40 must round up to 1.125
    x_np[0] = 0.0
    x_np[0, :5] = [1.0625 + 2.0 ** -40, 300.0, 0.25 + 2.0 ** -45, 0.75 - 2.0 ** -50, 1e-300]
    check_against_reference(torch.from_numpy(x_np), x_np, name, "floor")


@pytest.mark.parametrize("block_size", [2, 16, 64])
def test_other_block_sizes_match_reference(block_size):
    rng = np.random.default_rng(block_size)
    x_np = rng.standard_normal((5, 128)).astype(np.float32)
    check_against_reference(torch.from_numpy(x_np), x_np, "e4m3", "floor", block_size)
    check_against_reference(torch.from_numpy(x_np), x_np, "e2m1", "trn3", block_size)


def test_dequantize_rounds_once_to_bf16():
    mx = to_mx(torch.randn(4, 64) * 1000, torch.float8_e4m3fn)
    assert torch.equal(mx.dequantize(torch.bfloat16), mx.dequantize(torch.float64).bfloat16())


def test_empty_leading_dim():
    mx = to_mx(torch.empty(0, 3, 64), torch.float8_e4m3fn)
    assert mx.scales.shape == (0, 3, 2) and mx.dequantize().shape == (0, 3, 64)


def test_noncontiguous_input():
    x = torch.randn(64, 96).t()          # (96, 64), last dim strided
    assert torch.equal(to_mx(x, torch.float8_e4m3fn).elements,
                       to_mx(x.contiguous(), torch.float8_e4m3fn).elements)


def test_chunked_dequantize_matches_single_chunk(monkeypatch):
    import torch_trn3.mx.mx_tensor as module
    mx = to_mx(torch.randn(70, 256), torch.float8_e5m2)
    whole = mx.dequantize()
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 32 * 7)
    assert torch.equal(whole, mx.dequantize())


def test_constructor_round_trip():
    mx = to_mx(torch.randn(2, 64), torch.float4_e2m1fn_x2)
    again = MXTensor(mx.elements.view(torch.uint8), mx.scales, 32,
                     elem_dtype=torch.float4_e2m1fn_x2)
    assert torch.equal(again.dequantize(), mx.dequantize())
