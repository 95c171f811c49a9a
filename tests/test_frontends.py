"""Frontends: float .tflite, Keras (through TensorFlow's converter) and PyTorch (torch.fx) models -> FloatGraph.

Each frontend must give the logits of the model it read (within 1e-4), with the references run by their own
runtime (tf.lite's interpreter, Keras, the torch module), and refuse an unsupported layer in one line naming it.
"""
from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
import tflite
import torch
import torch.nn.functional as F
from torch import nn

from flexround_mcu.data import load_dataset
from flexround_mcu.frontends.tflite_float import load_float_tflite, read_float_tflite
from flexround_mcu.frontends.torch_fx import trace_module
from flexround_mcu.quant.graph import GraphModule
from flexround_mcu.zoo import float_input
from helpers import user_error

IC_FLOAT = "mlperf_tiny/ic/pretrainedResnet.tflite"
KWS_FLOAT = "mlperf_tiny/kws/kws_ref_model_float32.tflite"
H5 = "mlperf_tiny/ic/pretrainedResnet.h5"


def run_graph(graph, x: torch.Tensor, upto: str | None = None) -> np.ndarray:
    with torch.no_grad():
        return GraphModule(graph).eval()(x, upto=upto).numpy()


# --- torch.fx -------------------------------------------------------------------------------------------------

def conv_bn(cin, cout, k, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 linear projection, residual when shapes allow."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(conv_bn(cin, hidden, 1), conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class TinyMobileNetV2(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 8, 3, 2), InvertedResidual(8, 8, 1, 1), InvertedResidual(8, 16, 2, 4),
                                      InvertedResidual(16, 16, 1, 4), conv_bn(16, 32, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, classes))

    def forward(self, x):
        x = self.pool(self.features(x))
        x = x.view(x.size(0), -1)
        return self.classifier(x)


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that folding them wrongly shows in the logits."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def test_torch_fx_mobilenet_v2_logits():
    torch.manual_seed(0)
    model = randomize_bn(TinyMobileNetV2())
    graph = trace_module(model, (3, 32, 32), 1 / 64, 0)
    kinds = [n.kind for n in graph.nodes]
    assert kinds.count("conv") == 11 and kinds.count("add") == 2 and kinds[-2:] == ["flatten", "linear"]
    dw = [n for n in graph.nodes if n.is_depthwise]
    assert [n.groups for n in dw] == [8, 32, 64] and all(n.act == "RELU6" and n.weight.shape[1] == 1 for n in dw)
    assert graph.node("features_3_conv_2").act == "NONE"  # the linear projection keeps no activation
    assert graph.metadata["module_paths"]["features_2_conv_1_0"] == "features.2.conv.1.0"
    assert (graph.input_shape, graph.input_scale, graph.input_zero_point) == ((3, 32, 32), 1 / 64, 0)
    assert not model.training and not any(m.training for m in model.modules())
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        theirs = model(x).numpy()
    ours = run_graph(graph, x)
    assert np.abs(theirs).max() > 0.1
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


class FlattenNet(nn.Module):
    """A classifier reading a flattened 16x4x4 map (PyTorch's C-major order), with the other supported forms."""

    def __init__(self, view: str):
        super().__init__()
        self.view = view
        self.conv1 = nn.Conv2d(3, 8, 4, padding="same")  # even kernel: the odd padding pixel goes after
        self.bn1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)  # depthwise with a channel multiplier of 2
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 4 * 4, 20)
        self.fc2 = nn.Linear(20, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.avg(self.pool(F.relu6(self.dw(x))))
        if self.view == "view":
            x = x.view(x.size(0), -1)
        elif self.view == "shape":
            x = x.reshape(x.shape[0], -1)
        elif self.view == "module":
            x = self.flatten(x)
        else:
            x = torch.flatten(x, 1)
        return F.softmax(self.fc2(F.relu(self.fc1(x))), dim=-1)


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
@pytest.mark.parametrize("view", ["view", "shape", "module", "function"])
def test_torch_fx_flatten_reorders_linear_columns(view):
    torch.manual_seed(1)
    model = randomize_bn(FlattenNet(view))
    graph = trace_module(model, (3, 16, 16), 1 / 32, -5)
    assert [n.kind for n in graph.nodes] == ["conv", "conv", "maxpool", "avgpool", "flatten", "linear", "linear",
                                             "softmax"]
    conv1 = graph.nodes[0]
    assert conv1.padding == (1, 1, 2, 2) and conv1.act == "RELU"
    assert graph.nodes[2].padding == (1, 1, 1, 1) and graph.nodes[5].act == "RELU"
    x = torch.randn(8, 3, 16, 16)
    with torch.no_grad():
        theirs = model.fc2(F.relu(model.fc1(torch.flatten(
            model.avg(model.pool(F.relu6(model.dw(torch.relu(model.bn1(model.conv1(x))))))), 1))))
        probabilities = model(x)
    np.testing.assert_allclose(run_graph(graph, x, upto=graph.logits), theirs.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(run_graph(graph, x), probabilities.numpy(), rtol=0, atol=1e-5)
    # The columns really were permuted: the module's own weights in the graph's NHWC flatten give other logits.
    fc1 = graph.node(graph.nodes[5].name)
    assert not torch.equal(fc1.weight, model.fc1.weight)


class Functional(nn.Module):
    """The functional and method spellings: F.max_pool2d, x.relu(), torch.add, padded F.avg_pool2d, x.mean."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 6)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        x = F.max_pool2d(self.a(x).relu(), 2)
        y = F.relu(torch.add(self.b(x), self.c(x)))
        y = F.avg_pool2d(y, 2, stride=1, padding=1, count_include_pad=False)  # TFLite's valid-taps average
        return self.softmax(self.fc(y.mean((2, 3), keepdim=True).flatten(1)))


class Functional2(Functional):
    def forward(self, x):
        x = F.max_pool2d(self.a(x).relu(), kernel_size=2, stride=2)
        y = F.relu6(self.b(x) + self.c(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, (1, 1)), 1))


@pytest.mark.parametrize("cls, kinds", [
    (Functional, ["conv", "maxpool", "conv", "conv", "add", "avgpool", "avgpool", "flatten", "linear", "softmax"]),
    (Functional2, ["conv", "maxpool", "conv", "conv", "add", "avgpool", "flatten", "linear"]),
])
def test_torch_fx_functional_forms(cls, kinds):
    torch.manual_seed(2)
    model = cls().eval()
    graph = trace_module(model, (3, 12, 12), 0.1, 0)
    assert [n.kind for n in graph.nodes] == kinds
    assert graph.node("a").act == "RELU" and graph.node("add").act == ("RELU" if cls is Functional else "RELU6")
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad():
        theirs = model(x).numpy()
    np.testing.assert_allclose(run_graph(graph, x), theirs, rtol=0, atol=1e-5)


class Wrapped(nn.Module):
    def __init__(self, block: nn.Module):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Sequential(nn.Identity(), nn.Sequential(nn.Conv2d(8, 8, 1), block)))
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


@pytest.mark.parametrize("block, path, kind", [
    (nn.GELU(), "features.2.1.1", "GELU"),
    (nn.LSTM(8, 8), "features.2.1.1", "LSTM"),
    (nn.Conv2d(8, 8, 3, padding=1, groups=2), "features.2.1.1", "Conv2d"),
])
def test_torch_fx_unsupported_layer_is_named(block, path, kind):
    msg = user_error(trace_module, Wrapped(block).eval(), (3, 8, 8), 1.0, 0)
    assert f"layer '{path}' ({kind})" in msg and msg.startswith("Wrapped: ")
    if kind == "Conv2d":
        assert "groups=2" in msg


def test_torch_fx_unsupported_function_and_wiring():
    class Tanh(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return torch.tanh(self.conv(x)).flatten(1)

    msg = user_error(trace_module, Wrapped(Tanh()).eval(), (3, 8, 8), 1.0, 0)
    assert "'tanh'" in msg and "layer 'features.2.1.1' (Tanh)" in msg

    class BnAlone(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn(x)

    assert "layer 'bn' (BatchNorm2d)" in user_error(trace_module, BnAlone(), (3, 8, 8), 1.0, 0)
    wrong = user_error(trace_module, Wrapped(nn.ReLU()), (2, 8, 8), 1.0, 0)
    assert "layer 'features.0' (Conv2d): fails on a (1, 2, 8, 8) input" in wrong and "input_shape" in wrong
    assert "(C, H, W)" in user_error(trace_module, BnAlone(), (8, 8), 1.0, 0)
    assert "zero_point" in user_error(trace_module, BnAlone(), (3, 8, 8), 1.0, 300)


# --- float .tflite ----------------------------------------------------------------------------------------------

def tflite_reference(model_bytes: bytes, x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, output) of tf.lite's interpreter, one input at a time; logits = the last op's input tensor."""
    tf = pytest.importorskip("tensorflow")
    model = tflite.Model.GetRootAsModel(model_bytes, 0)
    sg = model.Subgraphs(0)
    logits_index = int(sg.Operators(sg.OperatorsLength() - 1).Inputs(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    logits, outputs = [], []
    for x in x_nhwc:
        interpreter.set_tensor(inp, x[None])
        interpreter.invoke()
        logits.append(interpreter.get_tensor(logits_index)[0].copy())
        outputs.append(interpreter.get_tensor(out)[0].copy())
    return np.array(logits), np.array(outputs)


def dequantized_copy(model_bytes: bytes) -> bytes:
    """The model with its int8 weights stored as float32 (q * scale), so tf.lite runs every op in float.

    The MLPerf Tiny "float32" KWS model stores its pointwise-conv weights as int8; tf.lite then quantizes each
    conv's input on the fly ("hybrid" kernels), which a float graph does not do. Uses TensorFlow's own flatbuffer
    tools (object API)."""
    pytest.importorskip("tensorflow")
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    for t in model.subgraphs[0].tensors:
        if t.type == schema.TensorType.INT8 and model.buffers[t.buffer].data is not None:
            q = np.frombuffer(bytes(model.buffers[t.buffer].data), np.int8).astype(np.float32)
            assert len(t.quantization.scale) == 1  # per-tensor in this model
            model.buffers[t.buffer].data = (q * np.float32(t.quantization.scale[0])).astype("<f4").tobytes()
            t.type, t.quantization = schema.TensorType.FLOAT32, None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_float_tflite_structure(shared_data):
    graph = load_float_tflite(shared_data / KWS_FLOAT, input_scale=0.5, input_zero_point=3)
    assert [n.kind for n in graph.nodes].count("conv") == 9 and graph.output == "softmax12"
    assert graph.logits == "fc11" and graph.input_shape == (1, 49, 10)
    first = graph.nodes[0]  # 10x4 kernel, stride 2, 'same' on a 49x10 map
    assert first.weight.shape == (64, 1, 10, 4) and first.stride == (2, 2) and first.padding == (4, 1, 5, 1)
    dw = graph.node("dwconv1")
    assert dw.groups == 64 and dw.weight.shape == (64, 1, 3, 3) and dw.act == "RELU"
    assert graph.metadata["input_quantization"] == "given"
    ic = load_float_tflite(shared_data / IC_FLOAT)
    assert ic.metadata["input_quantization"] == "default"
    assert ic.node("conv4").padding == (0, 0, 1, 1)  # TF 'same' with stride 2: the extra pixel after
    assert ic.node("add3").inputs == ["conv0", "conv2"] and ic.node("add3").act == "RELU"


@pytest.mark.tflm
def test_float_tflite_resnet8_matches_tflite(shared_data):
    data = (shared_data / IC_FLOAT).read_bytes()
    graph = read_float_tflite(data)
    ds = load_dataset("ic01", limit=100)
    ref_logits, ref_out = tflite_reference(data, ds.to_float())
    x = float_input(ds)
    logits, out = run_graph(graph, x, upto=graph.logits), run_graph(graph, x)
    assert not np.allclose(ref_logits.sum(1), 1.0)  # really logits
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-4)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-4)


@pytest.mark.tflm
def test_float_tflite_kws_matches_tflite(shared_data):
    data = (shared_data / KWS_FLOAT).read_bytes()
    graph = read_float_tflite(data)
    ds = load_dataset("kws01", limit=200)
    x = float_input(ds)
    logits, out = run_graph(graph, x, upto=graph.logits), run_graph(graph, x)
    ref_logits, ref_out = tflite_reference(dequantized_copy(data), ds.to_float())
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-4)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-4)
    # The file as shipped runs hybrid kernels (inputs quantized on the fly): visibly not the float model.
    hybrid_logits, _ = tflite_reference(data, ds.to_float())
    assert np.abs(hybrid_logits - logits).max() > 1e-2


def with_builtin_replaced(model_bytes: bytes, old: int, new: int) -> bytes:
    """The model with every `old` op turned into a `new` op, by rewriting its OperatorCode entry in place."""
    data = bytearray(model_bytes)
    model = tflite.Model.GetRootAsModel(data, 0)
    for k in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(k)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == old:
            # vtable slots: deprecated_builtin_code (int8) at 4, builtin_code (int32) at 10
            for slot, fmt in ((4, "<b"), (10, "<i")):
                offset = code._tab.Offset(slot)
                if offset:
                    struct.pack_into(fmt, data, code._tab.Pos + offset, new)
    return bytes(data)


def test_float_tflite_unsupported_op_is_named(shared_data, tmp_path):
    path = tmp_path / "with_tanh.tflite"
    path.write_bytes(with_builtin_replaced((shared_data / IC_FLOAT).read_bytes(),
                                           tflite.BuiltinOperator.AVERAGE_POOL_2D, tflite.BuiltinOperator.TANH))
    msg = user_error(load_float_tflite, path)
    assert msg.startswith(f"{path}: op 12 (TANH, output tensor '") and "not supported" in msg
    int8 = user_error(load_float_tflite, shared_data / "mlperf_tiny/kws/kws_ref_model.tflite")
    assert "INT8, not FLOAT32" in int8 and "input_1" in int8
    assert "no such .tflite" in user_error(load_float_tflite, tmp_path / "missing.tflite")
    assert "TFL3" in user_error(read_float_tflite, b"not a flatbuffer at all")


# --- Keras ------------------------------------------------------------------------------------------------------

@pytest.mark.tflm
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' numpy 2 notice
def test_keras_h5_resnet8_matches_zoo(shared_data):
    pytest.importorskip("tensorflow")
    from flexround_mcu.frontends.keras import load_keras
    from flexround_mcu.zoo import build_graph

    graph = load_keras(shared_data / H5, input_scale=1.0, input_zero_point=-128)
    zoo_graph, _ = build_graph("resnet8")
    assert [n.kind for n in graph.nodes] == [n.kind for n in zoo_graph.nodes]
    assert graph.metadata["frontend"] == "keras"
    ds = load_dataset("cifar10-test-5000", limit=200)
    x = float_input(ds)
    ours, zoo = run_graph(graph, x, upto=graph.logits), run_graph(zoo_graph, x, upto=zoo_graph.logits)
    assert not np.allclose(zoo.sum(1), 1.0) and np.abs(zoo).max() > 1.0  # logits, not probabilities
    np.testing.assert_allclose(ours, zoo, rtol=0, atol=1e-4)


@pytest.mark.tflm
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_file_and_saved_model(shared_data, tmp_path):
    """A .keras file built here (BN, zero padding, depthwise, global average pool) against Keras itself; the KWS
    SavedModel."""
    pytest.importorskip("tensorflow")
    import keras

    from flexround_mcu.frontends.keras import load_keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 10, 2))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    h = keras.layers.ReLU(max_value=6.0)(keras.layers.BatchNormalization()(h))
    h = keras.layers.ZeroPadding2D(((1, 0), (2, 1)))(h)  # folded into the depthwise conv's padding
    h = keras.layers.DepthwiseConv2D(3, activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(8, 1)(h))
    outputs = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    bn = model.layers[2]
    bn.set_weights([w + np.random.default_rng(0).uniform(0.2, 0.8, w.shape).astype(np.float32)
                    for w in bn.get_weights()])
    path = tmp_path / "small.keras"
    model.save(path)
    graph = load_keras(path)
    assert [n.kind for n in graph.nodes] == ["conv", "conv", "conv", "maxpool", "avgpool", "flatten", "linear"]
    assert graph.nodes[0].act == "RELU6" and graph.nodes[1].groups == 8 and graph.nodes[1].padding == (1, 2, 0, 1)
    x = np.random.default_rng(1).standard_normal((16, 12, 10, 2)).astype(np.float32)
    theirs = np.asarray(model(x, training=False))
    ours = run_graph(graph, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)

    kws = load_keras(shared_data / "mlperf_tiny/kws/kws_ref_model_savedmodel")
    assert [n.kind for n in kws.nodes].count("conv") == 9 and kws.node(kws.output).kind == "softmax"
    ds = load_dataset("kws01")
    accuracy = float((run_graph(kws, float_input(ds)).argmax(1) == ds.y).mean())
    assert accuracy == 0.913  # the float weights: above the 90.1% of the .tflite's int8-stored ones


@pytest.mark.tflm
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_unsupported_layer_is_named(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    from flexround_mcu.frontends.keras import load_keras

    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, name="stem")(inputs)
    h = keras.layers.Reshape((36, 4))(h)
    h = keras.layers.LSTM(4, name="memory")(h)
    path = tmp_path / "lstm.keras"
    keras.Model(inputs, keras.layers.Dense(2)(h)).save(path)
    msg = user_error(load_keras, path)
    assert msg.startswith(f"{path}: layer 'memory' (LSTM) is not supported")

    inputs = keras.Input((8, 8, 1))
    path = tmp_path / "tanh.h5"
    keras.Model(inputs, keras.layers.Conv2D(4, 3, activation="tanh", name="squash")(inputs)).save(path)
    assert "layer 'squash' (Conv2D) has activation 'tanh'" in user_error(load_keras, path)
    assert "not a SavedModel" in user_error(load_keras, tmp_path)
