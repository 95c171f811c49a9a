#!/usr/bin/env python3
"""Instructions per inference on the Cortex-M4, M7 and M55 under QEMU, ours against CMSIS-NN, per layer and in total.

    FLEXROUND_MCU_DATA=../shared/data .venv/bin/python benchmarks/cortex_m.py [--inputs 5] [--iters N]
        [--targets cortex-m4 cortex-m7 cortex-m55] [--json benchmarks/results/cortex_m.json]

Models: the MLPerf Tiny int8 ResNet-8 (pretrainedResnet_quant.tflite) exported through our C path as it is, and
`flexround-mcu export resnet8` / `flexround-mcu export ds_cnn` at their defaults (FlexRound W4 per tensor, int4
filters, first and last layers int8). Each is built with the kernel set of its board (dsp on the M4 and M7, mve
on the M55) and, for the "before" column, with the portable C kernels (`--kernels portable`). Instructions are counted by our QEMU TCG plugin over
frk_model_invoke only (flexround_mcu/toolchain/qemu.py): instruction counts, not cycles. Kernel code size: the
.text of the frk_ kernel functions kept in the firmware after --gc-sections (nm -S on the ELF).

The CMSIS-NN figures below are constants, measured in this workplace and given in issues 11 (M4, M7) and 12 (M55,
with CMSIS-NN's MVE paths): CMSIS-NN v7.0.0
(commit 99f736a6) called directly with each model's real weights, arm-none-eabi-gcc 12.2 -O2, QEMU 7.2 boards, the
same instruction-count method, bit-exact with tflite_micro in every layer.
"""
from __future__ import annotations

import argparse
import os
import subprocess
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
from _common import run, write_results  # noqa: E402
from flexround_mcu.frontends.tflite import load_tflite  # noqa: E402
from flexround_mcu.sim.runner import Simulator  # noqa: E402
from flexround_mcu.toolchain import run_on_target  # noqa: E402
from flexround_mcu.toolchain.qemu import footprint  # noqa: E402

# Issue 11's measurements of CMSIS-NN v7.0.0 (instructions per inference under QEMU; see the module docstring).
CMSIS_NN = {
    ("mlperf-resnet8-int8", "cortex-m7"): {"int8": 30_018_670, "int4": 51_131_358},
    ("mlperf-resnet8-int8", "cortex-m4"): {"int8": 29_858_839, "int4": None},
    ("resnet8-flexround-w4", "cortex-m7"): {"int8": 30_018_670, "int4": 51_131_358},
    ("resnet8-flexround-w4", "cortex-m4"): {"int8": 29_858_839, "int4": None},
    ("ds_cnn-flexround-w4", "cortex-m7"): {"int8": 7_643_356, "int4": 13_564_837},
    ("ds_cnn-flexround-w4", "cortex-m4"): {"int8": None, "int4": None},
    ("mlperf-resnet8-int8", "cortex-m55"): {"int8": 4_908_504, "int4": 6_838_816},
    ("resnet8-flexround-w4", "cortex-m55"): {"int8": 4_908_504, "int4": 6_838_816},
    ("ds_cnn-flexround-w4", "cortex-m55"): {"int8": 1_813_331, "int4": 2_446_689},
}
# The kernel sets measured on each board: its own (dsp, mve) and the portable C kernels as "before".
SETS_ON = {"cortex-m4": ("dsp", "portable"), "cortex-m7": ("dsp", "portable"), "cortex-m55": ("mve", "portable")}
CMSIS_NN_KERNEL_TEXT_M7 = 17_712  # bytes of CMSIS-NN kernel code in the M7 ResNet-8 int8 firmware (issue 11)
NOT_KERNELS = ("frk_model_invoke", "frk_board_", "frk_print", "frk_test_", "frk_expected_")


def kernel_text_bytes(elf: Path) -> int:
    """Bytes of the kernel functions (frk_* code symbols, board and harness excluded) kept in the firmware."""
    proc = subprocess.run(["arm-none-eabi-nm", "-S", "--defined-only", str(elf)], capture_output=True, text=True,
                          check=True)
    total = 0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "Tt" and parts[3].startswith("frk_") \
                and not parts[3].startswith(NOT_KERNELS):
            total += int(parts[1], 16)
    return total


def export_mlperf(tmp: Path, inputs: int) -> dict[str, Path]:
    """The MLPerf int8 ResNet-8 exported with each kernel set (one load and one simulation for both)."""
    tflite = Path(os.environ["FLEXROUND_MCU_DATA"]) / "mlperf_tiny/ic/pretrainedResnet_quant.tflite"
    g = load_tflite(tflite)
    t_in = g.tensors[g.inputs[0]]
    x = load_dataset("cifar10-test-5000", limit=inputs).quantize_input(float(t_in.scale[0]), int(t_in.zero_point[0]))
    y = Simulator(g).run(x)[g.outputs[0]]
    return {k: export_c_project(g, tmp / f"mlperf-{k}", x, y, target="cortex-m7", kernels=k)
            for k in ("dsp", "portable", "mve")}


def export_cli(model: str, out: Path, inputs: int, iters: int | None, kernels: str) -> Path:
    target = "cortex-m55" if kernels == "mve" else "cortex-m7"
    cmd = [str(REPO / ".venv/bin/flexround-mcu"), "export", model, "--target", target, "--out", str(out),
           "--test-inputs", str(inputs), "--kernels", kernels, "--force"]
    if iters is not None:
        cmd += ["--iters", str(iters)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def measure(project: Path, target: str) -> dict:
    r = run_on_target(project, target)
    if r.mismatches or r.returncode:
        raise UserError(f"{project} on {target}: {r.lines[-1]}")
    return {"instructions": r.instructions_per_inference, "layers": list(r.layer_instructions or ()),
            "summary": r.lines[-1], "kernel_text_bytes": kernel_text_bytes(r.binary), "flash_bytes": r.flash_bytes}


def _fmt(v) -> str:
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=5, help="test inputs per firmware (bit-exact check)")
    ap.add_argument("--iters", type=int, default=None, help="FlexRound iterations for the exports (default: theirs)")
    ap.add_argument("--targets", nargs="+", default=["cortex-m4", "cortex-m7", "cortex-m55"])
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/cortex_m.json")
    a = ap.parse_args()
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="flexround-bench-") as tmp:
        tmp = Path(tmp)
        projects = {}
        for kernels, project in export_mlperf(tmp, a.inputs).items():
            projects[("mlperf-resnet8-int8", kernels)] = project
        wanted = {k for t in a.targets for k in SETS_ON[t]}
        for model, name in (("resnet8", "resnet8-flexround-w4"), ("ds_cnn", "ds_cnn-flexround-w4")):
            for kernels in sorted(wanted):  # the same quantization (seed 0) exported with each kernel set
                projects[(name, kernels)] = export_cli(model, tmp / f"{name}-{kernels}", a.inputs, a.iters, kernels)
        for (name, kernels), project in projects.items():
            for target in (t for t in a.targets if kernels in SETS_ON[t]):
                m = measure(project, target)
                ref = CMSIS_NN.get((name, target), {})
                rows.append(dict(model=name, target=target, kernels=kernels, cmsis_nn_int8=ref.get("int8"),
                                 cmsis_nn_int4=ref.get("int4"), **m))
                print(f"  {name:<22} {target:<10} {kernels:<9} {m['instructions']:>14,.0f}  ({m['summary']})",
                      flush=True)
    print()
    print("Instructions per inference under QEMU (instruction counts, not cycles); arm-none-eabi-gcc -O2")
    head = (f"{'model':<22} {'target':<10} {'kernels':<9} {'ours':>12} {'CMSIS-NN int8':>14} {'CMSIS-NN int4':>14} "
            f"{'ours/int8':>9} {'kernel .text':>12}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = f"{r['instructions'] / r['cmsis_nn_int8']:.3f}" if r["cmsis_nn_int8"] else "-"
        print(f"{r['model']:<22} {r['target']:<10} {r['kernels']:<9} {_fmt(r['instructions']):>12} "
              f"{_fmt(r['cmsis_nn_int8']):>14} {_fmt(r['cmsis_nn_int4']):>14} {ratio:>9} "
              f"{r['kernel_text_bytes']:>12,}")
    print(f"CMSIS-NN kernel code in the M7 ResNet-8 int8 firmware: {CMSIS_NN_KERNEL_TEXT_M7:,} bytes")
    print("Per layer (instructions):")
    for r in rows:
        if r["kernels"] != "portable":
            print(f"  {r['model']:<22} {r['target']:<10} {r['kernels']:<4} " + " ".join(f"{v:,.0f}" for v in r["layers"]))
    write_results(a.json, {"rows": rows, "cmsis_nn_kernel_text_m7": CMSIS_NN_KERNEL_TEXT_M7,
                           "seconds": round(time.time() - t0, 1)})
    return 0


if __name__ == "__main__":
    run(main)
