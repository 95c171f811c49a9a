"""The flexround-mcu command line. It orchestrates the package's pieces and holds no algorithm of its own.

Bad input raises UserError anywhere below; `main` prints it as one line on stderr and exits with code 2.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from .errors import UserError

DATASET_CHOICES = ("cifar10-test-5000", "ic01", "kws01", "cifar10-test-first20", "cifar10-test-full")


def _progress(total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="input", leave=False, file=sys.stderr, dynamic_ncols=True,
                disable=None)  # disable=None: no bar when stderr is not a terminal (CI logs)


def _write_json(path: Path, payload: dict) -> None:
    """Write through a temporary file in the same folder, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flexround-mcu")
def cli():
    """FlexRound post-training quantization for Arm Cortex-M, with a bit-exact integer simulator."""


class _Scale(click.ParamType):
    """A positive number, also written as a fraction (1/255)."""

    name = "SCALE"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            num, _, den = text.partition("/")
            v = float(num) / float(den) if den else float(num)
        except (ValueError, ZeroDivisionError):
            v = float("nan")
        if not (v > 0 and v != float("inf")):
            self.fail(f"{value!r} is not a positive number (e.g. 0.5847 or 1/255)", param, ctx)
        return v


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", required=True,
              help="Inputs and labels to run: a known dataset (" + ", ".join(DATASET_CHOICES) + ") or a folder of "
                   ".npz/.npy files with x (N,H,W,C) and y (N,), as for export.")
@click.option("--input-scale", type=_Scale(), default=None,
              help="Declared preprocessing of raw uint8/int8 folder data: the model's input is (q - Z) * S, q the data "
                   "as int8 (uint8 values - 128); the model's own input scale and zero point take q as stored.")
@click.option("--input-zero-point", type=click.IntRange(-128, 127), default=None, help="Z of --input-scale.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N inputs.")
@click.option("--compare", type=click.Choice(["tflm"]), default=None,
              help="Also run the tflite_micro interpreter and count mismatching int8 values in every tensor.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JSON to this file.")
def simulate(model: Path, dataset: str, input_scale: float | None, input_zero_point: int | None, limit: int | None,
             compare: str | None, json_path: Path | None):
    """Run an int8 .tflite MODEL through the integer simulator on real data and print its accuracy.

    The last line reads `mismatches: N over T tensors, accuracy: A` with --compare tflm, else `accuracy: A`.
    """
    import numpy as np

    from .frontends.tflite import load_tflite
    from .sim.runner import Simulator
    from .simulate import simulation_data

    graph = load_tflite(model)
    data = simulation_data(graph, str(model), dataset, limit, input_scale, input_zero_point)
    x = data.x
    click.echo(f"model: {model} ({len(graph.ops)} ops), dataset: {dataset} ({len(x)} inputs; {data.preprocessing})")

    sim = Simulator(graph)
    t0 = time.perf_counter()
    with _progress(len(x), "simulator") as bar:
        values = sim.run(x, keep_all=compare is not None, progress=bar.update)
    sim_s = time.perf_counter() - t0
    logits = values[graph.outputs[0]].reshape(len(x), -1)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == data.y))
    click.echo(f"simulator: accuracy {accuracy:.2%}, {len(x) / sim_s:.0f} inputs/s")
    result = {"model": str(model), "dataset": dataset, "preprocessing": data.preprocessing, "n": len(x),
              "accuracy": {"int_sim": accuracy},
              "time_s": {"simulator": round(sim_s, 3)}}

    if compare == "tflm":
        from .tflm import compare_with_tflm
        t0 = time.perf_counter()
        with _progress(len(x), "tflite_micro") as bar:
            cmp = compare_with_tflm(graph, model, x, values, progress=bar.update)
        tflm_s = time.perf_counter() - t0
        tflm_acc = float(np.mean(np.argmax(cmp.tflm_outputs, axis=1) == data.y))
        click.echo(f"tflite_micro: accuracy {tflm_acc:.2%}, {len(x) / tflm_s:.0f} inputs/s")
        click.echo(f"{'tensor':>6}  {'produced by':<18} {'shape':<18} {'mismatches':>10} {'max |diff|':>10}")
        for d in cmp.tensors:
            click.echo(f"{d.index:>6}  {d.producer:<18} {str(d.shape):<18} {d.mismatches:>10} {d.max_abs_diff:>10}")
        result["accuracy"]["tflm"] = tflm_acc
        result["time_s"]["tflm"] = round(tflm_s, 3)
        result["compare"] = {"against": "tflite_micro", "inputs": len(x), "tensors": len(cmp.tensors),
                             "mismatches": cmp.mismatches,
                             "per_tensor": [{"index": d.index, "name": d.name, "producer": d.producer,
                                             "shape": list(d.shape), "mismatches": d.mismatches,
                                             "max_abs_diff": d.max_abs_diff} for d in cmp.tensors]}
    if json_path is not None:
        _write_json(json_path, result)
    if compare == "tflm":
        click.echo(f"mismatches: {result['compare']['mismatches']} over {len(cmp.tensors)} tensors, "
                   f"accuracy: {accuracy:.2%}")
    else:
        click.echo(f"accuracy: {accuracy:.2%}")


EXPORT_HELP = """Quantize MODEL, write its C project and report.json, build it for TARGET and check it bit for bit.

\b
MODEL is one of:
  a zoo name          resnet8, ds_cnn (weights, data and input quantization built in)
  FILE.tflite         a float32 TFLite model; an int8 one (the converter's full-integer model) is exported
                      as stored, no quantization: --dataset (optional) is then checked on the simulator and
                      tflite_micro, and the quantization options are refused
  FILE.h5, .keras     a Keras model (needs TensorFlow)
  FOLDER              a TensorFlow SavedModel (holds saved_model.pb)
  package.module:fn   a PyTorch nn.Module returned by fn() (imported from the working directory or sys.path;
                      traced with torch.fx; needs --input-shape)

\b
A model that is not in the zoo needs its data and its declared preprocessing:
  --dataset / --calib-dataset   a known dataset name, or a folder of .npz files with arrays x (N,H,W,C) and
                                y (N,) (or x.npy + y.npy, or one .npz file); x in raw units: uint8, int8 or float32
  --input-scale S --input-zero-point Z
                                the model's float input is (q - Z) * S, q the data as int8: uint8 values - 128
                                (e.g. pixels), int8 values as stored; float data are the model's input itself,
                                quantized to q = round(x / S) + Z. E.g. a model fed pixel / 255: S 1/255, Z -128.
"""


@cli.command(help=EXPORT_HELP)
@click.argument("model")
@click.option("--target", type=click.Choice(["host", "cortex-m4", "cortex-m7", "cortex-m55"]), default="host",
              show_default=True, help="Where the C code runs: the host, or a Cortex-M board emulated by QEMU.")
@click.option("--method", type=click.Choice(["flexround", "adaround", "rtn"]), default="flexround", show_default=True,
              help="Weight rounding: FlexRound, AdaRound (both learned block by block), or round to nearest.")
@click.option("--wbits", type=click.Choice(["8", "4", "3", "2", "mixed"]), default="4", show_default=True,
              help="Weight bits (first and last layers stay at 8 unless --no-first-last-8bit); mixed: 8, 4 or 2 "
                   "per layer, chosen under --flash-budget.")
@click.option("--flash-budget", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="With --wbits mixed: the weight bytes the export may take (report.json's memory.weight_bytes: "
                   "filters, biases and requantization tables for this target). Each layer's bits come from its "
                   "measured sensitivity and an exact allocation under the budget.")
@click.option("--abits", type=click.Choice(["8"]), default="8", show_default=True, help="Activation bits.")
@click.option("--granularity", type=click.Choice(["tensor", "channel"]), default="tensor", show_default=True,
              help="One weight scale per tensor, or one per output channel.")
@click.option("--first-last-8bit/--no-first-last-8bit", default=True, show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Zoo models: weights file (default: the data folder, the cache, then a checked download).")
@click.option("--dataset", default=None,
              help="Evaluation data: a known dataset (" + ", ".join(DATASET_CHOICES) + ") or a folder of .npz/.npy "
                   "files [zoo default: the model's own; required otherwise]. Without CIFAR-10 in the data folder, "
                   "resnet8 evaluates on the official test set, downloaded once into the cache.")
@click.option("--calib-dataset", default=None,
              help="Calibration data, as --dataset (e.g. cifar10-calib: 4,000 CIFAR-10 training images; "
                   "cifar10-train-full: the official 50,000 in the data folder's cifar-10-batches-py/) "
                   "[zoo default: the model's own; required otherwise].")
@click.option("--input-scale", type=_Scale(), default=None,
              help="Declared preprocessing (non-zoo models): the model's input is (q - ZERO_POINT) * SCALE; "
                   "a number or a fraction such as 1/255.")
@click.option("--input-zero-point", type=click.IntRange(-128, 127), default=None,
              help="Declared preprocessing (non-zoo models): the int8 value of real 0.")
@click.option("--input-shape", default=None, metavar="C,H,W",
              help="The model's input shape (needed for PyTorch models; checked against the others).")
@click.option("--calib-size", type=click.IntRange(min=1), default=None,
              help="Calibration inputs, drawn from the calibration data with --seed [default: 1024, or all of a "
                   "smaller set].")
@click.option("--eval-size", type=click.IntRange(min=1), default=None, help="Evaluate on the first N inputs.")
@click.option("--test-inputs", type=click.IntRange(min=1), default=None,
              help="Inputs embedded in the C harness and compared bit for bit [default: 100 host, 20 Cortex-M].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default out/MODEL-METHOD-wBITS-GRANULARITY-TARGET, MODEL made folder-safe).")
@click.option("--iters", type=int, default=None,
              help="Reconstruction iterations per block (flexround, adaround) [default: 500; 2000 when a layer has "
                   "2-bit weights].")
@click.option("--restarts", type=click.IntRange(min=1), default=None,
              help="Reconstructions to choose from, each on its own draw of calibration images, kept by the mean KL "
                   "from the float model on calibration images none of them used [default: 3 when a layer has 2 "
                   "bits, else 1].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Reconstruction learning rate [default: flexround 3e-3, adaround 1e-3].")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--act-lr", type=click.FloatRange(min=0), default=None,
              help="LSQ: also learn the activation steps during reconstruction, at this learning rate; 0 turns it "
                   "off [default: 1e-3 when a layer has 2 bits, else off].")
@click.option("--logits-loss/--block-loss", "head_with_last_block", default=None,
              help="--logits-loss: reconstruct the last conv block together with the pooling and classifier, on "
                   "the float logits, instead of on its own output [default: by the lowest bits, see README].")
@click.option("--qdrop", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0, show_default=True,
              help="QDrop: probability of leaving an activation unquantized while a block learns.")
@click.option("--emit-tflite", is_flag=True, help="Also write OUT/model.tflite (int8 / int4 weights) for TFLite Micro.")
@click.option("--kernels", type=click.Choice(["mve", "dsp", "portable"]), default=None,
              help="C kernels: mve (Helium where there is a Helium kernel, else dsp: the Cortex-M55 default), dsp "
                   "(Armv7E-M DSP instructions, the Cortex-M4/M7 default) or portable (C99, the host default).")
@click.option("--ram-budget", type=click.IntRange(min=1), default=None, metavar="BYTES",
              help="RAM the plan may take (activation arena + kernel scratch; the board's stack and statics come on "
                   "top). Without it the plan is the smallest that costs no extra instructions; with it, ring "
                   "buffers that copy each band once are added where that plan does not fit, and an export that "
                   "cannot fit fails with the smallest size it can reach.")
@click.option("--no-harness", is_flag=True,
              help="Write the model as a library only (model, weights, kernels, Makefile, CMakeLists.txt): no test "
                   "harness, test data or board files. The export still checks the same sources with its harness.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing output folder that is not a previous export.")
def export(model, target, method, wbits, flash_budget, abits, granularity, first_last_8bit, weights, dataset,
           calib_dataset, input_scale, input_zero_point, input_shape, calib_size, eval_size, test_inputs, out, iters,
           restarts, lr, batch_size, act_lr, head_with_last_block, qdrop, emit_tflite, kernels, ram_budget,
           no_harness, seed, force):
    from .report import report_layer_table, summary_table
    from .workflow import ExportOptions, run_export

    ctx = click.get_current_context()
    given = frozenset("drop_prob" if name == "qdrop" else name for name in ctx.params
                      if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT)
    report = run_export(ExportOptions(model=model, target=target, method=method,
                                      wbits=wbits if wbits == "mixed" else int(wbits), flash_budget=flash_budget,
                                      abits=int(abits), granularity=granularity, first_last_8bit=first_last_8bit,
                                      weights=str(weights) if weights else None, calib_size=calib_size,
                                      eval_size=eval_size, test_inputs=test_inputs, out=out, seed=seed,
                                      force=force, iters=iters, restarts=restarts, lr=lr, batch_size=batch_size,
                                      act_lr=act_lr, head_with_last_block=head_with_last_block,
                                      drop_prob=qdrop, emit_tflite=emit_tflite, kernels=kernels,
                                      ram_budget=ram_budget, harness=not no_harness, given=given,
                                      dataset=dataset,
                                      calib_dataset=calib_dataset, input_scale=input_scale,
                                      input_zero_point=input_zero_point, input_shape=input_shape))
    click.echo(summary_table(report))
    if report["target"] != "host":
        click.echo("")
        click.echo(report_layer_table(report))
    b = report["bitexact"]
    for where, res in (("the host C build", b["host_c"]), ("the firmware", b["qemu"]), ("tflite_micro", b.get("tflm"))):
        if res is not None and res["mismatches"]:
            raise UserError(f"{where} disagrees with the simulator ({res['mismatches']} mismatches over "
                            f"{res['inputs']} inputs; see {report['out']}/report.json)")


def _print_run(result, project: Path) -> None:
    for line in result.lines:
        click.echo(line)
    if result.instructions_per_inference:
        from .report import ram_split_text

        split = result.ram_split
        ram = f"RAM {split['total']} B ({ram_split_text(split)})" if split else f"RAM {result.ram_bytes} B"
        click.echo(f"flash {result.flash_bytes} B, {ram}, "
                   f"{result.instructions_per_inference:.0f} instructions per inference (qemu; not cycles)")
    if result.layer_instructions is not None:
        from .profile import layer_table, with_instructions
        from .report import layer_title

        click.echo("")
        click.echo(layer_table(with_instructions(_report_layers(project), result.layer_instructions),
                               total=result.instructions_per_inference, tail=result.layer_tail_instructions,
                               title=layer_title(result.target)))


def _report_layers(project: Path) -> list:
    """The layers of PROJECT/report.json (an export writes it beside the C project), for the per-layer table's
    op kinds, shapes and MACs; [] when there is none (a project written by export_c_project alone) or it is
    unreadable, and the table then shows op indices and instructions only."""
    try:
        layers = json.loads((project / "report.json").read_text()).get("layers")
    except (OSError, ValueError, AttributeError):
        return []
    return layers if isinstance(layers, list) else []


@cli.command(name="build")
@click.argument("project", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--target", default=None, help="Override the project's target.")
def build_cmd(project, target):
    """Build an exported C project (make) for its target."""
    from .toolchain.qemu import build_project
    click.echo(f"built {build_project(project, target)}")


@cli.command(name="run")
@click.argument("project", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--target", default=None, help="Override the project's target.")
@click.option("--timeout", type=click.FloatRange(min=1), default=None, help="Seconds before a hung run is stopped.")
def run_cmd(project, target, timeout):
    """Build (if needed) and run an exported project's test harness: natively, or under qemu-system-arm."""
    from .toolchain.qemu import run_project
    result = run_project(project, target, timeout=timeout)
    _print_run(result, project)
    if not result.ok:
        raise UserError(f"{project}: {result.mismatches} of {result.inputs} inputs mismatch "
                        f"(harness exit code {result.returncode})")


@cli.command(name="report")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print report.json itself instead of the tables.")
def report_cmd(folder, as_json):
    """Print an export's summary and per-layer tables again, from FOLDER/report.json."""
    from .report import load_report, report_layer_table, summary_table

    report = load_report(folder)
    if as_json:
        click.echo(json.dumps({k: v for k, v in report.items() if k != "out"}, indent=2))
        return
    click.echo(summary_table(report))
    click.echo("")
    click.echo(report_layer_table(report))


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="flexround-mcu", standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:  # usage errors: one line, exit 2
        click.echo(f"error: {exc.format_message()} (see --help)", err=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
