"""Per-layer profile (issue 11): MACs from the QGraph, report.json's layer rows, the plugin's per-layer line and
the table `export` and `run` print. No toolchain: the firmware side is in test_firmware.py."""
from __future__ import annotations

import pytest

from test_codegen import tiny_graph, tiny_int4_graph
from flexround_mcu.codegen.render import memory_report
from flexround_mcu.ir import OpKind
from flexround_mcu.profile import layer_table, op_rows, with_instructions
from flexround_mcu.toolchain.qemu import TargetResult, _layer_counts
from flexround_mcu.workflow import NO_WEIGHTS, layer_rows, weight_bytes


def test_macs_of_every_kind():
    g = tiny_graph()  # conv 3x3 s2 (3 -> 5), conv 1x1, max pool, add, average pool, reshape, fc 5 -> 3
    assert [g.op_macs(k) for k in range(len(g.ops))] == [3 * 3 * 5 * 3 * 3 * 3, 3 * 3 * 5 * 5, 0, 0, 0, 0, 3 * 5]
    g4 = tiny_int4_graph()  # conv 3x3 s2 (3 -> 5), depthwise 3x3 x2 (5 -> 10), conv 1x1 (10 -> 7), pool, reshape, fc
    assert [op.kind for op in g4.ops][1] == OpKind.DEPTHWISE_CONV_2D
    assert [g4.op_macs(k) for k in range(len(g4.ops))] == [4 * 4 * 5 * 27, 4 * 4 * 10 * 9, 4 * 4 * 7 * 10, 0, 0,
                                                           3 * 7]


def test_op_rows_one_per_op():
    g = tiny_graph()
    rows = op_rows(g)
    assert [r["op"] for r in rows] == list(range(7))
    assert [r["kind"] for r in rows] == [op.kind.value for op in g.ops]
    assert rows[0] == {"op": 0, "kind": "CONV_2D", "layer": "conv0", "output_shape": [1, 3, 3, 5], "macs": 1215,
                       "instructions": None, "insn_per_mac": None}
    counted = op_rows(g, [2430.04, 100, 50, 60, 70, 2, 30])
    assert counted[0]["instructions"] == 2430.0 and counted[0]["insn_per_mac"] == 2.0
    assert counted[2]["instructions"] == 50 and counted[2]["insn_per_mac"] is None  # no MACs
    # counts of another length are not this graph's: not used
    assert all(r["instructions"] is None for r in op_rows(g, [1, 2, 3]))


def test_report_layers_keep_the_weight_fields():
    g = tiny_graph()
    wb = weight_bytes(g, memory_report(g), {"conv1": 4})
    rows = layer_rows(g, wb, [10.0] * 7)
    assert len(rows) == len(g.ops)
    by_name = {r["layer"]: r for r in rows}
    assert by_name["conv1"]["bits"] == 4 and by_name["conv0"]["bits"] == 8 and by_name["fc"]["weights"] == 15
    assert by_name["conv0"]["bytes"] == next(la["bytes"] for la in wb["per_layer"] if la["layer"] == "conv0")
    for name in ("pool", "add", "gap", "flatten"):
        assert {k: by_name[name][k] for k in NO_WEIGHTS} == NO_WEIGHTS
        assert by_name[name]["instructions"] == 10.0
    assert all("op" in r and "macs" in r and "insn_per_mac" in r for r in rows)
    assert all(r["instructions"] is None for r in layer_rows(g, wb, None))  # the host: null
    # the dsp export's ADD owns a constant table but no filter: its bytes count, its bits are None
    dsp = {r["layer"]: r for r in layer_rows(g, weight_bytes(g, memory_report(g, "cortex-m7"), {}), None)}
    assert dsp["add"]["bits"] is None and dsp["add"]["bytes"] > 0 and dsp["add"]["filter_dtype"] is None
    assert [r["bits"] for r in dsp.values()] == [8, 8, None, None, None, None, 8]


def test_with_instructions_uses_the_report_rows_when_they_fit():
    rows = op_rows(tiny_graph())
    merged = with_instructions(rows, [2430, 1, 2, 3, 4, 5, 6])
    assert merged[0]["kind"] == "CONV_2D" and merged[0]["instructions"] == 2430 and merged[0]["insn_per_mac"] == 2.0
    assert rows[0]["instructions"] is None  # not modified in place
    # an older report (weighted layers only, no op index), or another count of ops: indices and counts only
    old = [{"layer": "conv0", "bits": 8}, {"layer": "fc", "bits": 8}]
    for bad in (old, rows[:3], []):
        assert with_instructions(bad, [7.0, 8.0]) == [{"op": 0, "instructions": 7.0}, {"op": 1, "instructions": 8.0}]


def test_layer_table_full_and_index_only():
    rows = op_rows(tiny_graph(), [2430, 700, 200, 300, 100, 2, 258])
    text = layer_table(rows, total=4000, tail=10, title="per-layer instructions on cortex-m7")
    lines = text.splitlines()
    assert lines[0] == "per-layer instructions on cortex-m7"
    assert lines[1].split() == ["op", "kind", "output", "shape", "MACs", "instructions", "insn/MAC", "share", "name"]
    assert set(lines[2]) == {"-"} and set(lines[-2]) == {"-"}
    assert lines[3].split() == ["0", "CONV_2D", "1x3x3x5", "1,215", "2,430", "2.00", "60.8%", "conv0"]
    assert lines[5].split() == ["2", "MAX_POOL_2D", "1x3x3x5", "0", "200", "-", "5.0%", "pool"]
    assert lines[8].split() == ["5", "RESHAPE", "1x5", "0", "2", "-", "0.1%", "flatten"]
    assert lines[10].split() == ["(after", "last", "op)", "10", "0.2%", "output", "copy,", "return"]
    assert lines[-1].split() == ["total", "1,455", "4,000", "2.75", "100.0%"]
    assert len(lines) == 3 + 7 + 1 + 2
    # the shares of the rows and the tail add up to the total given
    shares = [float(ln.split()[-2 if i < 7 else 4].rstrip("%")) for i, ln in enumerate(lines[3:11])]
    assert sum(shares) == pytest.approx(100, abs=0.5)

    # not counted (the host): dashes, no shares
    dry = layer_table(op_rows(tiny_graph())).splitlines()
    assert dry[2].split() == ["0", "CONV_2D", "1x3x3x5", "1,215", "-", "-", "conv0"]
    assert dry[-1].split() == ["total", "1,455", "-"]

    # index-only rows (`run` without a report.json): op, instructions, share; the total defaults to their sum
    bare = layer_table(with_instructions([], [300, 100]), tail=100).splitlines()
    assert bare[0].split() == ["op", "instructions", "share"]
    assert [ln.split() for ln in bare[2:5]] == [["0", "300", "60.0%"], ["1", "100", "20.0%"],
                                                 ["100", "20.0%", "(after", "last", "op)"]]
    assert bare[-1].split() == ["500", "100.0%", "total"]


def test_plugin_layer_line():
    line1 = "total=1000 region=900 regions=3\n"
    assert _layer_counts(line1 + "layers=300,150,450 tail=0 marks=9\n", 3) == ((100.0, 50.0, 150.0), 0.0)
    assert _layer_counts(line1 + "layers=3,6 tail=30 marks=6\n", 3) == ((1.0, 2.0), 10.0)
    assert _layer_counts(line1, 3) == (None, None)  # no layer= given (no marker in the ELF)
    assert _layer_counts(line1 + "layers= tail=900 marks=0\n", 3) == (None, None)  # marks never executed
    assert _layer_counts(line1 + "layers=3,6 tail=30 marks=5\n", 3) == (None, None)  # one region stopped early
    assert _layer_counts(line1 + "layers_error=more than 1024 layer marks in one region\n", 3) == (None, None)


def test_target_result_to_dict_has_the_layer_fields():
    r = TargetResult("cortex-m7", 1, 0, 0, (), layer_instructions=(1.5, 2.0), layer_tail_instructions=3.0)
    d = r.to_dict()
    assert d["layer_instructions"] == [1.5, 2.0] and d["layer_tail_instructions"] == 3.0
    host = TargetResult("host", 1, 0, 0, ()).to_dict()
    assert host["layer_instructions"] is None and host["layer_tail_instructions"] is None
