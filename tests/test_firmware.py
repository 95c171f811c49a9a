"""Cortex-M firmware: the MLPerf Tiny int8 ResNet-8 exported as C, built with arm-none-eabi-gcc for the M4, M7 and
M55, run under qemu-system-arm on 20 test inputs, and checked bit for bit against the integer simulator; its
footprint (weight flash against its floor, the arena) and instruction count; ResNet-8 quantized by FlexRound to
W4, W3 and W2 (int4 filters, packed, through the s4 kernels) on the M7; and the failure paths (a corrupted
weight, a hung guest, a fault, a missing toolchain).

Without arm-none-eabi-gcc / qemu-system-arm these tests skip locally but FAIL on CI (CI set).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import corrupt_one_weight
from flexround_mcu.codegen import export_c_project
from flexround_mcu.codegen.arena import smallest_plan
from flexround_mcu.codegen.kernels import plan_kernels
from flexround_mcu.codegen.render import memory_report
from flexround_mcu.data import load_dataset
from flexround_mcu.errors import UserError
from flexround_mcu.frontends.tflite import load_tflite
from flexround_mcu.ir import OpKind
from flexround_mcu.sim.runner import Simulator
from flexround_mcu.toolchain import (CORTEX_M, TARGETS, build_project, footprint, project_target, run_firmware,
                                     run_on_target, run_project)

RESNET = "mlperf_tiny/ic/pretrainedResnet_quant.tflite"
DSCNN = "mlperf_tiny/kws/kws_ref_model.tflite"
N_INPUTS = 20
ARENA_BOUND_RESNET8 = 32768  # issue 13: at most 32,768 bytes (49,152 without in-place; TFLite Micro needs 55,984)




@pytest.fixture(scope="module")
def resnet8(request):
    """(graph, int8 inputs, simulator outputs) for 20 CIFAR-10 test images, computed once."""
    shared_data = request.getfixturevalue("module_shared_data")
    g = load_tflite(shared_data / RESNET)
    x = load_dataset("cifar10-test-5000", limit=N_INPUTS).quantize_input(1.0, -128)
    y = Simulator(g).run(x)[g.outputs[0]]
    assert len(np.unique(y.argmax(axis=1))) > 3  # real data: varied predictions
    return g, x, y


_projects: dict[str, Path] = {}


@pytest.fixture(scope="module")
def project_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("firmware")


def exported(target: str, resnet8, root: Path) -> Path:
    if target not in _projects:
        g, x, y = resnet8
        _projects[target] = export_c_project(g, root / f"resnet8-{target}", x, y, target=target)
    return _projects[target]


def weight_floor(g) -> int:
    """Issue 5's floor: one byte per int8 weight, four per int32 bias, eight per output channel (multiplier and
    shift), over every conv, depthwise conv and fully connected op."""
    total = 0
    for op in g.ops:
        if op.kind not in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED):
            continue
        w = g.tensors[op.inputs[1]]
        assert w.dtype == "int8"
        channels = w.shape[3] if op.kind == OpKind.DEPTHWISE_CONV_2D else w.shape[0]
        total += w.size + 8 * channels
        if op.inputs[2] != -1:
            total += 4 * g.tensors[op.inputs[2]].size
    return total


def map_weight_bytes(map_file: Path) -> int:
    """Sum of the input sections the map file attributes to weights.o."""
    text = map_file.read_text()
    sizes = re.findall(r"^ \.rodata\.\w+\s+0x[0-9a-f]+\s+0x([0-9a-f]+) \S*weights\.o$", text, re.MULTILINE)
    assert sizes, "no weights.o sections in the map"
    return sum(int(s, 16) for s in sizes)


# --------------------------------------------------------------------------------------- ResNet-8 on the boards
@pytest.mark.parametrize("target", CORTEX_M)
def test_resnet8_bitexact_under_qemu(target, arm_tools, resnet8, project_root):
    g, x, y = resnet8
    project = exported(target, resnet8, project_root)
    assert project_target(project) == target
    res = run_on_target(project)  # the project's own target
    assert res.target == target
    assert res.lines[-1] == f"SUMMARY inputs={N_INPUTS} mismatches=0", res.mismatch_lines[:5]
    assert (res.inputs, res.mismatches, res.returncode) == (N_INPUTS, 0, 0) and res.ok
    assert [ln for ln in res.lines if ln.startswith("input ")] == [f"input {i}: ok" for i in range(N_INPUTS)]

    # instructions: the marked invoke region, once per input, nearly all of the run
    assert res.instructions_per_inference > 1_000_000
    assert res.instructions_per_inference * N_INPUTS == pytest.approx(res.instructions_invoke)
    assert 0.99 * res.instructions_total < res.instructions_invoke < res.instructions_total

    # footprint: flash = text + data, RAM = data + bss; the arena is the planned one
    plan = memory_report(g, target).arena
    assert res.flash_bytes == res.text_bytes + res.data_bytes > res.weight_bytes + res.test_data_bytes
    assert res.ram_bytes == res.data_bytes + res.bss_bytes >= res.arena_bytes + res.stack_bytes
    assert res.arena_bytes == plan.arena_size <= ARENA_BOUND_RESNET8
    assert res.test_data_bytes == N_INPUTS * (32 * 32 * 3 + 10)
    assert 0 < res.stack_used_bytes < res.stack_bytes
    # RAM the model needs: arena + the fast kernels' scratch + the board's statics + the measured stack
    report = memory_report(g, target)
    split = res.ram_split
    assert res.scratch_bytes == report.scratch_bytes > 0  # the dsp / mve conv im2col columns
    assert split["total"] == split["arena"] + split["scratch"] + split["statics"] + split["stack_used"]
    assert (split["arena"], split["scratch"]) == (plan.arena_size, report.scratch_bytes)
    assert 0 <= split["statics"] < 1024 and split["total"] < res.ram_bytes  # the stack reservation left out

    # int8 weight flash within 2% of its floor: ELF symbol sizes, their span (alignment included), the map
    # (the dsp export adds a 1 KiB rescaling table per ADD, docs/arithmetic.md 6.4, and pads the stem's rows;
    # the M55's Helium ADD needs no table, 7.3)
    choices = plan_kernels(g, TARGETS[target].kernels)
    adds = [op for op, ch in zip(g.ops, choices) if op.kind == OpKind.ADD and ch.table is not None]
    assert len(adds) == (0 if target == "cortex-m55" else 3)
    floor = weight_floor(g) + 1024 * len(adds)
    elf = project / "build" / target / "model_test.elf"
    fp = footprint(elf)
    names = memory_report(g, target).weight_arrays
    weighted = [op for op in g.ops if op.kind in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED)]
    assert len(names) == 4 * len(weighted) + len(adds)  # filter, bias, multiplier and shift per op; ADD tables
    spans = sorted(fp.symbols[n] for n in names)
    span = spans[-1][0] + spans[-1][1] - spans[0][0]
    from_map = map_weight_bytes(project / "build" / target / "model_test.map")
    assert res.weight_bytes == fp.size_of(names) == from_map
    for measured in (res.weight_bytes, span):
        assert abs(measured / floor - 1) <= 0.02, (measured, floor)


def test_weight_arrays_and_memory_report(arm_tools, resnet8, project_root):
    g, _, _ = resnet8
    project = exported("cortex-m7", resnet8, project_root)
    report = memory_report(g, "cortex-m7")  # the dsp export: ADD tables are weight flash too (arithmetic.md 6.4)
    convs = [op for op in g.ops if op.kind == OpKind.CONV_2D]
    fcs = [op for op in g.ops if op.kind == OpKind.FULLY_CONNECTED]
    adds = [op for op in g.ops if op.kind == OpKind.ADD]
    assert len(report.layers) == len(convs) + len(fcs) + len(adds)
    assert report.weight_bytes == sum(la.total_bytes for la in report.layers)
    assert abs(report.weight_bytes / (weight_floor(g) + 1024 * len(adds)) - 1) <= 0.02
    text = (project / "memory.txt").read_text()
    assert text == report.text()
    assert f"peak arena {report.arena.arena_size} bytes, floor {report.arena.floor} bytes" in text
    assert report.arena.arena_size <= ARENA_BOUND_RESNET8
    assert "offset" in text and "CONV_2D" in text and "FULLY_CONNECTED" in text


def test_same_c_for_every_target(arm_tools, resnet8, project_root, tmp_path):
    """With the same kernel set, only the default target differs between exports (Makefile, CMakeLists.txt,
    README, project.json); the C is the same, and an export is byte-for-byte deterministic. The host's default kernel set
    (portable) changes the model and weights, nothing else."""
    g, x, y = resnet8
    m7 = exported("cortex-m7", resnet8, project_root)
    host = export_c_project(g, tmp_path / "host", x, y, target="host", kernels="dsp")
    portable = export_c_project(g, tmp_path / "portable", x, y, target="cortex-m7", kernels="portable")
    again = export_c_project(g, tmp_path / "m7", x, y, target="cortex-m7")

    def files(p: Path) -> dict[str, bytes]:
        return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*"))
                if f.is_file() and "build" not in f.relative_to(p).parts}

    a, b, c, d = files(m7), files(host), files(again), files(portable)
    assert a == c
    assert a.keys() == b.keys() == d.keys()
    # the build files name the default target (CMakeLists.txt also the kernel set it was chosen for)
    assert {k for k in a if a[k] != b[k]} == {"Makefile", "README.txt", "project.json", "CMakeLists.txt"}
    assert {k for k in a if a[k] != d[k]} == {"model.c", "weights.c", "weights.h", "memory.txt", "project.json",
                                              "README.txt", "CMakeLists.txt"}  # README.txt gives the weight bytes
    assert {"boards/frk_startup.c", "boards/frk_semihost.c", "boards/mps2-an386.ld", "boards/mps2-an500.ld",
            "boards/mps3-an547.ld", "memory.txt"} <= a.keys()


# ------------------------------------------------------------------------------------------------ failure paths
def test_corrupted_weight_fails_under_qemu(arm_tools, resnet8, project_root, tmp_path):
    project = exported("cortex-m7", resnet8, project_root)
    bad = corrupt_one_weight(project, tmp_path / "corrupted")
    res = run_on_target(bad, "cortex-m7", count_instructions=False)
    assert res.inputs == N_INPUTS and res.mismatches > 0 and res.returncode == 1 and not res.ok
    assert res.lines[-1] == f"SUMMARY inputs={N_INPUTS} mismatches={res.mismatches}"
    assert re.fullmatch(r"input \d+: MISMATCH \d+ of 10 values \(first at \d+: got -?\d+, expected -?\d+\)",
                        res.mismatch_lines[0])


def test_hung_guest_is_stopped(arm_tools, resnet8, project_root):
    project = exported("cortex-m7", resnet8, project_root)
    elf = build_project(project, "cortex-m7", extra_cflags=["-DFRK_BOARD_TEST_HANG"])
    assert elf.parent.name != "cortex-m7"  # its own build folder: the normal build is untouched
    with pytest.raises(UserError, match=r"the guest hung and was stopped after 2 s"):
        run_firmware(elf, "cortex-m7", timeout=2, count_instructions=False)


def test_fault_exits_with_its_own_code(arm_tools, resnet8, project_root):
    project = exported("cortex-m55", resnet8, project_root)
    elf = build_project(project, "cortex-m55", extra_cflags=["-DFRK_BOARD_TEST_FAULT"])
    with pytest.raises(UserError, match=r"exit code 127 and no SUMMARY line \(last output: board: fault: "
                                        r"exception 003\)"):
        run_firmware(elf, "cortex-m55", timeout=30, count_instructions=False)
    # an image for the wrong core is not a pass either: the M55 build on the M7 board faults
    with pytest.raises(UserError, match=r"no SUMMARY line .*built for another core"):
        run_firmware(build_project(project, "cortex-m55"), "cortex-m7", timeout=30, count_instructions=False)


def test_build_and_run_commands(arm_tools, resnet8, project_root, tmp_path):
    project = exported("cortex-m4", resnet8, project_root)
    elf = build_project(project)
    assert elf == project / "build" / "cortex-m4" / "model_test.elf"
    assert (project / "build" / "cortex-m4" / "model_test.map").is_file()
    res = run_project(project, build=False, count_instructions=False)
    assert res.ok and res.instructions_per_inference is None and res.flash_bytes > 0
    with pytest.raises(UserError, match="build it first"):
        run_project(project, "cortex-m55", build=False)  # exported for the M4; never built for the M55 here
    with pytest.raises(UserError, match="unknown target 'cortex-m99'"):
        build_project(project, "cortex-m99")
    with pytest.raises(UserError, match="no Makefile"):
        build_project(tmp_path)


def test_missing_toolchain_gives_the_install_hint(arm_tools, resnet8, project_root, tmp_path, monkeypatch):
    project = exported("cortex-m7", resnet8, project_root)
    build_project(project)
    hint = r"apt-get install --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(UserError, match=r"arm-none-eabi-gcc not found on PATH.*" + hint + r".*make setup"):
        build_project(project)
    with pytest.raises(UserError, match=r"qemu-system-arm not found on PATH.*" + hint):
        run_project(project, build=False)
    assert set(CORTEX_M) == set(TARGETS) - {"host"}


# ----------------------------------------------------------------------------------- FlexRound int4 on the M7
FLEXROUND_ITERS = 20  # a short reconstruction: bit-exactness does not depend on how well the rounding is learned
_flexround: dict[int, tuple] = {}


@pytest.fixture(scope="module")
def resnet8_float(module_shared_data):
    """The zoo ResNet-8 as a float graph, and 128 calibration images (NCHW)."""
    from flexround_mcu.frontends.zoo_graph import resnet8_to_graph
    from flexround_mcu.zoo import build
    from flexround_mcu.zoo.resnet8 import to_nchw

    model, _ = build("resnet8")
    return resnet8_to_graph(model), to_nchw(load_dataset("cifar10-calib", limit=128).x)


def flexround_resnet8(wbits: int, resnet8_float, root: Path):
    """(graph, inputs, simulator outputs, cortex-m7 project) of ResNet-8 quantized by FlexRound at `wbits`
    (per tensor, first and last layers at 8 bits), made once per module."""
    if wbits not in _flexround:
        from flexround_mcu.lower import lower
        from flexround_mcu.quant.fakequant import quantize_model
        from flexround_mcu.quant.reconstruct import reconstruct

        graph, calib = resnet8_float
        qm = quantize_model(graph, [calib], "flexround", wbits, "tensor", True)
        reconstruct(qm, calib, iters=FLEXROUND_ITERS, batch_size=16, seed=0)
        g = lower(qm, name=f"resnet8_flexround_w{wbits}")
        tin = g.tensors[g.inputs[0]]
        x = load_dataset("cifar10-test-5000", limit=N_INPUTS).quantize_input(float(tin.scale[0]),
                                                                             int(tin.zero_point[0]))
        y = Simulator(g).run(x)[g.outputs[0]]
        project = export_c_project(g, root / f"resnet8-flexround-w{wbits}", x, y, target="cortex-m7")
        _flexround[wbits] = (g, x, y, project)
    return _flexround[wbits]


@pytest.mark.parametrize("wbits", [4, 3, 2])
def test_flexround_low_bit_resnet8_bitexact_on_cortex_m7(wbits, arm_tools, resnet8, resnet8_float, project_root):
    g, x, y, project = flexround_resnet8(wbits, resnet8_float, project_root)
    dtype, s, per_byte = ("int2", "s2", 4) if wbits == 2 else ("int4", "s4", 2)  # 2-bit weights: 4 per byte
    low_ops = [op for op in g.ops if op.inputs[1:] and g.tensors[op.inputs[1]].dtype == dtype]
    assert len(low_ops) == 8 and g.metadata["bits"][low_ops[0].name] == wbits  # all but the first and last
    assert len(np.unique(y, axis=0)) > 3  # real data: varied outputs
    # the Cortex-M7 export runs the DSP kernels (lane-nibbled s4 / lane-crumbed s2), bit-exact on the M7 and the M4
    assert (project / "model.c").read_text().count(f"frk_convolve_{s}_dsp(") == 8
    res = run_on_target(project, count_instructions=False)
    assert res.target == "cortex-m7"
    # and the same graph exported for the M55 (kernel set mve: the Helium int4 conv; 2-bit: the dsp s2 core)
    project55 = export_c_project(g, project.parent / f"{project.name}-m55", x, y, target="cortex-m55")
    assert (project55 / "model.c").read_text().count(f"frk_convolve_{s}_{'dsp' if wbits == 2 else 'mve'}(") == 8
    for r in (res, run_on_target(project, "cortex-m4", count_instructions=False),
              run_on_target(project55, "cortex-m55", count_instructions=False)):
        assert r.lines[-1] == f"SUMMARY inputs={N_INPUTS} mismatches=0", (r.target, r.mismatch_lines[:5])
        assert (r.inputs, r.mismatches, r.returncode) == (N_INPUTS, 0, 0) and r.ok
        assert r.arena_bytes <= ARENA_BOUND_RESNET8  # the residual ADDs fused on every board (issue 13)

    # the packed weights in the ELF are what the memory report counts, and at most 0.52x (W2: 0.3x) the int8
    # model's in the same (dsp) export; the low-bit filters are their packed size (every K here is a multiple of
    # 16, so the dsp rows need no padding)
    report = memory_report(g, "cortex-m7")
    stem = g.tensors[g.ops[0].inputs[1]]  # int8 rows of K = 27 padded to 28 (arithmetic.md 6.2): 1 byte a row
    assert res.weight_bytes == report.weight_bytes == report.weight_floor_bytes + stem.shape[0]
    low_filters = sum(la.filter_bytes for la in report.layers if la.filter_dtype == dtype)
    assert low_filters == sum(-(-g.tensors[op.inputs[1]].size // per_byte) for op in low_ops)
    ratio = 0.31 if wbits == 2 else 0.52
    assert report.weight_bytes <= ratio * memory_report(resnet8[0], "cortex-m7").weight_bytes


# ------------------------------------------------------------------------ per-layer instruction counts (issue 11)
def test_per_layer_instructions_partition_each_inference(arm_tools, tmp_path, capsys):
    """frk_model_invoke marks the end of every op; the plugin's segments (one per op) and the tail after the last
    mark add up exactly to the invoke region. A tiny graph (conv, conv, max pool, add, average pool, reshape, fc) on
    3 inputs keeps this fast."""
    from test_codegen import tiny_data
    from flexround_mcu.cli import main
    from flexround_mcu.codegen.render import memory_report as memory
    from flexround_mcu.workflow import layer_rows, weight_bytes

    g, x, y = tiny_data(3)
    project = export_c_project(g, tmp_path / "tiny", x, y, target="cortex-m7")
    marks = re.findall(r"^    FRK_LAYER_END\((\d+)\);$", (project / "model.c").read_text(), re.MULTILINE)
    assert marks == [str(k) for k in range(len(g.ops))]  # after every op, the RESHAPE's (no code) too
    res = run_on_target(project)
    assert res.ok and res.inputs == 3
    layers, tail = res.layer_instructions, res.layer_tail_instructions
    assert layers is not None and len(layers) == len(g.ops)
    for k, op in enumerate(g.ops):
        if op.kind == OpKind.RESHAPE:
            assert 2 <= layers[k] <= 8, layers  # no code: the mark's call and return (and perhaps a register move)
        else:
            assert layers[k] > 100, (k, layers)
    assert 0 < tail < 100  # output copy, return, the end marker's call
    # exact: the segments and the tail partition the region, inference by inference
    n = res.inputs
    assert sum(round(v * n) for v in layers) + round(tail * n) == res.instructions_invoke
    assert res.to_dict()["layer_instructions"] == list(layers)

    # the host runs the same C without marks and counts nothing
    host = run_project(project, "host")
    assert host.ok and host.layer_instructions is None and host.to_dict()["layer_instructions"] is None

    # `run`: op indices and instructions only without a report.json; kinds, shapes and MACs with one
    assert main(["run", str(project)]) == 0
    out = capsys.readouterr().out
    assert "per-layer instructions on cortex-m7" in out and "CONV_2D" not in out
    assert re.search(r"^\s+0\s+[\d,]+\s+\d+\.\d%$", out, re.MULTILINE), out
    rows = layer_rows(g, weight_bytes(g, memory(g), {}), None)
    (project / "report.json").write_text(json.dumps({"layers": rows}))
    assert main(["run", str(project)]) == 0
    out = capsys.readouterr().out
    # op, kind, shape, bits, weight bytes, MACs, instructions, insn/MAC, share, name
    assert re.search(r"^\s+0\s+CONV_2D\s+1x3x3x5\s+8\s+[\d,]+\s+1,215\s+[\d,]+\s+\d+\.\d\d\s+\d+\.\d%\s+conv0$", out,
                     re.MULTILINE), out
    assert re.search(r"^\s+5\s+RESHAPE\s+1x5\s+0\s+\d\s+-\s+0\.0%\s+flatten$", out, re.MULTILINE), out

    # a firmware without the marks (an older export's model.c): counted as before, no per-layer counts
    elf = build_project(project, "cortex-m7", extra_cflags=["-DFRK_NO_LAYER_MARKERS"])
    assert "frk_board_layer_end" not in footprint(elf).symbols  # never called: dropped by --gc-sections
    plain = run_firmware(elf, "cortex-m7")
    assert plain.ok and plain.layer_instructions is None and plain.layer_tail_instructions is None
    assert 0 < res.instructions_per_inference - plain.instructions_per_inference <= 4 * len(g.ops)


# ----------------------------------------------------------------------------------- DS-CNN under a RAM budget
@pytest.mark.parametrize("target", CORTEX_M)
def test_ds_cnn_arena_within_8704_bytes_under_ram_budget(target, arm_tools, module_shared_data, tmp_path):
    """Issue 13: the MLPerf int8 DS-CNN without a budget writes every depthwise and pointwise output over its input
    (16,000 -> at most 10,304 bytes, no instruction more); with the smallest --ram-budget the planner reaches, ring
    buffers stop the chain's drift and the arena is one 25x5x64 map (8,000 bytes), bit-exact on the board."""
    from flexround_mcu.toolchain.targets import get_target

    g = load_tflite(module_shared_data / DSCNN)
    tin = g.tensors[g.inputs[0]]
    x = load_dataset("kws01", limit=5).quantize_input(float(tin.scale[0]), int(tin.zero_point[0]))
    y = Simulator(g).run(x)[g.outputs[0]].reshape(len(x), -1)
    default = memory_report(g, target).arena
    assert default.arena_size <= 10304 < default.arena_without_inplace == default.floor == 16000
    assert not default.rings and len(default.inplace) >= 8
    choices = plan_kernels(g, get_target(target).kernels)
    least = smallest_plan(g, 16, [c.name for c in choices], [c.scratch_bytes for c in choices])
    assert least.rings and least.arena_size <= 8704 and least.ram_bytes < default.ram_bytes
    project = export_c_project(g, tmp_path / "ds", x, y, target=target, ram_budget=least.ram_bytes)
    res = run_on_target(project)
    assert (res.inputs, res.mismatches, res.returncode) == (5, 0, 0) and res.ok, res.lines[-3:]
    assert res.arena_bytes == least.arena_size and res.scratch_bytes == least.scratch_bytes
    assert 0 < res.stack_used_bytes < res.stack_bytes  # the stack stays inside its reservation
    assert "ring: op" in (project / "memory.txt").read_text()


# ------------------------------------------------------------------- 2-, 4- and 8-bit layers side by side (issue 14)
@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m55"])
@pytest.mark.parametrize("mix", ["mixed_2_4_8_2", "mixed_8_2_4_2"])
def test_mixed_bit_widths_bit_exact_under_qemu(arm_tools, tmp_path, target, mix):
    """Every neighbour pair of 2-, 4- and 8-bit filters the allocator can produce (conv, depthwise and fully
    connected at each width) in one graph, on the board's default kernel set: the s2 kernels (the dsp conv / FC
    core, the portable depthwise) next to the fast s4 / s8 ones, bit for bit against the simulator under QEMU."""
    from test_codegen import MIXED_DTYPES, tiny_int4_data

    g, x, y = tiny_int4_data(6, MIXED_DTYPES[mix])
    project = export_c_project(g, tmp_path / mix, x, y, target=target)
    model_c = (project / "model.c").read_text()
    assert re.search(r"frk_\w+_s2(_dsp)?\(", model_c) and re.search(r"frk_\w+_s[48]_(dsp|mve)\(", model_c)
    res = run_on_target(project)
    assert (res.inputs, res.mismatches, res.ok) == (6, 0, True), res.mismatch_lines[:3]
