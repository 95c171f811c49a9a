"""QGraph: the integer model, the one contract between quantization and everything downstream.

A QGraph holds integer tensors (NHWC activations, constant weights and biases) with their quantization, and ops
whose integer parameters are already computed (TFLM's prepare step): per-output-channel (multiplier, shift),
explicit padding, and the fused activation as (act_min, act_max). sim/, codegen/ and toolchain/ read only this.

Tensors and ops are referred to by their index in `QGraph.tensors` / `QGraph.ops`, as in a .tflite file.
`QGraph.validate()` (run by the constructor) checks every rule the kernels rely on and raises a GraphError that
names the op and the tensor.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from .errors import GraphError

DTYPE_RANGES = {"int8": (-128, 127), "int4": (-8, 7), "int2": (-2, 1), "int32": (-(1 << 31), (1 << 31) - 1)}
# Symmetric weights: int8 in [-127, 127] (the TFLite spec's narrow range), int4 in [-8, 7] (CMSIS-NN s4), int2 in
# [-2, 1] (two's-complement crumbs; 2-bit layers use all four levels).
WEIGHT_RANGES = {"int8": (-127, 127), "int4": (-8, 7), "int2": (-2, 1)}
NUMPY_DTYPES = {"int8": np.int8, "int4": np.int8, "int2": np.int8, "int32": np.int32}


class OpKind(str, enum.Enum):
    CONV_2D = "CONV_2D"
    DEPTHWISE_CONV_2D = "DEPTHWISE_CONV_2D"
    FULLY_CONNECTED = "FULLY_CONNECTED"
    ADD = "ADD"
    AVERAGE_POOL_2D = "AVERAGE_POOL_2D"
    MAX_POOL_2D = "MAX_POOL_2D"
    RESHAPE = "RESHAPE"
    SOFTMAX = "SOFTMAX"


@dataclass
class Tensor:
    """A tensor. Activations are int8 NHWC (or (N, C) after a reshape); shape[0] is the batch (1 in the model).

    scale / zero_point have one entry (per-tensor) or one per channel along `quantized_dim` (weights only).
    `data` is set for constants (weights int8/int4 values held in int8 arrays, biases int32).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dim: int = 0
    data: np.ndarray | None = None

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class ConvParams:
    """CONV_2D and DEPTHWISE_CONV_2D: padding is (top, left, bottom, right); multiplier/shift per output channel."""

    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]
    act_min: int
    act_max: int
    multiplier: np.ndarray
    shift: np.ndarray
    depth_multiplier: int = 1


@dataclass
class FullyConnectedParams:
    act_min: int
    act_max: int
    multiplier: np.ndarray  # one entry (per-tensor) or one per output channel
    shift: np.ndarray


@dataclass
class AddParams:
    """TFLM's int8 ADD: both inputs are shifted left by `left_shift`, rescaled to a common scale, summed, rescaled."""

    left_shift: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


@dataclass
class PoolParams:
    filter: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    act_min: int
    act_max: int


@dataclass
class SoftmaxParams:
    beta: float
    input_multiplier: int
    input_left_shift: int
    diff_min: int


@dataclass
class ReshapeParams:
    pass


PARAMS_OF = {
    OpKind.CONV_2D: ConvParams,
    OpKind.DEPTHWISE_CONV_2D: ConvParams,
    OpKind.FULLY_CONNECTED: FullyConnectedParams,
    OpKind.ADD: AddParams,
    OpKind.AVERAGE_POOL_2D: PoolParams,
    OpKind.MAX_POOL_2D: PoolParams,
    OpKind.RESHAPE: ReshapeParams,
    OpKind.SOFTMAX: SoftmaxParams,
}


@dataclass
class Op:
    """inputs: conv/fc (input, filter, bias or -1); add (a, b); others (input,). outputs: (output,)."""

    kind: OpKind
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    params: object
    name: str = ""


@dataclass
class QGraph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    name: str = "model"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    # ----------------------------------------------------------------------------------------------- queries
    def activation_tensors(self) -> list[int]:
        """Indices of the non-constant tensors, in the order ops produce them (graph inputs first)."""
        order = list(self.inputs)
        for op in self.ops:
            order.extend(t for t in op.outputs if t not in order)
        return order

    def op_macs(self, k: int) -> int:
        """Multiply-accumulates of op k per inference (batch included): CONV_2D N*out_h*out_w*C_out*KH*KW*C_in,
        DEPTHWISE_CONV_2D N*out_h*out_w*C_out*KH*KW, FULLY_CONNECTED batch*C_out*depth; 0 for the other kinds
        (ADD, pooling, RESHAPE and SOFTMAX multiply-accumulate no weights)."""
        op = self.ops[k]
        y = self.tensors[op.outputs[0]].shape
        if op.kind == OpKind.CONV_2D:
            cout, kh, kw, cin = self.tensors[op.inputs[1]].shape
            return int(y[0] * y[1] * y[2]) * cout * kh * kw * cin
        if op.kind == OpKind.DEPTHWISE_CONV_2D:
            _, kh, kw, cout = self.tensors[op.inputs[1]].shape
            return int(y[0] * y[1] * y[2]) * cout * kh * kw
        if op.kind == OpKind.FULLY_CONNECTED:
            cout, depth = self.tensors[op.inputs[1]].shape
            return int(y[0]) * cout * depth
        return 0

    def describe(self) -> str:
        lines = [f"{self.name}: {len(self.ops)} ops, {len(self.tensors)} tensors"]
        for i, op in enumerate(self.ops):
            out = self.tensors[op.outputs[0]]
            lines.append(f"  {i:3d} {op.kind.value:<18} -> {out.shape} {out.name}")
        return "\n".join(lines)

    # -------------------------------------------------------------------------------------------- validation
    def validate(self) -> None:
        n = len(self.tensors)
        for where, idx in [("graph input", i) for i in self.inputs] + [("graph output", o) for o in self.outputs]:
            if not 0 <= idx < n:
                raise GraphError(f"{self.name}: {where} refers to tensor {idx}, but the graph has {n} tensors")
        for t_idx, t in enumerate(self.tensors):
            self._check_tensor(t_idx, t)
        produced = set(self.inputs)
        for op_idx, op in enumerate(self.ops):
            _OpCheck(self, op_idx, op).run(produced)
            produced.update(op.outputs)
        for o in self.outputs:
            if o not in produced:
                raise GraphError(f"{self.name}: graph output tensor {o} ({self.tensors[o].name}) is never computed")

    def _check_tensor(self, idx: int, t: Tensor) -> None:
        where = f"{self.name}: tensor {idx} ({t.name})"
        if t.dtype not in DTYPE_RANGES:
            raise GraphError(f"{where}: dtype {t.dtype!r} is not one of {sorted(DTYPE_RANGES)}")
        if any(d <= 0 for d in t.shape):
            raise GraphError(f"{where}: shape {t.shape} has a dimension <= 0")
        if not np.all(np.isfinite(t.scale)) or np.any(t.scale < 0):
            raise GraphError(f"{where}: scales must be finite and >= 0, got {t.scale[:4]}")
        if t.scale.size != t.zero_point.size:
            raise GraphError(f"{where}: {t.scale.size} scales but {t.zero_point.size} zero points")
        if t.scale.size > 1 and t.scale.size != t.shape[t.quantized_dim]:
            raise GraphError(f"{where}: {t.scale.size} per-channel scales for dimension {t.quantized_dim} "
                             f"of shape {t.shape}")
        lo, hi = DTYPE_RANGES["int8"]
        if t.dtype in ("int8", "int4", "int2") and (t.zero_point.min() < lo or t.zero_point.max() > hi):
            raise GraphError(f"{where}: zero point {t.zero_point.min()}..{t.zero_point.max()} outside [-128, 127]")
        if t.data is not None:
            if tuple(t.data.shape) != t.shape:
                raise GraphError(f"{where}: data of shape {tuple(t.data.shape)} for a tensor of shape {t.shape}")
            lo, hi = DTYPE_RANGES[t.dtype]
            if t.data.size and (int(t.data.min()) < lo or int(t.data.max()) > hi):
                raise GraphError(f"{where}: values {int(t.data.min())}..{int(t.data.max())} outside the {t.dtype} "
                                 f"range [{lo}, {hi}]")


def _multiplier_ok(m: np.ndarray) -> bool:
    m = np.asarray(m, dtype=np.int64)
    # (0, 0) is TFLite's encoding of a zero (or vanishing) scale; anything else is a Q31 value in [2^30, 2^31).
    return bool(np.all((m == 0) | ((m >= 1 << 30) & (m < 1 << 31))))


class _OpCheck:
    """The shape and range rules for one op; each failure names the op and the offending tensor."""

    def __init__(self, graph: QGraph, idx: int, op: Op):
        self.g, self.idx, self.op = graph, idx, op

    def fail(self, msg: str, tensor: int | None = None):
        what = f"{self.g.name}: op {self.idx} ({self.op.kind.value}{' ' + self.op.name if self.op.name else ''})"
        if tensor is not None:
            what += f", tensor {tensor} ({self.g.tensors[tensor].name})"
        raise GraphError(f"{what}: {msg}")

    def t(self, i: int) -> Tensor:
        return self.g.tensors[i]

    def run(self, produced: set[int]) -> None:
        op = self.op
        if not isinstance(op.kind, OpKind):
            self.fail(f"unknown op kind {op.kind!r}")
        if not isinstance(op.params, PARAMS_OF[op.kind]):
            self.fail(f"params must be {PARAMS_OF[op.kind].__name__}, got {type(op.params).__name__}")
        for i in list(op.inputs) + list(op.outputs):
            if i != -1 and not 0 <= i < len(self.g.tensors):
                self.fail(f"refers to tensor {i}, but the graph has {len(self.g.tensors)} tensors")
        if len(op.outputs) != 1:
            self.fail(f"expected 1 output, got {len(op.outputs)}")
        x = op.inputs[0]
        if not self.t(x).is_constant and x not in produced:
            self.fail("input is used before any op computes it", x)
        for i in self.activation_inputs() + [op.outputs[0]]:
            t = self.t(i)
            if t.dtype != "int8" or t.per_channel:
                self.fail(f"activations must be per-tensor int8, got {t.dtype} with {t.scale.size} scales", i)
        getattr(self, "check_" + op.kind.value.lower())()
        p = op.params
        if hasattr(p, "act_min") and not -128 <= p.act_min <= p.act_max <= 127:
            self.fail(f"activation range [{p.act_min}, {p.act_max}] is not inside [-128, 127]", op.outputs[0])

    def activation_inputs(self) -> list[int]:
        if self.op.kind == OpKind.ADD:
            return list(self.op.inputs[:2])
        return [self.op.inputs[0]]

    # ------------------------------------------------------------------------------------------------- ops
    def _weights_and_bias(self, cout: int):
        op = self.op
        if len(op.inputs) != 3:
            self.fail(f"expected (input, filter, bias) inputs, got {len(op.inputs)}")
        w = self.t(op.inputs[1])
        if not w.is_constant or w.dtype not in WEIGHT_RANGES:
            self.fail(f"filter must be a constant int8, int4 or int2 tensor, got {w.dtype}", op.inputs[1])
        if np.any(w.zero_point != 0):
            self.fail("filter zero point must be 0 (symmetric weights)", op.inputs[1])
        lo, hi = WEIGHT_RANGES[w.dtype]
        if w.data.size and (int(w.data.min()) < lo or int(w.data.max()) > hi):
            self.fail(f"filter values {int(w.data.min())}..{int(w.data.max())} outside [{lo}, {hi}]", op.inputs[1])
        b_idx = op.inputs[2]
        if b_idx != -1:
            b = self.t(b_idx)
            if not b.is_constant or b.dtype != "int32" or b.shape != (cout,):
                self.fail(f"bias must be a constant int32 tensor of shape ({cout},), got {b.dtype} {b.shape}", b_idx)
        p = op.params
        mult = np.atleast_1d(p.multiplier)
        shift = np.atleast_1d(p.shift)
        if mult.shape != shift.shape or mult.size not in (1, cout):
            self.fail(f"expected 1 or {cout} (multiplier, shift) pairs, got {mult.size} and {shift.size}")
        if not _multiplier_ok(mult):
            self.fail(f"multiplier {mult.min()}..{mult.max()} outside [2^30, 2^31)")
        if np.any(shift < -31) or np.any(shift > 30):
            self.fail(f"shift {shift.min()}..{shift.max()} outside [-31, 30]")
        return w

    def _check_window(self, in_shape, out_shape, kh, kw, stride, dilation, padding, cout):
        if len(in_shape) != 4 or len(out_shape) != 4:
            self.fail(f"expects NHWC tensors, got input {in_shape} and output {out_shape}")
        if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
            self.fail(f"stride {stride}, dilation {dilation} and padding {padding} must be positive")
        pt, pl, pb, pr = padding
        oh = (in_shape[1] + pt + pb - ((kh - 1) * dilation[0] + 1)) // stride[0] + 1
        ow = (in_shape[2] + pl + pr - ((kw - 1) * dilation[1] + 1)) // stride[1] + 1
        want = (in_shape[0], oh, ow, cout)
        if tuple(out_shape) != want:
            self.fail(f"output shape {tuple(out_shape)} does not follow from input {in_shape}, window {kh}x{kw}, "
                      f"stride {stride}, padding {padding}: expected {want}", self.op.outputs[0])

    def check_conv_2d(self):
        op, p = self.op, self.op.params
        x, y = self.t(op.inputs[0]), self.t(op.outputs[0])
        w_shape = self.t(op.inputs[1]).shape
        if len(w_shape) != 4:
            self.fail(f"filter must be [C_out, KH, KW, C_in], got {w_shape}", op.inputs[1])
        cout, kh, kw, cin = w_shape
        self._weights_and_bias(cout)
        if len(x.shape) == 4 and x.shape[3] != cin:
            self.fail(f"input has {x.shape[3]} channels but the filter expects {cin}", op.inputs[0])
        self._check_window(x.shape, y.shape, kh, kw, p.stride, p.dilation, p.padding, cout)

    def check_depthwise_conv_2d(self):
        op, p = self.op, self.op.params
        x, y = self.t(op.inputs[0]), self.t(op.outputs[0])
        w_shape = self.t(op.inputs[1]).shape
        if len(w_shape) != 4 or w_shape[0] != 1:
            self.fail(f"depthwise filter must be [1, KH, KW, C_out], got {w_shape}", op.inputs[1])
        _, kh, kw, cout = w_shape
        self._weights_and_bias(cout)
        if len(x.shape) != 4 or p.depth_multiplier < 1 or x.shape[3] * p.depth_multiplier != cout:
            self.fail(f"input channels x depth multiplier {p.depth_multiplier} must equal the filter's {cout} "
                      f"channels, input is {x.shape}", op.inputs[0])
        self._check_window(x.shape, y.shape, kh, kw, p.stride, p.dilation, p.padding, cout)

    def check_fully_connected(self):
        op = self.op
        x, y = self.t(op.inputs[0]), self.t(op.outputs[0])
        w_shape = self.t(op.inputs[1]).shape
        if len(w_shape) != 2:
            self.fail(f"filter must be [C_out, depth], got {w_shape}", op.inputs[1])
        cout, depth = w_shape
        self._weights_and_bias(cout)
        batch = x.shape[0]
        if x.size != batch * depth:
            self.fail(f"input {x.shape} does not flatten to (batch, {depth})", op.inputs[0])
        if y.shape != (batch, cout):
            self.fail(f"output shape {y.shape}, expected {(batch, cout)}", op.outputs[0])

    def check_add(self):
        op, p = self.op, self.op.params
        if len(op.inputs) != 2:
            self.fail(f"expected 2 inputs, got {len(op.inputs)}")
        a, b, y = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        if a.shape != b.shape or a.shape != y.shape:
            self.fail(f"inputs {a.shape} and {b.shape} and output {y.shape} must have one shape "
                      f"(broadcasting is not supported)", op.inputs[1])
        if not _multiplier_ok(np.array([p.input1_multiplier, p.input2_multiplier, p.output_multiplier])):
            self.fail("multipliers outside [2^30, 2^31)")
        if not 0 <= p.left_shift <= 20:
            self.fail(f"left_shift {p.left_shift} outside [0, 20]")

    def _check_pool(self):
        op, p = self.op, self.op.params
        x, y = self.t(op.inputs[0]), self.t(op.outputs[0])
        if len(x.shape) == 4:
            self._check_window(x.shape, y.shape, p.filter[0], p.filter[1], p.stride, (1, 1), p.padding, x.shape[3])
        else:
            self.fail(f"expects an NHWC input, got {x.shape}", op.inputs[0])
        if x.scale[0] != y.scale[0] or x.zero_point[0] != y.zero_point[0]:
            self.fail("input and output must share scale and zero point", op.outputs[0])

    check_average_pool_2d = _check_pool
    check_max_pool_2d = _check_pool

    def check_reshape(self):
        x, y = self.t(self.op.inputs[0]), self.t(self.op.outputs[0])
        if x.size != y.size:
            self.fail(f"cannot reshape {x.shape} ({x.size} values) to {y.shape} ({y.size})", self.op.outputs[0])
        if x.scale[0] != y.scale[0] or x.zero_point[0] != y.zero_point[0]:
            self.fail("input and output must share scale and zero point", self.op.outputs[0])

    def check_softmax(self):
        x, y = self.t(self.op.inputs[0]), self.t(self.op.outputs[0])
        if x.shape != y.shape:
            self.fail(f"output shape {y.shape} differs from input {x.shape}", self.op.outputs[0])
        if abs(float(y.scale[0]) - 1.0 / 256) > 1e-8 or int(y.zero_point[0]) != -128:
            self.fail(f"int8 softmax output must have scale 1/256 and zero point -128, got "
                      f"{float(y.scale[0])} and {int(y.zero_point[0])}", self.op.outputs[0])
