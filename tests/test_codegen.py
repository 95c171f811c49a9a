"""C export: the arena plan, the generated project (deterministic, overwrite-safe) and the host build, which must
reproduce the simulator's int8 outputs bit for bit on the real MLPerf Tiny models; and int4 weights end to end
(packed in weights.c, run by the frk_*_s4 kernels): a small graph with every s4 op, ResNet-8 at W4/W3/W2 (RTN)
and an int4 DS-CNN (real depthwise shapes), all against the simulator on the host."""
from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import corrupt_one_weight
from flexround_mcu.codegen import export_c_project, plan_arena
from flexround_mcu.codegen.kernels import KERNEL_SETS
from flexround_mcu.codegen.render import MARKER, c_comment, c_identifier, memory_report
from flexround_mcu.data import load_dataset
from flexround_mcu.errors import UserError
from flexround_mcu.frontends.tflite import load_tflite
from flexround_mcu.ir import (AddParams, ConvParams, FullyConnectedParams, Op, OpKind, PoolParams, QGraph,
                              ReshapeParams, Tensor, WEIGHT_RANGES)
from flexround_mcu.packing import pack_int4, packed_size, unpack_int4
from flexround_mcu.prepare import add_params, conv_multipliers
from flexround_mcu.sim import runner as sim_runner
from flexround_mcu.sim.runner import Simulator
from flexround_mcu.toolchain import HarnessResult, build_host, run_host

RESNET = "mlperf_tiny/ic/pretrainedResnet_quant.tflite"
DSCNN = "mlperf_tiny/kws/kws_ref_model.tflite"
ARENA_FLOOR_RESNET8 = 3 * 16 * 1024  # without in-place: three 32x32x16 maps alive at the first ADD
ARENA_BOUND_RESNET8 = 2 * 16 * 1024  # issue 13: the residual ADDs fused, their sums over the shortcut

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None,
                               reason="gcc and make are needed for the host build")


def source_files(project: Path) -> dict[str, bytes]:
    """Every generated file (build/ excluded) by relative path."""
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted(project.rglob("*"))
            if p.is_file() and "build" not in p.relative_to(project).parts}


# ----------------------------------------------------------------------------------------------- tiny graph
def tiny_graph() -> QGraph:
    """A branchy graph with overlapping lifetimes, odd sizes (alignment), a max pool, a RESHAPE alias and an FC
    without bias:

        x (1,5,5,3) -> conv -> a (1,3,3,5) -> conv 1x1 -> b ----> add -> d -> avgpool -> e (1,1,1,5)
                                           \\-> maxpool 1x1 -> c /                  reshape -> f (1,5) -> fc -> g (1,3)
    """
    rng = np.random.default_rng(1)

    def act(name, shape, scale, zp):
        return Tensor(name, shape, "int8", scale, zp)

    def const(name, data, scale, dim=0):
        n = data.shape[dim] if np.size(scale) > 1 else 1
        return Tensor(name, data.shape, "int8" if data.dtype == np.int8 else "int32", scale, np.zeros(n), dim, data)

    w = lambda *s: rng.integers(-127, 128, s).astype(np.int8)
    t = [
        act("x", (1, 5, 5, 3), 0.02, -3),                                              # 0
        const("conv0_w", w(5, 3, 3, 3), np.linspace(0.005, 0.01, 5)),                  # 1
        const("conv0_b", rng.integers(-500, 500, 5).astype(np.int32), np.full(5, 1e-4)),  # 2
        act("a", (1, 3, 3, 5), 0.05, -128),                                            # 3
        const("conv1_w", w(5, 1, 1, 5), np.full(5, 0.01)),                             # 4
        const("conv1_b", rng.integers(-500, 500, 5).astype(np.int32), np.full(5, 5e-4)),  # 5
        act("b", (1, 3, 3, 5), 0.04, 3),                                               # 6
        act("c", (1, 3, 3, 5), 0.05, -128),                                            # 7
        act("d", (1, 3, 3, 5), 0.06, -20),                                             # 8
        act("e", (1, 1, 1, 5), 0.06, -20),                                             # 9
        act("f", (1, 5), 0.06, -20),                                                   # 10
        const("fc_w", w(3, 5), 0.01),                                                  # 11
        act("g", (1, 3), 0.1, 7),                                                      # 12
    ]
    conv0 = ConvParams((2, 2), (1, 1), (1, 1, 1, 1), -128, 127, np.full(5, 1 << 30) + np.arange(5) * 12345,
                       np.array([-3, -4, -3, -5, -4]))
    conv1 = ConvParams((1, 1), (1, 1), (0, 0, 0, 0), -128, 127, np.full(5, 1 << 30), np.full(5, -2))
    ops = [
        Op(OpKind.CONV_2D, (0, 1, 2), (3,), conv0, "conv0"),
        Op(OpKind.CONV_2D, (3, 4, 5), (6,), conv1, "conv1"),
        Op(OpKind.MAX_POOL_2D, (3,), (7,), PoolParams((1, 1), (1, 1), (0, 0, 0, 0), -100, 127), "pool"),
        Op(OpKind.ADD, (6, 7), (8,), AddParams(**add_params(0.04, 0.05, 0.06), act_min=-128, act_max=127), "add"),
        Op(OpKind.AVERAGE_POOL_2D, (8,), (9,), PoolParams((3, 3), (3, 3), (0, 0, 0, 0), -128, 127), "gap"),
        Op(OpKind.RESHAPE, (9,), (10,), ReshapeParams(), "flatten"),
        Op(OpKind.FULLY_CONNECTED, (10, 11, -1), (12,),
           FullyConnectedParams(-128, 127, np.array([1 << 30]), np.array([-1])), "fc"),
    ]
    return QGraph(t, ops, [0], [12], name="tiny */ ??/ model")  # a hostile name for the comments


def tiny_data(n: int = 20):
    g = tiny_graph()
    x = np.random.default_rng(2).integers(-128, 128, (n, 5, 5, 3)).astype(np.int8)
    return g, x, Simulator(g).run(x)[g.outputs[0]]


def assert_no_live_overlap(plan):
    for a, b in itertools.combinations(plan.buffers, 2):
        if a.overlaps_in_time(b):
            assert not a.overlaps_in_space(b), (a, b)


def test_arena_tiny_graph_lifetimes_overlap_without_sharing_bytes():
    g = tiny_graph()
    plan = plan_arena(g)
    assert 0 not in plan.offsets  # the graph input stays in the caller's buffer
    assert plan.offsets[10] == plan.offsets[9]  # RESHAPE output aliases its input
    assert set(plan.offsets) == {3, 6, 7, 8, 9, 10, 12}
    assert all(off % 16 == 0 for off in plan.offsets.values())
    by_tensor = {b.tensor: b for b in plan.buffers}
    assert (by_tensor[3].first_op, by_tensor[3].last_op) == (0, 2)
    assert (by_tensor[9].first_op, by_tensor[9].last_op) == (4, 6)  # alias f is read by op 6
    assert (by_tensor[12].first_op, by_tensor[12].last_op) == (6, 6)
    assert by_tensor[9].aliases == (10,)
    # a, b and c are alive together at op 2 (b is read by op 3, a by op 2): three distinct places
    assert len({plan.offsets[3], plan.offsets[6], plan.offsets[7]}) == 3
    assert_no_live_overlap(plan)
    assert plan.floor == 3 * 45  # a + b + c (op 2) or b + c + d (op 3)
    assert plan.arena_size >= plan.floor
    assert plan.arena_size == 2 * 48 + 45  # 16-byte aligned slots
    table = plan.table()
    assert "offset" in table and f"arena {plan.arena_size} bytes" in table


def test_arena_resnet8_within_three_maps_without_inplace_and_two_with(shared_data):
    g = load_tflite(shared_data / RESNET)
    plan = plan_arena(g)
    assert plan.floor == ARENA_FLOOR_RESNET8
    assert plan.floor <= plan.arena_size <= ARENA_FLOOR_RESNET8
    assert g.inputs[0] not in plan.offsets
    assert_no_live_overlap(plan)
    for kernels in KERNEL_SETS:
        fused = memory_report(g, kernels=kernels).arena
        assert fused.arena_size <= ARENA_BOUND_RESNET8 and fused.floor == ARENA_FLOOR_RESNET8, kernels
        assert fused.arena_without_inplace == plan.arena_size and len(fused.fusions) == 3


def test_c_names_and_comments_are_safe():
    assert c_identifier("model/conv2d_1/Conv2D;x") == "model_conv2d_1_Conv2D_x"
    assert c_identifier("3x") == "_3x"
    s = c_comment("a */ b /* c ??/ d \u00e9\n")
    assert "*/" not in s and "/*" not in s and "??" not in s and s.isascii() and "\n" not in s


# -------------------------------------------------------------------------------------- export: files, safety
def test_export_writes_the_project(tmp_path):
    g, x, y = tiny_data(4)
    out = export_c_project(g, tmp_path / "proj", x, y)
    names = set(source_files(out))
    assert {"weights.c", "weights.h", "model.c", "model.h", "test_data.c", "test_data.h", "main.c", "Makefile",
            "README.txt", MARKER, "kernels/frk_nn.h"} <= names
    assert any(n.startswith("kernels/frk_") and n.endswith(".c") for n in names)
    model_h = (out / "model.h").read_text()
    assert "#define FRK_MODEL_INPUT_SIZE 75" in model_h and "#define FRK_MODEL_OUTPUT_SIZE 3" in model_h
    assert f"#define FRK_ARENA_SIZE {memory_report(g).arena.arena_size}" in model_h
    weights = (out / "weights.c").read_text()
    assert "const int8_t op0_conv_filter[135] FRK_ALIGNED(4) = {" in weights
    assert "/* tensor 1: conv0_w int8 [5x3x3x3] */" in weights
    assert "op6_fc_bias" not in weights  # FC without bias -> NULL
    model_c = (out / "model.c").read_text()
    assert "frk_fully_connected_s8(&op6_params, op6_fc_multiplier, op6_fc_shift, 0, 1, 5, frk_arena" in model_c
    assert "NULL" in model_c
    for k in range(len(g.ops)):
        assert f"/* op {k}: {g.ops[k].kind.value} " in model_c
    assert not list(tmp_path.glob(".proj.*"))  # no temporary folder left behind


def test_export_is_deterministic(tmp_path):
    g, x, y = tiny_data(6)
    a = source_files(export_c_project(g, tmp_path / "a", x, y))
    b = source_files(export_c_project(tiny_graph(), tmp_path / "b", x.copy(), y.copy()))
    assert a == b


def test_overwrite_protection(tmp_path):
    g, x, y = tiny_data(3)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a flexround-mcu C project"):
        export_c_project(g, foreign, x, y)
    assert (foreign / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(UserError):
        export_c_project(g, a_file, x, y)
    export_c_project(g, foreign, x, y, force=True)
    assert not (foreign / "notes.txt").exists() and (foreign / MARKER).is_file()
    export_c_project(g, a_file, x, y, force=True)
    assert (a_file / MARKER).is_file()
    # a previous export is replaced without force, stale files included
    (foreign / "stale.c").write_text("int stale;")
    export_c_project(g, foreign, x, y)
    assert not (foreign / "stale.c").exists() and (foreign / "model.c").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "foreign"]  # nothing left behind


def test_bad_export_arguments(tmp_path):
    g, x, y = tiny_data(3)
    with pytest.raises(UserError, match="int8"):
        export_c_project(g, tmp_path / "p", x.astype(np.int16), y)
    with pytest.raises(UserError, match="3 rows|2 inputs"):
        export_c_project(g, tmp_path / "p", x[:2], y)
    with pytest.raises(UserError, match=r"\(N, 3\)"):
        export_c_project(g, tmp_path / "p", x, y[:, :2])
    with pytest.raises(UserError, match="target"):
        export_c_project(g, tmp_path / "p", x, y, target="cortex-m99")
    assert not (tmp_path / "p").exists()


def test_no_torch_import():
    code = ("import sys, flexround_mcu.codegen, flexround_mcu.toolchain; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# ----------------------------------------------------------------------------------------- host build and run
@needs_gcc
def test_tiny_graph_builds_and_matches(tmp_path):
    g, x, y = tiny_data(20)
    binary = build_host(export_c_project(g, tmp_path / "tiny", x, y))
    res = run_host(binary)
    assert isinstance(res, HarnessResult)
    assert (res.inputs, res.mismatches, res.returncode) == (20, 0, 0) and res.ok
    assert res.lines[0] == "input 0: ok" and res.lines[-1] == "SUMMARY inputs=20 mismatches=0"


@needs_gcc
def test_build_errors_and_bad_binaries_are_user_errors(tmp_path, monkeypatch):
    g, x, y = tiny_data(2)
    project = export_c_project(g, tmp_path / "p", x, y)
    with open(project / "model.c", "a") as f:
        f.write("\nthis is not C;\n")
    with pytest.raises(UserError, match=r"model\.c:\d+:\d+: error"):
        build_host(project)
    with pytest.raises(UserError, match="no Makefile"):
        build_host(tmp_path)
    sleeper = tmp_path / "sleeper"
    sleeper.write_text("#!/bin/sh\nsleep 5\n")
    sleeper.chmod(sleeper.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(UserError, match="did not finish"):
        run_host(sleeper, timeout=0.5)
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\necho hello\nexit 3\n")
    silent.chmod(silent.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(UserError, match="no SUMMARY line"):
        run_host(silent)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(UserError, match="gcc not found|make not found"):
        build_host(project)


_projects: dict[str, tuple] = {}


def exported(name: str, shared_data: Path, root: Path):
    """(graph, inputs, expected, project dir) for a real model, exported once per test session."""
    if name not in _projects:
        if name == "resnet8":
            g = load_tflite(shared_data / RESNET)
            x = load_dataset("cifar10-test-5000", limit=100).quantize_input(1.0, -128)
        else:
            g = load_tflite(shared_data / DSCNN)
            t = g.tensors[g.inputs[0]]
            x = load_dataset("kws01", limit=50).quantize_input(float(t.scale[0]), int(t.zero_point[0]))
        y = Simulator(g).run(x)[g.outputs[0]]
        _projects[name] = (g, x, y, export_c_project(g, root / name, x, y))
    return _projects[name]


@pytest.fixture
def project_root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "codegen_projects"


@needs_gcc
@pytest.mark.parametrize("name, count", [("resnet8", 100), ("dscnn", 50)])
def test_real_model_on_host_matches_simulator(name, count, shared_data, project_root):
    g, x, y, project = exported(name, shared_data, project_root)
    assert len(np.unique(y.argmax(axis=1))) > 3  # real data: varied predictions
    res = run_host(build_host(project))
    assert res.lines[-1] == f"SUMMARY inputs={count} mismatches=0", res.mismatch_lines[:5]
    assert (res.inputs, res.mismatches, res.returncode) == (count, 0, 0)
    assert sum(ln.endswith(": ok") for ln in res.lines) == count
    if name == "resnet8":
        assert f"#define FRK_ARENA_SIZE {memory_report(g).arena.arena_size}" in (project / "model.h").read_text()
        assert memory_report(g).arena.arena_size <= ARENA_BOUND_RESNET8
    else:
        assert "frk_depthwise_conv_s8(" in (project / "model.c").read_text()


def test_real_model_export_is_deterministic(shared_data, project_root, tmp_path):
    g, x, y, project = exported("resnet8", shared_data, project_root)
    again = export_c_project(load_tflite(shared_data / RESNET), tmp_path / "again", x.copy(), y.copy())
    assert source_files(project) == source_files(again)


@needs_gcc
def test_corrupted_weight_is_caught(shared_data, project_root, tmp_path):
    g, x, y, project = exported("resnet8", shared_data, project_root)
    bad = corrupt_one_weight(project, tmp_path / "corrupted")
    res = run_host(build_host(bad))
    assert res.inputs == 100 and res.mismatches > 0 and res.returncode != 0 and not res.ok
    assert res.mismatch_lines and re.fullmatch(
        r"input \d+: MISMATCH \d+ of 10 values \(first at \d+: got -?\d+, expected -?\d+\)", res.mismatch_lines[0])



# --------------------------------------------------------------------------------------------------- int4 weights
def tiny_int4_graph(dtypes: dict | None = None, name: str = "tiny_int4") -> QGraph:
    """Every s4 op with odd sizes, next to an int8 op (`dtypes` retypes the layers conv0, dw, conv1, fc, e.g. to
    put 2-, 4- and 8-bit filters side by side; the values then span the new type's weight range):

        x (1,7,7,3) -> conv 3x3 s2 int4 (per channel) -> a (1,4,4,5) -> depthwise 3x3 x2 int4 (per tensor)
          -> b (1,4,4,10) -> conv 1x1 int8 -> c (1,4,4,7) -> avgpool 4x4 -> d -> reshape (1,7)
          -> fc int4 (depth 7) -> g (1,3)

    Odd filter sizes everywhere: conv rows of 27 weights and taps of 3 start mid-byte, the depthwise filter has 90
    values (a tap's 10 channels), the fc rows of 7 alternate byte parity; -8 and 7 appear in every int4 filter."""
    rng = np.random.default_rng(3)

    def act(name, shape, scale, zp):
        return Tensor(name, shape, "int8", scale, zp)

    kinds = {"conv0": "int4", "dw": "int4", "conv1": "int8", "fc": "int4", **(dtypes or {})}

    def weights(name, shape, dtype, scales, dim=0):
        dtype = kinds[name[:-2]]
        lo, hi = WEIGHT_RANGES[dtype]
        data = rng.integers(lo, hi + 1, shape).astype(np.int8)
        data.reshape(-1)[:2] = (lo, hi)
        scales = np.atleast_1d(np.asarray(scales, np.float32))
        return Tensor(name, shape, dtype, scales, np.zeros(scales.size), dim, data)

    def bias(name, n):
        return Tensor(name, (n,), "int32", 1e-4, 0, 0, rng.integers(-300, 300, n).astype(np.int32))

    scales = {"x": 0.02, "a": 0.04, "b": 0.05, "c": 0.012, "g": 0.015}
    w_scales = {"conv0": np.linspace(0.02, 0.04, 5), "dw": 0.05, "conv1": 0.002, "fc": 0.03}
    default = {"conv0": 8, "dw": 8, "conv1": 127, "fc": 8}  # a retyped layer keeps its real weight range
    w_scales = {k: v * default[k] / -WEIGHT_RANGES[kinds[k]][0] if kinds[k] != "int8" else v * default[k] / 127
                for k, v in w_scales.items()}
    t = [
        act("x", (1, 7, 7, 3), scales["x"], -3),                      # 0
        weights("conv0_w", (5, 3, 3, 3), "int4", w_scales["conv0"]),  # 1
        bias("conv0_b", 5),                                           # 2
        act("a", (1, 4, 4, 5), scales["a"], -128),                    # 3
        weights("dw_w", (1, 3, 3, 10), "int4", w_scales["dw"], 3),    # 4
        bias("dw_b", 10),                                             # 5
        act("b", (1, 4, 4, 10), scales["b"], 5),                      # 6
        weights("conv1_w", (7, 1, 1, 10), "int8", w_scales["conv1"]), # 7
        act("c", (1, 4, 4, 7), scales["c"], -10),                     # 8
        act("d", (1, 1, 1, 7), scales["c"], -10),                     # 9
        act("e", (1, 7), scales["c"], -10),                           # 10
        weights("fc_w", (3, 7), "int4", w_scales["fc"]),              # 11
        bias("fc_b", 3),                                              # 12
        act("g", (1, 3), scales["g"], 7),                             # 13
    ]

    def conv(stride, padding, x, w, y, dm=1):
        m, sh = conv_multipliers(scales[x], w_scales[w], scales[y])
        cout = {"conv0": 5, "dw": 10, "conv1": 7}[w]
        return ConvParams(stride, (1, 1), padding, -128, 127, np.resize(m, cout), np.resize(sh, cout), dm)

    fc_m, fc_s = conv_multipliers(scales["c"], w_scales["fc"], scales["g"])
    ops = [
        Op(OpKind.CONV_2D, (0, 1, 2), (3,), conv((2, 2), (1, 1, 1, 1), "x", "conv0", "a"), "conv0"),
        Op(OpKind.DEPTHWISE_CONV_2D, (3, 4, 5), (6,), conv((1, 1), (1, 1, 1, 1), "a", "dw", "b", 2), "dw"),
        Op(OpKind.CONV_2D, (6, 7, -1), (8,), conv((1, 1), (0, 0, 0, 0), "b", "conv1", "c"), "conv1"),
        Op(OpKind.AVERAGE_POOL_2D, (8,), (9,), PoolParams((4, 4), (4, 4), (0, 0, 0, 0), -128, 127), "gap"),
        Op(OpKind.RESHAPE, (9,), (10,), ReshapeParams(), "flatten"),
        Op(OpKind.FULLY_CONNECTED, (10, 11, 12), (13,), FullyConnectedParams(-128, 127, fc_m, fc_s), "fc"),
    ]
    return QGraph(t, ops, [0], [13], name=name)


# 2-, 4- and 8-bit filters next to each other, every order the mixed-precision allocator can produce around a
# depthwise layer: the first conv and the fc at 2 bits around a 4-bit depthwise and an 8-bit 1x1 conv, and the
# reverse neighbours.
MIXED_DTYPES = {"mixed_2_4_8_2": {"conv0": "int2", "dw": "int4", "conv1": "int8", "fc": "int2"},
                "mixed_8_2_4_2": {"conv0": "int8", "dw": "int2", "conv1": "int4", "fc": "int2"},
                "all_int2": {"conv0": "int2", "dw": "int2", "conv1": "int2", "fc": "int2"}}


def tiny_int4_data(n: int = 30, dtypes: dict | None = None):
    g = tiny_int4_graph(dtypes)
    x = np.random.default_rng(4).integers(-128, 128, (n, 7, 7, 3)).astype(np.int8)
    return g, x, Simulator(g).run(x)[g.outputs[0]]


def as_int8_weights(graph: QGraph) -> QGraph:
    """The same graph with its int4 / int2 filters typed int8 (same values): the s8 kernels' path."""
    g = copy.deepcopy(graph)
    for t in g.tensors:
        if t.dtype in ("int4", "int2"):
            t.dtype = "int8"
    g.validate()
    return g


def c_array(text: str, name: str) -> tuple[str, int, list[int]]:
    """(C type, declared length, values) of a const array in weights.c."""
    m = re.search(rf"const (\w+) {name}\[(\d+)\][^{{]*\{{([^}}]*)\}};", text)
    assert m, f"{name} not in weights.c"
    return m.group(1), int(m.group(2)), [int(v) for v in m.group(3).replace(",", " ").split()]


def test_int4_filters_are_written_packed_and_call_the_s4_kernels(tmp_path):
    g, x, y = tiny_int4_data(4)
    out = export_c_project(g, tmp_path / "p", x, y)
    weights, model_c = (out / "weights.c").read_text(), (out / "model.c").read_text()
    for name, t in [("op0_conv_filter", 1), ("op1_dwconv_filter", 4), ("op5_fc_filter", 11)]:
        ctype, length, values = c_array(weights, name)
        tensor = g.tensors[t]
        assert ctype == "uint8_t" and length == packed_size(tensor.size) == len(values)
        assert values == pack_int4(tensor.data).tolist()  # CMSIS-NN's s4 layout, byte for byte
        np.testing.assert_array_equal(unpack_int4(np.array(values, np.uint8), tensor.size),
                                      tensor.data.reshape(-1))
    assert packed_size(135) == 68 and c_array(weights, "op0_conv_filter")[2][-1] >> 4 == 0  # spare nibble is 0
    assert "packed two per byte" in weights
    ctype, length, _ = c_array(weights, "op2_conv_filter")
    assert (ctype, length) == ("int8_t", 70)  # the int8 layer is unchanged
    assert "frk_convolve_s4(&op0_params" in model_c and "frk_depthwise_conv_s4(&op1_params" in model_c
    assert "frk_convolve_s8(&op2_params" in model_c and "frk_fully_connected_s4(&op5_params" in model_c
    assert "_s8(&op0_params" not in model_c and "frk_depthwise_conv_s8" not in model_c
    # per-channel scales keep one (multiplier, shift) pair per channel; a per-tensor layer stores one pair
    assert c_array(weights, "op0_conv_multiplier")[1] == 5 and ", 1, &op0_input_dims" in model_c
    assert c_array(weights, "op1_dwconv_multiplier")[1] == 1 and ", 0, &op1_input_dims" in model_c


def test_int4_memory_report_counts_packed_bytes(tmp_path):
    g = tiny_int4_graph()
    report = memory_report(g)
    by_op = {la.op: la for la in report.layers}
    assert [(by_op[k].filter_dtype, by_op[k].filter_values, by_op[k].filter_bytes) for k in (0, 1, 2, 5)] == [
        ("int4", 135, 68), ("int4", 90, 45), ("int8", 70, 70), ("int4", 21, 11)]
    assert by_op[0].table_bytes == 2 * 4 * 5 and by_op[1].table_bytes == 8  # per channel vs one pair
    assert by_op[0].floor_bytes == 68 + 4 * 5 + 8 * 5
    assert report.weight_bytes == report.weight_floor_bytes == sum(la.total_bytes for la in report.layers)
    assert report.to_dict()["layers"][0]["filter_dtype"] == "int4"
    g8 = memory_report(as_int8_weights(g))
    assert g8.weight_bytes - report.weight_bytes == (135 - 68) + (90 - 45) + (21 - 11)
    g_, x, y = tiny_int4_data(3)
    out = export_c_project(g_, tmp_path / "p", x, y)
    text = (out / "memory.txt").read_text()
    assert text == report.text() and "int4" in text and "a half / a quarter byte per int4 / int2 weight" in text
    assert json.loads((out / "project.json").read_text())["weight_bytes"] == report.weight_bytes


def test_int4_export_is_deterministic(tmp_path):
    g, x, y = tiny_int4_data(5)
    a = source_files(export_c_project(g, tmp_path / "a", x, y))
    b = source_files(export_c_project(tiny_int4_graph(), tmp_path / "b", x.copy(), y.copy()))
    assert a == b


@pytest.mark.parametrize("dtypes, want", [
    (None, [("prepare_packed_depthwise_filter", np.uint8, 45, (1, 3, 3, 10), 4),
            ("prepare_packed_filter", np.uint8, 11, (3, 7), 4),
            ("prepare_packed_filter", np.uint8, 68, (5, 3, 3, 3), 4)]),
    (MIXED_DTYPES["mixed_2_4_8_2"], [("prepare_packed_depthwise_filter", np.uint8, 45, (1, 3, 3, 10), 4),
                                     ("prepare_packed_filter", np.uint8, 6, (3, 7), 2),
                                     ("prepare_packed_filter", np.uint8, 34, (5, 3, 3, 3), 2)]),
], ids=["int4", "mixed"])
def test_simulator_runs_packed_ops_through_the_s4_s2_twins(monkeypatch, dtypes, want):
    """The runner prepares int4 / int2 filters with the s4 / s2 twins (on the packed bytes: 2 or 4 values per
    byte) and gives exactly what the s8 path gives on the same values typed int8."""
    calls = []
    for fn in ("prepare_packed_filter", "prepare_packed_depthwise_filter"):
        real = getattr(sim_runner, fn)
        monkeypatch.setattr(sim_runner, fn, lambda packed, shape, bias, off, bits, _real=real, _fn=fn: (
            calls.append((_fn, packed.dtype, packed.size, tuple(shape), bits)),
            _real(packed, shape, bias, off, bits))[1])
    g, x, y = tiny_int4_data(40, dtypes)
    assert sorted(calls) == want
    g8 = as_int8_weights(g)
    every = Simulator(g).run(x, keep_all=True)
    every8 = Simulator(g8).run(x, keep_all=True)
    for t in every8:
        np.testing.assert_array_equal(every[t], every8[t])
    assert len(np.unique(every[6])) > 20 and len(np.unique(y)) > 10  # not saturated: the test can see errors


@needs_gcc
def test_tiny_int4_graph_builds_and_matches(tmp_path):
    g, x, y = tiny_int4_data(30)
    project = export_c_project(g, tmp_path / "tiny4", x, y)
    res = run_host(build_host(project))
    assert (res.inputs, res.mismatches, res.returncode) == (30, 0, 0), res.mismatch_lines[:3]
    bad = run_host(build_host(corrupt_one_weight(project, tmp_path / "bad", "op1_dwconv_filter")))
    assert bad.inputs == 30 and bad.mismatches > 0 and not bad.ok


@needs_gcc
@pytest.mark.parametrize("mix", sorted(MIXED_DTYPES))
def test_mixed_2_4_8_bit_graph_builds_and_matches(tmp_path, mix):
    """2-, 4- and 8-bit filters side by side in one graph (the s2, s4 and s8 kernels next to each other), bit for
    bit against the simulator; one flipped 2-bit weight must show."""
    g, x, y = tiny_int4_data(30, MIXED_DTYPES[mix])
    project = export_c_project(g, tmp_path / mix, x, y)
    model_c = (project / "model.c").read_text()
    for dtype, suffix in (("int2", "s2"), ("int4", "s4"), ("int8", "s8")):
        called = re.search(rf"frk_(convolve|depthwise_conv|fully_connected)_{suffix}\(", model_c) is not None
        assert (dtype in MIXED_DTYPES[mix].values()) == called, dtype
    res = run_host(build_host(project))
    assert (res.inputs, res.mismatches, res.returncode) == (30, 0, 0), res.mismatch_lines[:3]
    int2_op = next(k for k, op in enumerate(g.ops) if len(op.inputs) == 3
                   and g.tensors[op.inputs[1]].dtype == "int2")
    filt = re.search(rf"const uint8_t (op{int2_op}_\w+_filter)\[", (project / "weights.c").read_text()).group(1)
    bad = run_host(build_host(corrupt_one_weight(project, tmp_path / "bad", filt)))
    assert bad.inputs == 30 and bad.mismatches > 0 and not bad.ok


# ResNet-8 quantized by RTN at 4, 3 and 2 bits (first and last layers at 8 bits), lowered once per session.
_rtn: dict[int, QGraph] = {}


@pytest.fixture
def resnet8_rtn_low_bits(shared_data):
    if not _rtn:
        from flexround_mcu.frontends.zoo_graph import resnet8_to_graph
        from flexround_mcu.lower import lower
        from flexround_mcu.quant.fakequant import quantize_model
        from flexround_mcu.zoo import build
        from flexround_mcu.zoo.resnet8 import to_nchw

        model, _ = build("resnet8")
        graph = resnet8_to_graph(model)
        calib = to_nchw(load_dataset("cifar10-calib", limit=256).x)
        for wbits in (4, 3, 2):
            qm = quantize_model(graph, [calib[:128], calib[128:]], "rtn", wbits, "tensor", True)
            _rtn[wbits] = lower(qm, name=f"resnet8_rtn_w{wbits}")
    return _rtn


@pytest.mark.parametrize("wbits", [4, 3, 2])
def test_lowering_types_low_bit_weights_int4_or_int2(resnet8_rtn_low_bits, wbits):
    g = resnet8_rtn_low_bits[wbits]
    weighted = [op for op in g.ops if op.kind in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED)]
    dtypes = [g.tensors[op.inputs[1]].dtype for op in weighted]
    low = "int2" if wbits == 2 else "int4"  # 3-bit grids sit in int4 containers, ternary ones in int2
    assert dtypes == ["int8"] + [low] * (len(weighted) - 2) + ["int8"]  # first and last stay 8-bit
    qmax = (1 << (wbits - 1)) - 1  # grids [-7, 7], [-3, 3] and, at 2 bits, the crumb's whole range [-2, 1]
    qmin = -2 if wbits == 2 else -qmax
    lows = []
    for op in weighted[1:-1]:
        w = g.tensors[op.inputs[1]].data
        assert w.dtype == np.int8 and w.max() <= qmax and w.min() >= qmin and np.abs(w).max() >= qmax
        lows.append(int(w.min()))
    assert min(lows) == qmin  # the grid's lowest level is used (at 2 bits: -2, the fourth level)
    assert g.metadata["bits"][weighted[1].name] == wbits


@needs_gcc
@pytest.mark.parametrize("wbits", [4, 3, 2])
def test_rtn_low_bit_resnet8_on_host_matches_simulator(resnet8_rtn_low_bits, wbits, tmp_path):
    g = resnet8_rtn_low_bits[wbits]
    tin = g.tensors[g.inputs[0]]
    x = load_dataset("cifar10-test-5000", limit=50).quantize_input(float(tin.scale[0]), int(tin.zero_point[0]))
    y = Simulator(g).run(x)[g.outputs[0]]
    assert len(np.unique(y, axis=0)) > 10  # real data: varied outputs
    project = export_c_project(g, tmp_path / f"w{wbits}", x, y)
    suffix = "s2" if wbits == 2 else "s4"
    assert (project / "model.c").read_text().count(f"frk_convolve_{suffix}(") == 8
    res = run_host(build_host(project))
    assert res.lines[-1] == "SUMMARY inputs=50 mismatches=0", res.mismatch_lines[:5]
    assert (res.inputs, res.mismatches, res.returncode) == (50, 0, 0)
    # the dsp kernel set (the Cortex-M default) built for the host, through the C versions of the instructions
    fast = export_c_project(g, tmp_path / f"w{wbits}-dsp", x, y, kernels="dsp")
    model_c = (fast / "model.c").read_text()
    fast_conv = f"frk_convolve_{suffix}_dsp("
    assert model_c.count(fast_conv) == 8 and model_c.count("frk_elementwise_add_s8_dsp(") == 3
    res = run_host(build_host(fast))
    assert res.lines[-1] == "SUMMARY inputs=50 mismatches=0", res.mismatch_lines[:5]
    if wbits in (4, 2):  # one corrupted packed weight (in the first int4 / int2 layer) must show
        bad = run_host(build_host(corrupt_one_weight(project, tmp_path / "bad", "op1_conv_filter")))
        assert bad.inputs == 50 and bad.mismatches > 0 and not bad.ok


@needs_gcc
def test_int4_dscnn_on_host_matches_simulator(shared_data, tmp_path):
    """The MLPerf Tiny DS-CNN with every filter re-quantized to int4 (values / 16, the shift raised by 4 so the
    activations stay in range): depthwise 3x3 over 64 channels, the 10x4 first conv and the classifier through
    the s4 kernels, on real data."""
    g = load_tflite(shared_data / DSCNN)
    for op in g.ops:
        if op.kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED):
            w = g.tensors[op.inputs[1]]
            w.data = np.clip(np.round(w.data / 16.0), -8, 7).astype(np.int8)
            w.dtype = "int4"
            if op.inputs[2] != -1:
                b = g.tensors[op.inputs[2]]
                b.data = np.round(b.data / 16.0).astype(np.int32)
            op.params.shift = np.asarray(op.params.shift) + 4
    g.validate()
    t = g.tensors[g.inputs[0]]
    x = load_dataset("kws01", limit=30).quantize_input(float(t.scale[0]), int(t.zero_point[0]))
    y = Simulator(g).run(x)[g.outputs[0]]
    assert len(np.unique(y.argmax(axis=1))) > 3
    project = export_c_project(g, tmp_path / "dscnn4", x, y)
    model_c = (project / "model.c").read_text()
    assert "frk_depthwise_conv_s4(" in model_c and "frk_convolve_s4(" in model_c
    assert "frk_fully_connected_s4(" in model_c
    assert not re.search(r"frk_(convolve|depthwise_conv|fully_connected)_s8\(", model_c)
    res = run_host(build_host(project))
    assert (res.inputs, res.mismatches, res.returncode) == (30, 0, 0), res.mismatch_lines[:5]
