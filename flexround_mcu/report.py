"""An export's report.json, read back and shown: the summary table and the per-layer table that `export` prints
and `flexround-mcu report DIR` prints again from the folder. No torch, no run: only the JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError

REPORT_FILE = "report.json"
# the fields the tables read; a report.json without them was not written by an export of this version
_NEEDED = ("model", "target", "method", "wbits", "abits", "granularity", "first_last_8bit", "accuracy", "memory",
           "bitexact", "layers", "time_s")


def load_report(folder: Path) -> dict:
    """FOLDER/report.json as written by `export`, with `out` set to FOLDER; a UserError naming what is wrong
    (no folder, no report, not JSON, fields missing) otherwise."""
    folder = Path(folder)
    path = folder / REPORT_FILE
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder: pass the folder an export wrote (its --out)")
    if not path.is_file():
        raise UserError(f"{folder} has no {REPORT_FILE}: it is not an export folder (flexround-mcu export "
                        f"MODEL --out {folder} writes one)")
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON ({str(exc).splitlines()[0]}): re-run the export") from None
    missing = [k for k in _NEEDED if not isinstance(report, dict) or k not in report]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: it was not written by this version's export; "
                        f"re-run the export")
    return dict(report, out=str(folder))


def ram_split_text(split: dict) -> str:
    """'arena A + scratch S + statics T + stack used U': the parts of a board's measured RAM (TargetResult)."""
    return (f"arena {split['arena']} + scratch {split['scratch']} + statics {split['statics']} + stack used "
            f"{split['stack_used']}")


def _bits_text(report: dict) -> str:
    """'flexround, W4A8 tensor (first/last 8-bit)'; a mixed export lists every layer's bits and the budget."""
    mixed = report.get("mixed")
    if report["method"] == "none":  # an int8 .tflite exported as stored
        bits = sorted({la["bits"] for la in report["layers"] if la.get("bits") is not None}, reverse=True)
        return f"none (int8 .tflite as stored): W{'/'.join(map(str, bits))}A{report['abits']} {report['granularity']}"
    if mixed:
        wbits = "W" + "/".join(str(b) for b in sorted({la["bits"] for la in mixed["layers"]}, reverse=True)) + " mixed "
    else:
        wbits = f"W{report['wbits']}"
    text = (f"{report['method']}, {wbits}A{report['abits']} {report['granularity']}"
            f"{' (first/last 8-bit)' if report['first_last_8bit'] else ''}")
    if mixed:
        text += (": " + " ".join(f"{la['layer']}:{la['bits']}" for la in mixed["layers"])
                 + f" under --flash-budget {mixed['flash_budget']}")
    return text


def summary_table(report: dict) -> str:
    a, m, b = report["accuracy"], report["memory"], report["bitexact"]
    host = b["host_c"]
    rows = [
        ("model / target", f"{report['model']} / {report['target']}"
                           + (f" ({report['kernels']} kernels)" if report.get("kernels") else "")),
        ("method, weight bits", _bits_text(report)),
        _accuracy_row(a),
        ("weights", f"{m['weight_bytes']} B" if m["weight_bytes"] == m["weight_bytes_int8_containers"] else
         f"{m['weight_bytes']} B with low-bit filters packed, {m['weight_bytes_int8_containers']} B with int8 filters "
         f"({m['weight_bytes'] / m['weight_bytes_int8_containers']:.3f}x)"),
        ("activation arena", f"{m['arena_bytes']} B (without in-place {m.get('arena_without_inplace_bytes') or '-'} B"
                             f", floor {m['arena_floor_bytes']} B)"
                             + (f", scratch {m['scratch_bytes']} B" if m.get("scratch_bytes") else "")),
        ("RAM", "n/a on the host" if not m.get("ram_split") else
         f"{m['ram_bytes']} B: {ram_split_text(m['ram_split'])} (qemu)"),
        ("host C vs simulator", "not run" if host is None else
         f"{host['mismatches']} mismatching of {host['inputs']} inputs"),
        ("qemu firmware vs simulator", "not run" if b["qemu"] is None else
         f"{b['qemu']['mismatches']} mismatching of {b['qemu']['inputs']} inputs"),
        *([("tflite_micro vs simulator", f"{t['mismatches']} mismatching values in {t['tensors']} tensors of "
                                         f"{t['inputs']} inputs")] if (t := b.get("tflm")) else []),
        ("flash / instructions", "n/a on the host" if m["flash_bytes"] is None else
         f"{m['flash_bytes']} B flash ({m['flash_bytes_without_test_data']} B without test data), "
         f"{report['instructions_per_inference']} instructions per inference (qemu, not cycles)"),
        *([("--ram-budget cost", f"{c['extra_instructions']:+} instructions ({c['instructions']} against "
                                   f"{c['instructions_without_budget']} without the budget, whose arena is "
                                   f"{c['arena_bytes_without_budget']} B)")]
          if (c := m.get("ram_budget_cost")) else []),
        ("time", (f"quantize {report['time_s']['quantize']} s, " if report["time_s"].get("quantize") is not None
                  else "") + f"total {report['time_s']['total']} s"),
        ("written to", report.get("out", "")),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _accuracy_row(a: dict) -> tuple[str, str]:
    if a.get("int_sim") is None:
        return "accuracy", f"not measured (no dataset: {a.get('preprocessing') or 'test inputs only'})"
    parts = [(name, a.get(key)) for name, key in (("float", "float"), ("fake-quant", "fake_quant"),
                                                  ("int8 sim", "int_sim"), ("tflite_micro", "tflm"))]
    return (f"accuracy on {a['dataset']} (n={a['n']})",
            "  ".join(f"{name} {v:.2%}" for name, v in parts if v is not None))


def layer_title(target: str, counted: bool = True) -> str:
    if not counted:
        return f"layers on {target} (no instructions: counted under QEMU on the Cortex-M targets only)"
    return f"per-layer instructions on {target} (qemu, mean per inference; instruction counts, not cycles)"


def report_layer_table(report: dict) -> str:
    """The per-layer table of an export's report (profile.layer_table): what `export` prints for a Cortex-M
    target after the summary."""
    from .profile import layer_table

    return layer_table(report["layers"], total=report.get("instructions_per_inference"),
                       tail=report.get("instructions_after_last_layer"),
                       title=layer_title(report["target"], report.get("instructions_per_inference") is not None))
