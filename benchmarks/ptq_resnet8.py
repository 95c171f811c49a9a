"""Post-training quantization of the MLPerf Tiny ResNet-8: round to nearest, AdaRound and FlexRound, side by side.

    FLEXROUND_MCU_DATA=../shared/data .venv/bin/python benchmarks/ptq_resnet8.py \
        [--methods rtn,adaround,flexround] [--bits 8,4,3,2] [--channel-bits 4] [--iters 500] [--iters-w2 2000] \
        [--variants lsq,qdrop] [--variant-bits 4,3] [--act-lr 1e-3] [--qdrop 0.5] \
        [--eval N] [--seed 0] [--shift-layer s2_conv2] [--threads N] [--no-malloc-tune] [--quick]

Rows: every method x weight bits with per-tensor weight scales, plus every method at --channel-bits with
per-channel scales; int8 activations; the first and last layers 8-bit, rounded to nearest and never reconstructed
(the library's rule). AdaRound and FlexRound get the same seed, the same 1,024 calibration images (cifar10-calib,
np.random.default_rng(seed).choice(4000, 1024, replace=False), sorted, as workflow.run_export), the same number
of iterations per block (--iters; --iters-w2 at 2 bits), batch 32 and each method's default lr
(workflow.METHOD_LR). Option rows (--variants): FlexRound with LSQ-learned activation steps, and with QDrop, at
--variant-bits, everything else as the plain FlexRound row of the same bits. Peers: the float zoo model (logits argmax) and the MLPerf Tiny int8 reference
(`mlperf_tiny/ic/pretrainedResnet_quant.tflite`, TFLite converter PTQ, per-channel) run through our simulator
(its output is the int8 softmax; argmax of that).

Per row: accuracy of the INTEGER SIMULATOR (the fake-quant model lowered to a QGraph; argmax of the int8 logits,
graph.metadata['logits_tensor']) on cifar10-test-5000 and on the 200 lossless ic01 images; the fake-quant
accuracy on cifar10-test-5000; the quantization time (calibration + reconstruction).

Writes benchmarks/results/ptq_resnet8.json (rows, settings, command, cpu count, timings),
benchmarks/results/ptq_resnet8.png (int8-simulator accuracy against weight bits) and
benchmarks/results/flexround_shift.png (FlexRound's integer shift from round to nearest against |W| for one layer
of the W4 per-tensor model). --quick (--iters 50 --iters-w2 50 --eval 500 unless given) writes the same files
with a `_quick` suffix. Rows run one after the other (torch uses every core). On a machine shared with other
jobs, --threads 1 can be several times faster: two torch threads on a 2-core machine where another process holds
a core spend their time waiting on each other (measured: 0.3-0.9 s per reconstruction iteration against 0.04-0.19 s).
By default the script raises glibc's mmap and trim thresholds (mallopt; --no-malloc-tune to leave them): with the
defaults, half of the reconstruction's CPU time went to the kernel mapping and zeroing freed-and-reallocated buffers
(measured 0.36 s against 0.15 s per FlexRound iteration at one thread). It changes no number, only the time.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA_ENV = "FLEXROUND_MCU_DATA"
TFLITE_REF = "mlperf_tiny/ic/pretrainedResnet_quant.tflite"
METHOD_LABEL = {"rtn": "round to nearest", "adaround": "AdaRound", "flexround": "FlexRound"}


def bar(total: int, desc: str, unit: str = "img", leave: bool = False):
    from tqdm import tqdm
    tty = sys.stderr.isatty()  # to a log file: fewer updates
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.1 if tty else 10.0)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores.reshape(len(labels), -1), axis=1) == labels))


def torch_scores(fn, x_nchw, desc: str, batch: int = 500) -> np.ndarray:
    import torch
    outs = []
    with bar(len(x_nchw), desc) as b, torch.no_grad():
        for i in range(0, len(x_nchw), batch):
            outs.append(fn(x_nchw[i:i + batch]).numpy())
            b.update(min(batch, len(x_nchw) - i))
    return np.concatenate(outs)


def sim_scores(qgraph, x_int8: np.ndarray, tensor: int, desc: str) -> np.ndarray:
    """Int8 values of `tensor` for every input, from the integer simulator.

    The tensor is made a graph output (a copy of the QGraph with one more output), so the simulator keeps it and
    can run on its worker processes without keeping every intermediate tensor."""
    from flexround_mcu.ir import QGraph
    from flexround_mcu.sim.runner import Simulator
    outputs = list(qgraph.outputs) + ([tensor] if tensor not in qgraph.outputs else [])
    g = QGraph(qgraph.tensors, qgraph.ops, list(qgraph.inputs), outputs, name=qgraph.name,
               metadata=dict(qgraph.metadata))
    with bar(len(x_int8), desc) as b:
        values = Simulator(g).run(x_int8, progress=b.update)
    return values[tensor]


# ------------------------------------------------------------------------------------------------ one row
VARIANTS = {"lsq": "+ LSQ activation steps", "qdrop": "+ QDrop"}


def run_row(ctx: dict, method: str, wbits: int, granularity: str, iters: int, args, keep_layer: str | None,
            variant: str | None = None):
    """Quantize, reconstruct (AdaRound / FlexRound), evaluate fake-quant and integer simulator. Returns
    (row dict, shift data for `keep_layer` or None). variant: None, "lsq" (activation steps learned at
    --act-lr) or "qdrop" (activations left unquantized with probability --qdrop while a block learns)."""
    import torch
    from flexround_mcu.lower import lower
    from flexround_mcu.quant.fakequant import quantize_model
    from flexround_mcu.workflow import METHOD_LR

    graph, calib_x = ctx["graph"], ctx["calib_x"]
    torch.manual_seed(args.seed)
    tag = f"{method}{'+' + variant if variant else ''} W{wbits} {granularity}"
    t_q = time.perf_counter()
    with bar(len(calib_x), f"{tag}: calibration") as b:
        qm = quantize_model(graph, [calib_x[i:i + 128] for i in range(0, len(calib_x), 128)], method, wbits,
                            granularity, True, progress=b.update)
    t_calib = time.perf_counter() - t_q
    recon = None
    if method in METHOD_LR:
        from flexround_mcu.quant.reconstruct import reconstruct
        lr = METHOD_LR[method]
        with bar(iters, f"{tag}: reconstruction", unit="it") as b:
            def tick(block, it, total):
                b.set_description(f"{tag}: block {block}")
                b.n = it
                b.refresh()
            act_lr = args.act_lr if variant == "lsq" else None
            drop = args.qdrop if variant == "qdrop" else 0.0
            logs = reconstruct(qm, calib_x, iters=iters, lr=lr, batch_size=args.batch_size, seed=args.seed,
                               act_lr=act_lr, drop_prob=drop, progress=tick)
        recon = {"iters": iters, "lr": lr, "batch_size": args.batch_size, "seed": args.seed,
                 "act_lr": act_lr, "drop_prob": drop,
                 "blocks": [{"block": l.block, "loss_start": round(l.loss_start, 5), "loss_end": round(l.loss_end, 5),
                             "seconds": round(l.seconds, 1)} for l in logs]}
    quantize_s = time.perf_counter() - t_q

    t_e = time.perf_counter()
    test, ic01 = ctx["test"], ctx["ic01"]
    fake = torch_scores(lambda x: qm.module(x, upto=graph.logits), ctx["test_x"], f"{tag}: fake-quant")
    acc_fake = accuracy(fake, test.y)
    qgraph = lower(qm, name="resnet8")
    tin = qgraph.tensors[qgraph.inputs[0]]
    scale, zp = float(tin.scale[0]), int(tin.zero_point[0])
    logits = qgraph.metadata["logits_tensor"]
    int_test = sim_scores(qgraph, test.quantize_input(scale, zp), logits, f"{tag}: simulator test")
    int_ic01 = sim_scores(qgraph, ic01.quantize_input(scale, zp), logits, f"{tag}: simulator ic01")
    acc_int, acc_int_ic01 = accuracy(int_test, test.y), accuracy(int_ic01, ic01.y)
    # fake-quant = integer simulator, image by image (the fake quant rounds where the integer graph rounds)
    agree = float(np.mean(np.argmax(fake, 1) == np.argmax(int_test.reshape(len(test.y), -1), 1)))
    eval_s = time.perf_counter() - t_e

    shift = None
    if keep_layer is not None:
        shift = shift_data(qm, keep_layer)
    row = {"method": method, "variant": variant, "wbits": wbits, "abits": 8, "granularity": granularity, "first_last_8bit": True,
           "bits": dict(qm.bits), "calibration": {"dataset": "cifar10-calib", "images": len(calib_x),
                                                   "act_range": "minmax", "weight_grid": "mse"},
           "reconstruction": recon,
           "accuracy": {"int_sim_test5000": round(acc_int, 4), "int_sim_ic01": round(acc_int_ic01, 4),
                        "fake_quant_test5000": round(acc_fake, 4), "fake_vs_int_top1_agreement": round(agree, 4)},
           "time_s": {"calibration": round(t_calib, 1), "quantize": round(quantize_s, 1), "eval": round(eval_s, 1)}}
    del qm, qgraph, fake, int_test, int_ic01
    gc.collect()
    return row, shift


def shift_data(qm, layer: str) -> dict:
    """FlexRound's integers against round to nearest on the same (learned) grid s1 and on the initial grid."""
    import torch
    q = qm.quantizer(layer)
    w = qm.module.weights[layer].detach().float()
    with torch.no_grad():
        q_flex = q.integers(w)
        s1 = q.scale_like(w)
        q_rtn = torch.clamp(torch.round(w / s1), -q.qmax, q.qmax)
        g0 = q.grid_scale.reshape(s1.shape)
        q_rtn0 = torch.clamp(torch.round(w / g0), -q.qmax, q.qmax)
    return {"layer": layer, "w": w.numpy().ravel(), "q_flex": q_flex.numpy().ravel().astype(np.int64),
            "q_rtn": q_rtn.numpy().ravel().astype(np.int64), "q_rtn_init": q_rtn0.numpy().ravel().astype(np.int64),
            "s1": q.scale.detach().numpy().ravel().tolist(), "s1_init": q.grid_scale.numpy().ravel().tolist(),
            "qmax": q.qmax, "bits": q.bits}


def shift_summary(d: dict) -> dict:
    a = np.abs(d["w"])
    out = {"layer": d["layer"], "bits": d["bits"], "weights": int(a.size), "s1_learned": d["s1"],
           "s1_init": d["s1_init"]}
    for key, ref in (("vs_rtn_learned_s1", d["q_rtn"]), ("vs_rtn_initial_grid", d["q_rtn_init"])):
        sh = d["q_flex"] - ref
        m = np.abs(sh)
        counts = {"0": int(np.sum(m == 0)), "+-1": int(np.sum(m == 1)), "+-2+": int(np.sum(m >= 2))}
        edges = np.quantile(a, [0, 0.25, 0.5, 0.75, 1.0])
        quart = np.clip(np.searchsorted(edges[1:-1], a, side="right"), 0, 3)
        per_q = [{"quartile": k + 1, "abs_w_range": [float(edges[k]), float(edges[k + 1])],
                  "n": int(np.sum(quart == k)),
                  "frac_moved_ge1": round(float(np.mean(m[quart == k] >= 1)), 4),
                  "frac_moved_ge2": round(float(np.mean(m[quart == k] >= 2)), 4),
                  "mean_abs_shift": round(float(np.mean(m[quart == k])), 4)} for k in range(4)]
        rho = float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(m)))[0, 1]) if m.any() else 0.0
        out[key] = {"counts": counts, "signed_counts": {str(int(v)): int(np.sum(sh == v)) for v in np.unique(sh)},
                    "per_abs_w_quartile": per_q, "spearman_abs_w_vs_abs_shift": round(rho, 4)}
    return out


def plot_shift(d: dict, summary: dict, path: Path, seed: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a = np.abs(d["w"])
    sh = d["q_flex"] - d["q_rtn"]
    rng = np.random.default_rng(seed)
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(8, 7), gridspec_kw={"height_ratios": [3, 1.4]})
    ax.scatter(a, sh + rng.uniform(-0.18, 0.18, sh.size), s=4, alpha=0.25, color="tab:blue", linewidths=0,
               label="one weight (integer axis jittered ±0.18)")
    s = summary["vs_rtn_learned_s1"]
    quarts = s["per_abs_w_quartile"]
    for q in quarts[1:]:
        ax.axvline(q["abs_w_range"][0], color="grey", lw=0.8, ls=":")
    s1 = d["s1"][0] if len(d["s1"]) == 1 else None
    if s1 is not None:  # the rounding boundaries |W| = (k + 1/2) s1 of round to nearest
        for k in range(d["qmax"]):
            ax.axvline((k + 0.5) * s1, color="tab:red", lw=0.6, alpha=0.35)
    c, n = s["counts"], summary["weights"]
    lo, hi = int(min(sh.min(), -1)), int(max(sh.max(), 1))
    ax.set_ylim(lo - 0.6, hi + 0.6)
    ax.set_yticks(range(lo, hi + 1))
    ax.set_xlabel("|W| (float weight, BatchNorm folded); grey dotted: |W| quartiles"
                  + ("; red: RTN boundaries (k+½)·s1" if s1 is not None else ""))
    ax.set_ylabel("Q_FlexRound − Q_RTN\n(grid steps, learned s1)")
    ax.set_title(f"FlexRound W{d['bits']} per-tensor, layer {d['layer']} ({n} weights): moved by 0: {c['0'] / n:.1%}, "
                 f"±1: {c['+-1'] / n:.1%}, ±2+: {c['+-2+'] / n:.1%}\nSpearman(|W|, |shift|) = "
                 f"{s['spearman_abs_w_vs_abs_shift']:.2f}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    xs = np.arange(4)
    bx.bar(xs - 0.2, [100 * q["frac_moved_ge1"] for q in quarts], 0.4, label="moved ≥ 1 step", color="tab:blue")
    bx.bar(xs + 0.2, [100 * q["frac_moved_ge2"] for q in quarts], 0.4, label="moved ≥ 2 steps", color="tab:red")
    for x, q in zip(xs, quarts):
        bx.text(x - 0.2, 100 * q["frac_moved_ge1"], f"{q['frac_moved_ge1']:.1%}", ha="center", va="bottom", fontsize=7)
        bx.text(x + 0.2, 100 * q["frac_moved_ge2"], f"{q['frac_moved_ge2']:.1%}", ha="center", va="bottom", fontsize=7)
    bx.set_xticks(xs, [f"Q{q['quartile']}: |W| {q['abs_w_range'][0]:.3f}–{q['abs_w_range'][1]:.3f}" for q in quarts],
                  fontsize=8)
    bx.set_ylabel("weights moved (%)")
    bx.set_xlabel("|W| quartile")
    bx.margins(y=0.25)
    bx.legend(fontsize=8)
    bx.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_accuracy(rows: list[dict], float_acc: float, tflite_acc: float | None, path: Path, title_note: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.8))
    colors = {"rtn": "tab:grey", "adaround": "tab:orange", "flexround": "tab:blue"}
    all_bits = set()
    for m in METHOD_LABEL:
        pts = sorted((r["wbits"], 100 * r["accuracy"]["int_sim_test5000"]) for r in rows
                     if r["method"] == m and r["granularity"] == "tensor" and not r.get("variant"))
        if pts:
            all_bits.update(b for b, _ in pts)
            ax.plot(*zip(*pts), marker="o", color=colors[m], label=f"{METHOD_LABEL[m]} (per-tensor)")
        ch = [(r["wbits"], 100 * r["accuracy"]["int_sim_test5000"]) for r in rows
              if r["method"] == m and r["granularity"] == "channel" and not r.get("variant")]
        if ch:
            all_bits.update(b for b, _ in ch)
            ax.scatter(*zip(*ch), marker="D", facecolors="none", edgecolors=colors[m], s=50,
                       label=f"{METHOD_LABEL[m]} (per-channel)")
    ax.axhline(100 * float_acc, color="black", ls="--", lw=1, label=f"float {100 * float_acc:.2f}%")
    if tflite_acc is not None:
        ax.axhline(100 * tflite_acc, color="tab:green", ls=":", lw=1.5,
                   label=f"TFLite int8 reference (per-channel) {100 * tflite_acc:.2f}%")
    ax.axhline(10, color="lightgrey", lw=0.8)
    ax.set_xticks(sorted(all_bits))
    ax.set_xlabel("weight bits (first and last layers 8-bit; activations int8)")
    ax.set_ylabel("top-1 accuracy, integer simulator (%)")
    ax.set_title(f"ResNet-8 PTQ on cifar10-test-5000{title_note}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def markdown(result: dict) -> str:
    n_test = result["datasets"]["test"]["n"]
    lines = [f"| method | weights | scales | iters/block | int8 sim, cifar10-test-{n_test} | int8 sim, ic01 (200) | "
             f"fake-quant, cifar10-test-{n_test} | quantize (s) |",
             "|---|---|---|---|---|---|---|---|"]
    f = result["float"]
    lines.append(f"| float (zoo model) | fp32 | - | - | {100 * f['test5000']:.2f} | {100 * f['ic01']:.2f} | - | - |")
    t = result.get("tflite_reference")
    if t:
        lines.append(f"| TFLite converter int8 (MLPerf reference) | W8A8 | channel | - | {100 * t['test5000']:.2f} | "
                     f"{100 * t['ic01']:.2f} | - | - |")
    for r in result["rows"]:
        a = r["accuracy"]
        it = r["reconstruction"]["iters"] if r["reconstruction"] else "-"
        label = METHOD_LABEL[r["method"]] + (f" {VARIANTS[r['variant']]}" if r.get("variant") else "")
        lines.append(f"| {label} | W{r['wbits']}A8 | {r['granularity']} | {it} | "
                     f"{100 * a['int_sim_test5000']:.2f} | {100 * a['int_sim_ic01']:.2f} | "
                     f"{100 * a['fake_quant_test5000']:.2f} | {r['time_s']['quantize']:.1f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--methods", default="rtn,adaround,flexround", help="comma-separated: rtn,adaround,flexround")
    ap.add_argument("--bits", default="8,4,3,2", help="weight bits of the per-tensor rows, comma-separated")
    ap.add_argument("--channel-bits", default="4", help="weight bits of the per-channel rows ('' for none)")
    ap.add_argument("--iters", type=int, default=None, help="reconstruction iterations per block (default 500)")
    ap.add_argument("--iters-w2", type=int, default=None, help="iterations per block at 2 bits (default 2000)")
    ap.add_argument("--variants", default="lsq,qdrop", help="FlexRound option rows: lsq, qdrop ('' for none)")
    ap.add_argument("--variant-bits", default="4,3", help="weight bits of the option rows (per-tensor)")
    ap.add_argument("--act-lr", type=float, default=1e-3, help="LSQ rows: learning rate of the log activation steps")
    ap.add_argument("--qdrop", type=float, default=0.5, help="QDrop rows: probability of an unquantized activation")
    ap.add_argument("--eval", type=int, default=None, help="first N images of cifar10-test-5000 (default all)")
    ap.add_argument("--calib-size", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shift-layer", default="s2_conv2", help="layer of the FlexRound W4 shift plot")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own, every core)")
    ap.add_argument("--no-malloc-tune", action="store_true", help="leave glibc's malloc thresholds as they are")
    ap.add_argument("--quick", action="store_true", help="smoke run: --iters 50 --iters-w2 50 --eval 500 "
                                                           "unless given; outputs get a _quick suffix")
    ap.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    args.iters = args.iters if args.iters is not None else (50 if args.quick else 500)
    args.iters_w2 = args.iters_w2 if args.iters_w2 is not None else (50 if args.quick else 2000)
    args.eval = args.eval if args.eval is not None else (500 if args.quick else None)
    args.method_list = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.method_list if m not in METHOD_LABEL]
    if bad:
        ap.error(f"unknown method(s) {bad}: choose from {list(METHOD_LABEL)}")
    args.bit_list = [int(b) for b in args.bits.split(",") if b.strip()]
    args.channel_bit_list = [int(b) for b in args.channel_bits.split(",") if b.strip()]
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    if [v for v in args.variant_list if v not in VARIANTS]:
        ap.error(f"unknown variant(s) in {args.variants!r}: choose from {list(VARIANTS)}")
    args.variant_bit_list = [int(b) for b in args.variant_bits.split(",") if b.strip()]
    for b in args.bit_list + args.channel_bit_list + args.variant_bit_list:
        if b not in (2, 3, 4, 8):
            ap.error(f"weight bits must be 2, 3, 4 or 8, got {b}")
    if args.iters < 1 or args.iters_w2 < 1:
        ap.error("--iters and --iters-w2 must be at least 1")
    return args


def main(argv=None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    from flexround_mcu.quant.reconstruct import keep_freed_memory
    malloc = None if args.no_malloc_tune else keep_freed_memory()
    if not os.environ.get(DATA_ENV):
        os.environ[DATA_ENV] = str(REPO.parent / "shared" / "data")
    data_root = Path(os.environ[DATA_ENV])
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    json_path = out_dir / f"ptq_resnet8{suffix}.json"
    png_path = out_dir / f"ptq_resnet8{suffix}.png"
    shift_path = out_dir / f"flexround_shift{suffix}.png"
    command = " ".join(["python", "benchmarks/ptq_resnet8.py", *map(shlex.quote, sys.argv[1:] if argv is None
                                                                    else argv)])

    import torch
    from flexround_mcu.data import load_dataset
    from flexround_mcu.frontends.tflite import load_tflite
    from flexround_mcu.frontends.zoo_graph import resnet8_to_graph
    from flexround_mcu.zoo import build as build_zoo
    from flexround_mcu.workflow import METHOD_LR
    from flexround_mcu.zoo.resnet8 import to_nchw

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, info = build_zoo("resnet8")
    graph = resnet8_to_graph(model)
    test = load_dataset(info.eval_dataset, limit=args.eval)
    ic01 = load_dataset("ic01")
    calib_all = load_dataset(info.calib_dataset)
    if args.calib_size > len(calib_all):
        raise SystemExit(f"--calib-size {args.calib_size} > {len(calib_all)} calibration images")
    pick = np.sort(np.random.default_rng(args.seed).choice(len(calib_all), args.calib_size, replace=False))
    ctx = {"graph": graph, "calib_x": to_nchw(calib_all.x[pick]), "test": test, "ic01": ic01,
           "test_x": to_nchw(test.x)}
    del calib_all

    # peers: float zoo model, the TFLite converter's int8 model through our simulator
    t0 = time.perf_counter()
    f_test = accuracy(torch_scores(model, ctx["test_x"], "float: test"), test.y)
    f_ic01 = accuracy(torch_scores(model, to_nchw(ic01.x), "float: ic01"), ic01.y)
    float_row = {"test5000": round(f_test, 4), "ic01": round(f_ic01, 4), "seconds": round(time.perf_counter() - t0, 1),
                 "weights": str(info.weights)}
    say(f"float: cifar10-test {f_test:.2%}, ic01 {f_ic01:.2%}")
    tflite_row = None
    tpath = data_root / TFLITE_REF
    if tpath.is_file():
        t0 = time.perf_counter()
        tg = load_tflite(tpath)
        tin = tg.tensors[tg.inputs[0]]
        s, z = float(tin.scale[0]), int(tin.zero_point[0])
        out = tg.outputs[0]
        a_test = accuracy(sim_scores(tg, test.quantize_input(s, z), out, "tflite ref: test"), test.y)
        a_ic01 = accuracy(sim_scores(tg, ic01.quantize_input(s, z), out, "tflite ref: ic01"), ic01.y)
        tflite_row = {"model": TFLITE_REF, "quantization": "TFLite converter PTQ, int8, per-channel weights",
                      "scores": "argmax of the int8 softmax output (graph output)",
                      "test5000": round(a_test, 4), "ic01": round(a_ic01, 4),
                      "seconds": round(time.perf_counter() - t0, 1)}
        say(f"tflite int8 reference: cifar10-test {a_test:.2%}, ic01 {a_ic01:.2%}")
        del tg
    else:
        say(f"{tpath} not found: no TFLite reference row")

    configs = [(b, "tensor") for b in args.bit_list] + [(b, "channel") for b in args.channel_bit_list]
    plan = [(b, g, m, None) for b, g in configs for m in args.method_list]
    if "flexround" in args.method_list:
        plan += [(b, "tensor", "flexround", v) for v in args.variant_list for b in args.variant_bit_list]
    result = {
        "benchmark": "ptq_resnet8", "command": command, "argv": sys.argv[1:] if argv is None else list(argv),
        "quick": args.quick, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "malloc_tune": malloc,
        "machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "model": "resnet8 (MLPerf Tiny, zoo)", "seed": args.seed,
        "settings": {"iters": args.iters, "iters_w2": args.iters_w2, "batch_size": args.batch_size,
                     "lr": dict(METHOD_LR), "variants": {"lsq_act_lr": args.act_lr, "qdrop_prob": args.qdrop},
                     "calib_images": args.calib_size, "calib_pick": "np.sort(default_rng(seed).choice(4000, n, "
                                                                     "replace=False))",
                     "first_last_8bit": True, "abits": 8, "act_range": "minmax", "weight_grid": "mse (Lp 2.4)"},
        "datasets": {"test": {"name": test.name, "n": len(test)}, "ic01": {"name": "ic01", "n": len(ic01)},
                     "calib": info.calib_dataset},
        "float": float_row, "tflite_reference": tflite_row, "rows": [], "flexround_shift": None,
        "time_s": None,
    }

    def write():
        json_path.write_text(json.dumps(result, indent=2) + "\n")

    shift = None
    with bar(len(plan), "rows", unit="row", leave=True) as rows_bar:
        for wbits, gran, method, variant in plan:
            iters = args.iters_w2 if wbits == 2 else args.iters
            keep = (args.shift_layer if (method == "flexround" and wbits == 4 and gran == "tensor" and not variant)
                    else None)
            row, sh = run_row(ctx, method, wbits, gran, iters, args, keep, variant)
            shift = sh or shift
            result["rows"].append(row)
            a = row["accuracy"]
            rows_bar.write(f"{method + ('+' + variant if variant else ''):>15} W{wbits} {gran:<7}: int8 sim {a['int_sim_test5000']:.2%} "
                           f"(ic01 {a['int_sim_ic01']:.2%}), fake-quant {a['fake_quant_test5000']:.2%}, "
                           f"quantize {row['time_s']['quantize']:.1f} s", file=sys.stderr)
            rows_bar.update(1)
            write()  # a partial JSON survives an interrupted run

    plot_accuracy(result["rows"], f_test, tflite_row["test5000"] if tflite_row else None, png_path,
                  f" (n={len(test)})" + (" [quick]" if args.quick else ""))
    result["plots"] = {"accuracy": str(png_path.relative_to(REPO)) if png_path.is_relative_to(REPO) else str(png_path)}
    if shift is not None:
        summary = shift_summary(shift)
        result["flexround_shift"] = summary
        plot_shift(shift, summary, shift_path, args.seed)
        result["plots"]["flexround_shift"] = (str(shift_path.relative_to(REPO)) if shift_path.is_relative_to(REPO)
                                              else str(shift_path))
    result["time_s"] = {"total": round(time.perf_counter() - t_start, 1),
                        "quantize_sum": round(sum(r["time_s"]["quantize"] for r in result["rows"]), 1)}
    write()

    md = markdown(result)
    print(md)
    print(f"\nCommand: `FLEXROUND_MCU_DATA=../shared/data .venv/bin/{command}` "
          f"({os.cpu_count()} cores, total {result['time_s']['total']:.0f} s)")
    if result["flexround_shift"]:
        s = result["flexround_shift"]["vs_rtn_learned_s1"]
        print(f"\nFlexRound W4 {args.shift_layer}: moved by 0/±1/±2+ steps (learned s1): "
              f"{s['counts']['0']}/{s['counts']['+-1']}/{s['counts']['+-2+']}; >=2 steps per |W| quartile: "
              + ", ".join(f"Q{q['quartile']} {q['frac_moved_ge2']:.2%}" for q in s["per_abs_w_quartile"]))
    print(f"\nwrote {json_path}, {png_path}" + (f", {shift_path}" if shift is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
