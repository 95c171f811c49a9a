"""Bad input: each case gets one clear line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import numpy as np
import pytest

from flexround_mcu.cli import main
from helpers import cli_fails_cleanly as fails_cleanly
from flexround_mcu.errors import UserError
from flexround_mcu.frontends.tflite import load_tflite, read_tflite
from flexround_mcu.sim.runner import Simulator

RESNET = "mlperf_tiny/ic/pretrainedResnet_quant.tflite"




def test_corrupt_tflite(tmp_path, capsys):
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(b"\x00\x00\x00\x00TFL3" + bytes(range(256)) * 4)  # right identifier, garbage tables
    line = fails_cleanly(capsys, "simulate", str(bad), "--dataset", "ic01")
    assert str(bad) in line and "corrupt" in line


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.6, 0.95])
def test_truncated_tflite(shared_data, tmp_path, capsys, fraction):
    buf = (shared_data / RESNET).read_bytes()
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes(buf[: int(len(buf) * fraction)])
    line = fails_cleanly(capsys, "simulate", str(bad), "--dataset", "ic01")
    assert str(bad) in line and ("truncated" in line or "corrupt" in line or "TFL3" in line)


def test_not_a_flatbuffer(tmp_path, capsys):
    bad = tmp_path / "model.tflite"
    bad.write_text("hello")
    assert "TFL3" in fails_cleanly(capsys, "simulate", str(bad), "--dataset", "ic01")


def test_missing_model_file(tmp_path, capsys):
    line = fails_cleanly(capsys, "simulate", str(tmp_path / "nope.tflite"), "--dataset", "ic01")
    assert "nope.tflite" in line and "no such" in line


def test_float_tflite_on_the_int8_path(shared_data, capsys):
    line = fails_cleanly(capsys, "simulate", str(shared_data / "mlperf_tiny/ic/pretrainedResnet.tflite"),
                         "--dataset", "ic01")
    assert "FLOAT32" in line and "float model" in line


def test_input_of_the_wrong_shape(shared_data, capsys):
    line = fails_cleanly(capsys, "simulate", str(shared_data / RESNET), "--dataset", "kws01", "--limit", "4")
    assert "kws01" in line and "(49, 10, 1)" in line and "(32, 32, 3)" in line


def test_simulator_rejects_wrong_input_shape_and_dtype(shared_data):
    sim = Simulator(load_tflite(shared_data / RESNET))
    with pytest.raises(UserError, match=r"shape \(N, 32, 32, 3\)"):
        sim.run(np.zeros((2, 32, 32, 4), np.int8))
    with pytest.raises(UserError, match="must be int8"):
        sim.run(np.zeros((2, 32, 32, 3), np.float32))


def test_missing_data_folder(shared_data, tmp_path, capsys, monkeypatch):
    missing = tmp_path / "no-data-here"
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(missing))
    line = fails_cleanly(capsys, "simulate", str(shared_data / RESNET), "--dataset", "cifar10-test-5000")
    assert str(missing) in line and "FLEXROUND_MCU_DATA" in line


def test_bad_limit_is_a_usage_error(shared_data, capsys):
    assert main(["simulate", str(shared_data / RESNET), "--dataset", "ic01", "--limit", "0"]) == 2


# ------------------------------------------------------------------------ models the TFLite converter writes


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Tiny models from the real converter: one with an op we do not support (MUL), one with int16 activations."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    rep_data = [rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32) for _ in range(16)]

    def convert(model, int16=False):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in rep_data)
        if int16:
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int16
        else:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
        return conv.convert()

    inp = tf.keras.Input((8, 8, 3), batch_size=1)
    a = tf.keras.layers.Conv2D(4, 3, padding="same")(inp)
    mul = tf.keras.Model(inp, tf.keras.layers.Multiply()([a, a]))
    inp2 = tf.keras.Input((8, 8, 3), batch_size=1)
    plain = tf.keras.Model(inp2, tf.keras.layers.Conv2D(4, 3, padding="same")(inp2))
    out = tmp_path_factory.mktemp("converted")
    paths = {"mul": out / "mul.tflite", "int16": out / "int16.tflite"}
    paths["mul"].write_bytes(convert(mul))
    paths["int16"].write_bytes(convert(plain, int16=True))
    return paths


def test_unsupported_op(converted):
    with pytest.raises(UserError) as exc:
        load_tflite(converted["mul"])
    msg = str(exc.value)
    assert "MUL" in msg and "op " in msg and "not supported" in msg and "\n" not in msg


def test_unsupported_type(converted, capsys):
    line = fails_cleanly(capsys, "simulate", str(converted["int16"]), "--dataset", "ic01")
    assert "INT16" in line and "tensor" in line


def test_read_tflite_rejects_short_buffer():
    with pytest.raises(UserError, match="TFL3"):
        read_tflite(b"TFL3")
