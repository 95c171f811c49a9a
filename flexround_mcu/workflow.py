"""The export workflow: float model -> quantized model -> QGraph -> C project, built and checked bit for bit.

Each stage is a call into its own package; this module only sequences them, measures them and writes the
report (design.md's report.json contract: a field whose stage did not run is null). Everything is written into
a staging folder next to the output and moved into place only when complete.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

MARKER = ".flexround-mcu-project"


@dataclass
class ExportOptions:
    model: str
    target: str = "host"
    method: str = "flexround"
    wbits: int = 4
    abits: int = 8
    granularity: str = "tensor"
    first_last_8bit: bool = True
    weights: str | None = None
    calib_size: int = 1024
    eval_size: int | None = None
    test_inputs: int | None = None  # None: 100 on the host, 20 on a Cortex-M target (emulated, slower)
    out: Path | None = None
    seed: int = 0
    force: bool = False
    iters: int | None = None  # None: default_iters(wbits)
    lr: float | None = None  # None: the method's default (METHOD_LR)
    batch_size: int = 32
    act_lr: float | None = None  # LSQ: learn the activation steps during reconstruction at this lr (None: off)
    drop_prob: float = 0.0  # QDrop: probability of leaving an activation unquantized while a block learns
    emit_tflite: bool = False  # also write OUT/model.tflite (the QGraph as TFLite Micro runs it)


# AdaRound: BRECQ's Adam default. FlexRound: measured on ResNet-8 (README, "Choosing the defaults"): lr 3e-3 met
# every accuracy floor at 8, 4, 3 and 2 bits, where 1e-3 missed W8 (76.28%) and W2 (68.10% at 2,000 iterations).
METHOD_LR = {"flexround": 3e-3, "adaround": 1e-3}
# Iterations per block: 500 reach float accuracy at 8, 4 and 3 bits; ternary (2-bit) weights need 2,000.
ITERS = {2: 2000}
DEFAULT_ITERS = 500


def default_iters(wbits: int) -> int:
    return ITERS.get(wbits, DEFAULT_ITERS)


def _bar(total: int, desc: str, unit: str = "img"):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True, disable=None)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_output_folder(out: Path, force: bool) -> None:
    """An existing folder is replaced only if it is one of our exports, or with --force."""
    if os.path.lexists(out) and not (out / MARKER).is_file() and not force:
        raise UserError(f"{out} exists and is not a flexround-mcu export (no {MARKER} in it): choose another "
                        f"--out, or pass --force to replace it")


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits.reshape(len(labels), -1), axis=1) == labels))


def torch_accuracy(fn, x_nchw, labels, desc: str, batch: int = 500) -> float:
    import torch
    outs = []
    with _bar(len(labels), desc) as bar, torch.no_grad():
        for i in range(0, len(labels), batch):
            outs.append(fn(x_nchw[i:i + batch]).numpy())
            bar.update(min(batch, len(labels) - i))
    return _accuracy(np.concatenate(outs), labels)


def weight_bytes(graph, memory, bits: dict[str, int]) -> dict:
    """Weight flash as exported (codegen's memory report: int4 filters packed two per byte) and what the same
    arrays take with every filter in int8 containers, the int8 model's layout (biases and tables unchanged)."""
    per_layer = []
    for layer in memory.layers:
        name = graph.ops[layer.op].name
        as_int8 = layer.total_bytes + (layer.filter_values - layer.filter_bytes if layer.filter_dtype == "int4" else 0)
        per_layer.append({"layer": name, "bits": bits.get(name, 8), "filter_dtype": layer.filter_dtype or None,
                          "weights": layer.filter_values, "bytes": layer.total_bytes, "bytes_int8_containers": as_int8})
    return {"exported": memory.weight_bytes, "int8_containers": sum(la["bytes_int8_containers"] for la in per_layer),
            "per_layer": per_layer}


def run_export(opt: ExportOptions) -> dict:
    """Run the whole export; returns the report (also written to OUT/report.json)."""
    t_start = time.perf_counter()
    out = Path(opt.out or f"out/{opt.model}-{opt.method}-w{opt.wbits}-{opt.granularity}-{opt.target}")
    check_output_folder(out, opt.force)  # fail before spending minutes on quantization

    import torch

    from .codegen.render import export_c_project, memory_report
    from .data import load_dataset
    from .frontends.zoo_graph import resnet8_to_graph
    from .lower import lower
    from .quant.fakequant import quantize_model
    from .quant.graph import GraphModule
    from .sim.runner import Simulator
    from .toolchain.host import build_host, run_host
    from .zoo import build as build_zoo
    from .zoo.resnet8 import to_nchw

    torch.manual_seed(opt.seed)
    model, info = build_zoo(opt.model, weights=opt.weights)
    graph = {"resnet8": resnet8_to_graph}[opt.model](model)

    eval_set = load_dataset(info.eval_dataset, limit=opt.eval_size)
    calib_all = load_dataset(info.calib_dataset)
    iters = opt.iters if opt.iters is not None else default_iters(opt.wbits)
    if iters < 1:
        raise UserError(f"--iters {iters}: the reconstruction needs at least 1 iteration per block")
    if opt.calib_size > len(calib_all):
        raise UserError(f"--calib-size {opt.calib_size} is more than the {len(calib_all)} calibration images of "
                        f"{info.calib_dataset}: pass at most {len(calib_all)}")
    pick = np.sort(np.random.default_rng(opt.seed).choice(len(calib_all), opt.calib_size, replace=False))
    calib_x = to_nchw(calib_all.x[pick])
    _say(f"model: {opt.model} (weights: {info.weights})")
    eval_x = to_nchw(eval_set.x)

    float_module = GraphModule(graph).eval()
    acc_float = torch_accuracy(lambda x: float_module(x, upto=graph.logits), eval_x, eval_set.y, "float model")

    t_q = time.perf_counter()
    with _bar(len(calib_x), "calibration") as bar:
        qm = quantize_model(graph, [calib_x[i:i + 128] for i in range(0, len(calib_x), 128)], opt.method,
                            opt.wbits, opt.granularity, opt.first_last_8bit, progress=bar.update)
    recon_logs = []
    if opt.method in METHOD_LR:
        from .quant.reconstruct import keep_freed_memory, reconstruct
        keep_freed_memory()
        lr = opt.lr or METHOD_LR[opt.method]
        with _bar(iters, f"{opt.method} reconstruction", unit="it") as bar:
            def tick(block, it, total):
                bar.set_description(f"{opt.method}: block {block}")
                bar.n = it
                bar.refresh()
            recon_logs = reconstruct(qm, calib_x, iters=iters, lr=lr, batch_size=opt.batch_size,
                                     seed=opt.seed, drop_prob=opt.drop_prob, act_lr=opt.act_lr, progress=tick)
    quantize_s = time.perf_counter() - t_q
    acc_fake = torch_accuracy(lambda x: qm.module(x, upto=graph.logits), eval_x, eval_set.y, "fake-quant model")

    qgraph = lower(qm, name=opt.model)
    tin = qgraph.tensors[qgraph.inputs[0]]
    x_int8 = eval_set.quantize_input(float(tin.scale[0]), int(tin.zero_point[0]))
    sim = Simulator(qgraph)
    with _bar(len(x_int8), "integer simulator") as bar:
        values = sim.run(x_int8, keep_all=True, progress=bar.update)
    acc_int = _accuracy(values[qgraph.metadata["logits_tensor"]], eval_set.y)
    n_test = min(opt.test_inputs or (100 if opt.target == "host" else 20), len(x_int8))
    expected = values[qgraph.outputs[0]][:n_test].reshape(n_test, -1)

    stage = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        export_c_project(qgraph, stage, x_int8[:n_test], expected, target=opt.target)
        if opt.emit_tflite:
            from .frontends.tflite import save_tflite
            save_tflite(qgraph, stage / "model.tflite")
        _say("building the C project for the host and running the harness ...")
        result = run_host(build_host(stage))
        host = {"inputs": result.inputs, "mismatches": result.mismatches}
        if not result.ok:
            _say("\n".join(result.mismatch_lines[:5]))
        qemu = device = None
        if opt.target != "host":
            from .toolchain.qemu import run_on_target
            _say(f"building the firmware for {opt.target} and running it under qemu-system-arm ...")
            device = run_on_target(stage, opt.target)
            qemu = {"inputs": device.inputs, "mismatches": device.mismatches}
            if not device.ok:
                _say("\n".join(device.mismatch_lines[:5]))
        memory = memory_report(qgraph)
        plan = memory.arena
        wb = weight_bytes(qgraph, memory, qm.bits)
        report = {
            "model": opt.model, "target": opt.target, "method": opt.method, "wbits": opt.wbits,
            "abits": opt.abits, "granularity": opt.granularity, "first_last_8bit": opt.first_last_8bit,
            "seed": opt.seed,
            "accuracy": {"dataset": f"{eval_set.name}" if opt.eval_size is None else f"{eval_set.name}[:{len(eval_set)}]",
                         "n": len(eval_set), "float": round(acc_float, 4), "fake_quant": round(acc_fake, 4),
                         "int_sim": round(acc_int, 4), "logits": "int8 FULLY_CONNECTED output (before softmax)"},
            "memory": {"weight_bytes": wb["exported"], "weight_bytes_int8_containers": wb["int8_containers"],
                       "flash_bytes": device.flash_bytes if device else None,
                       "flash_bytes_without_test_data": device.model_flash_bytes if device else None,
                       "ram_bytes": device.ram_bytes if device else None,
                       "arena_bytes": plan.arena_size, "arena_floor_bytes": plan.floor},
            "bitexact": {"host_c": host, "qemu": qemu},
            "instructions_per_inference": (round(device.instructions_per_inference)
                                           if device and device.instructions_per_inference else None),
            "layers": wb["per_layer"],
            "calibration": {"dataset": info.calib_dataset, "images": opt.calib_size},
            "reconstruction": None if not recon_logs else {
                "iters": iters, "lr": opt.lr or METHOD_LR[opt.method], "batch_size": opt.batch_size,
                "act_lr": opt.act_lr, "drop_prob": opt.drop_prob,
                "blocks": [{"block": b.block, "loss_start": round(b.loss_start, 5), "loss_end": round(b.loss_end, 5),
                            "seconds": round(b.seconds, 1)} for b in recon_logs]},
            "tflite": "model.tflite" if opt.emit_tflite else None,
            "weights_file": str(info.weights),
            "time_s": {"quantize": round(quantize_s, 1), "total": round(time.perf_counter() - t_start, 1)},
        }
        (stage / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        check_output_folder(out, opt.force)
        if os.path.lexists(out):
            trash = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(out, trash)
            os.replace(stage, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    report["out"] = str(out)
    return report


def summary_table(report: dict) -> str:
    a, m, b = report["accuracy"], report["memory"], report["bitexact"]
    host = b["host_c"]
    rows = [
        ("model / target", f"{report['model']} / {report['target']}"),
        ("method, weight bits", f"{report['method']}, W{report['wbits']}A{report['abits']} {report['granularity']}"
                                f"{' (first/last 8-bit)' if report['first_last_8bit'] else ''}"),
        (f"accuracy on {a['dataset']} (n={a['n']})",
         f"float {a['float']:.2%}  fake-quant {a['fake_quant']:.2%}  int8 sim {a['int_sim']:.2%}"),
        ("weights", f"{m['weight_bytes']} B as exported (int4 packed), {m['weight_bytes_int8_containers']} B with "
                    f"int8 filters ({m['weight_bytes'] / m['weight_bytes_int8_containers']:.2f}x)"),
        ("activation arena", f"{m['arena_bytes']} B (floor {m['arena_floor_bytes']} B)"),
        ("host C vs simulator", "not run" if host is None else
         f"{host['mismatches']} mismatching of {host['inputs']} inputs"),
        ("qemu firmware vs simulator", "not run" if b["qemu"] is None else
         f"{b['qemu']['mismatches']} mismatching of {b['qemu']['inputs']} inputs"),
        ("flash / instructions", "n/a on the host" if m["flash_bytes"] is None else
         f"{m['flash_bytes']} B flash ({m['flash_bytes_without_test_data']} B without test data), "
         f"{report['instructions_per_inference']} instructions per inference (qemu, not cycles)"),
        ("time", f"quantize {report['time_s']['quantize']} s, total {report['time_s']['total']} s"),
        ("written to", report.get("out", "")),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
