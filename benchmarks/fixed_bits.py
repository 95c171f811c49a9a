#!/usr/bin/env python3
"""One FlexRound reconstruction per row at a fixed per-layer allocation: how much of a low-bit result is the
allocation and how much the reconstruction's settings (calibration images, QDrop) and its seed.

    FLEXROUND_MCU_DATA=../shared/data .venv/bin/python benchmarks/fixed_bits.py \
        --alloc allocated=benchmarks/allocations/resnet8_30000_allocated.json [--alloc NAME=FILE ...] \
        [--seeds 0,1] [--calib-sizes 1024,2048] [--qdrop 0,0.5] [--granularity tensor,channel]

An allocation FILE is {layer: bits}, or the report.json of a mixed export (its mixed.layers). Every combination
of allocation, seed, calibration size, QDrop probability and weight granularity is one row: calibration and one
reconstruction with the export's own stage (workflow.quantize_once, the defaults by the lowest bits: iterations, LSQ activation lr,
the logits loss), no restarts, on one torch thread, then the fake-quant accuracy with the integer arithmetic (the
integer simulator's by construction) on the 5,000 cifar10-test-5000 images and the host export's weight bytes.
A row with the export's defaults (calibration 1,024, QDrop 0) and a uniform allocation is `flexround-mcu export
resnet8 --wbits B --restarts 1 --seed S` (same figure). Writes benchmarks/results/fixed_bits_resnet8.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("FLEXROUND_MCU_DATA", str(REPO.parent / "shared" / "data"))

from _common import run, write_results  # noqa: E402

from flexround_mcu.errors import UserError  # noqa: E402


def load_allocation(spec: str) -> tuple[str, dict[str, int]]:
    name, sep, path = spec.partition("=")
    if not sep or not name:
        raise UserError(f"--alloc {spec!r}: expected NAME=FILE, e.g. allocated=benchmarks/allocations/"
                        f"resnet8_30000_allocated.json")
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--alloc {spec!r}: cannot read {path} as JSON ({e}); pass a {{layer: bits}} file or a "
                        f"mixed export's report.json")
    if isinstance(data, dict) and isinstance(data.get("mixed"), dict):
        data = {la["layer"]: la["bits"] for la in data["mixed"]["layers"]}
    if not (isinstance(data, dict) and data and all(v in (8, 4, 3, 2) for v in data.values())):
        raise UserError(f"--alloc {spec!r}: {path} is not a {{layer: bits}} map with bits in 8, 4, 3, 2")
    return name, {k: int(v) for k, v in data.items()}


def _ints(text: str, what: str, kind=int) -> list:
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{what} {text!r}: expected comma-separated numbers, e.g. 0,1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alloc", action="append", required=True, help="NAME=FILE ({layer: bits} or a report.json)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--calib-sizes", default="1024")
    ap.add_argument("--qdrop", default="0")
    ap.add_argument("--granularity", default="tensor", help="tensor, channel, or both: tensor,channel")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "fixed_bits_resnet8.json"))
    a = ap.parse_args()
    allocs = dict(load_allocation(s) for s in a.alloc)
    seeds, sizes = _ints(a.seeds, "--seeds"), _ints(a.calib_sizes, "--calib-sizes")
    drops = _ints(a.qdrop, "--qdrop", float)
    grains = a.granularity.split(",")
    if not set(grains) <= {"tensor", "channel"}:
        raise UserError(f"--granularity {a.granularity!r}: expected tensor, channel or tensor,channel")

    import torch
    torch.set_num_threads(1)
    from flexround_mcu import workflow as wf
    from flexround_mcu.codegen.render import memory_report
    from flexround_mcu.lower import lower

    graph, info = wf.resolve_model(wf.ExportOptions(model="resnet8", target="host"))
    layers = {n.name for n in graph.weighted()}
    for name, bits in allocs.items():  # every allocation checked before the first reconstruction
        if set(bits) != layers:
            raise UserError(f"--alloc {name}: the layers {sorted(set(bits) ^ layers)} are missing from it or are not "
                            f"ResNet-8's weighted layers")
    data = {}  # (seed, calibration size): the evaluation set and that draw of calibration images
    rows = []
    for (name, bits), seed, size, drop, grain in itertools.product(allocs.items(), seeds, sizes, drops, grains):
        lowest = min(bits.values())
        opt = wf.ExportOptions(model="resnet8", wbits=lowest, target="host", seed=seed, calib_size=size,
                               drop_prob=drop, granularity=grain)
        if (seed, size) not in data:
            data[seed, size] = wf.prepare_data(opt, graph, info)
        d = data[seed, size]
        opt, iters, _ = wf.reconstruction_defaults(opt, lowest)  # one reconstruction per row: no restarts
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        qm, _ = wf.quantize_once(opt, graph, d.calib_x, bits, iters, seed)
        exact, _ = wf.fake_quant_accuracy(qm, d.eval_x, d.eval_set.y)
        weight_bytes = memory_report(lower(qm, name="resnet8"), "host", None).weight_bytes
        rows.append({"allocation": name, "bits": bits, "seed": seed, "calib_size": size, "qdrop": drop,
                     "granularity": grain,
                     "accuracy": round(exact, 4), "weight_bytes": weight_bytes,
                     "minutes": round((time.perf_counter() - t0) / 60, 1)})
        print(json.dumps(rows[-1]), flush=True)

    print("\n| allocation | granularity | seed | calibration images | QDrop | weight bytes | accuracy |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['allocation']} | {r['granularity']} | {r['seed']} | {r['calib_size']} | {r['qdrop']} | "
              f"{r['weight_bytes']:,} | {100 * r['accuracy']:.2f}% |")
    write_results(Path(a.out), {"model": "resnet8", "dataset": "cifar10-test-5000", "rows": rows})
    return 0


if __name__ == "__main__":
    run(main)
