#!/usr/bin/env python3
"""Accuracy against weight bytes: TFLite's int8 model, RTN, AdaRound and FlexRound at uniform 8/4/3/2 bits, and
FlexRound mixed precision (--wbits mixed) at several flash budgets between the W2 and the W4 sizes.

    FLEXROUND_MCU_DATA=../shared/data .venv/bin/python benchmarks/pareto.py --model resnet8 [--jobs 2]
        [--methods rtn,adaround,flexround] [--bits 8,4,3,2] [--budgets 22000,26000,30000,35000,w4] [--eval N]
        [--uniform-from benchmarks/results/pareto_MODEL.json]
    (benchmarks/pareto_resnet8.py and benchmarks/pareto_ds_cnn.py are this with --model set)

Every row goes through the export's own stages (workflow.quantize_stage: calibration on the model's calibration
set, the mixed allocation, reconstruction with the export's defaults; lower; codegen's memory report for the host
/ portable kernels), so its weight bytes are report.json's memory.weight_bytes of `flexround-mcu export MODEL
--target host` with the same options, and its accuracy is the integer simulator's (argmax of the int8 logits)
on the model's evaluation set (resnet8: cifar10-test-5000; ds_cnn: kws01, which is its calibration set too).
Per-tensor weights, int8 activations, the first and last layers at 8 bits. A budget "w4" is the uniform W4
FlexRound row's weight bytes; "w2+f" is the W2 size plus a fraction f of the way to W4 (e.g. w2+0.5).
Rows run in --jobs processes, one torch thread each. Writes benchmarks/results/pareto_MODEL.json and
pareto_MODEL.png (accuracy against KB, one line per method) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("FLEXROUND_MCU_DATA", str(REPO.parent / "shared" / "data"))

import numpy as np  # noqa: E402

from _common import run, write_results  # noqa: E402

REFERENCE = {"resnet8": "mlperf_tiny/ic/pretrainedResnet_quant.tflite", "ds_cnn": "mlperf_tiny/kws/kws_ref_model.tflite"}
LABEL = {"rtn": "round to nearest", "adaround": "AdaRound", "flexround": "FlexRound", "flexround-mixed": "FlexRound mixed",
         "tflite": "TFLite int8 (per-channel)"}
_CTX: dict = {}


def _context(model: str, eval_n: int | None) -> dict:
    """The model's graph and data, once per worker process."""
    if _CTX.get("model") != model:
        from flexround_mcu.workflow import ExportOptions, prepare_data, resolve_model
        opt = ExportOptions(model=model, eval_size=eval_n)  # seed 0, as run_export's default
        graph, info = resolve_model(opt)
        data = prepare_data(opt, graph, info)
        _CTX.update(model=model, graph=graph, info=info, data=data, eval=data.eval_set, eval_x=data.eval_x,
                    calib_x=data.calib_x)
    return _CTX


def _sim_accuracy(qgraph, ev) -> float:
    from flexround_mcu.sim.runner import Simulator
    tin = qgraph.tensors[qgraph.inputs[0]]
    x8 = ev.quantize_input(float(tin.scale[0]), int(tin.zero_point[0]))
    logits = Simulator(qgraph).run(x8, keep_all=True)[qgraph.metadata.get("logits_tensor", qgraph.outputs[0])]
    return float(np.mean(np.argmax(logits.reshape(len(ev.y), -1), 1) == ev.y))


def run_row(job: dict) -> dict:
    """One method x bits (or budget) row: quantize as the export does, lower, count, evaluate."""
    import torch
    torch.set_num_threads(1)
    from flexround_mcu.codegen.render import memory_report
    from flexround_mcu.lower import lower
    from flexround_mcu.workflow import ExportOptions, fake_quant_accuracy, quantize_stage

    ctx = _context(job["model"], job["eval"])
    torch.manual_seed(0)
    t0 = time.perf_counter()
    mixed = job["wbits"] == "mixed"
    opt = ExportOptions(model=job["model"], method=job["method"], wbits=job["wbits"],
                        flash_budget=job.get("budget") if mixed else None, iters=job.get("iters"))
    qm, _, iters, mixed_info, restarts, learned = quantize_stage(opt, ctx["graph"], ctx["data"])
    quantize_s = time.perf_counter() - t0
    acc_fake, acc_fake_float = fake_quant_accuracy(qm, ctx["eval_x"], ctx["eval"].y)
    qg = lower(qm, name=job["model"])
    mem = memory_report(qg, "host", None)
    return {"method": job["method"] + ("-mixed" if mixed else ""), "wbits": job["wbits"],
            "flash_budget": job.get("budget"), "bits": dict(qm.bits), "iters": iters if job["method"] != "rtn" else None,
            "weight_bytes": mem.weight_bytes, "int_sim": round(_sim_accuracy(qg, ctx["eval"]), 4),
            "fake_quant": round(acc_fake, 4), "fake_quant_float_path": round(acc_fake_float, 4),
            "predicted_weight_bytes": mixed_info["predicted_weight_bytes"] if mixed_info else None,
            "restarts": restarts, "act_lr": learned.act_lr,
            "head_with_last_block": learned.head_with_last_block,
            "seconds": round(time.perf_counter() - t0, 1), "quantize_seconds": round(quantize_s, 1)}


def reference_row(model: str, eval_n: int | None) -> dict:
    from flexround_mcu.codegen.render import memory_report
    from flexround_mcu.data.paths import data_root
    from flexround_mcu.frontends.tflite import load_tflite
    ctx = _context(model, eval_n)
    qg = load_tflite(data_root() / REFERENCE[model])
    return {"method": "tflite", "wbits": 8, "bits": None, "weight_bytes": memory_report(qg, "host", None).weight_bytes,
            "int_sim": round(_sim_accuracy(qg, ctx["eval"]), 4), "model": REFERENCE[model]}


def _pool_map(fn, jobs: list[dict], n: int) -> list[dict]:
    if n <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing as mp
    with mp.get_context("spawn").Pool(n) as pool:
        out = []
        for row in pool.imap(fn, jobs):
            print(f"  {row['method']:<16} {str(row['wbits']):>5} {row['weight_bytes']:>8} B  "
                  f"{100 * row['int_sim']:6.2f}%  ({row['seconds']} s)", flush=True)
            out.append(row)
        return out


def _budgets(spec: str, w2: int, w4: int) -> list[int]:
    out = []
    for item in spec.split(","):
        item = item.strip()
        if item == "w4":
            out.append(w4)
        elif item.startswith("w2+"):
            out.append(int(w2 + float(item[3:]) * (w4 - w2)))
        else:
            out.append(int(item))
    return out


def plot(rows: list[dict], model: str, path: Path, float_acc: float | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    colors = {"rtn": "tab:grey", "adaround": "tab:orange", "flexround": "tab:blue", "flexround-mixed": "tab:red"}
    for m, c in colors.items():
        pts = sorted((r["weight_bytes"] / 1000, 100 * r["int_sim"], r["wbits"]) for r in rows if r["method"] == m)
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s" if m.endswith("mixed") else "o", color=c,
                label=LABEL[m])
        if not m.endswith("mixed"):
            for x, y, b in pts:
                ax.annotate(f"W{b}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color=c)
    for r in rows:
        if r["method"] == "tflite":
            ax.scatter([r["weight_bytes"] / 1000], [100 * r["int_sim"]], marker="*", s=140, color="tab:green",
                       label=LABEL["tflite"], zorder=5)
    if float_acc is not None:
        ax.axhline(100 * float_acc, color="black", ls="--", lw=1, label=f"float {100 * float_acc:.2f}%")
    ax.set_xlabel("weight bytes (KB: filters, biases, requantization tables, as exported)")
    ax.set_ylabel("top-1 accuracy, integer simulator (%)")
    ax.set_title(f"{model}: accuracy against weight flash (per-tensor weights, int8 activations)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    lo = min(100 * r["int_sim"] for r in rows if r["method"] in ("flexround", "flexround-mixed", "tflite"))
    ax.set_ylim(max(0, lo - 8), None)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    lines = ["| method | bits | weight bytes | int8 sim accuracy | fake quant |", "|---|---|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["method"], r["weight_bytes"])):
        bits = (f"mixed, budget {r['flash_budget']}" if r["wbits"] == "mixed" else f"W{r['wbits']}")
        fq = f"{100 * r['fake_quant']:.2f}%" if r.get("fake_quant") is not None else "-"
        lines.append(f"| {LABEL[r['method']]} | {bits} | {r['weight_bytes']:,} | {100 * r['int_sim']:.2f}% | {fq} |")
    return "\n".join(lines)


def main(argv=None, model: str | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=model or "resnet8", choices=["resnet8", "ds_cnn"])
    ap.add_argument("--methods", default="rtn,adaround,flexround")
    ap.add_argument("--bits", default="8,4,3,2")
    ap.add_argument("--budgets", default=None, help="flash budgets for FlexRound mixed [resnet8: "
                    "22000,26000,30000,35000,w4; ds_cnn: w2+0.25,w2+0.5,w2+0.75,w4]")
    ap.add_argument("--eval", type=int, default=None, help="evaluate on the first N inputs [all]")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--iters", type=int, default=None, help="reconstruction iterations per block [the export's "
                    "defaults: 500, 2000 when a layer has 2-bit weights]; fewer only to try the script out")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--uniform-from", type=Path, default=None, metavar="JSON",
                    help="take the uniform and TFLite rows from an earlier result of this benchmark for the same model "
                         "(they do not depend on the mixed allocation) and run only the mixed rows")
    a = ap.parse_args(argv)
    budgets = a.budgets or ("22000,26000,30000,35000,w4" if a.model == "resnet8" else "w2+0.25,w2+0.5,w2+0.75,w4")
    t0 = time.perf_counter()
    methods = [m for m in a.methods.split(",") if m]
    bits = [int(b) for b in a.bits.split(",") if b]
    # FlexRound first: its W2 and W4 sizes set the budgets (the weight bytes depend on the bits, not the method)
    jobs = [dict(model=a.model, method=m, wbits=b, eval=a.eval, iters=a.iters) for m in
            sorted(methods, key=lambda m: m != "flexround") for b in bits]
    earlier = None
    if a.uniform_from:
        earlier = json.loads(a.uniform_from.read_text())
        if earlier.get("model") != a.model:
            raise SystemExit(f"--uniform-from {a.uniform_from}: a result for {earlier.get('model')}, not {a.model}")
        rows = [r for r in earlier["rows"] if r["method"] in methods and r.get("wbits") in bits]
        print(f"{a.model}: {len(rows)} uniform rows from {a.uniform_from} ({earlier['command']})", flush=True)
    else:
        print(f"{a.model}: {len(jobs)} uniform rows on {a.jobs} processes ...", flush=True)
        rows = _pool_map(run_row, jobs, a.jobs)
    fr = {r["wbits"]: r["weight_bytes"] for r in rows if r["method"] == "flexround"}
    w2, w4 = fr.get(2), fr.get(4)
    if w2 and w4:
        mixed_jobs = [dict(model=a.model, method="flexround", wbits="mixed", budget=b, eval=a.eval, iters=a.iters)
                      for b in _budgets(budgets, w2, w4)]
        print(f"{a.model}: {len(mixed_jobs)} mixed rows (budgets {[j['budget'] for j in mixed_jobs]}) ...", flush=True)
        rows += _pool_map(run_row, mixed_jobs, a.jobs)
    tflite = [r for r in earlier["rows"] if r["method"] == "tflite"] if earlier else []
    rows += tflite or [reference_row(a.model, a.eval)]
    ctx = _context(a.model, a.eval)
    from flexround_mcu.quant.graph import GraphModule
    from flexround_mcu.workflow import torch_accuracy
    fm = GraphModule(ctx["graph"]).eval()
    float_acc = torch_accuracy(lambda x: fm(x, upto=ctx["graph"].logits), ctx["eval_x"], ctx["eval"].y, "float")
    uniform = [r for r in rows if r["method"] in ("rtn", "adaround", "flexround")]
    mixed = [r for r in rows if r["method"] == "flexround-mixed"]
    # the mixed curve against the uniform ones: at each mixed budget, the best uniform row that fits it
    checks = []
    for r in mixed:
        fits = [u for u in uniform if u["weight_bytes"] <= r["flash_budget"]]
        best = max(fits, key=lambda u: u["int_sim"]) if fits else None
        checks.append({"flash_budget": r["flash_budget"], "mixed": r["int_sim"],
                       "best_uniform_within_budget": None if best is None else
                       {"method": best["method"], "wbits": best["wbits"], "int_sim": best["int_sim"],
                        "weight_bytes": best["weight_bytes"]},
                       "mixed_at_or_above": best is None or r["int_sim"] >= best["int_sim"]})
    out = a.json or REPO / "benchmarks" / "results" / f"pareto_{a.model}.json"
    png = out.with_suffix(".png")
    plot(rows, a.model, png, float_acc)
    result = {"benchmark": f"pareto_{a.model}", "command": f"python benchmarks/pareto.py --model {a.model} " + " ".join(argv or []),
              "model": a.model, "eval": {"dataset": ctx["info"].eval_dataset, "n": len(ctx["eval"].y)},
              "calibration": {"dataset": ctx["info"].calib_dataset, "images": len(ctx["calib_x"])},
              "float": round(float_acc, 4), "weights": "per-tensor, first and last layers 8-bit, int8 activations",
              "weight_bytes": "memory.weight_bytes of a host export (portable kernels)",
              "rows": rows, "mixed_vs_uniform": checks,
              "uniform_rows_from": None if earlier is None else {
                  "json": str(a.uniform_from), "command": earlier["command"], "seconds": earlier["seconds"]},
              "plot": str(png.relative_to(REPO) if png.is_relative_to(REPO) else png),
              "seconds": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count(), "jobs": a.jobs}
    print(table(rows))
    for c in checks:
        best = c["best_uniform_within_budget"]
        against = "-" if best is None else f"{100 * best['int_sim']:.2f}%"
        print(f"budget {c['flash_budget']}: mixed {100 * c['mixed']:.2f}% vs best uniform within it {against} -> "
              f"{'ok' if c['mixed_at_or_above'] else 'BELOW'}")
    write_results(out, result)
    return 0


if __name__ == "__main__":
    run(main)
