"""The data of `flexround-mcu simulate`: a known dataset or the user's own folder, turned into the int8 model's
input with the same options, checks and errors as `export`.

A known dataset carries its own units (CIFAR pixels, KWS features) and is quantized with the model's input
parameters, as before. A folder of raw uint8 / int8 data needs the declared preprocessing, as for export: the
model's float input is (q - Z) * S with q the data as int8 (uint8 values - 128, int8 values as stored); with the
model's own input parameters as S and Z, the int8 input is the data itself. Float data are the model's float input
and need no declaration. No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import load_data, model_units
from .data.datasets import DATASETS, check_fits
from .errors import UserError
from .ir import QGraph


@dataclass
class SimulationData:
    name: str
    x: np.ndarray  # int8, the model's input shape
    y: np.ndarray  # int64 labels
    preprocessing: str  # how x was made, for the printout and the JSON


def simulation_data(graph: QGraph, model: str, dataset: str, limit: int | None = None,
                    input_scale: float | None = None, input_zero_point: int | None = None) -> SimulationData:
    """`dataset` (a known name or a folder / .npz file) as the int8 input of `graph`, checked against it."""
    if (input_scale is None) != (input_zero_point is None):
        given, other = ("--input-scale", "--input-zero-point") if input_zero_point is None else \
            ("--input-zero-point", "--input-scale")
        raise UserError(f"{given} without {other}: the declared preprocessing needs both (the model's input is "
                        f"(q - zero_point) * scale, q the data as int8)")
    tin = graph.tensors[graph.inputs[0]]
    scale, zp = float(tin.scale[0]), int(tin.zero_point[0])
    own = f"--input-scale {scale:.9g} --input-zero-point {zp}"
    ds = load_data(dataset, limit=limit)
    known = str(dataset) in DATASETS
    if input_scale is not None:
        if ds.x.dtype.kind == "f":
            raise UserError(f"--dataset {dataset} holds float data, the model's float input itself (quantized with "
                            f"its input scale {scale:.9g}, zero point {zp}): drop --input-scale / --input-zero-point")
        ds = model_units(ds, input_scale, input_zero_point)
        how = f"declared: input = (q - {input_zero_point}) * {input_scale:.9g}, q the data as int8"
    elif known:
        how = f"{dataset}'s own units"
    elif ds.x.dtype.kind == "f":
        how = "float data: the model's float input"
    else:
        raise UserError(f"--dataset {dataset} holds raw {ds.x.dtype} data: pass the declared preprocessing "
                        f"--input-scale S --input-zero-point Z (the model's input is (q - Z) * S, q the data as "
                        f"int8); {own} takes the data as this model's int8 input as stored")
    check_fits(ds, "--dataset", model, tin.shape[1:], int(np.prod(graph.tensors[graph.outputs[0]].shape[1:])))
    return SimulationData(str(dataset), ds.quantize_input(scale, zp), ds.y, how)
