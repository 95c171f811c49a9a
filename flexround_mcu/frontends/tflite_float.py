"""Read a float32 .tflite into a FloatGraph (the quantizer's input), NHWC TFLite layouts turned into torch's.

The flatbuffer is read through the schema package `tflite` (PyPI), as the int8 reader (frontends/tflite.py) does.
Layouts: CONV_2D filters are OHWI -> torch OIHW; DEPTHWISE_CONV_2D filters are 1HW(C*M) -> (C*M, 1, H, W) with
groups = C (output channel c reads input channel c // M in both); FULLY_CONNECTED weights are (out, in) in both.
A RESHAPE to (1, N) is a flatten, and TFLite flattens NHWC: that is the order FloatGraph's flatten uses, so a
following FULLY_CONNECTED keeps its columns as stored.

Weights stored as int8 or float16 (the converter's dynamic-range and float16 options, with or without a
DEQUANTIZE op) are dequantized to float32 here, so the graph holds the model the converter meant. Note that
tf.lite runs int8-weight convs and FCs of such a "hybrid" model with its input quantized on the fly, so its outputs
differ from this float graph's by that input rounding (tests/test_frontends.py measures it on the KWS model).

A standalone RELU or RELU6 is fused into the op that produces its input, when that op can carry a fused activation
and nothing else reads its output; a zero PAD (Keras ZeroPadding2D) is folded into the padding of the conv that
reads it, when nothing else does. Anything outside this op set gets a UserError naming the op index, the op name,
its output tensor (whose name carries the Keras layer path for converted models) and the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tflite
import torch

from ..errors import UserError
from ..quant.graph import FloatGraph, FNode
from .tflite import builtin_options, check_tflite, explicit_padding

_BUILTIN = tflite.BuiltinOperator
_BUILTIN_NAMES = {v: k for k, v in vars(_BUILTIN).items() if not k.startswith("_")}
_ACT_NAMES = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}
_T = tflite.TensorType
_TYPE_NAMES = {v: k for k, v in vars(_T).items() if not k.startswith("_")}

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                 "MEAN", "RESHAPE", "SOFTMAX", "RELU", "RELU6", "PAD", "DEQUANTIZE")
_OPTIONS = {
    _BUILTIN.CONV_2D: tflite.Conv2DOptions,
    _BUILTIN.DEPTHWISE_CONV_2D: tflite.DepthwiseConv2DOptions,
    _BUILTIN.FULLY_CONNECTED: tflite.FullyConnectedOptions,
    _BUILTIN.ADD: tflite.AddOptions,
    _BUILTIN.AVERAGE_POOL_2D: tflite.Pool2DOptions,
    _BUILTIN.MAX_POOL_2D: tflite.Pool2DOptions,
    _BUILTIN.MEAN: tflite.ReducerOptions,
    _BUILTIN.SOFTMAX: tflite.SoftmaxOptions,
}
# Node kinds whose output can carry a fused activation all the way to the integer graph (lower.py clamps these).
_CAN_FUSE = ("conv", "linear", "add", "avgpool", "maxpool")


def compose_activations(fused: str, applied: str) -> str:
    """The one fused activation equal to `fused` followed by `applied` (RELU or RELU6): relu6 wins in either order."""
    return "RELU6" if "RELU6" in (fused, applied) else "RELU"


def load_float_tflite(path: str | Path, *, input_scale: float = 1.0, input_zero_point: int = 0,
                      name: str | None = None) -> FloatGraph:
    """A float32 .tflite file as a FloatGraph (UserError on a file or op that cannot be used).

    input_scale / input_zero_point: how the model's real-valued input maps to int8 (q = round(x / s) + zp). A float
    model does not know it; it comes from the data's preprocessing (e.g. the int8 reference model's input tensor).
    The default (1, 0) is right only for inputs that are already integers in [-128, 127]; metadata records whether
    it was given.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such .tflite file; pass the path of a float32 .tflite model")
    return read_float_tflite(path.read_bytes(), name=name or path.stem, where=str(path), input_scale=input_scale,
                             input_zero_point=input_zero_point)


def read_float_tflite(buf: bytes, name: str = "model", where: str = "<bytes>", *, input_scale: float = 1.0,
                      input_zero_point: int = 0) -> FloatGraph:
    """As load_float_tflite, from the file's bytes (the Keras frontend converts in memory and calls this)."""
    check_tflite(buf, where)
    if not (np.isfinite(input_scale) and input_scale > 0) or not -128 <= int(input_zero_point) <= 127:
        raise UserError(f"{where}: input scale {input_scale!r} / zero point {input_zero_point!r}: the scale must be "
                        f"a positive number and the zero point an int8 value")
    try:
        reader = _FloatReader(buf, where)
        nodes, output, input_shape = reader.read()
    except UserError:
        raise
    except Exception as exc:  # the schema accessors fail in arbitrary ways on truncated or corrupt bytes
        raise UserError(f"{where}: corrupt or truncated .tflite ({type(exc).__name__}: {exc}); "
                        f"re-export the model or check the download") from None
    meta = {"source": where, "frontend": "tflite_float",
            "input_quantization": "default" if (input_scale, input_zero_point) == (1.0, 0) else "given"}
    return FloatGraph(name, nodes, input_shape, float(input_scale), int(input_zero_point), output=output,
                      metadata=meta)


class _FloatReader:
    def __init__(self, buf: bytes, where: str):
        self.buf, self.where = buf, where
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() != 1:
            raise UserError(f"{where}: {self.model.SubgraphsLength()} subgraphs; only single-subgraph models "
                            f"(no control flow) are supported")
        self.sg = self.model.Subgraphs(0)
        self.nodes: list[FNode] = []
        self.values: dict[int, str] = {}         # tflite tensor index -> FloatGraph value ("input" or a node name)
        self.constants: dict[int, np.ndarray] = {}  # DEQUANTIZE output tensor -> its float32 data
        self.pads: dict[int, tuple[int, str, tuple[int, int, int, int]]] = {}  # PAD output -> (op, value, t/l/b/r)
        self.readers = self._count_readers()

    # ----------------------------------------------------------------------------------------------- helpers
    def tname(self, i: int) -> str:
        return self.sg.Tensors(i).Name().decode("utf-8", "replace")

    def shape(self, i: int) -> tuple[int, ...]:
        t = self.sg.Tensors(i)
        return tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()

    def op_error(self, op_idx: int, op_name: str, out: int | None, msg: str) -> UserError:
        tensor = f", output tensor '{self.tname(out)}'" if out is not None else ""
        return UserError(f"{self.where}: op {op_idx} ({op_name}{tensor}): {msg}")

    def _count_readers(self) -> dict[int, int]:
        """tensor index -> how many ops (and graph outputs) read it: a fused RELU must be its producer's only reader."""
        counts: dict[int, int] = {}
        for k in range(self.sg.OperatorsLength()):
            for i in self.sg.Operators(k).InputsAsNumpy():
                counts[int(i)] = counts.get(int(i), 0) + 1
        for i in self.sg.OutputsAsNumpy():
            counts[int(i)] = counts.get(int(i), 0) + 1
        return counts

    def constant(self, i: int, role: str, op_ctx) -> np.ndarray:
        """A constant tensor (weights, bias, shapes) as float32, dequantizing int8 / float16 storage."""
        if i in self.constants:
            return self.constants[i]
        t = self.sg.Tensors(i)
        if t.Sparsity() is not None:
            raise self.op_error(*op_ctx, f"the {role} tensor {i} ({self.tname(i)}) is sparse; re-convert the model "
                                         f"without sparsity")
        b = self.model.Buffers(t.Buffer())
        raw = None
        if b is not None:
            if b.Offset() > 1:  # models over 2 GB keep data outside the flatbuffer, addressed by offset
                raw = self.buf[b.Offset():b.Offset() + b.Size()]
            elif b.DataLength():
                raw = b.DataAsNumpy().tobytes()
        if raw is None:
            raise self.op_error(*op_ctx, f"the {role} tensor {i} ({self.tname(i)}) is not a constant; "
                                         f"only constant weights are supported")
        shape = self.shape(i)
        ttype = t.Type()
        dtypes = {_T.FLOAT32: "<f4", _T.FLOAT16: "<f2", _T.INT8: "i1", _T.INT32: "<i4", _T.INT64: "<i8"}
        if ttype not in dtypes:
            raise self.op_error(*op_ctx, f"the {role} tensor {i} ({self.tname(i)}) has type "
                                         f"{_TYPE_NAMES.get(ttype, ttype)}; expected FLOAT32, FLOAT16 or INT8")
        data = np.frombuffer(raw, dtypes[ttype]).reshape(shape)
        if ttype == _T.INT8:
            data = self._dequantize(t, data, i, role, op_ctx)
        return data if ttype in (_T.INT32, _T.INT64) else data.astype(np.float32)  # ints: axes, shapes

    def _dequantize(self, t, q: np.ndarray, i: int, role: str, op_ctx) -> np.ndarray:
        """int8 weights of a dynamic-range model: real = (q - zero_point) * scale, per channel along quantized_dim."""
        quant = t.Quantization()
        if quant is None or quant.ScaleLength() == 0:
            raise self.op_error(*op_ctx, f"the {role} tensor {i} ({self.tname(i)}) is INT8 without a scale")
        scale = quant.ScaleAsNumpy().astype(np.float64)
        zp = quant.ZeroPointAsNumpy().astype(np.float64) if quant.ZeroPointLength() else np.zeros_like(scale)
        if scale.size > 1:
            bshape = [1] * q.ndim
            bshape[quant.QuantizedDimension()] = scale.size
            scale, zp = scale.reshape(bshape), zp.reshape(bshape)
        return (q.astype(np.float64) - zp) * scale

    def value(self, i: int, role: str, op_ctx) -> str:
        """The FloatGraph value that tflite tensor i holds (the graph input or an earlier node's output)."""
        if i in self.pads:
            raise self.op_error(*op_ctx, f"reads the output of PAD (op {self.pads[i][0]}); a PAD is only supported "
                                         f"as the padding of the one conv that reads it")
        if i not in self.values:
            raise self.op_error(*op_ctx, f"the {role} tensor {i} ({self.tname(i)}) is a constant or comes from "
                                         f"nowhere; only computed activations are supported as the {role}")
        return self.values[i]

    def options(self, op, builtin):
        return builtin_options(op, _OPTIONS.get(builtin))

    def activation(self, opts, op_ctx) -> str:
        code = opts.FusedActivationFunction() if opts is not None else 0
        act = _ACT_NAMES.get(code, str(code))
        if act not in ("NONE", "RELU", "RELU6"):
            raise self.op_error(*op_ctx, f"fused activation {act} is not supported (NONE, RELU, RELU6 are)")
        return act

    def emit(self, node: FNode, out: int) -> None:
        self.nodes.append(node)
        self.values[out] = node.name

    # ----------------------------------------------------------------------------------------------- graph
    def read(self) -> tuple[list[FNode], str, tuple[int, int, int]]:
        sg = self.sg
        ins, outs = [int(i) for i in sg.InputsAsNumpy()], [int(i) for i in sg.OutputsAsNumpy()]
        if len(ins) != 1 or len(outs) != 1:
            raise UserError(f"{self.where}: {len(ins)} inputs and {len(outs)} outputs; one of each is supported")
        for role, i in (("input", ins[0]), ("output", outs[0])):
            if sg.Tensors(i).Type() != _T.FLOAT32:
                kind = _TYPE_NAMES.get(sg.Tensors(i).Type(), "?")
                raise UserError(f"{self.where}: the graph {role} tensor {i} ({self.tname(i)}) is {kind}, not FLOAT32: "
                                f"this frontend reads float models (an int8 model goes through `simulate`)")
        in_shape = self.shape(ins[0])
        t_in = sg.Tensors(ins[0])
        free = [int(d) for d in t_in.ShapeSignatureAsNumpy()[1:]] if t_in.ShapeSignatureLength() else []
        if any(d < 0 for d in free):
            raise UserError(f"{self.where}: the input tensor ({self.tname(ins[0])}) has a free size in "
                            f"{t_in.ShapeSignatureAsNumpy().tolist()}; convert the model with a fixed input shape")
        if len(in_shape) != 4 or in_shape[0] != 1:
            raise UserError(f"{self.where}: the input tensor ({self.tname(ins[0])}) has shape {in_shape}; "
                            f"an NHWC image (1, H, W, C) is supported")
        self.values[ins[0]] = "input"
        for k in range(sg.OperatorsLength()):
            self.op(k)
        if outs[0] not in self.values or self.values[outs[0]] == "input":
            raise UserError(f"{self.where}: the output tensor ({self.tname(outs[0])}) is not computed by any op")
        if not self.nodes:
            raise UserError(f"{self.where}: the model has no ops")
        _, h, w, c = in_shape
        return self.nodes, self.values[outs[0]], (c, h, w)

    def op(self, k: int) -> None:
        op = self.sg.Operators(k)
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        op_name = _BUILTIN_NAMES.get(builtin, f"builtin {builtin}")
        if builtin == _BUILTIN.CUSTOM:
            op_name = f"CUSTOM {code.CustomCode().decode('utf-8', 'replace')}"
        tin = [int(i) for i in op.InputsAsNumpy()]
        tout = [int(i) for i in op.OutputsAsNumpy()]
        ctx = (k, op_name, tout[0] if tout else None)
        if op_name not in SUPPORTED_OPS:
            raise self.op_error(*ctx, "this op is not supported by the float .tflite frontend; supported are "
                                + ", ".join(SUPPORTED_OPS))
        if len(tout) != 1:
            raise self.op_error(*ctx, f"expected one output, got {len(tout)}")
        out = tout[0]
        opts = self.options(op, builtin)
        handler = getattr(self, f"op_{op_name.lower()}")
        handler(k, ctx, tin, out, opts)

    # ----------------------------------------------------------------------------------------------- ops
    def op_dequantize(self, k, ctx, tin, out, opts):
        # Only the converter's weight storage (int8 / float16 constant -> float32) is meaningful in a float graph.
        if tin[0] in self.values:
            raise self.op_error(*ctx, "DEQUANTIZE of a computed tensor (a quantized activation) is not supported; "
                                      "export a float model")
        self.constants[out] = self.constant(tin[0], "input", ctx)

    def conv_input(self, i: int, ctx) -> tuple[str, tuple[int, int, int, int]]:
        """(value, extra padding) of a conv's input: a PAD that only this conv reads becomes part of its padding."""
        if i in self.pads and self.readers.get(i, 0) == 1:
            _, x, pad = self.pads.pop(i)
            return x, pad
        return self.value(i, "input", ctx), (0, 0, 0, 0)

    def op_conv_2d(self, k, ctx, tin, out, opts):
        x, extra = self.conv_input(tin[0], ctx)
        filt = self.constant(tin[1], "filter", ctx)  # (C_out, KH, KW, C_in / groups)
        x_shape = self.shape(tin[0])
        if len(x_shape) != 4 or filt.ndim != 4:
            raise self.op_error(*ctx, f"expects an NHWC input and an OHWI filter, got {x_shape} and {filt.shape}")
        if x_shape[3] != filt.shape[3]:
            raise self.op_error(*ctx, f"grouped conv ({x_shape[3]} input channels, filter depth {filt.shape[3]}) is "
                                      f"not supported; use groups of 1 or a DEPTHWISE_CONV_2D")
        weight = torch.from_numpy(np.ascontiguousarray(filt.transpose(0, 3, 1, 2)))
        self._conv(k, ctx, tin, out, opts, x, x_shape, weight, 1, "conv", extra)

    def op_depthwise_conv_2d(self, k, ctx, tin, out, opts):
        x, extra = self.conv_input(tin[0], ctx)
        filt = self.constant(tin[1], "filter", ctx)  # (1, KH, KW, C_in * M)
        x_shape = self.shape(tin[0])
        if len(x_shape) != 4 or filt.ndim != 4 or filt.shape[0] != 1 or filt.shape[3] % x_shape[3]:
            raise self.op_error(*ctx, f"expects an NHWC input and a (1, KH, KW, C*M) filter, got {x_shape} and "
                                      f"{filt.shape}")
        weight = torch.from_numpy(np.ascontiguousarray(filt.transpose(3, 0, 1, 2)))  # (C*M, 1, KH, KW)
        self._conv(k, ctx, tin, out, opts, x, x_shape, weight, x_shape[3], "dwconv", extra)

    def _conv(self, k, ctx, tin, out, opts, x, x_shape, weight, groups, prefix, extra):
        stride = (opts.StrideH(), opts.StrideW())
        dilation = (opts.DilationHFactor(), opts.DilationWFactor())
        own = explicit_padding(opts, x_shape[1:3], tuple(weight.shape[2:]), stride, dilation)
        pad = tuple(a + b for a, b in zip(own, extra))
        bias = self._bias(tin, weight.shape[0], ctx)
        self.emit(FNode("conv", f"{prefix}{k}", [x], weight, bias, stride, pad, dilation, groups,
                        act=self.activation(opts, ctx)), out)

    def _bias(self, tin, cout, ctx) -> torch.Tensor | None:
        if len(tin) < 3 or tin[2] < 0:
            return None
        b = self.constant(tin[2], "bias", ctx)
        if b.shape != (cout,):
            raise self.op_error(*ctx, f"bias has shape {b.shape}, expected ({cout},)")
        return torch.from_numpy(np.ascontiguousarray(b))

    def op_fully_connected(self, k, ctx, tin, out, opts):
        x = self.value(tin[0], "input", ctx)
        w = self.constant(tin[1], "weights", ctx)
        if opts is not None and (opts.WeightsFormat() != 0 or opts.KeepNumDims()):
            raise self.op_error(*ctx, "shuffled weights or keep_num_dims are not supported")
        x_shape = self.shape(tin[0])
        if int(np.prod(x_shape)) != w.shape[1]:
            raise self.op_error(*ctx, f"input {x_shape} does not hold one row of {w.shape[1]} values (batch 1)")
        if len(x_shape) != 2:  # FC flattens its input itself; make that an explicit (NHWC) flatten
            flat = FNode("flatten", f"flatten{k}", [x])
            self.nodes.append(flat)
            x = flat.name
        bias = self._bias(tin, w.shape[0], ctx)
        self.emit(FNode("linear", f"fc{k}", [x], torch.from_numpy(np.ascontiguousarray(w)), bias,
                        act=self.activation(opts, ctx)), out)

    def op_add(self, k, ctx, tin, out, opts):
        a, b = self.value(tin[0], "first input", ctx), self.value(tin[1], "second input", ctx)
        if self.shape(tin[0]) != self.shape(tin[1]):
            raise self.op_error(*ctx, f"broadcasting ADD ({self.shape(tin[0])} + {self.shape(tin[1])}) is not "
                                      f"supported; both inputs must have the same shape")
        self.emit(FNode("add", f"add{k}", [a, b], act=self.activation(opts, ctx)), out)

    def op_average_pool_2d(self, k, ctx, tin, out, opts):
        self._pool(k, ctx, tin, out, opts, "avgpool")

    def op_max_pool_2d(self, k, ctx, tin, out, opts):
        self._pool(k, ctx, tin, out, opts, "maxpool")

    def _pool(self, k, ctx, tin, out, opts, kind):
        x = self.value(tin[0], "input", ctx)
        x_shape = self.shape(tin[0])
        if len(x_shape) != 4:
            raise self.op_error(*ctx, f"expects an NHWC input, got {x_shape}")
        kernel, stride = (opts.FilterHeight(), opts.FilterWidth()), (opts.StrideH(), opts.StrideW())
        pad = explicit_padding(opts, x_shape[1:3], kernel, stride, (1, 1))
        self.emit(FNode(kind, f"{kind}{k}", [x], stride=stride, padding=pad, kernel=kernel,
                        act=self.activation(opts, ctx)), out)

    def op_mean(self, k, ctx, tin, out, opts):
        # Keras GlobalAveragePooling2D becomes MEAN over H and W: an average pool over the whole map.
        x = self.value(tin[0], "input", ctx)
        x_shape = self.shape(tin[0])
        axes = sorted(int(a) % 4 for a in np.atleast_1d(self.constant(tin[1], "axes", ctx)))
        if len(x_shape) != 4 or axes != [1, 2]:
            raise self.op_error(*ctx, f"MEAN over axes {axes} of {x_shape} is not supported; only a global average "
                                      f"over H and W of an NHWC tensor is")
        hw = x_shape[1:3]
        pool = FNode("avgpool", f"avgpool{k}", [x], stride=hw, kernel=hw)
        if opts is not None and opts.KeepDims():
            self.emit(pool, out)
        else:
            self.nodes.append(pool)
            self.emit(FNode("flatten", f"flatten{k}", [pool.name]), out)

    def op_reshape(self, k, ctx, tin, out, opts):
        x = self.value(tin[0], "input", ctx)
        src, dst = self.shape(tin[0]), self.shape(out)
        if src == dst:  # a reshape that keeps the shape is no op at all
            self.values[out] = x
            return
        if len(dst) != 2 or dst[0] != 1 or (src and src[0] != 1):
            raise self.op_error(*ctx, f"RESHAPE from {src} to {dst} is not supported; only a flatten to (1, N) is")
        if len(src) == 2:  # (1, N) -> (1, N) written differently
            self.values[out] = x
            return
        self.emit(FNode("flatten", f"flatten{k}", [x]), out)

    def op_pad(self, k, ctx, tin, out, opts):
        # Zero padding of H and W only; it waits for the conv that reads it (conv_input) to become its padding.
        x = self.value(tin[0], "input", ctx)
        pads = self.constant(tin[1], "paddings", ctx).astype(int).tolist()
        if len(tin) > 2 or len(pads) != 4 or pads[0] != [0, 0] or pads[3] != [0, 0]:
            raise self.op_error(*ctx, f"paddings {pads}: only zero padding of H and W of an NHWC tensor is supported")
        (top, bottom), (left, right) = pads[1], pads[2]
        self.pads[out] = (k, x, (top, left, bottom, right))

    def op_softmax(self, k, ctx, tin, out, opts):
        x = self.value(tin[0], "input", ctx)
        beta = float(opts.Beta()) if opts is not None else 1.0
        if beta != 1.0:
            raise self.op_error(*ctx, f"softmax beta {beta} is not supported; only beta 1 is")
        if len(self.shape(tin[0])) != 2:
            raise self.op_error(*ctx, f"softmax over a {self.shape(tin[0])} tensor; only (1, N) is supported")
        self.emit(FNode("softmax", f"softmax{k}", [x]), out)

    def op_relu(self, k, ctx, tin, out, opts):
        self._fuse_activation(ctx, tin[0], out, "RELU")

    def op_relu6(self, k, ctx, tin, out, opts):
        self._fuse_activation(ctx, tin[0], out, "RELU6")

    def _fuse_activation(self, ctx, src, out, act):
        x = self.value(src, "input", ctx)
        producer = next((n for n in self.nodes if n.name == x), None)
        if producer is None or producer.kind not in _CAN_FUSE or self.readers.get(src, 0) != 1:
            what = "the graph input" if producer is None else f"{producer.kind} node {producer.name}"
            raise self.op_error(*ctx, f"a standalone {act} must follow a conv, fully connected, add or pool whose "
                                      f"output nothing else reads; here it follows {what} (read by "
                                      f"{self.readers.get(src, 0)} ops)")
        producer.act = compose_activations(producer.act, act)
        self.values[out] = producer.name
