"""QGraph validation: a broken graph is refused when built, with a message naming the op and the tensor."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flexround_mcu.errors import GraphError
from flexround_mcu.fixedpoint import INT32_MAX, INT32_MIN, Requantizer, requantize
from flexround_mcu.ir import ConvParams, FullyConnectedParams, Op, OpKind, QGraph, ReshapeParams, Tensor


def small_graph(**conv_overrides) -> QGraph:
    """input (1,5,5,3) -> conv 3x3 s2 same -> (1,3,3,4) -> reshape (1,36) -> fc 36->2."""
    rng = np.random.default_rng(0)
    t = [
        Tensor("input", (1, 5, 5, 3), "int8", 0.02, -3),
        Tensor("conv_w", (4, 3, 3, 3), "int8", np.full(4, 0.01), np.zeros(4), 0,
               rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)),
        Tensor("conv_b", (4,), "int32", np.full(4, 2e-4), np.zeros(4), 0, np.arange(4, dtype=np.int32)),
        Tensor("conv_out", (1, 3, 3, 4), "int8", 0.05, -128),
        Tensor("flat", (1, 36), "int8", 0.05, -128),
        Tensor("fc_w", (2, 36), "int8", 0.01, 0, 0, rng.integers(-127, 128, (2, 36)).astype(np.int8)),
        Tensor("logits", (1, 2), "int8", 0.1, 0),
    ]
    conv = dict(stride=(2, 2), dilation=(1, 1), padding=(1, 1, 1, 1), act_min=-128, act_max=127,
                multiplier=np.full(4, 1 << 30), shift=np.full(4, -3))
    conv.update(conv_overrides)
    ops = [
        Op(OpKind.CONV_2D, (0, 1, 2), (3,), ConvParams(**conv), "conv"),
        Op(OpKind.RESHAPE, (3,), (4,), ReshapeParams(), "flatten"),
        Op(OpKind.FULLY_CONNECTED, (4, 5, -1), (6,), FullyConnectedParams(-128, 127, np.array([1 << 30]),
                                                                         np.array([-2])), "fc"),
    ]
    return QGraph(t, ops, [0], [6], name="tiny")


def test_valid_graph_builds():
    g = small_graph()
    assert g.activation_tensors() == [0, 3, 4, 6]
    assert "CONV_2D" in g.describe()


@pytest.mark.parametrize("overrides, fragment", [
    (dict(multiplier=np.full(4, 1 << 29)), "multiplier"),
    (dict(multiplier=np.full(4, 1 << 31)), "multiplier"),
    (dict(shift=np.full(4, 40)), "shift"),
    (dict(padding=(0, 0, 0, 0)), "output shape"),
    (dict(stride=(1, 1)), "output shape"),
    (dict(act_min=10, act_max=5), "activation range"),
    (dict(multiplier=np.full(3, 1 << 30), shift=np.full(3, -3)), "(multiplier, shift) pairs"),
])
def test_bad_conv_params_name_the_op(overrides, fragment):
    with pytest.raises(GraphError) as exc:
        small_graph(**overrides)
    assert "op 0 (CONV_2D conv)" in str(exc.value) and fragment in str(exc.value)


def test_weights_out_of_range_name_the_tensor():
    g = small_graph()
    bad = copy.deepcopy(g.tensors)
    bad[1].data[0, 0, 0, 0] = -128  # int8 weights are symmetric: [-127, 127]
    with pytest.raises(GraphError) as exc:
        QGraph(bad, g.ops, g.inputs, g.outputs, name="tiny")
    assert "tensor 1 (conv_w)" in str(exc.value) and "-128" in str(exc.value)


def test_channel_mismatch_and_unknown_tensor():
    g = small_graph()
    bad = copy.deepcopy(g.tensors)
    bad[0] = Tensor("input", (1, 5, 5, 2), "int8", 0.02, -3)
    with pytest.raises(GraphError, match=r"tensor 0 \(input\).*2 channels"):
        QGraph(bad, g.ops, g.inputs, g.outputs)
    ops = copy.deepcopy(g.ops)
    ops[1] = Op(OpKind.RESHAPE, (3,), (99,), ReshapeParams())
    with pytest.raises(GraphError, match="op 1 .*tensor 99"):
        QGraph(g.tensors, ops, g.inputs, g.outputs)


def test_reshape_and_fc_shapes_checked():
    g = small_graph()
    bad = copy.deepcopy(g.tensors)
    bad[4] = Tensor("flat", (1, 35), "int8", 0.05, -128)
    with pytest.raises(GraphError, match="cannot reshape"):
        QGraph(bad, g.ops, g.inputs, g.outputs)


def test_zero_point_and_scale_checked():
    g = small_graph()
    bad = copy.deepcopy(g.tensors)
    bad[3] = Tensor("conv_out", (1, 3, 3, 4), "int8", 0.05, 200)
    with pytest.raises(GraphError, match=r"tensor 3 \(conv_out\).*zero point"):
        QGraph(bad, g.ops, g.inputs, g.outputs)
    bad = copy.deepcopy(g.tensors)
    bad[6] = Tensor("logits", (1, 2), "int8", float("nan"), 0)
    with pytest.raises(GraphError, match="finite"):
        QGraph(bad, g.ops, g.inputs, g.outputs)


# ---------------------------------------------------------------- the simulator's fused requantization
@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(shift=st.integers(-31, 30), multiplier=st.one_of(st.just(0), st.integers(1 << 30, (1 << 31) - 1)),
       offset=st.integers(-128, 127), seed=st.integers(0, 2**32 - 1))
def test_requantizer_equals_requantize(shift, multiplier, offset, seed):
    """The one-shift form equals the two-step reference on every int32 accumulator TFLM can requantize."""
    rng = np.random.default_rng(seed)
    left = max(shift, 0)
    bound = (1 << (31 - left)) - 1  # TFLM computes acc << left in int32
    acc = rng.integers(-bound - 1, bound + 1, 4000, dtype=np.int64)
    acc[:6] = [-bound - 1, bound, 0, -1, 1, -(1 << 20)]
    ref = np.clip(requantize(acc, multiplier, shift) + offset, -128, 127)
    got = Requantizer(multiplier, shift, offset, -128, 127)(acc)
    assert np.array_equal(got, ref)


def test_requantizer_ties_and_per_channel():
    # t = -3 with shift -1 (ties away from zero: -2); t = 3 -> 2; the 2^30 nudge ties of the high multiply
    m = np.array([1 << 30, 1 << 30, (1 << 31) - 1], np.int64)
    s = np.array([-1, -1, -5], np.int64)
    acc = np.array([[-6, 6, INT32_MAX], [-2, 2, INT32_MIN]], np.int64)  # a*M/2^31 = acc/2
    rq = Requantizer(m, s, 0, -(1 << 31), (1 << 31) - 1)
    a = acc.copy()
    rq.scale_(a)
    assert np.array_equal(a, requantize(acc, m, s))
    assert a[0, 0] == -2 and a[0, 1] == 2
