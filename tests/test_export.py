"""`flexround-mcu export`: the ResNet-8 path from PyTorch to C, its report and its bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from flexround_mcu.cli import main
from helpers import cli_fails_cleanly as fails_cleanly

TFLITE_INT8_PER_CHANNEL = 0.7620  # the MLPerf Tiny reference int8 model on the same 5,000 images (measured)


def export(capsys, out: Path, *args) -> dict:
    code = main(["export", "resnet8", "--target", "host", "--out", str(out), *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_rtn_w8_resnet8_report(shared_data, capsys, tmp_path, granularity):
    r = export(capsys, tmp_path / "out", "--method", "rtn", "--wbits", "8", "--granularity", granularity)
    acc = r["accuracy"]
    assert (r["model"], r["target"], r["method"], r["wbits"], r["abits"]) == ("resnet8", "host", "rtn", 8, 8)
    assert acc["dataset"] == "cifar10-test-5000" and acc["n"] == 5000
    assert acc["float"] == 0.7644                       # the Keras model's figure, exactly
    assert abs(acc["int_sim"] - acc["float"]) <= 0.005
    assert abs(acc["fake_quant"] - acc["int_sim"]) <= 0.003
    assert r["bitexact"]["host_c"] == {"inputs": 100, "mismatches": 0}
    assert r["bitexact"]["qemu"] is None and r["instructions_per_inference"] is None  # stages not run: null
    # the residual ADDs fused with their convs (issue 13): two 32x32x16 maps at the peak, not three
    assert r["memory"]["arena_bytes"] <= 32768 < r["memory"]["arena_without_inplace_bytes"] == 49152
    assert sum(line.startswith("fused: ") for line in r["memory"]["shared_memory"]) == 3
    # the host build runs the portable kernels: scratch is the fused convs' one-row bands (32 x 16 bytes); no
    # board, so no measured RAM
    assert r["memory"]["scratch_bytes"] == 512 and r["memory"]["ram_bytes"] is None
    assert r["memory"]["ram_split"] is None
    if granularity == "channel":
        assert abs(acc["int_sim"] - TFLITE_INT8_PER_CHANNEL) <= 0.003
    assert {layer["bits"] for layer in weighted(r)} == {8}


def weighted(report: dict) -> list[dict]:
    """The rows of report.json's layers (one per op) that have weights: conv, depthwise and fully connected."""
    return [la for la in report["layers"] if la["bits"] is not None]


def _sources(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "build" not in p.relative_to(folder).parts and p.name != "report.json"}


def test_same_command_gives_byte_identical_sources(shared_data, capsys, tmp_path):
    args = ["--wbits", "4", "--eval-size", "64", "--calib-size", "64", "--test-inputs", "8", "--iters", "20"]
    r1 = export(capsys, tmp_path / "a", *args)
    r2 = export(capsys, tmp_path / "b", *args)
    a, b = _sources(tmp_path / "a"), _sources(tmp_path / "b")
    assert set(a) >= {"weights.c", "model.c", "main.c", "Makefile"}
    assert a == b
    assert r1["bitexact"]["host_c"] == {"inputs": 8, "mismatches": 0}
    # the first and last layers stay at 8 bits, the others are 4-bit values in [-7, 7]
    bits = [layer["bits"] for layer in weighted(r2)]
    assert bits[0] == bits[-1] == 8 and set(bits[1:-1]) == {4}
    # 4-bit filters are written packed: two weights a byte, against the int8 layout of the same arrays
    layers = {la["layer"]: la for la in weighted(r2)}
    for la in layers.values():
        if la["bits"] == 4:
            assert la["filter_dtype"] == "int4"
            assert la["bytes_int8_containers"] - la["bytes"] == la["weights"] - (la["weights"] + 1) // 2
    assert r2["memory"]["weight_bytes"] == sum(la["bytes"] for la in layers.values())
    assert r2["memory"]["weight_bytes"] < 0.55 * r2["memory"]["weight_bytes_int8_containers"]


def test_emit_tflite_writes_the_graph_tflite_micro_runs(shared_data, capsys, tmp_path):
    from flexround_mcu.frontends.tflite import load_tflite
    r = export(capsys, tmp_path / "t", "--method", "rtn", "--eval-size", "16", "--calib-size", "16",
               "--test-inputs", "3", "--emit-tflite")
    assert r["tflite"] == "model.tflite"
    g = load_tflite(tmp_path / "t" / "model.tflite")
    int4 = [t for t in g.tensors if t.dtype == "int4"]
    assert len(int4) == sum(1 for la in weighted(r) if la["bits"] == 4) > 0


def test_rerun_replaces_own_output(shared_data, capsys, tmp_path):
    args = ["--eval-size", "16", "--calib-size", "16", "--test-inputs", "4", "--iters", "20"]
    export(capsys, tmp_path / "o", *args)
    (tmp_path / "o" / "stale.txt").write_text("from before")
    export(capsys, tmp_path / "o", *args)
    assert not (tmp_path / "o" / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left


# ------------------------------------------------------------------------------------------------ bad input


def test_unknown_model_lists_known_ones(capsys, tmp_path):
    line = fails_cleanly(capsys, "export", "resnet9", "--out", str(tmp_path / "o"))
    assert "resnet9" in line and "resnet8" in line


@pytest.mark.parametrize("bits", ["5", "1"])
def test_unsupported_weight_bits(capsys, tmp_path, bits):
    line = fails_cleanly(capsys, "export", "resnet8", "--wbits", bits, "--out", str(tmp_path / "o"))
    assert "--wbits" in line and bits in line


def _copy_weights(shared_data: Path, tmp_path: Path, edit) -> Path:
    path = tmp_path / "weights.h5"
    shutil.copy(shared_data / "mlperf_tiny/ic/pretrainedResnet.h5", path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def test_weights_of_another_architecture(shared_data, capsys, tmp_path):
    def widen(f):
        key = "model_weights/conv2d_3/conv2d_3/kernel:0"
        del f[key]
        f[key] = np.zeros((3, 3, 16, 48), np.float32)
    path = _copy_weights(shared_data, tmp_path, widen)
    line = fails_cleanly(capsys, "export", "resnet8", "--weights", str(path), "--out", str(tmp_path / "o"))
    assert "conv2d_3" in line and "kernel" in line


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights(shared_data, capsys, tmp_path, bad):
    def poison(f):
        f["model_weights/conv2d_1/conv2d_1/kernel:0"][0, 0, 0, 0] = bad
    path = _copy_weights(shared_data, tmp_path, poison)
    line = fails_cleanly(capsys, "export", "resnet8", "--weights", str(path), "--out", str(tmp_path / "o"))
    assert "conv2d_1" in line


def test_existing_folder_that_is_not_ours(shared_data, capsys, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not lose me")
    line = fails_cleanly(capsys, "export", "resnet8", "--out", str(out))
    assert str(out) in line and "--force" in line
    assert (out / "thesis.tex").read_text() == "do not lose me"


@pytest.mark.slow
def test_flexround_w4_default_export(shared_data, capsys, tmp_path):
    """The headline: default settings are FlexRound, 4-bit per-tensor weights, first/last 8-bit."""
    r = export(capsys, tmp_path / "out")
    assert (r["method"], r["wbits"], r["granularity"], r["first_last_8bit"]) == ("flexround", 4, "tensor", True)
    acc = r["accuracy"]
    # issue 4: 4-bit per-tensor weights as accurate as TFLite's 8-bit per-channel model (76.20%), within the sampling
    # error of 5,000 images (0.6 points, one standard deviation). The same code gives 76.02-76.38% by seed and torch
    # thread count (seeds 0-2 with one thread 76.02 / 76.38 / 76.34%; seed 0 with the default two threads 76.16%,
    # earlier 76.24%): the float summation order alone moves it by a few tenths, so the bound is half a point below.
    assert acc["int_sim"] >= TFLITE_INT8_PER_CHANNEL - 0.005
    assert abs(acc["int_sim"] - acc["fake_quant"]) <= 0.003
    assert r["bitexact"]["host_c"] == {"inputs": 100, "mismatches": 0}
    blocks = r["reconstruction"]["blocks"]
    assert [b["block"] for b in blocks] == ["s1_add", "s2_add", "s3_add"]
    assert all(b["loss_end"] < b["loss_start"] for b in blocks)


def test_build_and_run_commands_on_an_export(shared_data, capsys, tmp_path):
    r = export(capsys, tmp_path / "p", "--method", "rtn", "--eval-size", "16", "--calib-size", "16",
               "--test-inputs", "3")
    # layers: one row per op of the graph; on the host nothing counts instructions (null), MACs come from the graph
    assert [la["op"] for la in r["layers"]] == list(range(len(r["layers"])))
    kinds = [la["kind"] for la in r["layers"]]
    assert {"CONV_2D", "ADD", "AVERAGE_POOL_2D", "FULLY_CONNECTED"} <= set(kinds)
    assert all(la["instructions"] is None and la["insn_per_mac"] is None for la in r["layers"])
    assert r["instructions_per_inference"] is None and r["instructions_after_last_layer"] is None
    assert r["layers"][0]["macs"] == 32 * 32 * 16 * 3 * 3 * 3  # ResNet-8's first conv: 3x3, 3 -> 16 channels
    assert all((la["macs"] > 0) == (la["bits"] is not None) for la in r["layers"])
    assert main(["build", str(tmp_path / "p")]) == 0
    assert "built" in capsys.readouterr().out
    assert main(["run", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["input 0: ok", "input 1: ok", "input 2: ok"] and "SUMMARY inputs=3 mismatches=0" in out
    line = fails_cleanly(capsys, "run", str(tmp_path / "p"), "--target", "cortex-m99")
    assert "cortex-m99" in line and "cortex-m7" in line
