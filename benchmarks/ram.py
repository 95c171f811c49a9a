#!/usr/bin/env python3
"""RAM of the activation plan: ours without in-place, with our default plan and with the smallest plan a
--ram-budget reaches, against TFLite Micro's arena; and what each plan costs in instructions under QEMU.

    FLEXROUND_MCU_DATA=../shared/data .venv/bin/python benchmarks/ram.py [--inputs 3]
        [--json benchmarks/results/ram.json]

Models: the MLPerf Tiny int8 ResNet-8 and DS-CNN (.tflite, exported through our C path as they are), and
`flexround-mcu export resnet8` / `flexround-mcu export ds_cnn` at their defaults (FlexRound W4; exported once for
the host with --emit-tflite, then planned and built from that model.tflite for each board). Per board (cortex-m7:
dsp kernels, cortex-m55: mve kernels):
  before      the greedy plan with no op writing over its input (what every export had before issue 13);
  default     the plan `export` makes without --ram-budget (in-place where free, residual ADDs fused);
  smallest    the plan of least arena + scratch any --ram-budget reaches (ring buffers where they help);
  floor       the largest sum of tensors alive at one op without in-place;
  TFLM        tflite_micro's arena for the same .tflite (RecordingMicroAllocator: the activations ("head") and the
              total with its own bookkeeping), interpreter in Python, same tensors.
RAM here is arena + scratch (the board's statics and stack come on top: report.json memory.ram_split).
Instructions: QEMU instruction counts of frk_model_invoke, not cycles; each build is checked bit-exact against the
simulator on the test inputs.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("FLEXROUND_MCU_DATA", str(REPO.parent / "shared" / "data"))

from flexround_mcu.codegen import export_c_project  # noqa: E402
from flexround_mcu.codegen.arena import smallest_plan  # noqa: E402
from flexround_mcu.codegen.kernels import plan_kernels  # noqa: E402
from flexround_mcu.codegen.render import ARENA_ALIGNMENT, memory_report  # noqa: E402
from flexround_mcu.data import load_dataset  # noqa: E402
from flexround_mcu.errors import UserError  # noqa: E402
from _common import run, write_results  # noqa: E402
from flexround_mcu.frontends.tflite import load_tflite  # noqa: E402
from flexround_mcu.sim.runner import Simulator  # noqa: E402
from flexround_mcu.toolchain import run_on_target  # noqa: E402

DATA = Path(os.environ["FLEXROUND_MCU_DATA"])
BOARDS = {"cortex-m7": "dsp", "cortex-m55": "mve"}
DATASET = {"resnet8": "cifar10-test-5000", "ds_cnn": "kws01"}


def tflm_arena(tflite: Path) -> dict:
    """tflite_micro's arena for the model: the activations (head) and the total, from print_allocations."""
    code = ("import sys\nfrom tflite_micro.python.tflite_micro import runtime\n"
            f"runtime.Interpreter.from_file({str(tflite)!r}, arena_size=1 << 20).print_allocations()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    total = re.search(r"Arena allocation total (\d+) bytes", text)
    head = re.search(r"Arena allocation head (\d+) bytes", text)
    if not (total and head):
        raise UserError(f"tflite_micro printed no arena allocation for {tflite}")
    return {"head": int(head.group(1)), "total": int(total.group(1))}


def models(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (.tflite, dataset): the MLPerf int8 files and our default exports' model.tflite."""
    out = {"mlperf-resnet8-int8": (DATA / "mlperf_tiny/ic/pretrainedResnet_quant.tflite", DATASET["resnet8"]),
           "mlperf-ds_cnn-int8": (DATA / "mlperf_tiny/kws/kws_ref_model.tflite", DATASET["ds_cnn"])}
    for model in ("resnet8", "ds_cnn"):
        proj = tmp / f"{model}-w4"
        print(f"exporting {model} (FlexRound W4, the default) ...", flush=True)
        subprocess.run([str(REPO / ".venv/bin/flexround-mcu"), "export", model, "--target", "host", "--out",
                        str(proj), "--emit-tflite", "--force"], check=True, stdout=subprocess.DEVNULL)
        out[f"{model}-flexround-w4"] = (proj / "model.tflite", DATASET[model])
    return out


def measure(g, x, y, target: str, budget: int | None, where: Path) -> dict:
    project = export_c_project(g, where, x, y, target=target, ram_budget=budget, force=True)
    r = run_on_target(project, target)
    if r.mismatches or r.returncode or not r.ok:
        raise UserError(f"{project} on {target}: {r.lines[-1]}")
    return {"instructions": round(r.instructions_per_inference), "stack_used": r.stack_used_bytes,
            "summary": r.lines[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=3, help="test inputs per firmware (bit-exact check)")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/ram.json")
    a = ap.parse_args()
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="flexround-ram-") as tmp:
        tmp = Path(tmp)
        for name, (tflite, dataset) in models(tmp).items():
            g = load_tflite(tflite)
            t_in = g.tensors[g.inputs[0]]
            x = load_dataset(dataset, limit=a.inputs).quantize_input(float(t_in.scale[0]), int(t_in.zero_point[0]))
            y = Simulator(g).run(x)[g.outputs[0]].reshape(len(x), -1)
            tflm = tflm_arena(tflite)
            for target, kernels in BOARDS.items():
                default = memory_report(g, target).arena
                choices = plan_kernels(g, kernels)
                least = smallest_plan(g, ARENA_ALIGNMENT, [c.name for c in choices],
                                      [c.scratch_bytes for c in choices])
                row = dict(model=name, target=target, kernels=kernels, floor=default.floor,
                           before_arena=default.arena_without_inplace, before_scratch=default.kernel_scratch,
                           default_arena=default.arena_size, default_scratch=default.scratch_bytes,
                           smallest_arena=least.arena_size, smallest_scratch=least.scratch_bytes,
                           smallest_rings=len(least.rings), tflm_head=tflm["head"], tflm_total=tflm["total"])
                row["default"] = measure(g, x, y, target, None, tmp / "p")
                row["smallest"] = (row["default"] if least.ram_bytes >= default.ram_bytes else
                                   measure(g, x, y, target, least.ram_bytes, tmp / "p"))
                row["smallest_budget"] = least.ram_bytes
                rows.append(row)
                print(f"  {name:<22} {target:<10} arena {row['before_arena']:>6} -> {row['default_arena']:>6} -> "
                      f"{row['smallest_arena']:>6}   ({row['default']['summary']})", flush=True)
    print()
    print("Arena + scratch in bytes (RAM the export plans; the board's statics and stack come on top); instructions "
          "per inference under QEMU (counts, not cycles)")
    head = (f"{'model':<22} {'target':<10} {'before':>14} {'default':>14} {'smallest':>14} {'floor':>7} "
            f"{'TFLM head/total':>16} {'insn default':>13} {'insn smallest':>14}")
    print(head)
    print("-" * len(head))
    for r in rows:
        cost = r["smallest"]["instructions"] / r["default"]["instructions"] - 1
        print(f"{r['model']:<22} {r['target']:<10} {r['before_arena']:>7}+{r['before_scratch']:<6} "
              f"{r['default_arena']:>7}+{r['default_scratch']:<6} {r['smallest_arena']:>7}+{r['smallest_scratch']:<6} "
              f"{r['floor']:>7} {r['tflm_head']:>7}/{r['tflm_total']:<8} {r['default']['instructions']:>13,} "
              f"{r['smallest']['instructions']:>14,} ({cost:+.1%})")
    write_results(a.json, {"rows": rows, "seconds": round(time.time() - t0, 1)})
    return 0


if __name__ == "__main__":
    run(main)
