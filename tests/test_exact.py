"""Fake quant evaluated with the integer arithmetic (quant/exact.py) equals the integer simulator value for value,
in every configuration the mixed-precision allocator can choose: 8-, 4- and 2-bit layers side by side,
per-tensor and per-channel, depthwise layers included."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from flexround_mcu.frontends.torch_fx import trace_module
from flexround_mcu.lower import lower
from flexround_mcu.quant.fakequant import quantize_model
from flexround_mcu.quant.graph import exact_arithmetic
from flexround_mcu.sim.runner import Simulator

from fx_models import MobileNetV2Tiny

SCALE, ZP = 1 / 255, -128


def _inputs(n: int, seed: int, shape=(3, 32, 32)) -> tuple[np.ndarray, torch.Tensor]:
    """int8 NHWC inputs and the same as the model's float NCHW input (q - ZP) * SCALE."""
    q = np.random.default_rng(seed).integers(-128, 128, (n, shape[1], shape[2], shape[0])).astype(np.int8)
    x = torch.from_numpy(((q.astype(np.float32) - ZP) * np.float32(SCALE)).transpose(0, 3, 1, 2).copy())
    return q, x


def _mobilenet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = MobileNetV2Tiny()
    for mod in m.modules():  # BatchNorm statistics that are not the identity, so folding matters
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
    return m.eval()


def _compare(qm, q_int8: np.ndarray, x: torch.Tensor) -> dict[str, tuple[int, int]]:
    """{node: (values, differing)} of exact fake quant against the simulator on the lowered graph."""
    qg = lower(qm)
    sim = Simulator(qg).run(q_int8, keep_all=True)
    with exact_arithmetic(qm.module):
        fq = qm.module(x, keep=True)
    by_name = {t.name: i for i, t in enumerate(qg.tensors) if not t.is_constant}
    out = {}
    for node in qm.graph.nodes:
        i = by_name.get(node.name)
        if i is None or i not in sim:
            continue
        t = qg.tensors[i]
        f = fq[node.name].numpy()
        f = f.transpose(0, 2, 3, 1) if f.ndim == 4 else f
        grid = np.round(f.reshape(sim[i].shape) / float(t.scale[0])) + int(t.zero_point[0])
        out[node.name] = (int(grid.size), int((grid != sim[i]).sum()))
    return out


def _mixes(graph) -> dict[str, dict[str, int]]:
    """Bit assignments the allocator can produce: uniform, depthwise high / pointwise low and the reverse."""
    names = [n.name for n in graph.weighted()]
    dw = {n.name for n in graph.weighted() if n.is_depthwise}
    return {"w8": {n: 8 for n in names}, "w4": {n: 4 for n in names}, "w2": {n: 2 for n in names},
            "dw8_rest2": {n: 8 if n in dw else 2 for n in names},
            "dw2_rest4": {n: 2 if n in dw else 4 for n in names},
            "cycle_8_4_2": {n: (8, 4, 2)[k % 3] for k, n in enumerate(names)}}


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
@pytest.mark.parametrize("mix", ["w8", "w4", "w2", "dw8_rest2", "dw2_rest4", "cycle_8_4_2"])
def test_exact_fake_quant_equals_the_simulator(granularity, mix):
    graph = trace_module(_mobilenet(0), (3, 32, 32), SCALE, ZP)
    _, calib = _inputs(64, 1)
    bits = _mixes(graph)[mix]
    qm = quantize_model(graph, [calib], "rtn", 8, granularity, first_last_8bit=False, bits=bits)
    assert any(graph.node(n).is_depthwise for n in bits) and qm.bits == bits
    q, x = _inputs(24, 2)
    diff = _compare(qm, q, x)
    kinds = {graph.node(n).kind for n in diff}
    assert {"conv", "linear", "add", "avgpool"} <= kinds  # every exact kind was compared
    assert {n: d for n, (_, d) in diff.items() if d} == {}


def test_exact_per_channel_depthwise_with_spread_scales():
    """A per-channel depthwise conv whose channel scales span 1000x (tiny and large multipliers next to each other,
    the case where a float path rounds differently most often), at 8, 4 and 2 bits, stride 1 and 2."""
    for stride in (1, 2):
        torch.manual_seed(3)
        conv = nn.Conv2d(12, 12, 3, stride=stride, padding=1, groups=12)
        with torch.no_grad():
            conv.weight.mul_(torch.logspace(-1.5, 1.5, 12)[:, None, None, None])
        model = nn.Sequential(nn.Conv2d(3, 12, 1), nn.ReLU(), conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(12, 5)).eval()
        graph = trace_module(model, (3, 8, 8), SCALE, ZP)
        _, calib = _inputs(64, 4, (3, 8, 8))
        q, x = _inputs(200, 5, (3, 8, 8))
        for b in (8, 4, 2):
            bits = {n.name: (b if n.is_depthwise else 8) for n in graph.weighted()}
            qm = quantize_model(graph, [calib], "rtn", 8, "channel", first_last_8bit=False, bits=bits)
            diff = _compare(qm, q, x)
            assert sum(v for v, _ in diff.values()) > 0 and {n: d for n, (_, d) in diff.items() if d} == {}, b


def test_exact_arithmetic_is_off_outside_the_context():
    graph = trace_module(_mobilenet(1), (3, 32, 32), SCALE, ZP)
    _, calib = _inputs(32, 1)
    qm = quantize_model(graph, [calib], "rtn", 4, "channel", first_last_8bit=False)
    with exact_arithmetic(qm.module):
        assert qm.module.exact
    assert not qm.module.exact
    y = qm.module(calib[:2])
    assert y.requires_grad is False and y.dtype == torch.float32
