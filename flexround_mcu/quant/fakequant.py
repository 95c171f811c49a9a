"""Fake quantization at exactly the integer graph's rounding points, so fake-quant accuracy predicts int8 accuracy.

`quantize_model` calibrates activation ranges on the float model, attaches a weight quantizer to every conv and
linear and an activation fake-quantizer to every node output, with TFLite's rules:
- the input uses the data's fixed (scale, zero point);
- conv / linear / add outputs get their own observed ranges (fused ReLU included);
- pooling and flatten keep their input's (scale, zero point) (TFLite requires it; pooling re-rounds to that grid);
- softmax outputs use scale 1/256 and zero point -128.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..fixedpoint import quantize_multiplier

from .graph import FloatGraph, GraphModule
from .observers import QParams, RangeObserver
from .rounding import METHODS, RoundToNearest
from .rounding.base import RoundSTE

SOFTMAX_QPARAMS = QParams(1.0 / 256.0, -128)


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


class ActFakeQuant(nn.Module):
    """Fake-quantize an activation to its int8 grid, rounding as the integer kernel that produces it does:
    - `right_shift` set (conv, linear, add outputs): TFLM's double rounding. The requantization first rounds
      v * 2^n to an integer (ties up), then divides by 2^n rounding ties away from zero (v = x / scale, n the
      right shift of the layer's multiplier, one per channel or one per tensor), so a value just below a tie
      can land on it and round up; a single rounding would disagree there (~1/2^n of the values).
    - half_away: round ties away from zero in the integer domain x / s + zp (average pooling's division);
    - otherwise round half to even.
    The rounding is straight-through for gradients."""

    def __init__(self, qparams: QParams, enabled: bool = True, half_away: bool = False):
        super().__init__()
        self.qparams = qparams
        self.enabled = enabled
        self.half_away = half_away
        self.right_shift: torch.Tensor | None = None  # set by set_double_rounding
        self.drop_prob = 0.0  # QDrop: during reconstruction, keep each element's float value with this probability
        self.log_scale: nn.Parameter | None = None  # LSQ: a learned factor exp(log_scale) on the step, see learn_scale

    def learn_scale(self) -> nn.Parameter:
        """Start learning the step (LSQ, in log space so it stays positive; the zero point stays). Returns the
        parameter; set_activation_scale() ends the learning with the learned step."""
        self.log_scale = nn.Parameter(torch.zeros(()))
        return self.log_scale

    def learned_scale(self) -> float:
        """The step with the learned factor, rounded to float32 as the QGraph stores it."""
        return float(np.float32(self.current_scale() if self.log_scale is None
                                else self.qparams.scale * float(torch.exp(self.log_scale.detach()))))

    def current_scale(self):
        s = self.qparams.scale
        return s * torch.exp(self.log_scale) if self.log_scale is not None else s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.drop_prob > 0.0:
            keep_float = torch.rand_like(x) < self.drop_prob
            return torch.where(keep_float, x, self._quantize(x))
        return self._quantize(x)

    def _quantize(self, x: torch.Tensor) -> torch.Tensor:
        s, z = self.current_scale(), self.qparams.zero_point
        if self.half_away:
            q = x / s + z
        elif self.right_shift is not None:
            v = x / s
            pot = torch.pow(2.0, self.right_shift.to(x.dtype))
            if pot.dim() and x.dim() > 2:
                pot = pot.reshape(1, -1, *([1] * (x.dim() - 2)))
            t = torch.floor(v * pot + 0.5)
            q = v + (round_half_away(t / pot) - v).detach() + z
            return (torch.clamp(q, -128, 127) - z) * s
        else:
            return (torch.clamp(RoundSTE.apply(x / s) + z, -128, 127) - z) * s
        q = q + (round_half_away(q) - q).detach()
        return (torch.clamp(q, -128, 127) - z) * s


class BiasFakeQuant(nn.Module):
    """Round a bias to its int32 grid s_in * s_w (s_in from the input's quantizer, s_w from the weight quantizer;
    either may be learned)."""

    def __init__(self, input_quant: ActFakeQuant, weight_quantizer: nn.Module):
        super().__init__()
        # lists: do not register modules owned elsewhere a second time as submodules
        self.input_quant, self.weight_quantizer = [input_quant], [weight_quantizer]

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        s_in = self.input_quant[0].current_scale()
        s_in = s_in.detach() if isinstance(s_in, torch.Tensor) else s_in
        s = (s_in * self.weight_quantizer[0].scale.detach()).float()
        return round_half_away(b / s) * s


@dataclass
class QuantizedModel:
    """The fake-quant model and everything lower.py needs to build the integer graph."""

    graph: FloatGraph
    module: GraphModule
    qparams: dict[str, QParams]              # node name (or "input") -> output quantization
    bits: dict[str, int]                     # weighted node -> weight bits
    method: str
    granularity: str
    info: dict = field(default_factory=dict)

    def quantizer(self, name: str):
        return self.module.weight_fns[name]

    def weight_integers(self, name: str) -> torch.Tensor:
        w = self.module.weights[name]
        return self.quantizer(name).integers(w).detach()

    def weight_scale(self, name: str) -> torch.Tensor:
        return self.quantizer(name).scale.detach()


def _right_shift(real_multipliers) -> torch.Tensor:
    return torch.tensor([max(-quantize_multiplier(float(m))[1], 0) for m in real_multipliers], dtype=torch.int64)


def set_double_rounding(qm: "QuantizedModel") -> None:
    """Give every conv / linear / add output quantizer the right shifts its integer kernel will use.

    Call again after the weight scales change (a learned s1 may cross a power of two)."""
    g, act = qm.graph, qm.module.act_quant
    for n in g.nodes:
        if n.name not in act:
            continue
        s_out = float(np.float32(qm.qparams[n.name].scale))
        if n.kind in ("conv", "linear"):
            s_in = float(np.float32(qm.qparams[n.inputs[0]].scale))
            s_w = np.atleast_1d(qm.weight_scale(n.name).cpu().numpy().astype(np.float32))
            act[n.name].right_shift = _right_shift([s_in * float(w) / s_out for w in s_w])
        elif n.kind == "add":
            s1, s2 = (np.float32(qm.qparams[i].scale) for i in n.inputs)
            act[n.name].right_shift = _right_shift([2.0 * float(max(s1, s2)) / ((1 << 20) * s_out)])


def set_activation_scale(qm: "QuantizedModel", name: str, scale: float) -> None:
    """Give node `name`'s output a new step (zero point kept), and the same to the pooling and flatten nodes that
    inherit its grid (TFLite requires their input and output grids to be equal); stops any LSQ learning there."""
    inherit = {name}
    for n in qm.graph.nodes:
        if n.kind in ("avgpool", "maxpool", "flatten") and n.inputs[0] in inherit:
            inherit.add(n.name)
    new = QParams(float(np.float32(scale)), qm.qparams[name].zero_point)
    for node in inherit:
        qm.qparams[node] = new
        if node in qm.module.act_quant:
            qm.module.act_quant[node].qparams = new
            qm.module.act_quant[node].log_scale = None
    set_double_rounding(qm)


def calibrate(module: GraphModule, batches, method: str = "minmax",
              progress: Callable[[int], None] | None = None) -> dict[str, QParams]:
    """Observed output ranges of every node of the float model -> QParams, following the rules above."""
    g = module.graph
    observers = {n.name: RangeObserver(method) for n in g.nodes}
    with torch.no_grad():
        for xb in batches:
            values = module(xb, keep=True)
            for name, obs in observers.items():
                obs.observe(values[name])
            if progress:
                progress(len(xb))
    qp = {"input": QParams(g.input_scale, g.input_zero_point)}
    for n in g.nodes:
        if n.kind in ("avgpool", "maxpool", "flatten"):
            qp[n.name] = qp[n.inputs[0]]
        elif n.kind == "softmax":
            qp[n.name] = SOFTMAX_QPARAMS
        else:
            qp[n.name] = observers[n.name].qparams()
    return qp


def kept_at_8bit(graph: FloatGraph, first_last_8bit: bool) -> set[str]:
    """The first and last weighted layers, when they stay at 8 bits (BRECQ, QDrop): rounded to nearest and
    never reconstructed."""
    weighted = [n.name for n in graph.weighted()]
    return {weighted[0], weighted[-1]} if first_last_8bit and weighted else set()


def layer_bits(graph: FloatGraph, wbits: int, first_last_8bit: bool) -> dict[str, int]:
    kept = kept_at_8bit(graph, first_last_8bit)
    return {n.name: 8 if n.name in kept else wbits for n in graph.weighted()}


def _quantizer_of(module: GraphModule, graph: FloatGraph, name: str) -> ActFakeQuant:
    """The quantizer that sets the grid of node `name`'s output (through flattens, which do not round)."""
    while name != "input" and name not in module.act_quant:
        name = graph.node(name).inputs[0]
    return module.input_quant if name == "input" else module.act_quant[name]


def quantize_model(graph: FloatGraph, calib_batches, method: str = "rtn", wbits: int = 8,
                   granularity: str = "tensor", first_last_8bit: bool = True, act_range: str = "minmax",
                   weight_grid: str = "mse", progress: Callable[[int], None] | None = None,
                   bits: dict[str, int] | None = None) -> QuantizedModel:
    """Calibrate activations on the float model, then attach weight and activation quantizers. `bits` (mixed
    precision: every weighted layer's bits) replaces the uniform wbits; the first and last layers are still
    rounded to nearest and not reconstructed when first_last_8bit is set (they must be at 8 bits then)."""
    if method not in METHODS:
        raise ValueError(f"unknown rounding method {method!r}; known: {sorted(METHODS)}")
    module = GraphModule(graph).eval()
    qparams = calibrate(module, calib_batches, act_range, progress)
    if bits is None:
        bits = layer_bits(graph, wbits, first_last_8bit)
    else:
        bits = {n.name: int(bits[n.name]) for n in graph.weighted()}
        assert all(bits[k] == 8 for k in kept_at_8bit(graph, first_last_8bit)), "first/last layers must be 8-bit"
    per_channel = granularity == "channel"
    fixed = kept_at_8bit(graph, first_last_8bit)
    module.input_quant = ActFakeQuant(qparams["input"])
    for n in graph.nodes:
        if n.kind != "flatten":  # a reshape does not round
            module.act_quant[n.name] = ActFakeQuant(qparams[n.name], half_away=n.kind == "avgpool")
    for n in graph.weighted():
        cls = RoundToNearest if n.name in fixed else METHODS[method]
        wq = cls(module.weights[n.name], bits[n.name], per_channel, weight_grid, depthwise=n.is_depthwise)
        _attach_weight_quantizer(module, graph, n.name, wq)
    qm = QuantizedModel(graph, module, qparams, bits, method, granularity,
                        info={"weight_grid": weight_grid})
    set_double_rounding(qm)
    return qm


def _attach_weight_quantizer(module: GraphModule, graph: FloatGraph, name: str, wq: nn.Module) -> None:
    module.weight_fns[name] = wq
    if name in module.biases:  # the bias grid s_in * s_w follows the weight quantizer's scale
        module.bias_fns[name] = BiasFakeQuant(_quantizer_of(module, graph, graph.node(name).inputs[0]), wq)


def set_layer_bits(qm: QuantizedModel, name: str, bits: int, method: str = "rtn") -> None:
    """Give layer `name` alone a new weight quantizer: `method` at `bits` on its own searched grid (round to
    nearest by default; a learnable method starts untrained, for quant/reconstruct.py to train). The bias grid and
    the double-rounding shifts follow."""
    n = qm.graph.node(name)
    wq = METHODS[method](qm.module.weights[name], bits, qm.granularity == "channel",
                         qm.info.get("weight_grid", "mse"), depthwise=n.is_depthwise)
    _attach_weight_quantizer(qm.module, qm.graph, name, wq)
    qm.bits[name] = bits
    set_double_rounding(qm)
