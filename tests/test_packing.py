"""int4 packing (flexround_mcu/int4.py): CMSIS-NN's s4 layout, dense over the whole tensor, element 2k in the low
nibble of byte k, element 2k+1 in the high nibble, an odd count leaving the last high nibble 0."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flexround_mcu.errors import UserError
from flexround_mcu.packing import INT4_MAX, INT4_MIN, pack_int4, packed_size, unpack_int4

from helpers import user_error


def test_documented_example():
    """arm_nnfunctions.h's example for the s4 kernels: [1, 2, 3, 4] -> 0x21 0x43."""
    packed = pack_int4(np.array([1, 2, 3, 4]))
    assert packed.dtype == np.uint8
    assert packed.tolist() == [0x21, 0x43]
    assert unpack_int4(packed, 4).tolist() == [1, 2, 3, 4]


def test_extremes_in_both_nibbles():
    """-8 is 0b1000 and 7 is 0b0111, in the low nibble (even index) and in the high nibble (odd index)."""
    assert pack_int4(np.array([-8, 7])).tolist() == [0x78]
    assert pack_int4(np.array([7, -8])).tolist() == [0x87]
    assert pack_int4(np.array([-8, -8])).tolist() == [0x88]
    assert pack_int4(np.array([-1, -1])).tolist() == [0xFF]
    assert pack_int4(np.array([0, -1])).tolist() == [0xF0]
    assert pack_int4(np.array([-1, 0])).tolist() == [0x0F]
    for pair in ([-8, 7], [7, -8], [-8, -8], [7, 7], [-1, 0], [0, -1]):
        assert unpack_int4(pack_int4(np.array(pair)), 2).tolist() == pair


def test_every_pair_of_values():
    """All 256 (low, high) pairs: each byte value 0..255 appears exactly once and unpacks to its pair."""
    lo, hi = np.meshgrid(np.arange(INT4_MIN, INT4_MAX + 1), np.arange(INT4_MIN, INT4_MAX + 1), indexing="ij")
    values = np.stack([lo.ravel(), hi.ravel()], axis=1).reshape(-1)
    packed = pack_int4(values)
    assert sorted(packed.tolist()) == list(range(256))
    assert packed.tolist() == [(int(a) & 0xF) | ((int(b) & 0xF) << 4) for a, b in zip(lo.ravel(), hi.ravel())]
    np.testing.assert_array_equal(unpack_int4(packed, values.size), values)


def test_odd_count_leaves_the_last_high_nibble_zero():
    assert packed_size(0) == 0 and packed_size(1) == 1 and packed_size(5) == 3 and packed_size(6) == 3
    packed = pack_int4(np.array([-1, -1, -1, -1, -8]))
    assert packed.tolist() == [0xFF, 0xFF, 0x08]
    assert unpack_int4(packed, 5).tolist() == [-1, -1, -1, -1, -8]
    assert pack_int4(np.array([-1])).tolist() == [0x0F]
    assert pack_int4(np.array([], np.int8)).size == 0


def test_odd_rows_start_mid_byte():
    """A [3, 5] filter (odd row length) is packed over the whole tensor: row 1 starts in the high nibble of
    byte 2, row 2 in the low nibble of byte 5; no per-row padding."""
    w = np.array([[1, 2, 3, 4, 5],
                  [-1, -2, -3, -4, -5],
                  [7, -8, 0, 6, -7]], np.int8)
    packed = pack_int4(w)
    assert packed.size == packed_size(15) == 8
    assert packed[2] == (5 & 0xF) | ((-1 & 0xF) << 4)   # last of row 0, first of row 1
    assert packed[5] == (7 & 0xF) | ((-8 & 0xF) << 4)   # row 2 starts in a low nibble again (index 10)
    assert packed[7] == (-7 & 0xF)                      # index 14, the high nibble unused
    np.testing.assert_array_equal(unpack_int4(packed, w.size).reshape(w.shape), w)
    # Element i of the flattened tensor is nibble i & 1 of byte i >> 1, whatever row it belongs to.
    for i, v in enumerate(w.reshape(-1)):
        nibble = (int(packed[i >> 1]) >> (4 * (i & 1))) & 0xF
        assert (nibble ^ 8) - 8 == v


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(values=hnp.arrays(np.int8, hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7),
                         elements=st.integers(INT4_MIN, INT4_MAX)))
def test_round_trip(values):
    packed = pack_int4(values)
    assert packed.dtype == np.uint8 and packed.size == packed_size(values.size)
    np.testing.assert_array_equal(unpack_int4(packed, values.size).reshape(values.shape), values)
    if values.size % 2:
        assert packed[-1] >> 4 == 0
    # Natural (row-major) order: packing the flattened tensor, or any reshape of it, gives the same bytes.
    np.testing.assert_array_equal(pack_int4(values.reshape(-1)), packed)


@settings(max_examples=100, derandomize=True, database=None, deadline=None)
@given(packed=hnp.arrays(np.uint8, st.integers(1, 40)), drop_last_high=st.booleans())
def test_unpack_then_pack_gives_the_bytes_back(packed, drop_last_high):
    count = 2 * packed.size - (1 if drop_last_high else 0)
    if drop_last_high:
        packed = packed.copy()
        packed[-1] &= 0x0F  # an odd count's last high nibble is 0 by contract
    values = unpack_int4(packed, count)
    assert values.dtype == np.int8 and values.min() >= INT4_MIN and values.max() <= INT4_MAX
    np.testing.assert_array_equal(pack_int4(values), packed)


@pytest.mark.parametrize("bad", [[8], [-9], [0, 1, 127], [-128, 0], [3, 16]])
def test_out_of_range_values_are_refused(bad):
    msg = user_error(pack_int4, np.array(bad))
    assert "[-8, 7]" in msg


def test_wrong_packed_length_is_refused():
    assert "expected 2 bytes" in user_error(unpack_int4, np.zeros(3, np.uint8), 4)
    assert "expected 3 bytes" in user_error(unpack_int4, np.zeros(2, np.uint8), 5)
    with pytest.raises(UserError):
        unpack_int4(np.zeros(1, np.uint8), 3)
