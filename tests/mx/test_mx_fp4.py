"""FP4 E2M1 rounding and packing (element 0 in the low nibble)."""

import ml_dtypes
import numpy as np
import torch

from torch_trn3.mx import to_mx
from torch_trn3.mx.fp4 import decode_e2m1, encode_e2m1, pack_fp4, unpack_fp4

# value -> expected code, by hand: codes 0..7 are 0, .5, 1, 1.5, 2, 3, 4, 6; bit 3 = sign.
# (A list of pairs, not a dict: 0.0 and -0.0 are equal dict keys.)
HAND = [
    (0.0, 0), (0.25, 0),          # tie between 0 and 0.5 -> even (0)
    (0.26, 1), (0.5, 1),
    (0.75, 2),                # tie between 0.5 and 1 -> even (1.0)
    (1.25, 2),                # tie between 1 and 1.5 -> 1.0
    (1.75, 4),                # tie between 1.5 and 2 -> 2.0
    (2.5, 4),                 # tie between 2 and 3 -> 2.0
    (3.5, 6),                 # tie between 3 and 4 -> 4.0
    (5.0, 6),                 # tie between 4 and 6 -> 4.0
    (5.01, 7), (6.0, 7), (7.0, 7), (1e30, 7), (float("inf"), 7),   # saturation
    (-0.0, 8), (-0.1, 8),     # sign kept on zero
    (-1.0, 10), (-6.0, 15),
]


def test_encode_hand_table():
    values = torch.tensor([v for v, _ in HAND], dtype=torch.float32)
    assert encode_e2m1(values).tolist() == [code for _, code in HAND]


def test_encode_matches_ml_dtypes_on_a_dense_grid():
    grid = np.concatenate([np.linspace(-8, 8, 4097, dtype=np.float32),
                           np.nextafter(np.float32([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]),
                                        np.float32(-1)),
                           np.nextafter(np.float32([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]),
                                        np.float32(9))])
    want = grid.astype(ml_dtypes.float4_e2m1fn).view(np.uint8)
    got = encode_e2m1(torch.from_numpy(grid)).numpy()
    np.testing.assert_array_equal(got, want)


def test_decode_all_codes():
    codes = torch.arange(16, dtype=torch.uint8)
    want = np.arange(16, dtype=np.uint8).view(ml_dtypes.float4_e2m1fn).astype(np.float32)
    np.testing.assert_array_equal(decode_e2m1(codes).numpy(), want)


def test_pack_puts_element_zero_in_the_low_nibble():
    codes = torch.tensor([[0x1, 0x2, 0xF, 0x8]], dtype=torch.uint8)
    assert pack_fp4(codes).tolist() == [[0x21, 0x8F]]


def test_unpack_inverts_pack_for_every_byte():
    packed = torch.arange(256, dtype=torch.uint8).view(4, 64)
    assert torch.equal(pack_fp4(unpack_fp4(packed)), packed)


def test_to_mx_fp4_hand_block():
    # amax 4: floor scale 2^(2-2) = 1, so elements are the values themselves.
    x = torch.tensor([[4.0, 0.5, -1.5, 3.0] + [0.0] * 28])
    mx = to_mx(x, torch.float4_e2m1fn_x2)
    assert mx.scales.view(torch.uint8).item() == 127
    assert mx.elements.view(torch.uint8)[0, :2].tolist() == [0x6 | 0x1 << 4, 0xB | 0x5 << 4]
    assert torch.equal(mx.dequantize(), x)
