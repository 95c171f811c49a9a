"""`flexround-mcu export MODEL_INT8.tflite`: the converter's int8 model straight to C, no quantization, checked on
the host, under QEMU and against tflite_micro value by value; its option checks and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import tflite

from flexround_mcu.cli import main
from helpers import cli_fails_cleanly
from test_frontends import with_builtin_replaced

pytest.importorskip("tflite_micro")

IC_INT8 = "mlperf_tiny/ic/pretrainedResnet_quant.tflite"
KWS_INT8 = "mlperf_tiny/kws/kws_ref_model.tflite"


def export(capsys, *argv) -> dict:
    code = main(["export", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = argv[argv.index("--out") + 1]
    return json.loads((Path(out) / "report.json").read_text()), captured.out


def _all_exact(r: dict, qemu: bool) -> None:
    b = r["bitexact"]
    assert b["host_c"]["mismatches"] == 0 and b["host_c"]["inputs"] > 0
    assert (b["qemu"]["mismatches"] == 0 and b["qemu"]["inputs"] > 0) if qemu else b["qemu"] is None
    assert b["tflm"]["mismatches"] == 0 and b["tflm"]["tensors"] > 10 and b["tflm"]["inputs"] == b["host_c"]["inputs"]


@pytest.mark.slow
@pytest.mark.parametrize("model, dataset, n, accuracy, channels", [
    (IC_INT8, "cifar10-test-5000", 5000, 0.7620, 16),
    (KWS_INT8, "kws01", 1000, 0.9010, 64),
])
def test_int8_tflite_to_cortex_m7_equals_tflm(shared_data, capsys, tmp_path, model, dataset, n, accuracy, channels):
    r, printed = export(capsys, str(shared_data / model), "--dataset", dataset, "--target", "cortex-m7",
                        "--out", str(tmp_path / "o"))
    a = r["accuracy"]
    assert (r["method"], r["wbits"], r["abits"], r["mixed"]) == ("none", 8, 8, None)
    assert a["n"] == n and a["int_sim"] == a["tflm"] == accuracy  # measured: tflite_micro on the same file
    assert a["float"] is None and a["fake_quant"] is None and r["calibration"] is None
    _all_exact(r, qemu=True)
    assert r["instructions_per_inference"] > 1e6 and r["memory"]["flash_bytes"] > r["memory"]["weight_bytes"]
    assert f"tflite_micro {accuracy:.2%}" in printed and "none (int8 .tflite as stored)" in printed


def test_int8_tflite_host_report_is_the_export_report(shared_data, capsys, tmp_path):
    """The same report and tables as a FlexRound export, per layer bits as stored."""
    r, printed = export(capsys, str(shared_data / IC_INT8), "--dataset", "cifar10-test-5000", "--eval-size", "200",
                        "--test-inputs", "10", "--out", str(tmp_path / "o"))
    assert r["granularity"] == "channel"  # the MLPerf model's filters carry per-channel scales
    assert r["accuracy"]["dataset"] == "cifar10-test-5000[:200]" and r["accuracy"]["int_sim"] == r["accuracy"]["tflm"]
    _all_exact(r, qemu=False)
    weighted = [la for la in r["layers"] if la["bits"] is not None]
    assert len(weighted) == 10 and {la["bits"] for la in weighted} == {8}
    assert sum(la["bytes"] for la in r["layers"]) == r["memory"]["weight_bytes"]
    assert main(["report", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out.startswith(printed.split("\n")[0])


def test_int8_tflite_without_dataset_checks_random_inputs(shared_data, capsys, tmp_path):
    r, printed = export(capsys, str(shared_data / KWS_INT8), "--test-inputs", "6", "--out", str(tmp_path / "o"))
    assert r["accuracy"]["int_sim"] is None and r["accuracy"]["n"] is None
    assert "random int8 inputs" in r["accuracy"]["preprocessing"] and "not measured" in printed
    _all_exact(r, qemu=False)
    assert r["bitexact"]["tflm"]["inputs"] == 6


def test_int8_tflite_refuses_quantization_options(shared_data, capsys, tmp_path):
    model = str(shared_data / IC_INT8)
    line = cli_fails_cleanly(capsys, "export", model, "--method", "flexround", "--out", str(tmp_path / "o"))
    assert "is already an int8 model: --method is for quantizing a float model; drop it" in line
    line = cli_fails_cleanly(capsys, "export", model, "--wbits", "4", "--iters", "10", "--qdrop", "0.5",
                             "--out", str(tmp_path / "o"))
    assert "--wbits, --iters, --qdrop are for quantizing" in line and "drop them" in line
    assert not (tmp_path / "o").exists()


def test_int8_tflite_with_an_unsupported_op_names_it(shared_data, capsys, tmp_path):
    bad = tmp_path / "with_tanh.tflite"
    bad.write_bytes(with_builtin_replaced((shared_data / IC_INT8).read_bytes(),
                                          tflite.BuiltinOperator.AVERAGE_POOL_2D, tflite.BuiltinOperator.TANH))
    line = cli_fails_cleanly(capsys, "export", str(bad), "--out", str(tmp_path / "o"))
    assert "TANH" in line and "not supported" in line
    assert not (tmp_path / "o").exists()
