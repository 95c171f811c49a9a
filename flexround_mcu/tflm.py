"""The external oracle: TFLite Micro's Python interpreter (PyPI `tflite-micro`) on the same .tflite and inputs.

It runs one input at a time (the interpreter has batch 1) and, with kPreserveAllTensors, hands back every
intermediate tensor, so our simulator can be compared with it tensor by tensor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UserError
from .ir import QGraph


def _runtime():
    try:
        from tflite_micro import runtime
    except ImportError:
        raise UserError("the tflite_micro interpreter is not installed; install the project's 'tf' extra "
                        "(pip install 'flexround-mcu[tf]', or run the README's setup command)") from None
    return runtime


class TFLMInterpreter:
    def __init__(self, model_path: str | Path, preserve_all: bool = True):
        runtime = _runtime()
        config = (runtime.InterpreterConfig.kPreserveAllTensors if preserve_all
                  else runtime.InterpreterConfig.kAllocationRecording)
        # The keyword really is spelled 'intrepreter_config' in tflite_micro's API.
        self.interp = runtime.Interpreter.from_file(str(model_path), intrepreter_config=config)

    def invoke(self, x1: np.ndarray) -> None:
        """Run one input of shape (1, ...)."""
        self.interp.set_input(x1, 0)
        self.interp.invoke()

    def output(self) -> np.ndarray:
        return self.interp.get_output(0)

    def tensor(self, tflite_index: int) -> np.ndarray:
        return self.interp.GetTensor(int(tflite_index), 0)["tensor_data"]


@dataclass
class TensorDiff:
    index: int
    name: str
    producer: str
    shape: tuple
    mismatches: int = 0
    max_abs_diff: int = 0


@dataclass
class Comparison:
    inputs: int
    tensors: list[TensorDiff] = field(default_factory=list)
    tflm_outputs: np.ndarray | None = None

    @property
    def mismatches(self) -> int:
        return sum(t.mismatches for t in self.tensors)


def compare_with_tflm(graph: QGraph, model_path: str | Path, x: np.ndarray, sim_values: dict[int, np.ndarray],
                      progress: Callable[[int], None] | None = None) -> Comparison:
    """Run tflite_micro on every input in x and count int8 values that differ from the simulator's, per tensor.

    sim_values holds the simulator's value of every activation tensor (Simulator.run(keep_all=True)).
    """
    index_map = graph.metadata.get("tflite_index")
    if index_map is None:
        raise UserError(f"{graph.name}: --compare tflm needs a model read from a .tflite file")
    tflm = TFLMInterpreter(model_path)
    producer = {op.outputs[0]: op.kind.value for op in graph.ops}
    diffs = [TensorDiff(q, graph.tensors[q].name, producer.get(q, "input"), graph.tensors[q].shape)
             for q in graph.activation_tensors()]
    outputs = []
    for k in range(len(x)):
        tflm.invoke(x[k:k + 1])
        for d in diffs:
            ref = tflm.tensor(index_map[d.index]).astype(np.int32).reshape(-1)
            ours = sim_values[d.index][k].astype(np.int32).reshape(-1)
            if ref.shape != ours.shape:
                raise RuntimeError(f"tensor {d.index} ({d.name}): tflite_micro gave {ref.size} values, "
                                   f"the simulator {ours.size}")
            bad = ref != ours
            if bad.any():
                d.mismatches += int(bad.sum())
                d.max_abs_diff = max(d.max_abs_diff, int(np.abs(ref - ours).max()))
        outputs.append(tflm.output().reshape(-1).copy())
        if progress:
            progress(1)
    return Comparison(len(x), diffs, np.stack(outputs) if outputs else None)


def tflm_outputs(model_path: str | Path, x: np.ndarray,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """tflite_micro's output for every input in x (one invoke each), shape (N, output size): for accuracies on many
    inputs, where keeping every tensor (compare_with_tflm) would hold them all in memory."""
    tflm = TFLMInterpreter(model_path, preserve_all=False)
    outputs = []
    for k in range(len(x)):
        tflm.invoke(x[k:k + 1])
        outputs.append(tflm.output().reshape(-1).copy())
        if progress:
            progress(1)
    return np.stack(outputs) if outputs else np.zeros((0, 0), np.int8)
