"""Model zoo: reference float models in PyTorch with their weights, datasets and input quantization.

    model, info = build("resnet8")              # weights: data folder, cache, or a checksummed download
    model, info = build("resnet8", weights=p)   # an explicit Keras .h5
    logits = model(to_nchw(images_uint8_nhwc))

`info.input_scale`/`info.input_zero_point` give the int8 input quantization, q = round(pixel / scale) + zero_point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from torch import nn

from flexround_mcu.errors import UserError
from flexround_mcu.zoo.resnet8 import ResNet8, load_keras_h5, resnet8, to_nchw
from flexround_mcu.zoo.weights import RESNET8_WEIGHTS, WeightsSpec, cache_dir, resolve_weights


@dataclass(frozen=True)
class ZooEntry:
    """How to build one zoo model: an untrained module, a weight loader, and where weights and data come from."""

    make: Callable[[], nn.Module]
    load: Callable[[nn.Module, Path], nn.Module]
    weights: WeightsSpec
    datasets: Mapping[str, str]  # role ("eval", "calib", "extra") -> flexround_mcu.data dataset name
    input_scale: float
    input_zero_point: int
    description: str


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


ZOO: dict[str, ZooEntry] = {
    "resnet8": ZooEntry(
        make=ResNet8,
        load=load_keras_h5,
        weights=RESNET8_WEIGHTS,
        # eval: the 5,000 JPEG-decoded test images (relative comparisons); calib: lossless training images;
        # extra: the lossless MLPerf Tiny ic01 set (absolute accuracy).
        datasets={"eval": "cifar10-test-5000", "calib": "cifar10-calib", "extra": "ic01"},
        input_scale=1.0,
        input_zero_point=-128,  # q = pixel - 128, as in the MLPerf Tiny int8 reference model
        description="MLPerf Tiny image-classification ResNet-8 (resnet_v1_eembc), CIFAR-10, input raw 0..255 pixels",
    ),
}


def build(name: str, weights: str | os.PathLike | None = None, *, url: str | None = None,
          allow_download: bool = True) -> tuple[nn.Module, ZooInfo]:
    """(model in eval mode with its reference weights, info). `weights`: an explicit file, else see zoo.weights.

    `url` overrides the download location (also $FLEXROUND_MCU_WEIGHTS_URL); the pinned sha256 still applies.
    """
    entry = ZOO.get(name)
    if entry is None:
        raise UserError(f"unknown zoo model {name!r}: choose one of {', '.join(sorted(ZOO))}")
    found = resolve_weights(entry.weights, weights, url=url, allow_download=allow_download)
    model = entry.make()
    entry.load(model, found.path)
    model.eval()
    info = ZooInfo(name=name, weights=found.path, weights_source=found.source, datasets=dict(entry.datasets),
                   input_scale=entry.input_scale, input_zero_point=entry.input_zero_point,
                   description=entry.description)
    return model, info


__all__ = ["ZOO", "ZooEntry", "ZooInfo", "build", "ResNet8", "resnet8", "load_keras_h5", "to_nchw",
           "WeightsSpec", "RESNET8_WEIGHTS", "resolve_weights", "cache_dir"]
