"""`flexround-mcu export MODEL` for every kind of MODEL (issue 7): the zoo's DS-CNN on the Cortex-M7 under QEMU, a
PyTorch MobileNetV2-style module traced by torch.fx (trained here on real CIFAR-10 images) on the Cortex-M7 under
QEMU, a float .tflite and a Keras .h5 on the host; data from a folder of .npz/.npy files; the declared input
preprocessing; and the one-line errors of a model or its data given wrong.

QEMU tests skip locally without arm-none-eabi-gcc / qemu-system-arm but FAIL on CI (CI set).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from flexround_mcu.cli import main
from flexround_mcu.data import load_data, load_dataset, load_folder
from flexround_mcu.errors import UserError
from flexround_mcu.workflow import ExportOptions, load_factory, model_kind, model_units, parse_input_shape
from helpers import cli_fails_cleanly as fails_cleanly
from helpers import user_error

import fx_models

REPO = Path(__file__).resolve().parents[1]
IC_FLOAT = "mlperf_tiny/ic/pretrainedResnet.tflite"
IC_H5 = "mlperf_tiny/ic/pretrainedResnet.h5"
KWS_FLOAT = "mlperf_tiny/kws/kws_ref_model_float32.tflite"
FX_FACTORY = "tests.fx_models:mobilenet_v2_tiny"




def export(capsys, model: str, out: Path, *args) -> dict:
    code = main(["export", model, "--out", str(out), *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((out / "report.json").read_text())


def zoo_float_hits(name: str, dataset: str, limit: int) -> int:
    """How many of the first `limit` items the zoo model's float graph gets right (its own input convention)."""
    import torch

    from flexround_mcu.quant.graph import GraphModule
    from flexround_mcu.zoo import build_graph, float_input

    graph, _ = build_graph(name)
    ds = load_dataset(dataset, limit=limit)
    with torch.no_grad():
        logits = GraphModule(graph).eval()(float_input(ds), upto=graph.logits).numpy()
    return int((logits.argmax(1) == ds.y).sum())


# --------------------------------------------------------------------------------------------------- DS-CNN, M7


@pytest.mark.slow
@pytest.mark.tflm
def assert_bitexact_on_cortex_m4(project: Path) -> None:
    """The same exported project (dsp kernels) on the Cortex-M4 board: every test input matches."""
    from flexround_mcu.toolchain import run_on_target

    res = run_on_target(project, "cortex-m4", count_instructions=False)
    assert res.lines[-1] == "SUMMARY inputs=20 mismatches=0", res.mismatch_lines[:5]
    assert (res.inputs, res.mismatches, res.returncode) == (20, 0, 0)


def assert_ram_budget_bitexact(out: Path, dataset: str, tmp_path: Path, target: str, budget: int) -> dict:
    """The export's graph (OUT/model.tflite) exported again for `target` with --ram-budget's planning: every test
    input matches under QEMU. Returns the project's project.json."""
    from flexround_mcu.codegen import export_c_project
    from flexround_mcu.frontends.tflite import load_tflite
    from flexround_mcu.sim.runner import Simulator
    from flexround_mcu.toolchain import run_on_target

    g = load_tflite(out / "model.tflite")
    tin = g.tensors[g.inputs[0]]
    x = load_dataset(dataset, limit=5).quantize_input(float(tin.scale[0]), int(tin.zero_point[0]))
    y = Simulator(g).run(x)[g.outputs[0]]
    project = export_c_project(g, tmp_path / f"budget-{target}", x, y.reshape(len(x), -1), target=target,
                               ram_budget=budget)
    res = run_on_target(project, target, count_instructions=False)
    assert (res.inputs, res.mismatches, res.returncode) == (5, 0, 0), res.mismatch_lines[:5]
    return json.loads((project / "project.json").read_text())


def assert_bitexact_on_cortex_m55(out: Path, dataset: str, tmp_path: Path) -> str:
    """The export's graph (OUT/model.tflite, written with --emit-tflite) exported again for the Cortex-M55 (its
    kernel set: mve) with the same first 20 test inputs and the simulator's outputs: every one matches on the M55
    under QEMU. Returns the M55 project's model.c."""
    from flexround_mcu.codegen import export_c_project
    from flexround_mcu.frontends.tflite import load_tflite
    from flexround_mcu.sim.runner import Simulator
    from flexround_mcu.toolchain import run_on_target

    g = load_tflite(out / "model.tflite")
    tin = g.tensors[g.inputs[0]]
    x = load_dataset(dataset, limit=20).quantize_input(float(tin.scale[0]), int(tin.zero_point[0]))
    y = Simulator(g).run(x)[g.outputs[0]]
    project = export_c_project(g, tmp_path / "m55", x, y.reshape(len(x), -1), target="cortex-m55")
    res = run_on_target(project, "cortex-m55", count_instructions=False)
    assert res.lines[-1] == "SUMMARY inputs=20 mismatches=0", res.mismatch_lines[:5]
    assert (res.inputs, res.mismatches, res.returncode) == (20, 0, 0)
    return (project / "model.c").read_text()


def test_ds_cnn_on_cortex_m7(shared_data, capsys, tmp_path, arm_tools):
    """FlexRound W4 per-tensor, first/last 8-bit (the defaults) at 30 iterations per block instead of 500, to keep
    the suite short. Measured by hand at the defaults (`flexround-mcu export ds_cnn --target cortex-m7`): float
    90.10%, fake-quant and int8 simulator 90.30%, QEMU 0 of 20 mismatching. The float accuracy is tf.lite's on the
    float .tflite with its int8-stored pointwise weights dequantized (901/1000); tf.lite on the file as shipped runs
    those convs as hybrid int8 kernels and gets 900/1000."""
    from test_frontends import dequantized_copy, tflite_reference

    r = export(capsys, "ds_cnn", tmp_path / "ds", "--target", "cortex-m7", "--iters", "30", "--emit-tflite")
    acc = r["accuracy"]
    assert (r["model"], r["method"], r["wbits"], r["granularity"]) == ("ds_cnn", "flexround", 4, "tensor")
    assert r["model_source"]["kind"] == "zoo" and r["model_source"]["source"].endswith(KWS_FLOAT)
    assert (acc["dataset"], acc["n"]) == ("kws01", 1000)
    # kws01 is the only KWS data: calibration draws from the evaluation set (all 1,000: fewer than 1,024)
    assert r["calibration"] == {"dataset": "kws01", "images": 1000, "same_as_evaluation": True}

    ds = load_dataset("kws01")
    shipped = (shared_data / KWS_FLOAT).read_bytes()
    tf_float, _ = tflite_reference(dequantized_copy(shipped), ds.to_float())
    tf_shipped, _ = tflite_reference(shipped, ds.to_float())  # pointwise weights stored int8: hybrid kernels
    assert acc["float"] == float((tf_float.argmax(1) == ds.y).mean()) == 0.901
    assert float((tf_shipped.argmax(1) == ds.y).mean()) == 0.900

    assert acc["int_sim"] >= acc["float"] - 0.015
    assert abs(acc["int_sim"] - acc["fake_quant"]) <= 0.003
    assert r["bitexact"] == {"host_c": {"inputs": 20, "mismatches": 0}, "qemu": {"inputs": 20, "mismatches": 0}}
    assert_bitexact_on_cortex_m4(tmp_path / "ds")
    m55 = assert_bitexact_on_cortex_m55(tmp_path / "ds", "kws01", tmp_path)
    # the M55 runs the Helium kernels: the four int4 depthwise, the four pointwise and the first conv, the FC
    assert [m55.count(f"{k}_mve(") for k in ("frk_depthwise_conv_s4", "frk_convolve_s4", "frk_convolve_s8",
                                              "frk_fully_connected_s8")] == [4, 4, 1, 1]
    assert r["instructions_per_inference"] > 0 and r["memory"]["flash_bytes"] > r["memory"]["weight_bytes"]
    mem = r["memory"]  # the RAM split the M7 measured, also written after the plan in memory.txt
    assert mem["ram_bytes"] == sum(mem["ram_split"][k] for k in ("arena", "scratch", "statics", "stack_used"))
    assert (mem["ram_split"]["arena"], mem["ram_split"]["scratch"]) == (mem["arena_bytes"], mem["scratch_bytes"])
    assert mem["ram_bytes"] < mem["ram_bytes_linked"]
    assert f"= {mem['ram_bytes']} bytes" in (tmp_path / "ds" / "memory.txt").read_text()
    bits = [la["bits"] for la in r["layers"] if la["bits"] is not None]  # the ops with weights
    assert bits[0] == bits[-1] == 8 and set(bits[1:-1]) == {4}
    # per-layer instructions on the M7: every op counted; the layers and the tail add up to the total (rounding)
    counted = [la["instructions"] for la in r["layers"]]
    assert all(v is not None and v > 0 for v in counted)
    assert sum(counted) + r["instructions_after_last_layer"] == pytest.approx(r["instructions_per_inference"], abs=2)
    assert r["input"] == {"shape_chw": [1, 49, 10], "scale": r["input"]["scale"], "zero_point": 83}
    assert np.float32(r["input"]["scale"]) == np.float32(0.5847029)
    # issue 13: every depthwise and pointwise output over its input (free), and one 25x5x64 map under a budget
    assert mem["arena_bytes"] <= 9536 < mem["arena_without_inplace_bytes"] == 16000
    for target, budget in (("cortex-m7", 8704), ("cortex-m55", 9152)):  # arena + scratch: 8000 + the rings
        project = assert_ram_budget_bitexact(tmp_path / "ds", "kws01", tmp_path, target, budget)
        assert project["arena_bytes"] == 8000 and project["arena_bytes"] + project["scratch_bytes"] <= budget


# ------------------------------------------------------------------------------------- PyTorch (torch.fx), M7


@pytest.mark.slow
def test_pytorch_mobilenet_v2_through_torch_fx_on_cortex_m7(shared_data, capsys, tmp_path, arm_tools, monkeypatch):
    monkeypatch.chdir(REPO)  # package.module:factory is imported from the working directory
    args = ["--input-shape", "3,32,32", "--input-scale", fx_models.INPUT_SCALE,
            "--input-zero-point", str(fx_models.INPUT_ZERO_POINT), "--dataset", "cifar10-test-5000",
            "--calib-dataset", "cifar10-calib", "--iters", "20", "--calib-size", "128", "--eval-size", "500"]
    r = export(capsys, FX_FACTORY, tmp_path / "fx", "--target", "cortex-m7", *args)
    acc = r["accuracy"]
    assert r["model"] == FX_FACTORY and r["model_source"] == {"kind": "torch", "source": FX_FACTORY,
                                                               "weights_found_in": None}
    assert r["input"] == {"shape_chw": [3, 32, 32], "scale": pytest.approx(1 / 255, rel=1e-12), "zero_point": -128}
    assert r["calibration"] == {"dataset": "cifar10-calib", "images": 128, "same_as_evaluation": False}
    assert r["bitexact"]["qemu"] == {"inputs": 20, "mismatches": 0}
    assert r["bitexact"]["host_c"] == {"inputs": 20, "mismatches": 0}
    assert_bitexact_on_cortex_m4(tmp_path / "fx")
    # the same export for the M55 (its Helium kernels; a .tflite cannot hold this model's explicit padding)
    r55 = export(capsys, FX_FACTORY, tmp_path / "fx55", "--target", "cortex-m55", *args)
    assert r55["kernels"] == "mve" and r55["bitexact"]["qemu"] == {"inputs": 20, "mismatches": 0}
    assert "frk_convolve_s4_mve(" in (tmp_path / "fx55" / "model.c").read_text()
    # trained for a few epochs on 4,000 images: far from good, far above chance (10%)
    assert acc["float"] >= 0.35 and acc["int_sim"] >= 0.30
    assert acc["int_sim"] >= acc["float"] - 0.03
    # the C model calls what the module holds: 5 depthwise convs, 3 residual adds, int4 inside, int8 first/last
    calls = (tmp_path / "fx" / "model.c").read_text()
    kernels = ("frk_depthwise_conv_s4", "frk_elementwise_add_s8", "frk_convolve_s4", "frk_convolve_s8",
               "frk_fully_connected_s8")
    assert [calls.count(f"{k}(") + calls.count(f"{k}_dsp(") for k in kernels] == [5, 3, 10, 1, 1]
    # a Cortex-M export runs the DSP kernels wherever the layer allows (docs/arithmetic.md 6); here: all of them
    assert [calls.count(f"{k}(") for k in kernels] == [0, 0, 0, 0, 0], calls[:3000]
    blocks = [b["block"] for b in r["reconstruction"]["blocks"]]
    assert sum(b.startswith("add") for b in blocks) == 3  # three residual blocks learned as one block each


def test_fx_factory_trains_once_then_loads(shared_data, monkeypatch, tmp_path):
    """The factory's cache: a second call loads the same trained weights instead of training again."""
    import torch

    fx_models.mobilenet_v2_tiny()  # trains, or loads what an earlier test trained
    first = fx_models.last_training.copy()
    model = fx_models.mobilenet_v2_tiny()
    assert fx_models.last_training["trained"] is False and fx_models.last_training["cache"] == first["cache"]
    assert not model.training and isinstance(model, fx_models.MobileNetV2Tiny)
    reference = fx_models.MobileNetV2Tiny()
    reference.load_state_dict(torch.load(first["cache"], weights_only=True))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))
        assert not torch.equal(model(x), fx_models.MobileNetV2Tiny().eval()(x))  # trained, not the initial weights


# ------------------------------------------------------------------------------------- float .tflite and Keras


def _write_folder(folder: Path, ds, form: str) -> Path:
    folder.mkdir(parents=True)
    if form == "npy":
        np.save(folder / "x.npy", ds.x)
        np.save(folder / "y.npy", ds.y)
    else:
        half = len(ds) // 2
        np.savez(folder / "part0.npz", x=ds.x[:half], y=ds.y[:half])
        np.savez(folder / "part1.npz", x=ds.x[half:], y=ds.y[half:])
    return folder


def test_float_tflite_with_data_from_a_folder(shared_data, capsys, tmp_path):
    """MLPerf Tiny's float ResNet-8 .tflite with its declared preprocessing (raw pixels: q = pixel - 128) and its
    evaluation data from a folder of .npz files: the float accuracy is the zoo ResNet-8's on the same images."""
    ic01 = load_dataset("ic01", limit=100)
    folder = _write_folder(tmp_path / "ic01", ic01, "npz")
    model = str(shared_data / IC_FLOAT)
    r = export(capsys, model, tmp_path / "t", "--input-scale", "1", "--input-zero-point", "-128",
               "--dataset", str(folder), "--calib-dataset", "cifar10-calib", "--calib-size", "64",
               "--iters", "10", "--test-inputs", "10")
    acc = r["accuracy"]
    assert r["model"] == model and r["model_source"]["kind"] == "tflite"
    assert r["weights_file"] == str((shared_data / IC_FLOAT).resolve())
    assert (acc["dataset"], acc["n"]) == (str(folder), 100)
    assert round(acc["float"] * 100) == zoo_float_hits("resnet8", "ic01", 100)
    assert acc["int_sim"] >= acc["float"] - 0.05
    assert r["bitexact"] == {"host_c": {"inputs": 10, "mismatches": 0}, "qemu": None}


@pytest.mark.tflm
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' numpy 2 notice
def test_keras_h5(shared_data, capsys, tmp_path):
    pytest.importorskip("tensorflow")
    model = str(shared_data / IC_H5)
    r = export(capsys, model, tmp_path / "k", "--input-scale", "1", "--input-zero-point", "-128",
               "--dataset", "cifar10-test-5000", "--calib-dataset", "cifar10-calib", "--eval-size", "100",
               "--calib-size", "64", "--method", "rtn", "--wbits", "8", "--test-inputs", "10",
               "--input-shape", "3,32,32")
    acc = r["accuracy"]
    assert r["model_source"]["kind"] == "keras" and (acc["dataset"], acc["n"]) == ("cifar10-test-5000[:100]", 100)
    assert round(acc["float"] * 100) == zoo_float_hits("resnet8", "cifar10-test-5000", 100)
    # on 100 images one image is a point: the zoo ResNet-8 at these settings also gives 73% against 76% (measured)
    assert acc["int_sim"] >= acc["float"] - 0.05
    assert r["bitexact"]["host_c"] == {"inputs": 10, "mismatches": 0}


@pytest.mark.tflm
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_saved_model_folder(shared_data, capsys, tmp_path):
    """The MLPerf Tiny KWS SavedModel (float weights) with the int8 reference model's input quantization."""
    pytest.importorskip("tensorflow")
    model = str(shared_data / "mlperf_tiny/kws/kws_ref_model_savedmodel")
    r = export(capsys, model, tmp_path / "s", "--input-scale", "0.5847029", "--input-zero-point", "83",
               "--dataset", "kws01", "--calib-dataset", "kws01", "--method", "rtn", "--wbits", "8",
               "--test-inputs", "5")
    acc = r["accuracy"]
    assert r["model_source"]["kind"] == "saved_model" and r["calibration"]["same_as_evaluation"] is True
    assert acc["float"] == 0.913  # its float weights: above the 90.1% of the .tflite's int8-stored ones
    assert acc["int_sim"] >= acc["float"] - 0.02
    assert r["bitexact"]["host_c"] == {"inputs": 5, "mismatches": 0}


# --------------------------------------------------------------------------------------- pieces, without a run


def test_model_kinds_and_folder_safe_labels(shared_data, tmp_path):
    assert model_kind("ds_cnn") == ("zoo", "ds_cnn")
    assert model_kind(str(shared_data / IC_FLOAT)) == ("tflite", "pretrainedResnet")
    assert model_kind(str(shared_data / IC_H5)) == ("keras", "pretrainedResnet")
    assert model_kind(str(shared_data / "mlperf_tiny/kws/kws_ref_model_savedmodel") + "/") == \
        ("saved_model", "kws_ref_model_savedmodel")
    kind, label = model_kind(FX_FACTORY)
    assert (kind, label) == ("torch", "tests.fx_models.mobilenet_v2_tiny") and ":" not in label
    assert parse_input_shape(" 3, 32,32") == (3, 32, 32) and parse_input_shape(None) is None


def test_default_out_folder_is_folder_safe(shared_data, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = str(shared_data / IC_FLOAT)
    code = main(["export", model, "--method", "rtn", "--input-scale", "1", "--input-zero-point", "-128",
                 "--dataset", "cifar10-test-first20", "--calib-dataset", "cifar10-calib", "--calib-size", "16",
                 "--test-inputs", "2"])
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "out" / "pretrainedResnet-rtn-w4-tensor-host"
    assert json.loads((out / "report.json").read_text())["bitexact"]["host_c"] == {"inputs": 2, "mismatches": 0}


@pytest.mark.parametrize("name, limit", [("cifar10-test-first20", None), ("kws01", 50)])
def test_model_units_are_the_zoo_convention(shared_data, name, limit):
    """For the zoo's own data, the declared-preprocessing path gives the float inputs the zoo gave (raw pixels for
    ResNet-8, dequantized MFCC for DS-CNN) bit for bit, and the int8 input is the data itself."""
    from flexround_mcu.zoo import ZOO
    entry = ZOO["resnet8" if name.startswith("cifar") else "ds_cnn"]
    ds = load_dataset(name, limit=limit)
    mu = model_units(ds, entry.input_scale, entry.input_zero_point)
    assert np.array_equal(mu.to_float(), ds.to_float())
    q = mu.quantize_input(entry.input_scale, entry.input_zero_point)
    assert np.array_equal(q, ds.x.astype(np.int16) - 128 if ds.x.dtype == np.uint8 else ds.x)


def test_declared_preprocessing_of_images():
    """pixel / 255 declared as scale 1/255, zero point -128: the model sees pixel / 255, its int8 input is pixel - 128;
    float data are the model's input itself."""
    from flexround_mcu.data import Dataset
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    ds = Dataset("p", pixels, np.zeros(1, np.int64), 1.0, 0.0)
    mu = model_units(ds, 1 / 255, -128)
    np.testing.assert_allclose(mu.to_float(), pixels / 255.0, rtol=1e-7, atol=0)
    assert np.array_equal(mu.quantize_input(1 / 255, -128), pixels.astype(np.int16) - 128)
    centered = model_units(ds, 1 / 128, 0)  # (pixel - 128) / 128
    np.testing.assert_array_equal(centered.to_float(), (pixels.astype(np.float32) - 128) / 128)
    floats = Dataset("f", pixels.astype(np.float32) / 255, np.zeros(1, np.int64), 1.0, 0.0)
    assert model_units(floats, 1 / 255, -128) is floats


@pytest.mark.parametrize("form", ["npy", "npz"])
def test_data_folder_forms(shared_data, tmp_path, form):
    ds = load_dataset("kws01", limit=30)
    kws = ds.x[..., 0]  # (N, 49, 10): one channel added back
    src = type(ds)("k", kws, ds.y, 1.0, 0.0)
    folder = _write_folder(tmp_path / "d", src, form)
    got = load_data(str(folder))
    assert got.x.shape == (30, 49, 10, 1) and got.x.dtype == np.int8 and got.name == str(folder)
    assert np.array_equal(got.x, ds.x) and np.array_equal(got.y, ds.y)
    assert len(load_folder(folder, limit=7)) == 7
    if form == "npz":
        one = load_data(str(folder / "part0.npz"))
        assert np.array_equal(one.x, ds.x[:15])


@pytest.mark.parametrize("case, expect", [
    ("no_y", "'y'"), ("lengths", "labels"), ("float_labels", "integer class labels"), ("nan", "NaN"),
    ("int32_x", "uint8 or int8"), ("both_forms", "both"), ("only_x", "y.npy is missing"), ("empty", "no x.npy"),
    ("negative", "negative label"), ("pickle", "not a readable"), ("shape", "(N, H, W, C)")])
def test_bad_data_folders(tmp_path, case, expect):
    d = tmp_path / case
    d.mkdir()
    x, y = np.zeros((4, 5, 5, 1), np.uint8), np.arange(4)
    if case == "no_y":
        np.savez(d / "a.npz", x=x, labels=y)
    elif case == "lengths":
        np.savez(d / "a.npz", x=x, y=y[:3])
    elif case == "float_labels":
        np.savez(d / "a.npz", x=x, y=y.astype(np.float32))
    elif case == "nan":
        np.savez(d / "a.npz", x=np.full((4, 5, 5, 1), np.nan, np.float32), y=y)
    elif case == "int32_x":
        np.savez(d / "a.npz", x=x.astype(np.int32), y=y)
    elif case == "both_forms":
        np.savez(d / "a.npz", x=x, y=y)
        np.save(d / "x.npy", x)
    elif case == "only_x":
        np.save(d / "x.npy", x)
    elif case == "negative":
        np.savez(d / "a.npz", x=x, y=y - 1)
    elif case == "pickle":
        np.save(d / "x.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
        np.save(d / "y.npy", y)
    elif case == "shape":
        np.savez(d / "a.npz", x=np.zeros((4, 5), np.uint8), y=y)
    assert expect in user_error(load_data, str(d))


def test_factory_is_imported_from_the_working_directory(tmp_path, monkeypatch):
    """The console script does not have the working directory on sys.path: load_factory adds it for the import."""
    pkg = tmp_path / "frmcu_user_models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text("import torch\n\n\ndef tiny():\n"
                                 "    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        model = load_factory("frmcu_user_models.nets:tiny")
        assert not model.training and type(model).__name__ == "Sequential"
        assert str(tmp_path) not in sys.path  # only for the import
    finally:
        for name in [m for m in sys.modules if m.startswith("frmcu_user_models")]:
            del sys.modules[name]


def test_zoo_options_that_contradict(shared_data):
    from flexround_mcu.workflow import resolve_model
    line = user_error(resolve_model, ExportOptions(model="ds_cnn", input_scale=0.5))
    assert "--input-scale" in line and "zoo" in line
    graph, info = resolve_model(ExportOptions(model="ds_cnn", input_scale=0.5847029, input_zero_point=83))
    assert info.input_zero_point == 83  # the zoo's own values restated are accepted
    assert "--input-shape" in user_error(resolve_model, ExportOptions(model="ds_cnn", input_shape="1,10,49"))


# --------------------------------------------------------------------------------------------- bad input, CLI


def _tflite_args(shared_data, *extra):
    return ["export", str(shared_data / IC_FLOAT), "--calib-dataset", "cifar10-calib", *extra]


def test_non_zoo_model_without_declared_preprocessing(shared_data, capsys, tmp_path):
    line = fails_cleanly(capsys, *_tflite_args(shared_data, "--dataset", "ic01", "--out", str(tmp_path / "o")))
    assert "--input-scale and --input-zero-point" in line and "pretrainedResnet.tflite" in line
    line = fails_cleanly(capsys, *_tflite_args(shared_data, "--dataset", "ic01", "--input-scale", "1",
                                               "--out", str(tmp_path / "o")))
    assert "--input-zero-point" in line and "--input-scale " not in line
    line = fails_cleanly(capsys, "export", str(shared_data / IC_FLOAT), "--input-scale", "1",
                         "--input-zero-point", "-128", "--out", str(tmp_path / "o"))
    assert "--dataset" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("factory, expect", [
    ("tests.fx_models:missing", "has no 'missing'"),
    ("tests.fx_models:not_a_module", "returned a builtins.dict, not a torch.nn.Module"),
    ("tests.fx_models:broken", "RuntimeError: the checkpoint file is missing"),
    ("no_such_package_xyz.models:net", "no module named 'no_such_package_xyz'"),
])
def test_bad_factories(capsys, tmp_path, monkeypatch, factory, expect):
    monkeypatch.chdir(REPO)
    line = fails_cleanly(capsys, "export", factory, "--input-shape", "3,32,32", "--input-scale", "1/255",
                         "--input-zero-point", "-128", "--dataset", "cifar10-test-5000",
                         "--calib-dataset", "cifar10-calib", "--out", str(tmp_path / "o"))
    assert expect in line and factory in line


@pytest.mark.parametrize("shape", ["3,32", "3x32x32", "3,0,32", "a,b,c"])
def test_input_shape_that_is_not_chw(capsys, tmp_path, shape):
    line = fails_cleanly(capsys, "export", FX_FACTORY, "--input-shape", shape, "--input-scale", "1/255",
                         "--input-zero-point", "-128", "--dataset", "cifar10-test-5000",
                         "--calib-dataset", "cifar10-calib", "--out", str(tmp_path / "o"))
    assert "--input-shape" in line and "C,H,W" in line and shape in line


def test_torch_model_without_input_shape(capsys, tmp_path):
    line = fails_cleanly(capsys, "export", FX_FACTORY, "--input-scale", "1/255", "--input-zero-point", "-128",
                         "--dataset", "cifar10-test-5000", "--calib-dataset", "cifar10-calib",
                         "--out", str(tmp_path / "o"))
    assert "--input-shape" in line


def test_npz_folder_without_labels(shared_data, capsys, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    np.savez(d / "images.npz", x=load_dataset("ic01", limit=8).x)
    line = fails_cleanly(capsys, *_tflite_args(shared_data, "--dataset", str(d), "--input-scale", "1",
                                               "--input-zero-point", "-128", "--out", str(tmp_path / "o")))
    assert "images.npz" in line and "no array 'y'" in line


@pytest.mark.parametrize("extra, expect", [
    (["--dataset", "kws01"], "(49, 10, 1)"),                        # data of another model
    (["--dataset", "cifar10-calib"], "calibration only"),          # training images as the evaluation set
    (["--dataset", "cifar10-test-5000", "--input-shape", "3,16,16"], "takes inputs of shape 3,32,32"),
    (["--dataset", "cifar10-test-5000", "--weights", "w.h5"], "--weights is for zoo models"),
    (["--dataset", "no-such-set"], "unknown dataset 'no-such-set'"),
])
def test_data_and_options_that_do_not_fit(shared_data, capsys, tmp_path, extra, expect):
    line = fails_cleanly(capsys, *_tflite_args(shared_data, "--input-scale", "1", "--input-zero-point", "-128",
                                               "--out", str(tmp_path / "o"), *extra))
    assert expect in line


def test_models_that_are_none_of_the_forms(capsys, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "folder").mkdir()
    for model, expect in [(str(tmp_path / "model.onnx"), "unknown model file type '.onnx'"),
                          (str(tmp_path / "missing.tflite"), "no such file"),
                          (str(tmp_path / "folder"), "without saved_model.pb"),
                          ("mobilenet", "unknown model 'mobilenet'")]:
        line = fails_cleanly(capsys, "export", model, "--out", str(tmp_path / "o"))
        assert expect in line
        if expect != "no such file":
            assert "package.module:factory" in line and "resnet8" in line


def test_input_scale_must_be_a_positive_number(capsys, tmp_path):
    for bad in ("0", "-1", "1/0", "abc"):
        line = fails_cleanly(capsys, "export", FX_FACTORY, "--input-scale", bad, "--out", str(tmp_path / "o"))
        assert "--input-scale" in line


def test_kernel_set_option(shared_data, capsys, tmp_path):
    """--kernels picks the C kernels (default: the target's); both builds are bit-exact with the simulator, and
    report.json and model.c say which ran."""
    host = export(capsys, "ds_cnn", tmp_path / "host", "--iters", "5", "--test-inputs", "5")
    dsp = export(capsys, "ds_cnn", tmp_path / "dsp", "--iters", "5", "--test-inputs", "5", "--kernels", "dsp")
    assert (host["kernels"], dsp["kernels"]) == ("portable", "dsp")
    for r in (host, dsp):
        assert r["bitexact"]["host_c"] == {"inputs": 5, "mismatches": 0}
    assert "_dsp(" not in (tmp_path / "host" / "model.c").read_text()
    assert (tmp_path / "dsp" / "model.c").read_text().count("frk_depthwise_conv_s4_dsp(") == 4
    # the dsp layouts pad only the int4 depthwise filters: 9 taps in 5 words per group of 4 channels, 2 bytes more
    # than 18 packed bytes, for 16 groups in each of the 4 depthwise layers (docs/arithmetic.md 6.2)
    assert dsp["memory"]["weight_bytes"] == host["memory"]["weight_bytes"] + 4 * 16 * 2
    assert main(["export", "ds_cnn", "--kernels", "fast", "--out", str(tmp_path / "x")]) != 0


def test_ram_budget_cost_on_a_board(shared_data, capsys, tmp_path, arm_tools):
    """A --ram-budget plan with ring buffers on a board: report.json says what it costs, from the plan without the
    budget built and run too."""
    r = export(capsys, "ds_cnn", tmp_path / "m7", "--iters", "5", "--test-inputs", "3", "--target", "cortex-m7",
               "--ram-budget", "8704")
    cost = r["memory"]["ram_budget_cost"]
    assert r["bitexact"]["qemu"] == {"inputs": 3, "mismatches": 0} and r["memory"]["arena_bytes"] == 8000
    assert cost["instructions"] == r["instructions_per_inference"]
    assert cost["extra_instructions"] == cost["instructions"] - cost["instructions_without_budget"] > 0
    assert cost["arena_bytes_without_budget"] > 8704
    assert not list(tmp_path.glob(".m7.nobudget-*"))  # the measuring build is gone


def test_ram_budget_option(shared_data, capsys, tmp_path):
    """--ram-budget: a budget the plan meets gives the same plan as none (report.json records it); one below the
    smallest plan fails with one line naming the peak and what would fit, before any file is written."""
    r = export(capsys, "ds_cnn", tmp_path / "ok", "--iters", "5", "--test-inputs", "5", "--kernels", "dsp",
               "--ram-budget", "8704")
    assert r["memory"]["ram_budget"] == 8704 and r["bitexact"]["host_c"] == {"inputs": 5, "mismatches": 0}
    assert r["memory"]["ram_budget_cost"] is None  # measured on a board only
    # the arena one 25x5x64 map; scratch the depthwise kernels' zero-point pixel (64) and their rings (2 x 320)
    assert (r["memory"]["arena_bytes"], r["memory"]["scratch_bytes"]) == (8000, 704)
    assert any(line.startswith("ring: ") for line in r["memory"]["shared_memory"])
    # the plan needs the quantized graph: the error comes after the progress lines, as the last line, exit code 2
    code = main(["export", "ds_cnn", "--iters", "5", "--test-inputs", "5", "--kernels", "dsp", "--ram-budget", "8000",
                 "--out", str(tmp_path / "small")])
    stderr = capsys.readouterr().err
    err = stderr.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: ") and "Traceback" not in stderr
    assert "over --ram-budget 8000" in err and "its peak is at op" in err and "pass --ram-budget 8704" in err
    assert not (tmp_path / "small").exists()
