"""Throughput of our integer simulator against the tflite_micro interpreter, side by side in one run.

    .venv/bin/python benchmarks/sim_throughput.py [--model PATH] [--images N] [--tflm-images N] [--repeats R]

Both run the MLPerf Tiny int8 ResNet-8 on the same CIFAR-10 test images (input = pixel - 128). tflite_micro runs
one image per invoke (it has batch 1); the simulator runs the whole batch. Each figure is the best of R repeats.
The run also checks that both give the same int8 outputs on the images both ran. Prints a table and writes
benchmarks/results/sim_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flexround_mcu.data import load_dataset  # noqa: E402
from flexround_mcu.frontends.tflite import load_tflite  # noqa: E402
from flexround_mcu.sim.runner import Simulator  # noqa: E402
from flexround_mcu.tflm import TFLMInterpreter  # noqa: E402


def best_of(repeats: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    os.environ.setdefault("FLEXROUND_MCU_DATA", str(REPO.parent / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="int8 .tflite (default: the MLPerf Tiny ResNet-8)")
    ap.add_argument("--images", type=int, default=2000, help="images for the simulator")
    ap.add_argument("--tflm-images", type=int, default=300, help="images for tflite_micro")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sim_throughput.json"))
    args = ap.parse_args()
    model = Path(args.model or Path(os.environ["FLEXROUND_MCU_DATA"]) / "mlperf_tiny/ic/pretrainedResnet_quant.tflite")

    graph = load_tflite(model)
    tin = graph.tensors[graph.inputs[0]]
    data = load_dataset("cifar10-test-5000", limit=max(args.images, args.tflm_images))
    x = data.quantize_input(float(tin.scale[0]), int(tin.zero_point[0]))

    sim = Simulator(graph)
    sim.run(x[:64])  # warm-up: page in the weights, start the worker threads once
    sim_s, sim_out = best_of(args.repeats, lambda: sim.predict(x[:args.images]))

    tflm = TFLMInterpreter(model, preserve_all=False)

    def run_tflm():
        outs = []
        for k in range(args.tflm_images):
            tflm.invoke(x[k:k + 1])
            outs.append(tflm.output().reshape(-1).copy())
        return np.stack(outs)

    run_tflm()
    tflm_s, tflm_out = best_of(args.repeats, run_tflm)
    n_check = min(args.images, args.tflm_images)
    mismatches = int((sim_out[:n_check].reshape(n_check, -1) != tflm_out[:n_check]).sum())

    sim_ips = args.images / sim_s
    tflm_ips = args.tflm_images / tflm_s
    rows = [("numpy simulator (flexround_mcu.sim)", args.images, sim_s, sim_ips),
            ("tflite_micro interpreter", args.tflm_images, tflm_s, tflm_ips)]
    print(f"model: {model.name}   cpu cores: {os.cpu_count()}   python {platform.python_version()}")
    print(f"{'engine':<38} {'images':>7} {'seconds':>8} {'images/s':>9}")
    for name, n, s, ips in rows:
        print(f"{name:<38} {n:>7} {s:>8.2f} {ips:>9.0f}")
    print(f"speed-up: {sim_ips / tflm_ips:.1f}x   output mismatches on {n_check} shared images: {mismatches}")

    result = {
        "model": model.name, "dataset": "cifar10-test-5000", "repeats": args.repeats, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
        "simulator": {"images": args.images, "seconds": round(sim_s, 4), "images_per_s": round(sim_ips, 1)},
        "tflite_micro": {"images": args.tflm_images, "seconds": round(tflm_s, 4), "images_per_s": round(tflm_ips, 1)},
        "speedup": round(sim_ips / tflm_ips, 2),
        "output_mismatches": mismatches, "checked_images": n_check,
        "command": "python benchmarks/sim_throughput.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
