"""C export: the arena plan, the generated project (deterministic, overwrite-safe) and the host build, which must
reproduce the simulator's int8 outputs bit for bit on the real MLPerf Tiny models."""
from __future__ import annotations

import itertools
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
from flexround_mcu.codegen.render import MARKER, c_comment, c_identifier
from flexround_mcu.data import load_dataset
from flexround_mcu.errors import UserError
from flexround_mcu.frontends.tflite import load_tflite
from flexround_mcu.ir import (AddParams, ConvParams, FullyConnectedParams, Op, OpKind, PoolParams, QGraph,
                              ReshapeParams, Tensor)
from flexround_mcu.prepare import add_params
from flexround_mcu.sim.runner import Simulator
from flexround_mcu.toolchain import HarnessResult, build_host, run_host

RESNET = "mlperf_tiny/ic/pretrainedResnet_quant.tflite"
DSCNN = "mlperf_tiny/kws/kws_ref_model.tflite"
ARENA_BOUND_RESNET8 = 3 * 16 * 1024  # three 32x32x16 maps alive at the first ADD

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


def test_arena_resnet8_within_three_maps(shared_data):
    g = load_tflite(shared_data / RESNET)
    plan = plan_arena(g)
    assert plan.floor == ARENA_BOUND_RESNET8
    assert plan.floor <= plan.arena_size <= ARENA_BOUND_RESNET8
    assert g.inputs[0] not in plan.offsets
    assert_no_live_overlap(plan)


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
    assert f"#define FRK_ARENA_SIZE {plan_arena(g).arena_size}" in model_h
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
        assert f"#define FRK_ARENA_SIZE {plan_arena(g).arena_size}" in (project / "model.h").read_text()
        assert plan_arena(g).arena_size <= ARENA_BOUND_RESNET8
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
