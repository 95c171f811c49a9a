"""Export an int8 .tflite as it is: no quantization step. The TFLite Micro user's first step, and the way to put a
converter's model beside a FlexRound export of the same network.

The int8 graph (frontends/tflite.py: per-tensor or per-channel weights as stored, INT4 where the file holds INT4) is
lowered, written and checked exactly as a FlexRound export is (workflow.check_project: host and QEMU against the
simulator), and the simulator is also checked against tflite_micro on the same file: every tensor of the test
inputs, value by value (report.json's bitexact.tflm), and the accuracy on the whole dataset when one is given.
report.json has method "none"; the quantization fields are null. No torch here.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from .errors import UserError
from .ir import OpKind, QGraph

# ExportOptions fields that only make sense when we quantize, and the options that set them
QUANTIZATION_OPTIONS = {
    "method": "--method", "wbits": "--wbits", "flash_budget": "--flash-budget", "abits": "--abits",
    "granularity": "--granularity", "first_last_8bit": "--first-last-8bit/--no-first-last-8bit",
    "weights": "--weights", "calib_dataset": "--calib-dataset", "calib_size": "--calib-size",
    "input_shape": "--input-shape", "iters": "--iters", "restarts": "--restarts", "lr": "--lr",
    "batch_size": "--batch-size",
    "act_lr": "--act-lr",
    "head_with_last_block": "--logits-loss/--block-loss", "drop_prob": "--qdrop", "seed": "--seed",
}
RANDOM_INPUTS_SEED = 0  # test inputs when no dataset is given: uniform int8, always the same
_WEIGHTED = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED)


def is_int8_tflite(model: str) -> bool:
    """True when `model` is a .tflite file whose graph input is INT8 (a quantized model), False otherwise
    (a float .tflite, or anything else: those take the quantization path, which reports their problems)."""
    path = Path(model)
    if path.suffix.lower() != ".tflite" or not path.is_file():
        return False
    from .frontends.tflite import input_type

    return input_type(path) == "INT8"


def check_int8_options(model: str, given: frozenset[str]) -> None:
    """One line naming every quantization-only option the user gave with an int8 model."""
    bad = [flag for field, flag in QUANTIZATION_OPTIONS.items() if field in given]
    if bad:
        raise UserError(f"{model} is already an int8 model: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} "
                        f"for quantizing a float model; drop {'it' if len(bad) == 1 else 'them'} (the int8 graph is "
                        f"exported as stored)")


def stored_bits(graph: QGraph) -> tuple[int | str, str, dict[str, int]]:
    """(wbits: the one weight width, or "mixed"; granularity: "channel" if any filter has per-channel scales, else
    "tensor"; {layer: bits}) of the graph as the file stores it."""
    bits, per_channel = {}, False
    for op in graph.ops:
        if op.kind in _WEIGHTED:
            w = graph.tensors[op.inputs[1]]
            bits[op.name] = {"int8": 8, "int4": 4, "int2": 2}[w.dtype]
            per_channel |= len(w.scale) > 1
    widths = set(bits.values())
    return (widths.pop() if len(widths) == 1 else "mixed"), ("channel" if per_channel else "tensor"), bits


def run_int8_export(opt, given: frozenset[str] = frozenset()) -> dict:
    """The export of an int8 .tflite (opt: workflow.ExportOptions); returns the report (also OUT/report.json)."""
    from .codegen.render import memory_report
    from .frontends.tflite import load_tflite
    from .sim.runner import Simulator
    from .simulate import simulation_data
    from .toolchain.targets import get_target
    from .workflow import (_bar, _say, check_output_folder, check_project, model_kind, move_into_place,
                           project_report, harness_input_count, weight_bytes)

    t_start = time.perf_counter()
    check_int8_options(opt.model, given)
    _, label = model_kind(opt.model)
    out = Path(opt.out or f"out/{label}-int8-{opt.target}")
    check_output_folder(out, opt.force)
    graph = load_tflite(opt.model)
    memory = memory_report(graph, opt.target, opt.kernels, opt.ram_budget)
    tin = graph.tensors[graph.inputs[0]]
    if opt.dataset is not None:
        data = simulation_data(graph, opt.model, opt.dataset, opt.eval_size, opt.input_scale, opt.input_zero_point)
        x, labels, preprocessing = data.x, data.y, data.preprocessing
    else:
        if opt.input_scale is not None or opt.input_zero_point is not None or opt.eval_size is not None:
            raise UserError("--input-scale / --input-zero-point / --eval-size describe a dataset: pass --dataset too")
        n = harness_input_count(opt)
        x = np.random.default_rng(RANDOM_INPUTS_SEED).integers(-128, 128, (n, *tin.shape[1:]), dtype=np.int8)
        labels, preprocessing = None, f"no dataset: {n} uniform random int8 inputs (seed {RANDOM_INPUTS_SEED})"
    _say(f"model: {opt.model} (int8 .tflite, {len(graph.ops)} ops: exported as stored, no quantization)")
    n_test = harness_input_count(opt, len(x))

    sim = Simulator(graph)
    with _bar(len(x), "integer simulator") as bar:  # every tensor of the test inputs (for TFLM), outputs of the rest
        test_values = sim.run(x[:n_test], keep_all=True, progress=bar.update)
        expected = test_values[graph.outputs[0]].reshape(n_test, -1)
        rest = (sim.run(x[n_test:], progress=bar.update)[graph.outputs[0]].reshape(len(x) - n_test, -1)
                if len(x) > n_test else expected[:0])
    outputs = np.concatenate([expected, rest])
    tflm, acc_tflm = _against_tflm(graph, opt.model, x, n_test, test_values, labels)
    acc_int = None if labels is None else float(np.mean(np.argmax(outputs, axis=1) == labels))

    wbits, granularity, bits = stored_bits(graph)
    stage, checked = check_project(graph, memory, x[:n_test], expected, opt, out)
    try:
        wb = weight_bytes(graph, memory, bits)
        report = {
            "model": opt.model,
            "model_source": {"kind": "tflite-int8", "source": str(Path(opt.model).resolve()),
                             "weights_found_in": None},
            "input": {"shape_hwc": list(tin.shape[1:]), "scale": float(tin.scale[0]),
                      "zero_point": int(tin.zero_point[0])},
            "target": opt.target, "kernels": opt.kernels or get_target(opt.target).kernels, "method": "none",
            "wbits": wbits, "mixed": None, "abits": 8,
            "granularity": granularity, "first_last_8bit": None, "seed": None,
            "accuracy": {"dataset": None if opt.dataset is None else
                         (opt.dataset if opt.eval_size is None else f"{opt.dataset}[:{len(x)}]"),
                         "n": None if labels is None else len(x), "preprocessing": preprocessing,
                         "float": None, "fake_quant": None, "fake_quant_float_path": None,
                         "int_sim": None if acc_int is None else round(acc_int, 4),
                         "tflm": None if acc_tflm is None else round(acc_tflm, 4),
                         "logits": "the graph's int8 output"},
            **project_report(graph, memory, checked, wb, opt),
            "calibration": None, "reconstruction": None,
            "tflite": "model.tflite" if opt.emit_tflite else None, "harness": opt.harness,
            "weights_file": str(Path(opt.model).resolve()),
            "time_s": {"quantize": None, "total": round(time.perf_counter() - t_start, 1)},
        }
        report["bitexact"]["tflm"] = tflm
        move_into_place(stage, out, report, opt.force)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    report["out"] = str(out)
    return report


def _against_tflm(graph: QGraph, model: str, x: np.ndarray, n_test: int, test_values: dict,
                  labels: np.ndarray | None) -> tuple[dict, float | None]:
    """bitexact.tflm (the test inputs through tflite_micro, every tensor compared value by value with the
    simulator) and tflite_micro's accuracy on all of x when there are labels."""
    from .tflm import compare_with_tflm, tflm_outputs
    from .workflow import _bar

    with _bar(n_test, "tflite_micro, every tensor") as bar:
        cmp = compare_with_tflm(graph, model, x[:n_test], test_values, progress=bar.update)
    result = {"inputs": n_test, "tensors": len(cmp.tensors), "mismatches": cmp.mismatches}
    if labels is None:
        return result, None
    with _bar(len(x), "tflite_micro, accuracy") as bar:
        ref = tflm_outputs(model, x, progress=bar.update)
    return result, float(np.mean(np.argmax(ref.reshape(len(x), -1), axis=1) == labels))
