"""FloatGraph: a float CNN with BatchNorm folded, as the quantizer sees it, and a torch module that runs it.

Every frontend (the zoo, and later torch.fx, Keras and float .tflite) lowers its model to this small list of
nodes. The quantizer then attaches weight quantizers (RTN, AdaRound, FlexRound: one interface) and activation
fake-quantizers at exactly the points where the integer graph (ir.QGraph) rounds: every node's output.
Activations are NCHW in torch; padding is explicit (top, left, bottom, right), as in the QGraph.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .exact import EXACT_KINDS, exact_node

WEIGHTED = ("conv", "linear")
KINDS = ("conv", "linear", "add", "avgpool", "maxpool", "flatten", "softmax")


@dataclass
class FNode:
    """One float op. conv: weight (C_out, C_in/groups, KH, KW); linear: weight (C_out, C_in).

    `act` is the activation fused into the op's output (NONE, RELU, RELU6), as TFLite fuses it.
    """

    kind: str
    name: str
    inputs: list[str]
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kernel: tuple[int, int] = (1, 1)
    act: str = "NONE"

    @property
    def is_depthwise(self) -> bool:
        return self.kind == "conv" and self.groups > 1


@dataclass
class FloatGraph:
    """Nodes in execution order; node inputs name earlier nodes or "input".

    input_shape is (C, H, W); input_scale / input_zero_point say how raw inputs map to int8
    (q = round(real / scale) + zero_point), fixed by the data's preprocessing, not by calibration.
    """

    name: str
    nodes: list[FNode]
    input_shape: tuple[int, int, int]
    input_scale: float
    input_zero_point: int
    output: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.output = self.output or self.nodes[-1].name
        known = {"input"}
        for n in self.nodes:
            if n.kind not in KINDS:
                raise ValueError(f"{self.name}: node {n.name} has unknown kind {n.kind!r}")
            missing = [i for i in n.inputs if i not in known]
            if missing:
                raise ValueError(f"{self.name}: node {n.name} reads {missing} before they are computed")
            known.add(n.name)

    def node(self, name: str) -> FNode:
        return next(n for n in self.nodes if n.name == name)

    def weighted(self) -> list[FNode]:
        return [n for n in self.nodes if n.kind in WEIGHTED]

    @property
    def logits(self) -> str:
        """The node whose output is the class scores (the input of a final softmax, if there is one)."""
        last = self.node(self.output)
        return last.inputs[0] if last.kind == "softmax" else last.name


@contextmanager
def exact_arithmetic(module: "GraphModule"):
    """Evaluate `module` (a quantized GraphModule) with the integer graph's arithmetic, without gradients."""
    before = module.exact
    module.exact = True
    try:
        with torch.no_grad():
            yield module
    finally:
        module.exact = before


def _activation(y: torch.Tensor, act: str) -> torch.Tensor:
    if act == "RELU":
        return F.relu(y)
    if act == "RELU6":
        return F.relu6(y)
    return y


class GraphModule(nn.Module):
    """Runs a FloatGraph in torch. `weight_fns[name](W) -> W_hat` and `act_quant[name](y) -> y_hat` (both
    optional, set by the quantizer) replace a node's weight and fake-quantize its output; `bias_fns` rounds
    a bias to its int32 grid."""

    def __init__(self, graph: FloatGraph):
        super().__init__()
        self.graph = graph
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        for n in graph.weighted():
            self.weights[n.name] = nn.Parameter(n.weight.detach().clone().float(), requires_grad=False)
            if n.bias is not None:
                self.biases[n.name] = nn.Parameter(n.bias.detach().clone().float(), requires_grad=False)
        self.weight_fns = nn.ModuleDict()
        self.bias_fns = nn.ModuleDict()
        self.act_quant = nn.ModuleDict()
        self.input_quant: nn.Module | None = None
        # Evaluation with the integer kernels' arithmetic at the conv, linear, ADD and average-pool outputs
        # (quant/exact.py): fake quant then equals the integer graph value for value. Set by exact_arithmetic().
        self.exact = False

    def weight(self, name: str) -> torch.Tensor:
        w = self.weights[name]
        return self.weight_fns[name](w) if name in self.weight_fns else w

    def bias(self, name: str) -> torch.Tensor | None:
        if name not in self.biases:
            return None
        b = self.biases[name]
        return self.bias_fns[name](b) if name in self.bias_fns else b

    def run_node(self, n: FNode, xs: list[torch.Tensor]) -> torch.Tensor:
        if n.kind == "conv":
            t, l, b, r = n.padding
            x = F.pad(xs[0], (l, r, t, b)) if (t or l or b or r) else xs[0]
            y = F.conv2d(x, self.weight(n.name), self.bias(n.name), n.stride, 0, n.dilation, n.groups)
        elif n.kind == "linear":
            y = F.linear(xs[0], self.weight(n.name), self.bias(n.name))
        elif n.kind == "add":
            y = xs[0] + xs[1]
        elif n.kind == "avgpool":
            t, l, b, r = n.padding
            if t or l or b or r:  # TFLite averages over the valid taps only
                ones = torch.ones_like(xs[0][:, :1])
                pad = (l, r, t, b)
                s = F.avg_pool2d(F.pad(xs[0], pad), n.kernel, n.stride, divisor_override=1)
                c = F.avg_pool2d(F.pad(ones, pad), n.kernel, n.stride, divisor_override=1)
                y = s / c
            else:
                y = F.avg_pool2d(xs[0], n.kernel, n.stride)
        elif n.kind == "maxpool":
            t, l, b, r = n.padding
            x = F.pad(xs[0], (l, r, t, b), value=float("-inf")) if (t or l or b or r) else xs[0]
            y = F.max_pool2d(x, n.kernel, n.stride)
        elif n.kind == "flatten":
            # NCHW flattens C-major; the integer graph is NHWC. lower.py permutes the next linear's columns,
            # so flatten here in NHWC order to keep one weight layout for both.
            y = xs[0].permute(0, 2, 3, 1).reshape(xs[0].shape[0], -1)
        elif n.kind == "softmax":
            y = F.softmax(xs[0], dim=-1)
        else:  # pragma: no cover - FloatGraph validates kinds
            raise ValueError(n.kind)
        return _activation(y, n.act)

    def forward(self, x: torch.Tensor, upto: str | None = None, keep: bool = False):
        """x: NCHW float. Returns the output node's value (or node `upto`'s); with keep, every node's value."""
        values = {"input": self.input_quant(x) if self.input_quant is not None else x}
        for n in self.graph.nodes:
            xs = [values[i] for i in n.inputs]
            if self.exact and n.kind in EXACT_KINDS and n.name in self.act_quant:
                y = exact_node(self, n, xs)
            else:
                y = self.run_node(n, xs)
                if n.name in self.act_quant:
                    y = self.act_quant[n.name](y)
            values[n.name] = y
            if n.name == upto:
                break
        if keep:
            return values
        return values[upto or self.graph.output]
