"""Model zoo: reference float models with their weights, datasets and input quantization.

    graph, info = build_graph("ds_cnn")         # any entry as the quantizer's FloatGraph, BatchNorm folded
    model, info = build("resnet8")              # weights: data folder, cache, or a checksummed download
    model, info = build("resnet8", weights=p)   # an explicit Keras .h5
    logits = model(to_nchw(images_uint8_nhwc))
    x = float_input(load_dataset(info.eval_dataset))   # any entry's dataset as its NCHW float input

An entry is either defined in PyTorch (resnet8: a module, a weight loader, and `to_graph` for the FloatGraph) or
read from a model file by a frontend straight into a FloatGraph (ds_cnn: the MLPerf Tiny float .tflite).
`info.input_scale`/`info.input_zero_point` give the int8 input quantization, q = round(real / scale) + zero_point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from flexround_mcu.data.datasets import KWS_INPUT_SCALE, KWS_INPUT_ZERO_POINT, Dataset
from flexround_mcu.errors import UserError
from flexround_mcu.frontends.zoo_graph import resnet8_to_graph
from flexround_mcu.quant.graph import FloatGraph, GraphModule
from flexround_mcu.zoo.resnet8 import ResNet8, load_keras_h5, resnet8, to_nchw
from flexround_mcu.zoo.weights import DS_CNN_WEIGHTS, RESNET8_WEIGHTS, WeightsSpec, cache_dir, resolve_weights


@dataclass(frozen=True)
class ZooEntry:
    """How to build one zoo model, and where its weights and data come from.

    A PyTorch-defined entry gives `make` (an untrained module), `load` (weights file -> module) and `to_graph`
    (module -> FloatGraph); a file-defined entry gives only `read_graph` (weights file, entry -> FloatGraph).
    """

    weights: WeightsSpec
    datasets: Mapping[str, str]  # role ("eval", "calib", "extra") -> flexround_mcu.data dataset name
    input_scale: float
    input_zero_point: int
    description: str
    make: Callable[[], nn.Module] | None = None
    load: Callable[[nn.Module, Path], nn.Module] | None = None
    to_graph: Callable[[nn.Module], FloatGraph] | None = None
    read_graph: Callable[[Path, "ZooEntry"], FloatGraph] | None = None


@dataclass(frozen=True)
class ZooInfo:
    """What `build` used: the weights file (and how it was found), the datasets and the input quantization."""

    name: str
    weights: Path
    weights_source: str  # "explicit", "data", "cache" or "download"
    datasets: Mapping[str, str]
    input_scale: float
    input_zero_point: int
    description: str

    @property
    def eval_dataset(self) -> str:
        return self.datasets["eval"]

    @property
    def calib_dataset(self) -> str:
        return self.datasets["calib"]


def _read_float_tflite(path: Path, entry: ZooEntry) -> FloatGraph:
    from flexround_mcu.frontends.tflite_float import load_float_tflite  # the flatbuffer schema, only when needed

    return load_float_tflite(path, input_scale=entry.input_scale, input_zero_point=entry.input_zero_point)


ZOO: dict[str, ZooEntry] = {
    "resnet8": ZooEntry(
        make=ResNet8,
        load=load_keras_h5,
        to_graph=resnet8_to_graph,
        weights=RESNET8_WEIGHTS,
        # eval: the 5,000 JPEG-decoded test images (relative comparisons); calib: lossless training images;
        # extra: the lossless MLPerf Tiny ic01 set (absolute accuracy).
        datasets={"eval": "cifar10-test-5000", "calib": "cifar10-calib", "extra": "ic01"},
        input_scale=1.0,
        input_zero_point=-128,  # q = pixel - 128, as in the MLPerf Tiny int8 reference model
        description="MLPerf Tiny image-classification ResNet-8 (resnet_v1_eembc), CIFAR-10, input raw 0..255 pixels",
    ),
    "ds_cnn": ZooEntry(
        read_graph=_read_float_tflite,
        weights=DS_CNN_WEIGHTS,
        # kws01 (1,000 Speech Commands clips as MFCC features) is the only KWS data there is: calibration uses it
        # too, so ds_cnn's quantized accuracies are measured on the calibration inputs.
        datasets={"eval": "kws01", "calib": "kws01"},
        # The int8 reference model's input quantization (kws_ref_model.tflite), in which kws01 is stored.
        input_scale=KWS_INPUT_SCALE,
        input_zero_point=KWS_INPUT_ZERO_POINT,
        description="MLPerf Tiny keyword-spotting DS-CNN (Speech Commands v2, 12 classes), from its float .tflite; "
                    "input 49x10 MFCC features",
    ),
}


def _resolve(name: str, weights, url, allow_download) -> tuple[ZooEntry, ZooInfo]:
    entry = ZOO.get(name)
    if entry is None:
        raise UserError(f"unknown zoo model {name!r}: choose one of {', '.join(sorted(ZOO))}")
    found = resolve_weights(entry.weights, weights, url=url, allow_download=allow_download)
    info = ZooInfo(name=name, weights=found.path, weights_source=found.source, datasets=dict(entry.datasets),
                   input_scale=entry.input_scale, input_zero_point=entry.input_zero_point,
                   description=entry.description)
    return entry, info


def _module(entry: ZooEntry, info: ZooInfo) -> nn.Module:
    model = entry.make()
    entry.load(model, info.weights)
    return model.eval()


def build(name: str, weights: str | os.PathLike | None = None, *, url: str | None = None,
          allow_download: bool = True) -> tuple[nn.Module, ZooInfo]:
    """(model in eval mode with its reference weights, info). `weights`: an explicit file, else see zoo.weights.

    `url` overrides the download location (also $FLEXROUND_MCU_WEIGHTS_URL); the pinned sha256 still applies.
    A file-defined entry (ds_cnn) comes back as the GraphModule that runs its FloatGraph: its output is the
    graph's output (ds_cnn: softmax probabilities; `model(x, upto=model.graph.logits)` gives the logits).
    """
    entry, info = _resolve(name, weights, url, allow_download)
    if entry.read_graph is not None:
        return GraphModule(entry.read_graph(info.weights, entry)).eval(), info
    return _module(entry, info), info


def build_graph(name: str, weights: str | os.PathLike | None = None, *, url: str | None = None,
                allow_download: bool = True) -> tuple[FloatGraph, ZooInfo]:
    """(the model as the quantizer's FloatGraph, BatchNorm folded, info), for every entry; arguments as build()."""
    entry, info = _resolve(name, weights, url, allow_download)
    if entry.read_graph is not None:
        return entry.read_graph(info.weights, entry), info
    return entry.to_graph(_module(entry, info)), info


def float_input(ds: Dataset) -> torch.Tensor:
    """A dataset's items as the float model's input: NCHW float32 of real = (x - offset) * scale.

    For the CIFAR sets this is the raw 0..255 pixels (what to_nchw gives); for kws01 the dequantized MFCC features.
    """
    return torch.from_numpy(np.ascontiguousarray(ds.to_float().transpose(0, 3, 1, 2)))


__all__ = ["ZOO", "ZooEntry", "ZooInfo", "build", "build_graph", "float_input", "ResNet8", "resnet8",
           "load_keras_h5", "to_nchw", "WeightsSpec", "RESNET8_WEIGHTS", "DS_CNN_WEIGHTS", "resolve_weights",
           "cache_dir"]
