"""The simulate command end to end on the MLPerf Tiny reference models, against tflite_micro."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from flexround_mcu.cli import main

pytest.importorskip("tflite_micro")

LAST_LINE = re.compile(r"^mismatches: (\d+) over (\d+) tensors, accuracy: (\d+\.\d\d)%$")


def run_cli(capsys, *argv) -> tuple[int, list[str], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.strip().splitlines(), err


@pytest.mark.parametrize("model, dataset, limit, n_tensors", [
    ("ic/pretrainedResnet_quant.tflite", "cifar10-test-5000", 500, 17),
    ("kws/kws_ref_model.tflite", "kws01", None, 14),        # the depthwise path, all 1,000 inputs
    ("ic/pretrainedResnet_large_int8.tflite", "cifar10-test-5000", 200, 17),
])
def test_simulator_matches_tflm_on_every_tensor(shared_data, capsys, tmp_path, model, dataset, limit, n_tensors):
    argv = ["simulate", str(shared_data / "mlperf_tiny" / model), "--dataset", dataset, "--compare", "tflm",
            "--json", str(tmp_path / "r.json")]
    if limit:
        argv += ["--limit", str(limit)]
    code, lines, _ = run_cli(capsys, *argv)
    assert code == 0
    m = LAST_LINE.match(lines[-1])
    assert m, lines[-1]
    assert int(m.group(1)) == 0 and int(m.group(2)) == n_tensors
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["compare"]["mismatches"] == 0
    assert report["n"] == (limit or 1000)
    assert all(t["mismatches"] == 0 for t in report["compare"]["per_tensor"])
    assert {t["producer"] for t in report["compare"]["per_tensor"]} >= {"CONV_2D", "SOFTMAX", "FULLY_CONNECTED"}
    assert report["accuracy"]["int_sim"] == report["accuracy"]["tflm"]
    if dataset == "kws01":
        assert "DEPTHWISE_CONV_2D" in {t["producer"] for t in report["compare"]["per_tensor"]}
        assert report["accuracy"]["int_sim"] == pytest.approx(0.901)  # measured; tflite_micro agrees


@pytest.mark.slow
def test_resnet8_accuracy_on_5000_images_equals_tflm(shared_data, capsys, tmp_path):
    code, lines, _ = run_cli(capsys, "simulate", str(shared_data / "mlperf_tiny/ic/pretrainedResnet_quant.tflite"),
                             "--dataset", "cifar10-test-5000", "--compare", "tflm", "--json", str(tmp_path / "r.json"))
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 5000
    assert report["compare"]["mismatches"] == 0
    assert report["accuracy"]["int_sim"] == report["accuracy"]["tflm"] == pytest.approx(0.7620)
    assert lines[-1] == "mismatches: 0 over 17 tensors, accuracy: 76.20%"


def test_simulate_without_compare_prints_accuracy(shared_data, capsys):
    code, lines, _ = run_cli(capsys, "simulate", str(shared_data / "mlperf_tiny/ic/pretrainedResnet_quant.tflite"),
                             "--dataset", "ic01")
    assert code == 0
    assert re.match(r"^accuracy: \d+\.\d\d%$", lines[-1])


def test_console_script_reports_bad_input_without_traceback(tmp_path):
    """The installed entry point: one line on stderr, exit code 2, no traceback."""
    bad = tmp_path / "junk.tflite"
    bad.write_bytes(b"not a model at all")
    proc = subprocess.run([sys.executable, "-m", "flexround_mcu.cli", "simulate", str(bad), "--dataset", "ic01"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert str(bad) in proc.stderr and "TFL3" in proc.stderr


# ------------------------------------------------------------------------ the user's own data (as for export)

def _write_folder(folder, x, y):
    import numpy as np
    folder.mkdir()
    np.savez(folder / "part0.npz", x=x[: len(x) // 2], y=y[: len(y) // 2])
    np.savez(folder / "part1.npz", x=x[len(x) // 2:], y=y[len(y) // 2:])
    return folder


@pytest.mark.parametrize("model, dataset, n, scale, zero_point", [
    ("ic/pretrainedResnet_quant.tflite", "cifar10-test-5000", 200, "1", "-128"),  # uint8 pixels
    ("kws/kws_ref_model.tflite", "kws01", 300, "0.5847029", "83"),               # int8 features as stored
])
def test_folder_dataset_equals_the_builtin_name(shared_data, capsys, tmp_path, model, dataset, n, scale, zero_point):
    """The same images from a folder, declared as the model's own input quantization, give the same accuracy and
    0 mismatches against tflite_micro as the built-in dataset."""
    from flexround_mcu.data import load_dataset
    ds = load_dataset(dataset, limit=n)
    folder = _write_folder(tmp_path / "mine", ds.x, ds.y)
    path = str(shared_data / "mlperf_tiny" / model)
    results = []
    for data_args in (["--dataset", dataset, "--limit", str(n)],
                      ["--dataset", str(folder), "--input-scale", scale, "--input-zero-point", zero_point]):
        out = tmp_path / f"r{len(results)}.json"
        code, lines, err = run_cli(capsys, "simulate", path, *data_args, "--compare", "tflm", "--json", str(out))
        assert code == 0, err
        results.append(json.loads(out.read_text()))
    builtin, mine = results
    assert mine["n"] == builtin["n"] == n
    assert mine["compare"]["mismatches"] == builtin["compare"]["mismatches"] == 0
    assert mine["accuracy"] == builtin["accuracy"]
    assert mine["preprocessing"].startswith("declared") and builtin["preprocessing"] == f"{dataset}'s own units"


def test_folder_dataset_bad_input(shared_data, capsys, tmp_path):
    import numpy as np
    from helpers import cli_fails_cleanly
    path = str(shared_data / "mlperf_tiny/ic/pretrainedResnet_quant.tflite")
    rng = np.random.default_rng(0)
    raw = _write_folder(tmp_path / "raw", rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), np.arange(4))
    line = cli_fails_cleanly(capsys, "simulate", path, "--dataset", str(raw))
    assert "holds raw uint8 data: pass the declared preprocessing" in line
    assert "--input-scale 1 --input-zero-point -128 takes the data as this model's int8 input" in line
    line = cli_fails_cleanly(capsys, "simulate", path, "--dataset", str(raw), "--input-scale", "1")
    assert "--input-scale without --input-zero-point" in line
    floats = _write_folder(tmp_path / "floats", rng.random((4, 32, 32, 3), dtype=np.float32), np.arange(4))
    line = cli_fails_cleanly(capsys, "simulate", path, "--dataset", str(floats), "--input-scale", "1",
                             "--input-zero-point", "0")
    assert "holds float data" in line and "drop --input-scale" in line
    small = _write_folder(tmp_path / "small", rng.integers(0, 256, (4, 28, 28, 3), dtype=np.uint8), np.arange(4))
    line = cli_fails_cleanly(capsys, "simulate", path, "--dataset", str(small), "--input-scale", "1",
                             "--input-zero-point", "-128")
    assert "inputs of shape (28, 28, 3)" in line and "(32, 32, 3)" in line
    labels = _write_folder(tmp_path / "labels", rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
                           np.array([0, 1, 2, 12]))
    line = cli_fails_cleanly(capsys, "simulate", path, "--dataset", str(labels), "--input-scale", "1",
                             "--input-zero-point", "-128")
    assert "label 12, but" in line and "has 10 outputs" in line
    line = cli_fails_cleanly(capsys, "simulate", path, "--dataset", "cifar11")
    assert "unknown dataset 'cifar11'" in line
