"""flexround_mcu.zoo: the PyTorch ResNet-8 against the Keras reference, its .h5 reader, weight resolution, and the
DS-CNN read from its float .tflite."""

import hashlib
import os
import socket
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from flexround_mcu.data import load_dataset
from flexround_mcu.errors import UserError
from helpers import LocalHTTPServer, user_error
from flexround_mcu.zoo import ZOO, build, build_graph, float_input
from flexround_mcu.zoo import weights as W
from flexround_mcu.zoo.resnet8 import KERAS_NAMES, ResNet8, SamePad2d, load_keras_h5, resnet8, same_padding, to_nchw

H5_REL = "mlperf_tiny/ic/pretrainedResnet.h5"




def predict(model, images: np.ndarray, batch: int = 500) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(to_nchw(images[i:i + batch])) for i in range(0, len(images), batch)]).numpy()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty data folder and cache under tmp_path, and no download URL override: nothing outside tmp_path is seen."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(data))
    monkeypatch.setenv("FLEXROUND_MCU_CACHE", str(cache))
    monkeypatch.delenv("FLEXROUND_MCU_WEIGHTS_URL", raising=False)
    return data, cache


@pytest.fixture
def http_files():
    """A local HTTP server on 127.0.0.1 (random port, own thread) serving the dict it yields: path -> bytes."""
    server = LocalHTTPServer()
    server.files["base"] = server.url("").encode()
    try:
        yield server.files
    finally:
        server.close()


def base(files) -> str:
    return files["base"].decode()


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/pretrainedResnet.h5"


def cache_listing(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# --- the model itself ------------------------------------------------------------------------------------------

def test_same_padding_is_tensorflows():
    assert same_padding(32, 3, 1) == (1, 1)
    assert same_padding(32, 3, 2) == (0, 1)  # TF pads the extra pixel after, not PyTorch's symmetric padding=1
    assert same_padding(16, 3, 2) == (0, 1)
    assert same_padding(33, 3, 2) == (1, 1)
    assert same_padding(32, 1, 2) == (0, 0)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = SamePad2d(3, 2)(x)
    assert y.shape == (1, 1, 5, 5) and torch.equal(y[..., :4, :4], x) and (y[..., 4, :] == 0).all()


def test_structure_and_names():
    m = ResNet8()
    layers = m.named_layers()
    assert list(layers) == list(KERAS_NAMES)
    assert layers["s1_conv1"] is m.stack1.conv1 and layers["s2_short"] is m.stack2.shortcut
    assert m.stack1.shortcut is None
    assert m.stack2.shortcut.kernel_size == (1, 1) and m.stack2.shortcut.stride == (2, 2)
    assert m.stack3.shortcut.bias is not None
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            assert mod.eps == 1e-3
        if isinstance(mod, torch.nn.Conv2d):
            assert mod.padding == (0, 0) and mod.bias is not None
    assert sum(p.numel() for p in m.parameters()) + sum(
        b.numel() for n, b in m.named_buffers() if n.endswith(("running_mean", "running_var"))) == 78666
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_to_nchw():
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    t = to_nchw(x)
    assert t.dtype == torch.float32 and t.shape == (2, 3, 32, 32)
    assert torch.equal(t[1, 2], torch.from_numpy(x[1, :, :, 2].astype(np.float32)))  # raw pixels, not normalised
    assert "uint8" in user_error(to_nchw, x.astype(np.float32))
    assert "(N,H,W,3)" in user_error(to_nchw, x[0])


# --- real weights, real data -----------------------------------------------------------------------------------

def test_float_accuracy(shared_data):
    model, info = build("resnet8")
    assert info.weights_source == "data" and info.weights == (shared_data / H5_REL).resolve()
    assert info.datasets == {"eval": "cifar10-test-5000", "calib": "cifar10-calib", "extra": "ic01"}
    assert (info.input_scale, info.input_zero_point) == (1.0, -128)
    assert not model.training
    ds = load_dataset(info.eval_dataset)
    hits = int((predict(model, ds.x).argmax(1) == ds.y).sum())
    assert (hits, len(ds)) == (3822, 5000)  # 0.7644, the prototype's exact figure
    ic01 = load_dataset(info.datasets["extra"])
    assert (predict(model, ic01.x).argmax(1) == ic01.y).mean() == 0.855  # MLPerf Tiny's float figure


@pytest.mark.tflm
def test_logits_match_keras(shared_data):
    pytest.importorskip("tensorflow")
    path = str(shared_data / H5_REL)
    try:
        import keras

        kmodel = keras.models.load_model(path, compile=False)
    except Exception:  # a Keras 3 that cannot read this Keras 2.4 file: the legacy tf_keras can
        keras = pytest.importorskip("tf_keras")
        kmodel = keras.models.load_model(path, compile=False)
    dense = kmodel.get_layer("dense")
    dense.activation = keras.activations.linear  # pre-softmax logits
    x = load_dataset("cifar10-test-5000", limit=64).x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 warns about the input structure of a Keras 2 model
        theirs = np.asarray(kmodel(x.astype(np.float32), training=False))
    ours = predict(resnet8(path), x)
    assert theirs.shape == ours.shape == (64, 10)
    assert not np.allclose(theirs.sum(1), 1.0)  # really logits, not probabilities
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


# --- every entry as a FloatGraph; the DS-CNN -----------------------------------------------------------------------

def graph_predict(graph, x: torch.Tensor) -> np.ndarray:
    from flexround_mcu.quant.graph import GraphModule

    with torch.no_grad():
        return GraphModule(graph).eval()(x, upto=graph.logits).numpy()


def test_build_graph_resnet8_is_the_module(shared_data):
    graph, info = build_graph("resnet8")
    model, _ = build("resnet8")
    assert info.weights_source == "data" and graph.input_zero_point == info.input_zero_point == -128
    ds = load_dataset("ic01", limit=32)
    x = float_input(ds)
    assert torch.equal(x, to_nchw(ds.x))  # raw pixels, the same input as before
    np.testing.assert_allclose(graph_predict(graph, x), predict(model, ds.x), rtol=0, atol=1e-4)


def test_ds_cnn_float_accuracy(shared_data):
    from flexround_mcu.frontends.tflite import load_tflite

    graph, info = build_graph("ds_cnn")
    assert info.weights == (shared_data / "mlperf_tiny/kws/kws_ref_model_float32.tflite").resolve()
    assert info.datasets == {"eval": "kws01", "calib": "kws01"}
    # The input quantization is the int8 reference model's, in which kws01 is stored.
    int8 = load_tflite(shared_data / "mlperf_tiny/kws/kws_ref_model.tflite")
    tin = int8.tensors[int8.inputs[0]]
    assert (np.float32(info.input_scale), info.input_zero_point) == (tin.scale[0], tin.zero_point[0])
    assert (graph.input_scale, graph.input_zero_point, graph.input_shape) == (info.input_scale, 83, (1, 49, 10))
    assert [n.kind for n in graph.nodes].count("conv") == 9 and sum(n.is_depthwise for n in graph.nodes) == 4
    ds = load_dataset(info.eval_dataset)
    assert np.array_equal(ds.quantize_input(info.input_scale, info.input_zero_point), ds.x)
    hits = int((graph_predict(graph, float_input(ds)).argmax(1) == ds.y).sum())
    assert (hits, len(ds)) == (901, 1000)
    module, _ = build("ds_cnn")  # the GraphModule running the same graph
    assert module.graph.logits == graph.logits and not module.training


@pytest.mark.tflm
def test_ds_cnn_accuracy_equals_tflite(shared_data):
    """GraphModule and tf.lite agree on kws01 when both compute in float (901/1000). The file as shipped stores its
    pointwise weights as int8, so tf.lite quantizes those convs' inputs on the fly: 900/1000."""
    from test_frontends import dequantized_copy, tflite_reference

    graph, info = build_graph("ds_cnn")
    ds = load_dataset("kws01")
    ours = graph_predict(graph, float_input(ds)).argmax(1)
    shipped = info.weights.read_bytes()
    float_logits, _ = tflite_reference(dequantized_copy(shipped), ds.to_float())
    hybrid_logits, _ = tflite_reference(shipped, ds.to_float())
    assert np.array_equal(float_logits.argmax(1), ours)
    assert int((ours == ds.y).sum()) == 901 and int((hybrid_logits.argmax(1) == ds.y).sum()) == 900


# --- download ----------------------------------------------------------------------------------------------------

def test_download_ok(tmp_path, http_files):
    body = os.urandom(3000)
    http_files["/w.h5"] = body
    dest = tmp_path / "cache" / "w.h5"
    got = W.download(f"{base(http_files)}/w.h5", dest, hashlib.sha256(body).hexdigest(), size=len(body))
    assert got == dest and dest.read_bytes() == body
    assert cache_listing(dest.parent) == ["w.h5"]  # no temporary file left


def test_download_wrong_sha256(tmp_path, http_files):
    body = os.urandom(3000)
    http_files["/w.h5"] = body
    cache = tmp_path / "cache"
    expected = "0" * 64
    msg = user_error(W.download, f"{base(http_files)}/w.h5", cache / "w.h5", expected, size=len(body))
    assert expected in msg and hashlib.sha256(body).hexdigest() in msg
    assert "--weights" in msg and "FLEXROUND_MCU_DATA" in msg
    assert cache_listing(cache) == []


def test_download_too_long(tmp_path, http_files):
    http_files["/w.h5"] = os.urandom(300_000)
    cache = tmp_path / "cache"
    msg = user_error(W.download, f"{base(http_files)}/w.h5", cache / "w.h5", "0" * 64, size=1000)
    assert "more than 1000 bytes" in msg and cache_listing(cache) == []


def test_download_unreachable(tmp_path):
    cache = tmp_path / "cache"
    url = closed_port_url()
    msg = user_error(W.download, url, cache / "w.h5", "0" * 64)
    assert url in msg and "--weights" in msg
    assert cache_listing(cache) == []


def test_download_http_404(tmp_path, http_files):
    cache = tmp_path / "cache"
    msg = user_error(W.download, f"{base(http_files)}/missing.h5", cache / "w.h5", "0" * 64)
    assert "404" in msg and cache_listing(cache) == []


def test_build_downloads_pinned_file_into_cache(shared_data, tmp_path, http_files, monkeypatch):
    """End to end through build(): the real .h5 served locally, checked against the pinned sha256."""
    body = (shared_data / H5_REL).read_bytes()
    x = load_dataset("ic01", limit=8).x  # before `isolated` repoints the data folder
    reference = predict(resnet8(shared_data / H5_REL), x)
    assert hashlib.sha256(body).hexdigest() == W.RESNET8_WEIGHTS.sha256 and len(body) == W.RESNET8_WEIGHTS.size
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(tmp_path / "empty"))
    cache = tmp_path / "cache"
    monkeypatch.setenv("FLEXROUND_MCU_CACHE", str(cache))
    http_files["/pretrainedResnet.h5"] = body
    monkeypatch.setenv("FLEXROUND_MCU_WEIGHTS_URL", f"{base(http_files)}/pretrainedResnet.h5")
    model, info = build("resnet8")
    assert info.weights_source == "download" and info.weights == (cache / "pretrainedResnet.h5").resolve()
    assert cache_listing(cache) == ["pretrainedResnet.h5"]
    np.testing.assert_array_equal(predict(model, x), reference)
    _, info = build("resnet8")  # second time: from the cache, no server needed
    assert info.weights_source == "cache"


def test_build_download_bad_file(isolated, http_files, monkeypatch):
    """A served file that is not the pinned one: UserError with both hashes, cache left empty."""
    _, cache = isolated
    http_files["/pretrainedResnet.h5"] = b"not the weights"
    monkeypatch.setenv("FLEXROUND_MCU_WEIGHTS_URL", f"{base(http_files)}/pretrainedResnet.h5")
    msg = user_error(build, "resnet8")
    assert W.RESNET8_WEIGHTS.sha256 in msg and hashlib.sha256(b"not the weights").hexdigest() in msg
    assert "pretrainedResnet.h5" in msg and "FLEXROUND_MCU_DATA" in msg
    assert cache_listing(cache) == []
    monkeypatch.setenv("FLEXROUND_MCU_WEIGHTS_URL", closed_port_url())
    assert "failed" in user_error(build, "resnet8") and cache_listing(cache) == []


# --- resolution order --------------------------------------------------------------------------------------------

def test_resolution_order(tmp_path, isolated, http_files, monkeypatch):
    data, cache = isolated
    body = b"weights from the net"
    spec = W.WeightsSpec(filename="w.h5", data_relpath="models/w.h5", url=closed_port_url(),
                         sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    explicit = tmp_path / "mine.h5"
    explicit.write_bytes(b"explicit")
    (data / "models").mkdir()
    (data / "models/w.h5").write_bytes(b"data")
    cache.mkdir()
    (cache / "w.h5").write_bytes(body)
    http_files["/w.h5"] = body
    monkeypatch.setenv("FLEXROUND_MCU_WEIGHTS_URL", f"{base(http_files)}/w.h5")

    def resolve(weights=None):
        r = W.resolve_weights(spec, weights, progress=False)
        return r.source, r.path.read_bytes()

    assert resolve(explicit) == ("explicit", b"explicit")
    assert resolve() == ("data", b"data")
    (data / "models/w.h5").unlink()
    assert resolve() == ("cache", body)
    (cache / "w.h5").unlink()
    assert resolve() == ("download", body) and cache_listing(cache) == ["w.h5"]
    assert resolve() == ("cache", body)
    # A damaged cache file is not trusted: downloaded again over it.
    (cache / "w.h5").write_bytes(b"truncated")
    assert resolve() == ("download", body)
    # The function argument beats the environment's URL; downloads can be switched off.
    (cache / "w.h5").unlink()
    assert "failed" in user_error(W.resolve_weights, spec, url=closed_port_url())
    assert "downloads are off" in user_error(W.resolve_weights, spec, allow_download=False)
    assert "no such file" in user_error(W.resolve_weights, spec, tmp_path / "nope.h5")


def test_cache_dir_default(monkeypatch):
    monkeypatch.delenv("FLEXROUND_MCU_CACHE", raising=False)
    assert W.cache_dir() == Path.home() / ".cache/flexround-mcu/weights"
    monkeypatch.setenv("FLEXROUND_MCU_CACHE", "")  # empty counts as unset
    assert W.cache_dir() == Path.home() / ".cache/flexround-mcu/weights"


def test_unknown_model():
    msg = user_error(build, "resnet9")
    assert "resnet9" in msg and "ds_cnn" in msg and set(ZOO) == {"resnet8", "ds_cnn"}


# --- bad weights files --------------------------------------------------------------------------------------------

def write_h5(path: Path, model: ResNet8, patch=None):
    """A ResNet-8 .h5 in the Keras layout from `model`'s tensors; patch(name, array) -> array edits one."""
    from flexround_mcu.zoo.resnet8 import keras_tensors

    with h5py.File(path, "w") as f:
        g = f.create_group("model_weights")
        for _, name, param, shape, _ in keras_tensors(model):
            a = np.zeros(shape, np.float32) + 0.01
            if patch is not None:
                a = patch(name, a)
            if a is not None:
                g.create_dataset(name, data=a)
    return path


def test_h5_roundtrip_layout(tmp_path):
    """Kernel (KH,KW,Cin,Cout) -> (Cout,Cin,KH,KW) and dense (64,10) -> (10,64) land in the right places."""
    rng = np.random.default_rng(1)
    arrays = {}

    def fill(name, a):
        arrays[name] = rng.standard_normal(a.shape).astype(np.float32)
        return arrays[name]

    m = load_keras_h5(ResNet8(), write_h5(tmp_path / "w.h5", ResNet8(), fill))
    np.testing.assert_array_equal(m.stack2.conv1.weight.detach().numpy(),
                                  arrays["conv2d_3/conv2d_3/kernel:0"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(m.stack3.shortcut.weight.detach().numpy(),
                                  arrays["conv2d_8/conv2d_8/kernel:0"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(m.fc.weight.detach().numpy(), arrays["dense/dense/kernel:0"].T)
    np.testing.assert_array_equal(m.stack2.bn2.running_var.numpy(),
                                  arrays["batch_normalization_4/batch_normalization_4/moving_variance:0"])


def test_h5_wrong_architecture(tmp_path):
    def wider(name, a):
        return np.zeros((3, 3, 16, 48), np.float32) if name == "conv2d_3/conv2d_3/kernel:0" else a

    path = write_h5(tmp_path / "other.h5", ResNet8(), wider)
    model = ResNet8()
    before = model.stack1.conv1.weight.detach().clone()
    msg = user_error(load_keras_h5, model, path)
    assert "model_weights/conv2d_3/conv2d_3/kernel:0" in msg and "(3, 3, 16, 48)" in msg and "(3, 3, 16, 32)" in msg
    assert str(path) in msg
    assert torch.equal(model.stack1.conv1.weight, before)  # left unchanged

    path = write_h5(tmp_path / "short.h5", ResNet8(), lambda n, a: None if n.startswith("dense/") else a)
    msg = user_error(load_keras_h5, ResNet8(), path)
    assert "model_weights/dense/dense/kernel:0" in msg and "missing" in msg


def test_h5_nan_and_inf(tmp_path):
    def nan(name, a):
        if name == "conv2d_6/conv2d_6/kernel:0":
            a[0, 1, 2, 3] = np.nan
        return a

    msg = user_error(load_keras_h5, ResNet8(), write_h5(tmp_path / "nan.h5", ResNet8(), nan))
    assert "conv2d_6/conv2d_6/kernel:0" in msg and "NaN" in msg

    def inf(name, a):
        if name.endswith("batch_normalization_5/moving_variance:0"):
            a[7] = np.inf
        return a

    msg = user_error(load_keras_h5, ResNet8(), write_h5(tmp_path / "inf.h5", ResNet8(), inf))
    assert "batch_normalization_5/batch_normalization_5/moving_variance:0" in msg


def test_h5_not_hdf5(tmp_path):
    p = tmp_path / "weights.h5"
    p.write_text("this is a text file\n")
    msg = user_error(load_keras_h5, ResNet8(), p)
    assert str(p) in msg and "HDF5" in msg
    assert "does not exist" in user_error(load_keras_h5, ResNet8(), tmp_path / "nope.h5")
    assert "HDF5" in user_error(build, "resnet8", weights=p)


def test_h5_topology_checked(tmp_path, shared_data):
    """A file whose model_config wires the layers differently is refused even when every shape fits."""
    import json
    import shutil

    p = tmp_path / "rewired.h5"
    shutil.copy(shared_data / H5_REL, p)
    os.chmod(p, 0o644)
    with h5py.File(p, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        for layer in cfg["config"]["layers"]:
            if layer["name"] == "batch_normalization_4":  # fed by conv2d_5 (the shortcut) instead of conv2d_4
                layer["inbound_nodes"][0][0][0] = "conv2d_5"
        f.attrs["model_config"] = json.dumps(cfg)
    msg = user_error(load_keras_h5, ResNet8(), p)
    assert "batch_normalization_4" in msg and "conv2d_5" in msg
