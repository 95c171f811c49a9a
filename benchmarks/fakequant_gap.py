#!/usr/bin/env python3
"""How far fake quantization is from the integer simulator, value by value and layer by layer.

    FLEXROUND_MCU_DATA=../shared/data .venv/bin/python benchmarks/fakequant_gap.py [--model resnet8]
        [--wbits 8] [--granularity channel] [--images 300] [--json benchmarks/results/fakequant_gap.json]

Quantizes the model by round to nearest (calibration on 256 images), lowers it, and runs the same images through
the fake-quant PyTorch module and the integer simulator. Each node output of the fake-quant module is put on its
int8 grid (round(x / scale) + zero point) and compared with the simulator's tensor of the same name: how many
values differ and by how much at most, and at the logits how many argmaxes differ. Issue 14 asks for none.
`--model` takes what `flexround-mcu export` takes (a zoo name, or package.module:factory with its input options
for the MobileNetV2-style test model: `--model tests.fx_models:mobilenet_v2_tiny`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FLEXROUND_MCU_DATA", str(REPO.parent / "shared" / "data"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from flexround_mcu.data import load_data  # noqa: E402
from _common import run, write_results  # noqa: E402
from flexround_mcu.lower import lower  # noqa: E402
from flexround_mcu.quant.fakequant import quantize_model  # noqa: E402
from flexround_mcu.quant.graph import exact_arithmetic  # noqa: E402
from flexround_mcu.sim.runner import Simulator  # noqa: E402
from flexround_mcu.workflow import ExportOptions, model_units, resolve_model  # noqa: E402
from flexround_mcu.zoo import float_input  # noqa: E402

FX_INPUT = dict(input_shape="3,32,32", input_scale=1 / 255, input_zero_point=-128, dataset="cifar10-test-5000",
                calib_dataset="cifar10-calib")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--wbits", type=int, default=8)
    ap.add_argument("--granularity", choices=["tensor", "channel"], default="channel")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/fakequant_gap.json")
    a = ap.parse_args()
    os.chdir(REPO)  # a package.module:factory model is imported from the repository
    extra = FX_INPUT if ":" in a.model else {}
    opt = ExportOptions(model=a.model, target="host", method="rtn", wbits=a.wbits, abits=8,
                        granularity=a.granularity, first_last_8bit=True, **extra)
    graph, info = resolve_model(opt)
    ev = model_units(load_data(info.eval_dataset, limit=a.images), info.input_scale, info.input_zero_point)
    cal = model_units(load_data(info.calib_dataset, limit=256), info.input_scale, info.input_zero_point)
    qm = quantize_model(graph, [float_input(cal)], "rtn", a.wbits, a.granularity, True)
    qg = lower(qm, name=info.label)
    t_in = qg.tensors[qg.inputs[0]]
    x8 = ev.quantize_input(float(t_in.scale[0]), int(t_in.zero_point[0]))
    values = Simulator(qg).run(x8, keep_all=True)
    by_name = {t.name: i for i, t in enumerate(qg.tensors) if not t.is_constant}
    rows = []
    with torch.no_grad():
        train_path = qm.module(float_input(ev), keep=True)  # the float path reconstruction trains through
        with exact_arithmetic(qm.module):
            exact = qm.module(float_input(ev), keep=True)  # quant/exact.py: the integer arithmetic
    for node in graph.nodes:
        ti = by_name.get(node.name)
        if ti is None or ti not in values:
            continue
        t = qg.tensors[ti]
        sim = values[ti].astype(np.int64)
        row = {"node": node.name, "values": int(sim.size)}
        for key, run_values in (("float_path", train_path), ("exact", exact)):
            f = run_values[node.name].numpy()
            if f.ndim == 4:
                f = f.transpose(0, 2, 3, 1)  # NCHW -> the simulator's NHWC
            q = np.round(f.reshape(sim.shape) / float(t.scale[0])) + int(t.zero_point[0])
            d = np.abs(q - sim)
            row[key] = {"differ": int((d > 0).sum()), "max": int(d.max())}
            if node.name == graph.logits:
                row[key]["argmax_differ"] = int((q.reshape(len(x8), -1).argmax(1)
                                                 != sim.reshape(len(x8), -1).argmax(1)).sum())
        rows.append(row)
    print(f"fake quant against the integer simulator: {a.model} RTN W{a.wbits} {a.granularity}, {len(x8)} images")
    print(f"{'node':<28} {'values':>10}  {'float path: differ':>18} {'max':>4} {'argmax':>6}  "
          f"{'exact: differ':>13} {'max':>4} {'argmax':>6}")
    for r in rows:
        fp, ex = r["float_path"], r["exact"]
        print(f"{r['node']:<28} {r['values']:>10,}  {fp['differ']:>18,} {fp['max']:>4} "
              f"{fp.get('argmax_differ', ''):>6}  {ex['differ']:>13,} {ex['max']:>4} {ex.get('argmax_differ', ''):>6}")
    write_results(a.json, {"model": a.model, "wbits": a.wbits, "granularity": a.granularity, "images": len(x8),
                           "rows": rows})
    return 0


if __name__ == "__main__":
    run(main)
