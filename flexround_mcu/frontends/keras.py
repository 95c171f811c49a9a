"""A Keras model (.h5, .keras) or a TensorFlow SavedModel folder -> FloatGraph, through TensorFlow.

Route: TensorFlow's own TFLite converter (no optimizations: float32 weights, BatchNorm folded into the convs,
activations fused) writes a float .tflite in memory, which frontends/tflite_float.py reads. The converter is the
reference for what a Keras layer means, so this file holds no layer semantics of its own, only a check beforehand
that every Keras layer is one the float reader can take, so that a refusal names the Keras layer (name and class)
rather than a converted op. A Keras model is exported (batch size 1) to a temporary SavedModel for the converter. A
SavedModel folder is not a Keras object in Keras 3: it goes to the converter directly, and an unsupported op is
then named by its op and output tensor (whose name carries the layer path).
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

from ..errors import UserError
from ..quant.graph import FloatGraph
from .tflite_float import read_float_tflite

# Keras layer classes the converter turns into ops that tflite_float reads. Some only in context, which the reader
# then checks: BatchNormalization after a conv (folded by the converter), ZeroPadding2D before a conv (folded by
# the reader), Reshape as a flatten.
SUPPORTED_LAYERS = ("InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization",
                    "Activation", "ReLU", "Softmax", "Add", "AveragePooling2D", "MaxPooling2D",
                    "GlobalAveragePooling2D", "Flatten", "Reshape", "ZeroPadding2D", "Dropout", "SpatialDropout2D")
ACTIVATIONS = ("linear", "relu", "relu6", "softmax")
_HOW = "rewrite the model with supported layers or export it to a float .tflite yourself"


def load_keras(path: str | os.PathLike, *, input_scale: float = 1.0, input_zero_point: int = 0) -> FloatGraph:
    """A Keras .h5 / .keras file or a SavedModel folder as a FloatGraph (UserError on anything unusable).

    input_scale / input_zero_point: how the model's real input maps to int8, as for load_float_tflite.
    """
    path = Path(path)
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        raise UserError(f"{path}: a folder without saved_model.pb is not a SavedModel; pass a SavedModel folder, "
                        f"a .h5 or a .keras file")
    if path.is_file() and path.suffix.lower() not in (".h5", ".hdf5", ".keras"):
        raise UserError(f"{path}: unknown Keras file type '{path.suffix}'; pass a .h5, a .keras file or a "
                        f"SavedModel folder")
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; pass a Keras .h5 / .keras file or a SavedModel folder")
    tf = _tensorflow(path)
    with tempfile.TemporaryDirectory(prefix="flexround-keras-") as scratch:
        if path.is_dir():
            converter = _saved_model_converter(tf, path)
        else:
            model = _load_keras_model(path)
            shape = _check_layers(model, path)
            converter = _keras_converter(tf, model, shape, Path(scratch) / "saved_model", path)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the converter and Keras' export print progress
                flatbuffer = converter.convert()
        except Exception as exc:
            raise UserError(f"{path}: the TFLite converter failed ({type(exc).__name__}: "
                            f"{_first_line(exc)}); {_HOW}") from None
    graph = read_float_tflite(bytes(flatbuffer), name=path.stem, where=f"{path} (converted to .tflite)",
                              input_scale=input_scale, input_zero_point=input_zero_point)
    graph.metadata.update(frontend="keras", source=str(path))
    return graph


def _saved_model_converter(tf, path: Path):
    """The converter for a SavedModel's serving signature, with the batch size fixed to 1 (see _check_layers).

    TensorFlow 1's converter freezes the signature's graph without restoring Python objects, so it also reads the
    SavedModels of older Keras versions that TensorFlow 2's loader refuses (optimizer slots of Keras 2 models,
    e.g. the MLPerf Tiny KWS one).
    """
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
        signature = proto.meta_graphs[0].signature_def["serving_default"]
    except Exception as exc:
        raise UserError(f"{path}: saved_model.pb has no readable 'serving_default' signature "
                        f"({type(exc).__name__}: {_first_line(exc)}); save the model with one") from None
    if len(signature.inputs) != 1 or len(signature.outputs) != 1:
        raise UserError(f"{path}: the serving signature has {len(signature.inputs)} inputs and "
                        f"{len(signature.outputs)} outputs; one of each is supported")
    (info,) = signature.inputs.values()
    dims = tuple(d.size for d in info.tensor_shape.dim)
    if len(dims) != 4 or any(d <= 0 for d in dims[1:]):
        raise UserError(f"{path}: the input shape {dims} is not a fixed (batch, H, W, C) image; "
                        f"save the model with a fixed input shape")
    return tf.compat.v1.lite.TFLiteConverter.from_saved_model(
        str(path), input_shapes={info.name.split(":")[0]: [1, *dims[1:]]}, signature_key="serving_default")


def _keras_converter(tf, model, shape: tuple, scratch: Path, path: Path):
    """The converter for a Keras model, exported as a SavedModel whose input has batch size 1."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # export prints its endpoints
            model.export(str(scratch), format="tf_saved_model",
                         input_signature=[tf.TensorSpec((1, *shape[1:]), tf.float32)])
    except Exception as exc:
        raise UserError(f"{path}: Keras cannot export this model for conversion ({type(exc).__name__}: "
                        f"{_first_line(exc)}); {_HOW}") from None
    return tf.lite.TFLiteConverter.from_saved_model(str(scratch))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _tensorflow(path: Path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, unless asked for
    try:
        import tensorflow as tf
    except ImportError:
        raise UserError(f"{path}: reading Keras models needs TensorFlow; install the project's 'tf' extra "
                        f"(pip install -e '.[tf]')") from None
    return tf


def _load_keras_model(path: Path):
    import keras

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise UserError(f"{path}: Keras cannot load this file ({type(exc).__name__}: {_first_line(exc)}); "
                        f"pass a model saved with model.save()") from None


def _layers(model):
    """Every layer of a (possibly nested) Keras model, nested models opened up."""
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Functional", "Sequential", "Model"):
            yield from _layers(layer)
        else:
            yield layer


def _check_layers(model, path: Path) -> tuple:
    """The model's input shape, after checking every layer. The batch size is fixed to 1 for the conversion: with
    a free batch the converter computes a Flatten's shape at run time (SHAPE, STRIDED_SLICE, PACK ops)."""
    shape = tuple(model.inputs[0].shape) if len(getattr(model, "inputs", None) or ()) == 1 else None
    if shape is None:
        raise UserError(f"{path}: the model has {len(model.inputs or ())} inputs; one image input is supported")
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise UserError(f"{path}: the input shape {shape} is not a fixed (batch, H, W, C) image; "
                        f"build the model with a fixed input shape")
    for layer in _layers(model):
        kind = type(layer).__name__
        where = f"{path}: layer '{layer.name}' ({kind})"
        if kind not in SUPPORTED_LAYERS:
            raise UserError(f"{where} is not supported by the Keras frontend; supported are "
                            f"{', '.join(SUPPORTED_LAYERS)}")
        act = getattr(layer, "activation", None)
        act_name = getattr(act, "__name__", None) if act is not None else None
        if act_name is not None and act_name not in ACTIVATIONS:
            raise UserError(f"{where} has activation '{act_name}'; supported are {', '.join(ACTIVATIONS)}")
    return shape
