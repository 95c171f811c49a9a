#!/usr/bin/env python3
"""Export an int8 .tflite model (default: the MLPerf Tiny ResNet-8) as C, build and run it on every Cortex-M target
under QEMU, and print what each target measured: bit-exactness, flash, RAM, arena, weight bytes and instructions
per inference. With --project, measure an already exported C project instead (e.g. the output of
`flexround-mcu export resnet8 --target cortex-m7 --out DIR`, int4 weights included), on its own target by default.

    .venv/bin/python benchmarks/measure_targets.py [--tflite PATH] [--inputs 20] [--out DIR] [--json FILE]
                                                       [--targets cortex-m4 cortex-m7 cortex-m55]
    .venv/bin/python benchmarks/measure_targets.py --project DIR [--targets ...] [--json FILE]

For --tflite, the expected outputs come from the integer simulator on the first N CIFAR-10 test images (the data
folder is $FLEXROUND_MCU_DATA, default ../shared/data); an exported project carries its own test inputs and
expected outputs. Instructions are counted by flexround_mcu/firmware/tools/insncount.c over the frk_model_invoke calls only
(see flexround_mcu/toolchain/qemu.py); they are not cycles.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FLEXROUND_MCU_DATA", str(REPO.parent / "shared" / "data"))

from flexround_mcu.codegen import export_c_project  # noqa: E402
from flexround_mcu.data import load_dataset  # noqa: E402
from flexround_mcu.errors import UserError  # noqa: E402
from flexround_mcu.frontends.tflite import load_tflite  # noqa: E402
from flexround_mcu.sim.runner import Simulator  # noqa: E402
from flexround_mcu.toolchain import CORTEX_M, project_target, run_on_target  # noqa: E402


def measure(project: Path, targets: list[str]) -> list[dict]:
    """Build and run `project` on each target under QEMU, counting instructions."""
    rows = []
    for t in targets:
        t0 = time.time()
        r = run_on_target(project, t)
        rows.append(dict(r.to_dict(), seconds=round(time.time() - t0, 1), summary=r.lines[-1]))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflite", type=Path,
                    default=Path(os.environ["FLEXROUND_MCU_DATA"]) / "mlperf_tiny/ic/pretrainedResnet_quant.tflite")
    ap.add_argument("--inputs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="project folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--project", type=Path, default=None,
                    help="measure this exported C project instead of exporting --tflite (its own target by default)")
    ap.add_argument("--targets", nargs="+", default=None, choices=list(CORTEX_M),
                    help="default: every Cortex-M target (--tflite) or the project's target (--project)")
    a = ap.parse_args()
    try:
        if a.project is not None:
            if not (a.project / "Makefile").is_file():
                raise UserError(f"{a.project}: no Makefile, so not an exported C project: pass the --out folder of "
                                f"`flexround-mcu export`")
            targets = a.targets or [project_target(a.project)]
            if targets[0] not in CORTEX_M:
                raise UserError(f"{a.project} was exported for {targets[0]}: name the Cortex-M target(s) to measure "
                                f"it on with --targets (e.g. --targets cortex-m7)")
            rows = measure(a.project, targets)
            what = f"{a.project} ({rows[0]['inputs']} inputs)"
        else:
            targets = a.targets or list(CORTEX_M)
            g = load_tflite(a.tflite)
            x = load_dataset("cifar10-test-5000", limit=a.inputs).quantize_input(
                float(g.tensors[g.inputs[0]].scale[0]), int(g.tensors[g.inputs[0]].zero_point[0]))
            y = Simulator(g).run(x)[g.outputs[0]]
            with tempfile.TemporaryDirectory(prefix="flexround-measure-") as tmp:
                project = export_c_project(g, a.out or Path(tmp) / "project", x, y, target=targets[0])
                rows = measure(project, targets)
            what = f"{a.tflite.name}, {a.inputs} inputs"
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{what}; arm-none-eabi-gcc -O2; QEMU instruction counts (not cycles)")
    print(f"{'target':<11} {'bit-exact':<22} {'instr/inference':>16} {'flash':>8} {'model flash':>11} "
          f"{'RAM':>7} {'arena':>7} {'weights':>8} {'stack used':>10}")
    for r in rows:
        print(f"{r['target']:<11} {r['summary'][8:]:<22} {r['instructions_per_inference']:>16,.0f} "
              f"{r['flash_bytes']:>8} {r['model_flash_bytes']:>11} {r['ram_bytes']:>7} {r['arena_bytes']:>7} "
              f"{r['weight_bytes']:>8} {r['stack_used_bytes']:>10}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["mismatches"] == 0 and r["returncode"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
