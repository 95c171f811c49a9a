"""The .tflite writer: read_tflite(write_tflite(g)) gives g back, and TFLite Micro runs the written file bit for bit
like our simulator (int8 and packed INT4 weights).

* Round trips: the MLPerf Tiny ResNet-8 and DS-CNN KWS, ResNet-8 quantized by our RTN at W8 and W4 (int4
  tensors), and a small hand-made graph with every op kind, depthwise multiplier 2, SAME and VALID, fused
  activations, per-tensor and per-channel int4 filters.
* TFLite Micro against the simulator on the written files, every tensor compared.
* Bad input: what a .tflite cannot say (explicit padding, a clamp no fused activation gives) is one clear error.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import tflite

from flexround_mcu.errors import UserError
from flexround_mcu.frontends.tflite import BUFFER_ALIGNMENT, load_tflite, read_tflite, save_tflite, write_tflite
from flexround_mcu.ir import (AddParams, ConvParams, FullyConnectedParams, Op, OpKind, PoolParams, QGraph,
                              ReshapeParams, Tensor)
from flexround_mcu.prepare import activation_range, add_params, conv_multipliers, prepare_softmax

from helpers import user_error

WEIGHTED = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED)
MLPERF = {"ic": "mlperf_tiny/ic/pretrainedResnet_quant.tflite", "kws": "mlperf_tiny/kws/kws_ref_model.tflite"}


# ------------------------------------------------------------------------------------------------ helpers

def assert_same_graph(a: QGraph, b: QGraph) -> None:
    """Every tensor's name, shape, dtype, scale, zero point, quantized_dim and data; every op's kind, inputs,
    outputs, name and params; the graph inputs and outputs (the metadata says where a graph came from: not compared)."""
    assert len(a.tensors) == len(b.tensors)
    for k, (s, t) in enumerate(zip(a.tensors, b.tensors)):
        where = f"tensor {k} ({s.name})"
        assert (s.name, s.shape, s.dtype, s.quantized_dim) == (t.name, t.shape, t.dtype, t.quantized_dim), where
        assert s.scale.dtype == t.scale.dtype and np.array_equal(s.scale, t.scale), where
        assert np.array_equal(s.zero_point, t.zero_point), where
        assert (s.data is None) == (t.data is None), where
        if s.data is not None:
            assert s.data.dtype == t.data.dtype and np.array_equal(s.data, t.data), where
    assert len(a.ops) == len(b.ops)
    for i, (p, q) in enumerate(zip(a.ops, b.ops)):
        assert (p.kind, tuple(p.inputs), tuple(p.outputs), p.name) == (q.kind, tuple(q.inputs), tuple(q.outputs),
                                                                        q.name), f"op {i}"
        assert type(p.params) is type(q.params), f"op {i}"
        for f in dataclasses.fields(p.params):
            mine, theirs = np.asarray(getattr(p.params, f.name)), np.asarray(getattr(q.params, f.name))
            assert mine.shape == theirs.shape and np.array_equal(mine, theirs), f"op {i} ({p.kind.value}) {f.name}"
    assert list(a.inputs) == list(b.inputs) and list(a.outputs) == list(b.outputs)


def round_trip(graph: QGraph) -> QGraph:
    back = read_tflite(write_tflite(graph), name=graph.name)
    assert_same_graph(graph, back)
    # QGraph tensor k is tensor k of the file, so tflite_micro's tensor numbers are the QGraph's
    assert back.metadata["tflite_index"] == {k: k for k in range(len(graph.tensors))}
    return back


def with_int4_weights(graph: QGraph) -> QGraph:
    """A copy whose layers quantized to 4 bits or fewer have "int4" filter tensors. lower() types them so itself
    now; this keeps the writer's tests independent of that (a graph that has them comes back unchanged)."""
    g = copy.deepcopy(graph)
    bits = g.metadata["bits"]
    for op in g.ops:
        if op.kind in WEIGHTED and bits[op.name] <= 4:
            w = g.tensors[op.inputs[1]]
            assert np.abs(w.data).max() <= 7, op.name
            w.dtype = "int4"
    g.validate()
    return g


def int4_tensor_count(buf: bytes) -> int:
    sg = tflite.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    return sum(sg.Tensors(k).Type() == tflite.TensorType.INT4 for k in range(sg.TensorsLength()))


def data_span(buffer: tflite.Buffer) -> tuple[int, int]:
    """(first byte, length) of a buffer's data within the file."""
    return buffer._tab.Vector(buffer._tab.Offset(4)), buffer.DataLength()


def compare_with_tflm_on(graph: QGraph, path, x: np.ndarray):
    """Write graph to path, read it back, run the simulator and tflite_micro on x; the per-tensor comparison."""
    pytest.importorskip("tflite_micro")
    from flexround_mcu.sim.runner import Simulator
    from flexround_mcu.tflm import compare_with_tflm

    save_tflite(graph, path)
    back = load_tflite(path)
    values = Simulator(back).run(x, keep_all=True)
    return compare_with_tflm(back, path, x, values), values


# ------------------------------------------------------------------------------------------ a small graph

class GraphBuilder:
    """Hand-made QGraphs with random weights; integer parameters from prepare.py, as lower() computes them."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []

    def tensor(self, t: Tensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, name, shape, scale, zero_point) -> int:
        return self.tensor(Tensor(name, shape, "int8", scale, zero_point))

    def weighted(self, kind, x, name, w_shape, dtype, per_channel, out_shape, out_scale, out_zp, act="NONE",
                 stride=(1, 1), padding=(0, 0, 0, 0), depth_multiplier=1) -> int:
        s_in = self.tensors[x].scale[0]
        qdim = 3 if kind == OpKind.DEPTHWISE_CONV_2D else 0
        cout = w_shape[qdim]
        limit = 7 if dtype == "int4" else 127
        # float weights up to about 2.5 whatever the bit width, so int4 layers feed the next ones as int8 ones do
        w_scale = (2.5 / limit * (self.rng.uniform(0.5, 1.5, cout) if per_channel else np.ones(1))).astype(np.float32)
        w = self.tensor(Tensor(f"{name}.weight", w_shape, dtype, w_scale, np.zeros(w_scale.size, np.int64), qdim,
                               self.rng.integers(-limit, limit + 1, w_shape).astype(np.int8)))
        b = self.tensor(Tensor(f"{name}.bias", (cout,), "int32", np.float32(s_in) * np.broadcast_to(w_scale, (cout,)),
                               np.zeros(cout, np.int64), 0, self.rng.integers(-200, 200, cout).astype(np.int32)))
        y = self.activation(name, out_shape, out_scale, out_zp)
        mult, shift = conv_multipliers(s_in, w_scale, out_scale)
        lo, hi = activation_range(act, out_scale, out_zp)
        if kind == OpKind.FULLY_CONNECTED:
            params = FullyConnectedParams(lo, hi, mult, shift)
        else:
            if mult.size == 1:
                mult, shift = np.repeat(mult, cout), np.repeat(shift, cout)
            params = ConvParams(stride, (1, 1), padding, lo, hi, mult, shift, depth_multiplier)
        self.ops.append(Op(kind, (x, w, b), (y,), params, name))
        return y

    def op(self, kind, inputs, name, shape, scale, zero_point, params) -> int:
        y = self.activation(name, shape, scale, zero_point)
        self.ops.append(Op(kind, tuple(inputs), (y,), params, name))
        return y


def small_graph(dtype: str = "int4", per_channel: bool = False) -> QGraph:
    """conv 3x3/2 SAME RELU6 -> depthwise x2 SAME RELU -> max pool VALID -> 1x1 conv -> add -> average pool ->
    reshape -> fully connected (always per-tensor) -> softmax."""
    g = GraphBuilder()
    x = g.activation("input", (1, 9, 9, 4), 0.05, -3)
    # output quantizations under which RELU6 and RELU clamp differently from each other and from NONE
    c = g.weighted(OpKind.CONV_2D, x, "conv", (8, 3, 3, 4), dtype, per_channel, (1, 5, 5, 8), 0.1, -128, "RELU6",
                   (2, 2), (1, 1, 1, 1))
    d = g.weighted(OpKind.DEPTHWISE_CONV_2D, c, "dw", (1, 3, 3, 16), dtype, per_channel, (1, 5, 5, 16), 0.03, -20,
                   "RELU", padding=(1, 1, 1, 1), depth_multiplier=2)
    m = g.op(OpKind.MAX_POOL_2D, [d], "maxpool", (1, 2, 2, 16), 0.03, -20,
             PoolParams((2, 2), (2, 2), (0, 0, 0, 0), -128, 127))
    p = g.weighted(OpKind.CONV_2D, m, "pointwise", (16, 1, 1, 16), dtype, per_channel, (1, 2, 2, 16), 0.05, 5)
    lo, hi = activation_range("NONE", 0.06, 0)
    a = g.op(OpKind.ADD, [m, p], "add", (1, 2, 2, 16), 0.06, 0,
             AddParams(**add_params(0.03, 0.05, 0.06), act_min=lo, act_max=hi))
    v = g.op(OpKind.AVERAGE_POOL_2D, [a], "avgpool", (1, 1, 1, 16), 0.06, 0,
             PoolParams((2, 2), (2, 2), (0, 0, 0, 0), -128, 127))
    r = g.op(OpKind.RESHAPE, [v], "flatten", (1, 16), 0.06, 0, ReshapeParams())
    f = g.weighted(OpKind.FULLY_CONNECTED, r, "fc", (10, 16), dtype, False, (1, 10), 0.1, 3)
    s = g.op(OpKind.SOFTMAX, [f], "softmax", (1, 10), 1 / 256, -128, prepare_softmax(1.0, 0.1))
    return QGraph(g.tensors, g.ops, [x], [s], name="small")


# ----------------------------------------------------------------------------------- ResNet-8 quantized by us

_QUANTIZED: dict[int, QGraph] = {}


@pytest.fixture
def resnet8_rtn(shared_data):
    """wbits -> ResNet-8 quantized by RTN (per-tensor, first and last layers at 8 bits) and lowered; made once."""
    if not _QUANTIZED:
        from flexround_mcu.data import load_dataset
        from flexround_mcu.frontends.zoo_graph import resnet8_to_graph
        from flexround_mcu.lower import lower
        from flexround_mcu.quant.fakequant import quantize_model
        from flexround_mcu.zoo import build
        from flexround_mcu.zoo.resnet8 import to_nchw

        model, _ = build("resnet8")
        graph = resnet8_to_graph(model)
        calib = to_nchw(load_dataset("cifar10-calib", limit=256).x)
        for wbits in (8, 4):
            qm = quantize_model(graph, [calib[:128], calib[128:]], "rtn", wbits, "tensor", True)
            _QUANTIZED[wbits] = lower(qm, name=f"resnet8_w{wbits}")
        _QUANTIZED[4] = with_int4_weights(_QUANTIZED[4])
    return _QUANTIZED


def cifar_inputs(graph: QGraph, n: int) -> np.ndarray:
    from flexround_mcu.data import load_dataset
    tin = graph.tensors[graph.inputs[0]]
    return load_dataset("cifar10-test-5000", limit=n).quantize_input(float(tin.scale[0]), int(tin.zero_point[0]))


# ------------------------------------------------------------------------------------------------ round trips

@pytest.mark.parametrize("model", sorted(MLPERF))
def test_mlperf_reference_models_round_trip(shared_data, model):
    graph = load_tflite(shared_data / MLPERF[model])
    round_trip(graph)


def test_quantized_resnet8_round_trips_at_w8_and_w4(resnet8_rtn):
    w8, w4 = resnet8_rtn[8], resnet8_rtn[4]
    assert {t.dtype for t in w8.tensors} == {"int8", "int32"}
    assert sum(t.dtype == "int4" for t in w4.tensors) == 8  # every conv but the first; the classifier stays int8
    round_trip(w8)
    round_trip(w4)
    assert int4_tensor_count(write_tflite(w4)) == 8


@pytest.mark.parametrize("dtype, per_channel", [("int4", False), ("int4", True), ("int8", False), ("int8", True)])
def test_small_graph_round_trips(dtype, per_channel):
    round_trip(small_graph(dtype, per_channel))


def test_file_layout():
    """What the reader does not look at: schema version, operator codes and versions, buffer 0, alignment,
    packed INT4 buffers, per-channel quantized dimensions, the reshape's new_shape and the depth multiplier."""
    graph = small_graph("int4", per_channel=True)
    buf = write_tflite(graph)
    assert buf[4:8] == b"TFL3"
    model = tflite.Model.GetRootAsModel(buf, 0)
    assert model.Version() == 3 and model.SubgraphsLength() == 1 and model.MetadataLength() == 0
    codes = [model.OperatorCodes(k) for k in range(model.OperatorCodesLength())]
    for code in codes:
        assert code.DeprecatedBuiltinCode() == min(code.BuiltinCode(), 127)
    B = tflite.BuiltinOperator
    versions = {code.BuiltinCode(): code.Version() for code in codes}
    assert versions == {B.CONV_2D: 7, B.DEPTHWISE_CONV_2D: 7, B.MAX_POOL_2D: 2, B.ADD: 2, B.AVERAGE_POOL_2D: 2,
                        B.RESHAPE: 1, B.FULLY_CONNECTED: 10, B.SOFTMAX: 2}
    assert model.Buffers(0).DataLength() == 0
    sg = model.Subgraphs(0)
    assert list(sg.InputsAsNumpy()) == graph.inputs and list(sg.OutputsAsNumpy()) == graph.outputs
    for k, t in enumerate(graph.tensors):
        ft = sg.Tensors(k)
        assert ft.Name().decode() == t.name and tuple(ft.ShapeAsNumpy()) == t.shape
        data = model.Buffers(ft.Buffer())
        if t.data is None:
            assert ft.Buffer() == 0
            continue
        start, length = data_span(data)
        assert ft.Buffer() != 0 and start % BUFFER_ALIGNMENT == 0, t.name
        assert length == ((t.size + 1) // 2 if t.dtype == "int4" else t.size * t.data.dtype.itemsize), t.name
        if t.dtype == "int4":  # element 2k in the low nibble, as TFLM's UnpackDenseInt4IntoInt8 reads it
            first = int(data.DataAsNumpy()[0])
            flat = t.data.reshape(-1)
            assert first == (int(flat[0]) & 0xF) | ((int(flat[1]) & 0xF) << 4)
        if t.per_channel:
            assert ft.Quantization().QuantizedDimension() == t.quantized_dim
    assert sg.Tensors(graph.ops[1].inputs[1]).Quantization().QuantizedDimension() == 3  # depthwise
    ops = {op.name: sg.Operators(k) for k, op in enumerate(graph.ops)}
    A = tflite.ActivationFunctionType
    conv = tflite.Conv2DOptions()
    conv.Init(ops["conv"].BuiltinOptions().Bytes, ops["conv"].BuiltinOptions().Pos)
    assert (conv.Padding(), conv.StrideH(), conv.StrideW()) == (tflite.Padding.SAME, 2, 2)
    assert conv.FusedActivationFunction() == A.RELU6
    dw = tflite.DepthwiseConv2DOptions()
    dw.Init(ops["dw"].BuiltinOptions().Bytes, ops["dw"].BuiltinOptions().Pos)
    assert dw.DepthMultiplier() == 2 and dw.Padding() == tflite.Padding.SAME
    assert dw.FusedActivationFunction() == A.RELU
    pool = tflite.Pool2DOptions()
    pool.Init(ops["maxpool"].BuiltinOptions().Bytes, ops["maxpool"].BuiltinOptions().Pos)
    assert (pool.Padding(), pool.FilterHeight(), pool.StrideW()) == (tflite.Padding.VALID, 2, 2)
    reshape = tflite.ReshapeOptions()
    reshape.Init(ops["flatten"].BuiltinOptions().Bytes, ops["flatten"].BuiltinOptions().Pos)
    assert list(reshape.NewShapeAsNumpy()) == [1, 16]


def test_save_tflite_writes_the_bytes(tmp_path):
    graph = small_graph()
    path = save_tflite(graph, tmp_path / "model.tflite")
    assert path.read_bytes() == write_tflite(graph)
    assert_same_graph(graph, load_tflite(path))


# ------------------------------------------------------------------------------------- TFLite Micro, bit for bit

@pytest.mark.tflm
@pytest.mark.parametrize("wbits", [8, 4])
def test_tflm_matches_simulator_on_written_resnet8(resnet8_rtn, tmp_path, wbits):
    graph = resnet8_rtn[wbits]
    x = cifar_inputs(graph, 64)
    cmp, values = compare_with_tflm_on(graph, tmp_path / f"w{wbits}.tflite", x)
    assert cmp.inputs == 64 and len(cmp.tensors) == 17
    assert {d.name: d.mismatches for d in cmp.tensors} == {d.name: 0 for d in cmp.tensors}
    logits = values[graph.metadata["logits_tensor"]].reshape(64, -1)
    assert len(np.unique(np.argmax(logits, axis=1))) >= 5  # a working classifier, not a constant output
    assert int4_tensor_count((tmp_path / f"w{wbits}.tflite").read_bytes()) == (8 if wbits == 4 else 0)


@pytest.mark.tflm
@pytest.mark.parametrize("dtype, per_channel", [("int4", False), ("int4", True), ("int8", True)])
def test_tflm_runs_int4_conv_depthwise_and_fc(tmp_path, dtype, per_channel):
    """INT4 filters in CONV_2D, DEPTHWISE_CONV_2D (multiplier 2) and FULLY_CONNECTED, per-tensor and per-channel."""
    graph = small_graph(dtype, per_channel)
    x = np.random.default_rng(1).integers(-128, 128, (40, 9, 9, 4)).astype(np.int8)
    cmp, values = compare_with_tflm_on(graph, tmp_path / "small.tflite", x)
    assert {d.name: d.mismatches for d in cmp.tensors} == {d.name: 0 for d in cmp.tensors}
    for d in cmp.tensors:  # every tensor takes many values that change with the input: a wrong weight would show
        v = values[d.index].astype(np.float64)
        assert len(np.unique(v)) >= 20 and v.std(axis=0).mean() > 3, d.name


@pytest.mark.tflm
def test_tflm_reads_the_int4_nibble_order(tmp_path):
    """Control: the same file with the two nibbles of every INT4 byte swapped no longer matches the simulator,
    so the matches above do depend on TFLM reading our packing (element 2k in the low nibble)."""
    graph = small_graph("int4")
    x = np.random.default_rng(2).integers(-128, 128, (5, 9, 9, 4)).astype(np.int8)
    path = tmp_path / "swapped.tflite"
    buf = bytearray(write_tflite(graph))
    model = tflite.Model.GetRootAsModel(bytes(buf), 0)
    sg = model.Subgraphs(0)
    for k in range(sg.TensorsLength()):
        if sg.Tensors(k).Type() == tflite.TensorType.INT4:
            data = model.Buffers(sg.Tensors(k).Buffer())
            start, n = data_span(data)
            packed = np.frombuffer(bytes(buf[start:start + n]), np.uint8)
            buf[start:start + n] = ((packed >> 4) | (packed << 4)).astype(np.uint8).tobytes()
    path.write_bytes(bytes(buf))
    pytest.importorskip("tflite_micro")
    from flexround_mcu.sim.runner import Simulator
    from flexround_mcu.tflm import compare_with_tflm

    ours = read_tflite(write_tflite(graph))
    values = Simulator(ours).run(x, keep_all=True)
    cmp = compare_with_tflm(ours, path, x, values)
    assert next(d for d in cmp.tensors if d.name == "conv").mismatches > 0


# ------------------------------------------------------------------------------------------------ bad input

def _replace_params(graph: QGraph, op_name: str, **changes) -> QGraph:
    g = copy.deepcopy(graph)
    op = next(op for op in g.ops if op.name == op_name)
    op.params = dataclasses.replace(op.params, **changes)
    g.validate()
    return g


def test_padding_neither_same_nor_valid_is_one_clear_error():
    # 9x9 input, 3x3 window, stride 2: SAME is (1, 1, 1, 1); (0, 0, 2, 2) gives the same 5x5 output
    graph = _replace_params(small_graph(), "conv", padding=(0, 0, 2, 2))
    msg = user_error(write_tflite, graph)
    assert "op 0 (CONV_2D conv)" in msg and "(0, 0, 2, 2)" in msg and "SAME" in msg and "VALID" in msg


def test_pool_padding_neither_same_nor_valid_is_one_clear_error():
    # 2x2 input, 2x2 window, stride 2: SAME and VALID are both (0, 0, 0, 0); (0, 0, 1, 1) keeps the 1x1 output
    graph = _replace_params(small_graph(), "avgpool", padding=(0, 0, 1, 1))
    assert "op 5 (AVERAGE_POOL_2D avgpool)" in user_error(write_tflite, graph)


def test_clamp_no_fused_activation_gives_is_one_clear_error():
    graph = _replace_params(small_graph(), "add", act_min=-100, act_max=100)
    msg = user_error(write_tflite, graph)
    assert "op 4 (ADD add)" in msg and "[-100, 100]" in msg and "RELU6" in msg


def test_multipliers_that_do_not_follow_from_the_scales_are_refused():
    graph = small_graph()
    fc = next(op for op in graph.ops if op.name == "fc")
    graph = _replace_params(graph, "fc", multiplier=fc.params.multiplier + 1)
    msg = user_error(write_tflite, graph)
    assert "op 7 (FULLY_CONNECTED fc)" in msg and "multiplier" in msg


def test_save_tflite_into_a_missing_folder(tmp_path):
    msg = user_error(save_tflite, small_graph(), tmp_path / "nowhere" / "model.tflite")
    assert "nowhere" in msg and "does not exist" in msg
