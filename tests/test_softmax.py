"""flexround_mcu.sim.softmax against TFLite Micro, bit for bit.

* Synthetic softmax-only int8 models built with the TFLite converter (several input scales, depths and betas;
  beta is patched into the flatbuffer's SoftmaxOptions), fed ~2,000 int8 rows each through tflite_micro.
* The softmax of the real MLPerf Tiny ResNet-8 and DS-CNN KWS models on real inputs.
* Unit properties of the fixed-point arithmetic.
"""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tflite

from flexround_mcu.sim.softmax import SoftmaxParams, prepare_softmax, softmax_s8

DATA_ROOT = Path(os.environ.get("FLEXROUND_MCU_DATA", "/work/shared/data"))
RESNET8 = DATA_ROOT / "mlperf_tiny" / "ic" / "pretrainedResnet_quant.tflite"
CIFAR_PART0 = DATA_ROOT / "cifar10" / "cifar10_test_part0.npz"
KWS = DATA_ROOT / "mlperf_tiny" / "kws" / "kws_ref_model.tflite"
KWS_SAMPLES = DATA_ROOT / "mlperf_tiny" / "kws" / "kws01_perf_samples.npz"

BATCH = 500  # rows per synthetic model invocation
N_ROWS = 3000  # rows per synthetic configuration
ARENA = 256 * 1024


# ------------------------------------------------------------------------------------------------ helpers


def _require(path: Path) -> Path:
    """Missing data fails under CI and skips elsewhere."""
    if not path.exists():
        msg = f"missing test data {path} (set FLEXROUND_MCU_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _tflm_runtime():
    pytest.importorskip("tflite_micro")
    from tflite_micro import runtime

    return runtime


def _opcode(model: tflite.Model, op: tflite.Operator) -> int:
    oc = model.OperatorCodes(op.OpcodeIndex())
    return max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())


def _softmax_options(op: tflite.Operator) -> tflite.SoftmaxOptions:
    assert op.BuiltinOptionsType() == tflite.BuiltinOptions.SoftmaxOptions
    table = op.BuiltinOptions()
    opts = tflite.SoftmaxOptions()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _softmax_op_info(buf: bytes, op_index: int | None = None) -> dict:
    """Locate the (single, or given) SOFTMAX op and read its tensors, beta and quantization params."""
    model = tflite.Model.GetRootAsModel(buf, 0)
    sg = model.Subgraphs(0)
    codes = [_opcode(model, sg.Operators(i)) for i in range(sg.OperatorsLength())]
    if op_index is None:
        idx = [i for i, c in enumerate(codes) if c == tflite.BuiltinOperator.SOFTMAX]
        assert len(idx) == 1, codes
        op_index = idx[0]
    op = sg.Operators(op_index)
    assert codes[op_index] == tflite.BuiltinOperator.SOFTMAX, codes[op_index]
    assert op.InputsLength() == 1 and op.OutputsLength() == 1
    t_in, t_out = int(op.Inputs(0)), int(op.Outputs(0))
    tin, tout = sg.Tensors(t_in), sg.Tensors(t_out)
    assert tin.Type() == tflite.TensorType.INT8 and tout.Type() == tflite.TensorType.INT8
    qin, qout = tin.Quantization(), tout.Quantization()
    assert qin.ScaleLength() == 1
    # TFLM's int8 softmax requires exactly this output quantization.
    assert np.float32(qout.Scale(0)) == np.float32(1.0 / 256) and qout.ZeroPoint(0) == -128
    return dict(op_index=op_index, codes=codes, input=t_in, output=t_out,
                beta=float(_softmax_options(op).Beta()), input_scale=float(qin.Scale(0)))


def _patch_beta(buf: bytes, beta: float) -> bytes:
    """Overwrite the stored float32 SoftmaxOptions.beta of the model's single op in place."""
    model = tflite.Model.GetRootAsModel(buf, 0)
    opts = _softmax_options(model.Subgraphs(0).Operators(0))
    field = opts._tab.Offset(4)  # beta is the table's first field
    assert field != 0, "beta not stored explicitly"
    pos = opts._tab.Pos + field
    out = bytearray(buf)
    out[pos:pos + 4] = struct.pack("<f", beta)
    patched = bytes(out)
    assert np.float32(_softmax_op_info(patched)["beta"]) == np.float32(beta)
    return patched


def _run_softmax_tflm(runtime, buf: bytes, inputs, info: dict):
    """Invoke the model on each input; return (softmax input, softmax output) as TFLM holds them."""
    interp = runtime.Interpreter.from_bytes(
        buf, arena_size=ARENA, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    ins, outs = [], []
    for x in inputs:
        interp.set_input(x, 0)
        interp.invoke()
        ins.append(np.array(interp.GetTensor(info["input"], 0)["tensor_data"]))
        outs.append(np.array(interp.GetTensor(info["output"], 0)["tensor_data"]))
    return np.concatenate(ins), np.concatenate(outs)


def _assert_bit_exact(t_in: np.ndarray, t_out: np.ndarray, params: SoftmaxParams) -> None:
    assert t_in.dtype == np.int8 and t_out.dtype == np.int8
    ours = softmax_s8(t_in, params)
    assert ours.shape == t_out.shape and ours.dtype == np.int8
    bad = np.argwhere(ours != t_out)
    if bad.size:
        r = int(bad[0][0])
        pytest.fail(f"{len(bad)} mismatches ({params}); first row {r}: in {t_in[r].tolist()} "
                    f"tflm {t_out[r].tolist()} ours {ours[r].tolist()}")


# ------------------------------------------------------------------------------------------ synthetic models


@pytest.fixture(scope="session")
def softmax_model_factory(tmp_path_factory):
    """(depth, spread) -> int8 softmax-only .tflite bytes, converted once per session and cached on disk."""
    tf = pytest.importorskip("tensorflow")
    _tflm_runtime()
    cache_dir = tmp_path_factory.mktemp("softmax_models")
    memo: dict[tuple[int, float], bytes] = {}

    def build(depth: int, spread: float) -> bytes:
        key = (depth, spread)
        if key in memo:
            return memo[key]
        path = cache_dir / f"softmax_d{depth}_s{spread:g}.tflite"
        if not path.exists():
            inp = tf.keras.Input(shape=(depth,), batch_size=BATCH)
            model = tf.keras.Model(inp, tf.keras.layers.Softmax()(inp))
            rng = np.random.default_rng(depth * 1000 + int(spread * 10))

            def representative():
                for _ in range(8):
                    yield [rng.uniform(-spread, spread, (BATCH, depth)).astype(np.float32)]

            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
            path.write_bytes(conv.convert())
        memo[key] = path.read_bytes()
        return memo[key]

    return build


def _near_rounding_boundary_rows(depth: int, beta_scale: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows whose exact softmax * 256 lies closest to a .5 rounding boundary (found with a float64 softmax).

    Only such rows can expose an error of a few ulps in exp / reciprocal / the multiplier: elsewhere the 8-bit
    output hides it. TFLM decides what the right answer is; the float only picks the rows.
    """
    cand = np.concatenate([rng.integers(-128, 128, (40 * n, depth)),
                           rng.integers(90, 128, (40 * n, 1)) - rng.integers(0, 40, (40 * n, depth))])
    cand = np.clip(cand, -128, 127)
    x = cand.astype(np.float64) * beta_scale
    p = np.exp(x - x.max(axis=1, keepdims=True))
    v = p / p.sum(axis=1, keepdims=True) * 256
    dist = np.abs(v - np.floor(v) - 0.5).min(axis=1)
    return cand[np.argsort(dist, kind="stable")[:n]]


def _test_rows(depth: int, diff_min: int, beta_scale: float, rng: np.random.Generator) -> np.ndarray:
    """N_ROWS int8 rows: uniform, near-max with many ties, all-equal, two-valued, around the diff_min cutoff,
    and rows next to an output rounding boundary."""
    parts = []
    parts.append(rng.integers(-128, 128, (800, depth)))
    top = rng.integers(-100, 128, (400, 1))
    parts.append(top - rng.integers(0, 6, (400, depth)))  # small diffs, lots of ties
    equal = np.repeat(rng.integers(-128, 128, (200, 1)), depth, axis=1)
    equal[0], equal[1] = -128, 127
    parts.append(equal)
    top = rng.integers(-128, 128, (200, 1))
    low = top - rng.integers(1, 256, (200, 1))
    parts.append(np.where(rng.random((200, depth)) < 0.5, top, low))
    radius = min(-diff_min, 255)
    edge = 127 - np.clip(radius + rng.integers(-3, 4, (400, depth)), 0, 255)
    edge[np.arange(400), rng.integers(0, depth, 400)] = 127
    parts.append(edge)
    parts.append(_near_rounding_boundary_rows(depth, beta_scale, N_ROWS - 2000, rng))
    rows = np.clip(np.concatenate(parts), -128, 127).astype(np.int8)
    assert rows.shape == (N_ROWS, depth)
    return rows


SPREADS = (0.5, 8.0, 60.0)
DEPTHS = (10, 12, 2, 1)
BETAS = (1.0, 0.37, 2.5)
SYNTH_CASES = [(d, s, b) for d in DEPTHS for s in SPREADS for b in BETAS]
# beta * input_scale >= 32: PreprocessSoftmaxScaling caps the multiplier at 2**31 - 1 (left shift 31, diff_min 0)
SYNTH_CASES += [(10, 60.0, 100.0), (12, 8.0, 600.0)]


@pytest.mark.tflm
@pytest.mark.parametrize("depth,spread,beta", SYNTH_CASES, ids=[f"d{d}-s{s:g}-b{b:g}" for d, s, b in SYNTH_CASES])
def test_synthetic_softmax_matches_tflm(softmax_model_factory, depth, spread, beta):
    runtime = _tflm_runtime()
    buf = softmax_model_factory(depth, spread)
    info = _softmax_op_info(buf)
    # exactly one SOFTMAX op (no QUANTIZE around it), so the model input is the softmax input
    assert info["codes"] == [tflite.BuiltinOperator.SOFTMAX], info["codes"]
    assert info["beta"] == 1.0  # what the converter wrote for keras Softmax
    # the calibration spread sets the input scale: ~2 * spread / 255
    assert info["input_scale"] == pytest.approx(2 * spread / 255, rel=0.05)
    if beta != 1.0:
        buf = _patch_beta(buf, beta)
        info = _softmax_op_info(buf)
    params = prepare_softmax(info["beta"], info["input_scale"])

    beta_scale = float(np.float32(info["beta"])) * float(np.float32(info["input_scale"]))
    rng = np.random.default_rng([depth, int(spread * 10), int(beta * 100)])
    rows = _test_rows(depth, params.diff_min, beta_scale, rng)
    t_in, t_out = _run_softmax_tflm(runtime, buf, np.split(rows, N_ROWS // BATCH), info)
    np.testing.assert_array_equal(t_in, rows)  # TFLM saw exactly our rows
    _assert_bit_exact(t_in, t_out, params)

    if depth > 1:
        diffs = rows.astype(np.int32) - rows.max(axis=1, keepdims=True)
        # both sides of the diff_min cutoff are exercised
        if params.diff_min > -255:
            assert (diffs < params.diff_min).any()
        if params.diff_min < 0:
            assert ((diffs >= params.diff_min) & (diffs < 0)).any()
        # outputs are not degenerate
        assert len(np.unique(t_out)) > (2 if params.diff_min < 0 else 1)


# -------------------------------------------------------------------------------------------- real models


def _check_real_model(model_path: Path, inputs, op_index: int | None = None, tensors=None):
    runtime = _tflm_runtime()
    buf = model_path.read_bytes()
    info = _softmax_op_info(buf, op_index)
    if tensors is not None:
        assert (info["input"], info["output"]) == tensors
    params = prepare_softmax(info["beta"], info["input_scale"])
    t_in, t_out = _run_softmax_tflm(runtime, buf, inputs, info)
    assert t_in.shape[0] == len(inputs)
    _assert_bit_exact(t_in, t_out, params)
    assert len(np.unique(t_out)) > 5  # real, varied probabilities
    return info, params, t_in, t_out


@pytest.mark.tflm
def test_resnet8_softmax_matches_tflm():
    _require(RESNET8)
    images = np.load(_require(CIFAR_PART0))["images"][:50]
    inputs = [(img.astype(np.int16) - 128).astype(np.int8)[None] for img in images]  # (1, 32, 32, 3)
    info, params, t_in, t_out = _check_real_model(RESNET8, inputs, op_index=15, tensors=(36, 37))
    assert t_in.shape == (50, 10)
    assert info["beta"] == 1.0
    assert params.diff_min < -100  # scale ~0.17: nearly every logit difference is inside the radius


@pytest.mark.tflm
def test_kws_softmax_matches_tflm():
    _require(KWS)
    feats = np.load(_require(KWS_SAMPLES))["features"][:50]
    assert feats.dtype == np.int8
    inputs = [f[None, :, :, None] for f in feats]  # (1, 49, 10, 1)
    info, params, t_in, t_out = _check_real_model(KWS, inputs)
    assert t_in.shape == (50, 12)


# ---------------------------------------------------------------------------------------------- unit checks

UNIT_PARAMS = [prepare_softmax(1.0, s) for s in (0.0039, 0.0627, 0.1718535, 0.47, 2.0)] + [
    prepare_softmax(2.5, 0.47), prepare_softmax(100.0, 0.47)]


def test_prepare_softmax_known_values():
    # beta * scale * 2**26 computed in double from float32 inputs, QuantizeMultiplierGreaterThanOne
    p = prepare_softmax(1.0, 0.17185351)
    real = float(np.float32(0.17185351)) * 2**26
    q, e = math.frexp(real)
    assert (p.input_left_shift, p.input_multiplier) == (e, round(q * 2**31))
    assert p.diff_min == -math.floor(31 * 2**26 / 2**e)
    # float32 rounding of the stored scale is what counts, not the Python double
    assert prepare_softmax(1.0, 0.1) == prepare_softmax(1.0, float(np.float32(0.1)))
    # the product beta * scale is formed in double from the float32 values (not in float32)
    beta, scale = 0.37, 0.47058824
    real = float(np.float32(beta)) * float(np.float32(scale)) * 2**26
    real_f32 = float(np.float32(np.float32(beta) * np.float32(scale))) * 2**26
    q, e = math.frexp(real)
    p = prepare_softmax(beta, scale)
    assert (p.input_multiplier, p.input_left_shift) == (round(q * 2**31), e)
    assert p.input_multiplier != round(math.frexp(real_f32)[0] * 2**31)
    # cap at 2**31 - 1 when beta * scale >= 32
    assert prepare_softmax(100.0, 0.5) == SoftmaxParams(100.0, 2**31 - 1, 31, 0)
    # TFLM aborts (TFLITE_CHECK_GT(multiplier, 1)) when beta * scale * 2**26 <= 1
    with pytest.raises(ValueError):
        prepare_softmax(1.0, 2.0**-27)
    with pytest.raises(ValueError):
        prepare_softmax(-1.0, 0.1)


@pytest.mark.parametrize("params", UNIT_PARAMS, ids=str)
def test_all_equal_rows_give_equal_outputs(params):
    for depth in (1, 2, 3, 10, 12, 100):
        rows = np.repeat(np.arange(-128, 128, dtype=np.int8)[:, None], depth, axis=1)
        out = softmax_s8(rows, params)
        assert (out == out[0, 0]).all()
        assert abs((int(out[0, 0]) + 128) - 256 / depth) <= 1  # 1/depth at scale 1/256 (127 for depth 1)


@pytest.mark.parametrize("params", UNIT_PARAMS, ids=str)
def test_outputs_monotone_in_inputs(params):
    rng = np.random.default_rng(7)
    rows = rng.integers(-128, 128, (5000, 10)).astype(np.int8)
    out = softmax_s8(rows, params).astype(np.int32)
    order = np.argsort(rows, axis=1, kind="stable")
    x_sorted = np.take_along_axis(rows, order, axis=1)
    y_sorted = np.take_along_axis(out, order, axis=1)
    assert (np.diff(y_sorted, axis=1) >= 0).all()
    # equal inputs in a row -> equal outputs
    ties = np.diff(x_sorted.astype(np.int32), axis=1) == 0
    assert ties.any() and (np.diff(y_sorted, axis=1)[ties] == 0).all()
    # the max of the row gets the largest output, which is never the floor unless all are equal
    assert (out.max(axis=1) > -128).all()


def test_close_to_float_softmax():
    rng = np.random.default_rng(3)
    rows = rng.integers(-128, 128, (4000, 10)).astype(np.int8)
    for scale in (0.0039, 0.0627, 0.47):
        out = softmax_s8(rows, prepare_softmax(1.0, scale)).astype(np.int32)
        x = rows.astype(np.float64) * float(np.float32(scale))
        p = np.exp(x - x.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        ref = np.clip(np.round(p * 256) - 128, -128, 127)
        assert np.abs(out - ref).max() <= 1
        assert (out != ref).mean() < 0.01


def test_leading_dims_and_validation():
    params = prepare_softmax(1.0, 0.0627)
    x = np.random.default_rng(1).integers(-128, 128, (3, 4, 5, 10)).astype(np.int8)
    out = softmax_s8(x, params)
    assert out.shape == x.shape and out.dtype == np.int8
    np.testing.assert_array_equal(out.reshape(-1, 10), softmax_s8(x.reshape(-1, 10), params))
    np.testing.assert_array_equal(softmax_s8(x[0, 0, 0], params), out[0, 0, 0])  # 1-D input
    with pytest.raises(TypeError):
        softmax_s8(x.astype(np.int32), params)


def test_row_sum_limit_matches_tflm_check():
    # TFLM TFLITE_CHECKs num_bits_over_unit + 23 <= 31, i.e. a Q12.19 sum of exps below 512.
    params = prepare_softmax(1.0, 0.0039)
    out = softmax_s8(np.zeros((2, 511), np.int8), params)
    assert (out == -127).all()  # 256/511 = 0.501 rounds to 1
    with pytest.raises(ValueError):
        softmax_s8(np.zeros((2, 512), np.int8), params)
