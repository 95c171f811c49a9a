"""In-place and fused operators in the arena planner (issue 13): on small graphs where a wrong decision corrupts a
value, the host build of every kernel set (portable, dsp, mve: their C versions run on the host) matches the
simulator with the planner's decisions, and does not with each decision moved one step past what the kernel's
access order allows (so these tests fail if a rule in codegen/inplace.py is wrong).

The graphs: the graph input, a 3x3 conv to an activation `a`, then the op under test reading `a` last:
  depthwise 3x3 (stride 1 and 2), conv 1x1, conv 3x3, max pool, average pool: output over `a`;
  a residual block (conv, conv, ADD with `a`): the second conv fused with the ADD, the sum over `a`;
  a depthwise conv under a --ram-budget only a ring buffer meets.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import user_error
from flexround_mcu.codegen import export_c_project, plan_arena
from flexround_mcu.codegen import inplace as inplace_mod
from flexround_mcu.codegen.arena import smallest_plan
from flexround_mcu.codegen.kernels import KERNEL_SETS, plan_kernels
from flexround_mcu.codegen.render import memory_report
from flexround_mcu.ir import AddParams, ConvParams, Op, OpKind, PoolParams, QGraph, Tensor
from flexround_mcu.prepare import add_params, conv_multipliers
from flexround_mcu.sim.runner import Simulator
from flexround_mcu.toolchain import build_host, run_host

H, W, C = 7, 5, 16  # odd width: the dsp conv's pixel pairs and the Helium conv's triples straddle rows


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []

    def act(self, name, shape, scale=1 / 64):
        self.tensors.append(Tensor(name, shape, "int8", scale, int(self.rng.integers(-20, 20))))
        return len(self.tensors) - 1

    def const(self, name, data, scale):
        self.tensors.append(Tensor(name, data.shape, "int8" if data.dtype == np.int8 else "int32", scale,
                                   np.zeros(1), 0, data))
        return len(self.tensors) - 1

    def conv(self, x, kind, k=3, stride=1, out_c=C, pad=None):
        xt = self.tensors[x]
        _, h, w, c = xt.shape
        pad = (k // 2) if pad is None else pad
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        depthwise = kind == OpKind.DEPTHWISE_CONV_2D
        taps = k * k * (1 if depthwise else c)
        s_w = 0.02 / math.sqrt(taps)
        shape = (1, k, k, c) if depthwise else (out_c, k, k, c)
        wt = self.const(f"w{len(self.ops)}", self.rng.integers(-127, 128, shape).astype(np.int8), s_w)
        n_out = c if depthwise else out_c
        bias = self.const(f"b{len(self.ops)}", self.rng.integers(-300, 300, n_out).astype(np.int32),
                          float(xt.scale[0]) * s_w)
        y = self.act(f"t{len(self.tensors)}", (1, oh, ow, n_out))
        m, s = conv_multipliers(float(xt.scale[0]), np.full(n_out, s_w), float(self.tensors[y].scale[0]))
        p = ConvParams((stride, stride), (1, 1), (pad, pad, pad, pad), -128, 127, m, s)
        self.ops.append(Op(kind, (x, wt, bias), (y,), p, f"op{len(self.ops)}"))
        return y

    def pool(self, x, kind, k, stride):
        _, h, w, c = self.tensors[x].shape
        y = self.act(f"t{len(self.tensors)}", (1, (h - k) // stride + 1, (w - k) // stride + 1, c),
                     float(self.tensors[x].scale[0]))
        self.tensors[y].zero_point = self.tensors[x].zero_point.copy()  # pools keep scale and zero point
        self.ops.append(Op(kind, (x,), (y,), PoolParams((k, k), (stride, stride), (0, 0, 0, 0), -128, 127), "pool"))
        return y

    def add(self, a, b):
        y = self.act(f"t{len(self.tensors)}", self.tensors[a].shape, 1 / 48)
        p = add_params(float(self.tensors[a].scale[0]), float(self.tensors[b].scale[0]), 1 / 48)
        self.ops.append(Op(OpKind.ADD, (a, b), (y,), AddParams(**p, act_min=-128, act_max=127), "add"))
        return y

    def graph(self, out):
        return QGraph(self.tensors, self.ops, [0], [out], name="inplace-test")


def make_graph(case: str, seed: int = 0) -> QGraph:
    b = _Builder(seed)
    # the residual block 6 wide: bands of one row (dsp pairs, Helium triples) make fusion worth its band
    x = b.act("x", (1, H, W + (case == "residual"), C), 1 / 128)
    a = b.conv(x, OpKind.CONV_2D)
    if case == "depthwise":
        return b.graph(b.conv(a, OpKind.DEPTHWISE_CONV_2D))
    if case == "depthwise-stride2":
        return b.graph(b.conv(a, OpKind.DEPTHWISE_CONV_2D, stride=2))
    if case == "conv1x1":
        return b.graph(b.conv(a, OpKind.CONV_2D, k=1, pad=0))
    if case == "conv3x3":
        return b.graph(b.conv(a, OpKind.CONV_2D))
    if case == "maxpool":
        return b.graph(b.pool(a, OpKind.MAX_POOL_2D, 2, 1))
    if case == "avgpool":
        return b.graph(b.pool(a, OpKind.AVERAGE_POOL_2D, 3, 1))
    if case == "residual":
        c = b.conv(a, OpKind.CONV_2D)
        d = b.conv(c, OpKind.CONV_2D)
        return b.graph(b.add(d, a))
    if case == "depthwise-chain":  # each one's output a row and a pixel behind its input: a ring stops the drift
        for _ in range(3):
            a = b.conv(a, OpKind.DEPTHWISE_CONV_2D)
        return b.graph(a)
    raise ValueError(case)


CASES = ("depthwise", "depthwise-stride2", "conv1x1", "conv3x3", "maxpool", "avgpool", "residual")


def _inputs(g: QGraph, n: int = 6):
    shape = g.tensors[g.inputs[0]].shape[1:]
    x = np.random.default_rng(5).integers(-128, 128, (n, *shape)).astype(np.int8)
    return x, Simulator(g).run(x)[g.outputs[0]].reshape(n, -1)


def _host_mismatches(g, tmp_path, kernels, ram_budget=None) -> int:
    x, y = _inputs(g)
    project = export_c_project(g, tmp_path / kernels, x, y, target="host", kernels=kernels, ram_budget=ram_budget)
    res = run_host(build_host(project))
    assert res.inputs == len(x)
    return res.mismatches


def _sharing(g, kernels, ram_budget=None):
    plan = memory_report(g, kernels=kernels, ram_budget=ram_budget).arena
    op = len(g.ops) - 1
    return plan, [ip for ip in plan.inplace if ip.op == op]


def _assert_only_sanctioned_overlaps(plan):
    pairs = {(ip.input, ip.output, ip.op) for ip in plan.inplace}
    for i, p in enumerate(plan.buffers):
        for q in plan.buffers[i + 1:]:
            if p.overlaps_in_time(q) and p.overlaps_in_space(q):
                a, b = (p, q) if p.first_op <= q.first_op else (q, p)
                assert (a.tensor, b.tensor, a.last_op) in pairs and b.first_op == a.last_op, (p, q)


@pytest.fixture
def broken_rules(monkeypatch):
    """Every in-place decision one step (16 bytes or one pixel) past the largest shift its rule allows."""
    original = inplace_mod.InPlace.placed

    def one_step_past(self, in_bytes, out_bytes, input_at):
        ip = original(self, in_bytes, out_bytes, input_at)
        if ip is None:
            return None
        bound = self.max_shift // self.step * self.step
        return inplace_mod.InPlace(ip.op, ip.input, ip.output, bound + self.step, ip.max_shift, ip.order, ip.step)

    monkeypatch.setattr(inplace_mod.InPlace, "placed", one_step_past)


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("case", CASES)
def test_inplace_decision_is_bitexact_and_saves_memory(case, kernels, tmp_path):
    g = make_graph(case)
    plan, decisions = _sharing(g, kernels)
    assert len(decisions) == 1, plan.sharing_lines()  # the op under test writes over `a`
    assert plan.arena_size < plan.arena_without_inplace
    _assert_only_sanctioned_overlaps(plan)
    if case == "residual":
        assert len(plan.fusions) == 1 and decisions[0].shift == 0
    assert _host_mismatches(g, tmp_path, kernels) == 0


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("case", CASES)
def test_inplace_one_step_past_the_rule_corrupts(case, kernels, tmp_path, broken_rules):
    g = make_graph(case)
    _, decisions = _sharing(g, kernels)
    assert len(decisions) == 1
    assert _host_mismatches(g, tmp_path, kernels) > 0


def test_access_orders_give_the_known_bounds():
    g = make_graph("depthwise")
    for kernel in ("frk_depthwise_conv_s8", "frk_depthwise_conv_s8_dsp", "frk_depthwise_conv_s8_mve"):
        acc = inplace_mod.access(g, 1, kernel)
        assert acc.pixel == C and acc.max_shift() == -(W + 1) * C  # one row and one pixel behind
    g = make_graph("conv1x1")
    assert inplace_mod.access(g, 1, "frk_convolve_s8_dsp").max_shift() == 0  # both pixels copied first
    # channel after channel of one pixel: the last channel but one must not reach the pixel's last read
    assert inplace_mod.access(g, 1, "frk_convolve_s8").max_shift() == -(C - 1)
    # Helium direct 1x1: channels 2j, 2j+1 of three pixels at a time straight from the input; the pair before the
    # last ends 2 pixels + C - 2 channels past the block's first byte, which the last pair still reads
    assert inplace_mod.access(g, 1, "frk_convolve_s8_mve").max_shift() == -(3 * C - 2)
    g = make_graph("conv3x3")  # the windows of the next pixels start a row and a pixel back
    assert inplace_mod.access(g, 1, "frk_convolve_s8").max_shift() == -(W + 1) * C - (C - 1)
    for kernel in ("frk_convolve_s8_dsp", "frk_convolve_s8_mve"):
        assert inplace_mod.access(g, 1, kernel).max_shift() == -(W + 1) * C
    g = make_graph("residual")
    assert inplace_mod.access(g, 3, "frk_elementwise_add_s8").max_shift() == 0


@pytest.mark.parametrize("kernels", KERNEL_SETS)
def test_ram_budget_takes_a_ring_buffer_and_stays_bitexact(kernels, tmp_path):
    g = make_graph("depthwise-chain")
    free, _ = _sharing(g, kernels)
    assert not free.rings
    budget = free.ram_bytes - 1
    plan, decisions = _sharing(g, kernels, budget)
    assert plan.rings and plan.ram_bytes <= budget and plan.arena_size < free.arena_size
    report = memory_report(g, kernels=kernels, ram_budget=budget)  # what memory.txt and report.json count
    assert report.scratch_bytes == plan.scratch_bytes >= free.scratch_bytes
    assert any(line.startswith("ring: ") for line in plan.sharing_lines())
    _assert_only_sanctioned_overlaps(plan)
    assert _host_mismatches(g, tmp_path, kernels, budget) == 0


def test_ram_budget_ring_one_step_past_corrupts(tmp_path, broken_rules):
    g = make_graph("depthwise-chain")
    free, _ = _sharing(g, "dsp")
    plan, _ = _sharing(g, "dsp", free.ram_bytes - 1)
    assert plan.rings
    assert _host_mismatches(g, tmp_path, "dsp", free.ram_bytes - 1) > 0


def test_ram_budget_too_small_is_one_line_with_the_peak_and_what_fits():
    g = make_graph("residual")
    kernels = [c.name for c in plan_kernels(g, "dsp")]
    msg = user_error(plan_arena, g, 16, kernels, [0] * len(g.ops), 100)
    assert "over --ram-budget 100" in msg and "its peak is at op" in msg and "pass --ram-budget" in msg
    need = int(msg.rsplit("pass --ram-budget ", 1)[1].split()[0])
    assert need == smallest_plan(g, 16, kernels, [0] * len(g.ops)).ram_bytes
    assert plan_arena(g, 16, kernels, [0] * len(g.ops), need).ram_bytes <= need  # what it says fits, fits


@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m55"])
def test_inplace_decisions_bitexact_under_qemu(target, arm_tools, tmp_path):
    """The same graphs on the boards, where the dsp and Helium kernels run their assembly (the ring under a
    budget too): the access orders inplace.py assumes are the real ones."""
    from flexround_mcu.toolchain.qemu import run_on_target

    for case in CASES + ("depthwise-chain",):
        g = make_graph(case)
        budget = None
        if case == "depthwise-chain":
            budget = memory_report(g, target).arena.ram_bytes - 1
        x, y = _inputs(g, 3)
        project = export_c_project(g, tmp_path / case, x, y, target=target, ram_budget=budget)
        res = run_on_target(project, target)
        assert (res.inputs, res.mismatches, res.returncode) == (3, 0, 0), (case, res.lines[-3:])
        assert memory_report(g, target, ram_budget=budget).arena.inplace, case
