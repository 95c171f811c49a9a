"""Mixed precision: the exact allocation, the --wbits mixed --flash-budget export, and 2-bit ResNet-8 on a board."""
from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest

from flexround_mcu.cli import main
from flexround_mcu.mixed import BudgetTooSmall, allocate_bits
from helpers import cli_fails_cleanly


def _brute_force(costs, sens, budget, fixed):
    names = list(costs)
    best = None
    for combo in itertools.product(*[sorted(costs[n]) for n in names]):
        nbytes = fixed + sum(costs[n][b] for n, b in zip(names, combo))
        if nbytes > budget:
            continue
        key = (round(sum(sens[n][b] for n, b in zip(names, combo)), 9), nbytes)
        if best is None or key < best[0]:
            best = (key, dict(zip(names, combo)))
    return best


def test_allocation_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(1, 6))
        costs, sens = {}, {}
        for i in range(n):
            size = int(rng.integers(10, 400))
            costs[f"l{i}"] = {8: size + 12, 4: (size + 1) // 2 + 12, 2: (size + 3) // 4 + 12}
            s4, s2 = sorted(rng.exponential(1.0, 2))
            sens[f"l{i}"] = {8: 0.0, 4: float(s4), 2: float(s2)}
        fixed = int(rng.integers(0, 50))
        lo = fixed + sum(c[2] for c in costs.values())
        hi = fixed + sum(c[8] for c in costs.values())
        budget = int(rng.integers(lo, hi + 10))
        got = allocate_bits(costs, sens, budget, fixed)
        (loss, nbytes), want = _brute_force(costs, sens, budget, fixed)
        got_loss = round(sum(sens[k][b] for k, b in got.items()), 9)
        got_bytes = fixed + sum(costs[k][b] for k, b in got.items())
        assert (got_loss, got_bytes) == (loss, nbytes), (trial, got, want)
        assert got_bytes <= budget


def test_allocation_names_the_smallest_reachable_size():
    costs = {"a": {8: 100, 4: 50, 2: 25}, "b": {8: 40, 4: 20, 2: 10}}
    sens = {"a": {8: 0, 4: 1, 2: 2}, "b": {8: 0, 4: 1, 2: 2}}
    with pytest.raises(BudgetTooSmall) as e:
        allocate_bits(costs, sens, 40, fixed_bytes=6)
    assert e.value.smallest == 41 and "pass --flash-budget 41 or more" in str(e.value)
    assert allocate_bits(costs, sens, 41, fixed_bytes=6) == {"a": 2, "b": 2}
    assert allocate_bits(costs, sens, 146, fixed_bytes=6) == {"a": 8, "b": 8}
    assert allocate_bits(costs, sens, 100, fixed_bytes=6) == {"a": 4, "b": 8}  # 50 + 40 + 6: the cheaper loss


def test_mixed_options_need_each_other(capsys):
    assert "--wbits mixed needs --flash-budget" in cli_fails_cleanly(capsys, "export", "resnet8", "--wbits", "mixed")
    assert "--flash-budget is for --wbits mixed" in cli_fails_cleanly(capsys, "export", "resnet8", "--wbits", "4",
                                                                      "--flash-budget", "30000")


def test_mixed_export_under_a_budget(shared_data, capsys, tmp_path):
    """RTN mixed ResNet-8 at --flash-budget 30000 on the host: every layer's bits in report.json and memory.txt,
    8-, 4- and 2-bit layers together, within the budget as report.json counts it, bit-exact; a budget below the
    all-2-bit size fails with one line giving that size, before any file is written."""
    out = tmp_path / "mixed"
    code = main(["export", "resnet8", "--method", "rtn", "--wbits", "mixed", "--flash-budget", "30000",
                 "--test-inputs", "20", "--eval-size", "500", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    r = json.loads((out / "report.json").read_text())
    mixed = r["mixed"]
    bits = {la["layer"]: la["bits"] for la in mixed["layers"]}
    assert r["wbits"] == "mixed" and set(bits.values()) == {8, 4, 2}
    assert bits["conv0"] == bits["fc"] == 8  # first and last stay 8-bit by default
    assert r["memory"]["weight_bytes"] == mixed["weight_bytes"] == mixed["predicted_weight_bytes"] <= 30000
    assert r["bitexact"]["host_c"] == {"inputs": 20, "mismatches": 0}
    assert r["accuracy"]["fake_quant"] == r["accuracy"]["int_sim"]  # the exact evaluation
    by_layer = {la["layer"]: la["bits"] for la in r["layers"] if la.get("bits")}
    assert by_layer == bits
    text = (out / "memory.txt").read_text()
    for name, b in bits.items():
        dtype = {8: "int8", 4: "int4", 2: "int2"}[b]
        assert re.search(rf"\s{b}\s+{dtype}\s.*{name}\s*$", text, re.M), (name, b)
    code = main(["export", "resnet8", "--method", "rtn", "--wbits", "mixed", "--flash-budget", "15000",
                 "--out", str(tmp_path / "small")])
    stderr = capsys.readouterr().err
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in stderr and not (tmp_path / "small").exists()
    m = re.search(r"smallest weight size reachable is (\d+) B", last)
    assert m and f"pass --flash-budget {m.group(1)} or more" in last
    assert int(m.group(1)) < 22000  # all 2-bit with the first and last at 8



def test_no_2bit_layer_at_or_above_the_4bit_size(shared_data, capsys, tmp_path):
    """At the all-4-bit size (uniform W4's weight bytes) 2 bits are not offered: the allocation is uniform W4;
    a little above it, only 8-bit upgrades."""
    reports = []
    for budget in ("40680", "41500"):
        out = tmp_path / budget
        code = main(["export", "resnet8", "--method", "rtn", "--wbits", "mixed", "--flash-budget", budget,
                     "--test-inputs", "4", "--eval-size", "100", "--out", str(out)])
        assert code == 0, capsys.readouterr().err
        reports.append(json.loads((out / "report.json").read_text()))
    at, above = ({la["layer"]: la["bits"] for la in r["mixed"]["layers"]} for r in reports)
    assert reports[0]["mixed"]["all_4bit_bytes"] == 40680 and reports[0]["mixed"]["widths"] == [8, 4]
    assert at == {**{n: 4 for n in at}, "conv0": 8, "fc": 8}
    assert reports[0]["memory"]["weight_bytes"] == 40680
    assert 2 not in above.values() and sum(b == 8 for b in above.values()) > 2
    assert reports[1]["memory"]["weight_bytes"] <= 41500

def test_w2_resnet8_on_cortex_m7_is_bit_exact_and_packed(shared_data, capsys, tmp_path, arm_tools):
    """W2 ResNet-8 (RTN, for speed) on the Cortex-M7 under QEMU: 2-bit layers packed four per byte through the dsp
    s2 kernel (lane-crumbed rows, padded to 16 values), bit for bit on the host and on the board. The weighted layers take under 22,000
    bytes; the dsp ADD kernel's rescale tables (256 int32 per ADD) come on top on this board."""
    out = tmp_path / "w2"
    code = main(["export", "resnet8", "--method", "rtn", "--wbits", "2", "--target", "cortex-m7",
                 "--test-inputs", "4", "--eval-size", "200", "--emit-tflite", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    r = json.loads((out / "report.json").read_text())
    assert r["bitexact"] == {"host_c": {"inputs": 4, "mismatches": 0}, "qemu": {"inputs": 4, "mismatches": 0}}
    layers = [la for la in r["layers"] if la["bytes"]]
    weighted = sum(la["bytes"] for la in layers if la.get("bits"))
    tables = [la for la in layers if not la.get("bits")]
    assert weighted <= 22000 and [la["kind"] for la in tables] == ["ADD"] * 3
    assert r["memory"]["weight_bytes"] == weighted + sum(la["bytes"] for la in tables) == weighted + 3 * 1024
    model_c = (out / "model.c").read_text()
    assert model_c.count("frk_convolve_s2_dsp(") == 8 and "frk_fully_connected_s8_dsp(" in model_c
    assert "as INT4 (TFLite has no INT2 type" in err
    low = [la for la in r["layers"] if la.get("bits") == 2]
    # four weights per byte (rows padded to 16 values, so at most 4 bytes more per row)
    assert len(low) == 8 and all(la["bytes"] < la["bytes_int8_containers"] / 3 + 4 * 64 for la in low)


def test_sensitivity_is_measured_after_reconstruction(shared_data):
    """The sensitivity of a learned method is taken after that layer's block is reconstructed alone: on ResNet-8,
    FlexRound's 4-bit cost of a layer is below round to nearest's, 2 bits cost more than 4, and the model is left
    as it came (all layers rounded to nearest at 8 bits)."""
    import torch

    from flexround_mcu.data import load_data
    from flexround_mcu.quant.fakequant import quantize_model
    from flexround_mcu.quant.sensitivity import _log_probs, layer_sensitivity
    from flexround_mcu.workflow import ExportOptions, model_units, resolve_model
    from flexround_mcu.zoo import float_input

    torch.manual_seed(0)
    graph, info = resolve_model(ExportOptions(model="resnet8"))
    cal = model_units(load_data(info.calib_dataset, limit=256), info.input_scale, info.input_zero_point)
    x = float_input(cal)
    qm = quantize_model(graph, [x[:128], x[128:]], "rtn", 8, first_last_8bit=False)
    before = _log_probs(qm.module, x)
    skip = {n.name for n in graph.weighted()} - {"s2_conv1"}
    rtn = layer_sensitivity(qm, x, (8, 4, 2), "rtn", skip=skip)["s2_conv1"]
    fr = layer_sensitivity(qm, x, (8, 4, 2), "flexround", lr=3e-3, iters=100, skip=skip)["s2_conv1"]
    assert rtn[8] == fr[8] == 0.0
    assert fr[4] < rtn[4] and fr[2] < rtn[2] and fr[4] < fr[2], (rtn, fr)
    assert torch.equal(_log_probs(qm.module, x), before)
    assert all(qm.bits[n.name] == 8 and not qm.quantizer(n.name).learnable for n in graph.weighted())
