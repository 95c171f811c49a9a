"""Read a full-integer (int8) .tflite into a QGraph, computing every integer parameter as TFLite Micro does.

The flatbuffer is read through the maintained schema package `tflite` (PyPI); nothing here parses bytes by hand
beyond checking the file identifier before handing the buffer over. A file that is not a usable int8 model gets a
UserError that says what is wrong and where (op index and name, tensor index and name).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tflite

from ..errors import GraphError, UserError
from ..int4 import unpack_int4
from ..ir import (AddParams, ConvParams, FullyConnectedParams, Op, OpKind, PoolParams, QGraph, ReshapeParams,
                  Tensor)
from ..prepare import activation_range, add_params, conv_multipliers, prepare_softmax, same_padding

_BUILTIN = tflite.BuiltinOperator
_OP_KINDS = {
    _BUILTIN.CONV_2D: OpKind.CONV_2D,
    _BUILTIN.DEPTHWISE_CONV_2D: OpKind.DEPTHWISE_CONV_2D,
    _BUILTIN.FULLY_CONNECTED: OpKind.FULLY_CONNECTED,
    _BUILTIN.ADD: OpKind.ADD,
    _BUILTIN.AVERAGE_POOL_2D: OpKind.AVERAGE_POOL_2D,
    _BUILTIN.MAX_POOL_2D: OpKind.MAX_POOL_2D,
    _BUILTIN.RESHAPE: OpKind.RESHAPE,
    _BUILTIN.SOFTMAX: OpKind.SOFTMAX,
}
_BUILTIN_NAMES = {v: k for k, v in vars(_BUILTIN).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
_ACT_NAMES = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}
_T = tflite.TensorType
_DTYPES = {_T.INT8: "int8", _T.INT4: "int4", _T.INT32: "int32"}
_OPTIONS = {
    OpKind.CONV_2D: tflite.Conv2DOptions,
    OpKind.DEPTHWISE_CONV_2D: tflite.DepthwiseConv2DOptions,
    OpKind.FULLY_CONNECTED: tflite.FullyConnectedOptions,
    OpKind.ADD: tflite.AddOptions,
    OpKind.AVERAGE_POOL_2D: tflite.Pool2DOptions,
    OpKind.MAX_POOL_2D: tflite.Pool2DOptions,
    OpKind.SOFTMAX: tflite.SoftmaxOptions,
}


def load_tflite(path: str | Path) -> QGraph:
    """Read an int8 .tflite file into a QGraph (UserError on any file that cannot be used)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such .tflite file; pass the path of an int8 .tflite model")
    return read_tflite(path.read_bytes(), name=path.stem, where=str(path))


def read_tflite(buf: bytes, name: str = "model", where: str = "<bytes>") -> QGraph:
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise UserError(f"{where}: not a .tflite flatbuffer (no 'TFL3' identifier in its first 8 bytes); "
                        f"pass a model written by the TFLite converter")
    try:
        return _Reader(buf, name, where).graph()
    except (UserError, GraphError):
        raise
    except Exception as exc:  # the schema accessors fail in arbitrary ways on truncated or corrupt bytes
        raise UserError(f"{where}: corrupt or truncated .tflite ({type(exc).__name__}: {exc}); "
                        f"re-export the model or check the download") from None


class _Reader:
    def __init__(self, buf: bytes, name: str, where: str):
        self.buf, self.name, self.where = buf, name, where
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() != 1:
            raise UserError(f"{where}: {self.model.SubgraphsLength()} subgraphs; only single-subgraph models "
                            f"(no control flow) are supported")
        self.sg = self.model.Subgraphs(0)
        self.tensors: list[Tensor] = []
        self.index_of: dict[int, int] = {}  # tflite tensor index -> QGraph tensor index

    # ----------------------------------------------------------------------------------------------- helpers
    def tname(self, i: int) -> str:
        return self.sg.Tensors(i).Name().decode("utf-8", "replace")

    def op_error(self, op_idx: int, kind: str, msg: str) -> UserError:
        return UserError(f"{self.where}: op {op_idx} ({kind}): {msg}")

    def buffer_bytes(self, t) -> bytes | None:
        b = self.model.Buffers(t.Buffer())
        if b is None:
            return None
        if b.Offset() > 1:  # models over 2 GB keep data outside the flatbuffer, addressed by offset
            off, size = b.Offset(), b.Size()
            if off + size > len(self.buf):
                raise UserError(f"{self.where}: buffer at offset {off} runs past the end of the file (truncated)")
            return self.buf[off:off + size]
        if b.DataLength() == 0:
            return None
        return b.DataAsNumpy().tobytes()

    def tensor(self, i: int, role: str) -> int:
        """Convert tflite tensor i (once) and return its QGraph index."""
        if i in self.index_of:
            return self.index_of[i]
        t = self.sg.Tensors(i)
        tname = self.tname(i)
        ttype = t.Type()
        if ttype not in _DTYPES:
            hint = (" (a float model: the int8 path needs a full-integer model with int8 input and output)"
                    if ttype == _T.FLOAT32 else "")
            raise UserError(f"{self.where}: tensor {i} ({tname}), the {role}, has type "
                            f"{_TYPE_NAMES.get(ttype, ttype)}; supported are INT8, INT4 weights and INT32 bias{hint}")
        dtype = _DTYPES[ttype]
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        q = t.Quantization()
        if q is None or q.ScaleLength() == 0:
            if dtype == "int32":  # a bias may come without quantization in hand-made models; scale is implied
                scale, zp, qdim = np.ones(1, np.float32), np.zeros(1, np.int64), 0
            else:
                raise UserError(f"{self.where}: tensor {i} ({tname}) is {dtype} but has no quantization parameters")
        else:
            scale = q.ScaleAsNumpy().astype(np.float32)
            zp = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(scale.size, np.int64)
            qdim = q.QuantizedDimension()
        raw = self.buffer_bytes(t)
        data = None
        if raw is not None:
            count = int(np.prod(shape, dtype=np.int64))
            if dtype == "int4":
                data = unpack_int4(np.frombuffer(raw, np.uint8), count)
            else:
                npdt = np.dtype("<i4") if dtype == "int32" else np.dtype(np.int8)
                if len(raw) != count * npdt.itemsize:
                    raise UserError(f"{self.where}: tensor {i} ({tname}) holds {len(raw)} bytes, expected "
                                    f"{count * npdt.itemsize} for shape {shape}")
                data = np.frombuffer(raw, npdt).astype(np.int32 if dtype == "int32" else np.int8)
            data = data.reshape(shape)
        self.tensors.append(Tensor(tname, shape, dtype, scale, zp, qdim, data))
        self.index_of[i] = len(self.tensors) - 1
        return self.index_of[i]

    def options(self, op, kind: OpKind):
        cls = _OPTIONS.get(kind)
        table = op.BuiltinOptions()
        if cls is None or table is None:
            return None
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        return opts

    def activation(self, op_idx, kind, opts) -> str:
        code = opts.FusedActivationFunction() if opts is not None else 0
        act = _ACT_NAMES.get(code, str(code))
        if act not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
            raise self.op_error(op_idx, kind.value, f"fused activation {act} is not supported")
        return act

    def padding(self, opts, in_hw, k_hw, stride, dilation) -> tuple[int, int, int, int]:
        if opts.Padding() == tflite.Padding.VALID:
            return 0, 0, 0, 0
        top, bottom = same_padding(in_hw[0], k_hw[0], stride[0], dilation[0])
        left, right = same_padding(in_hw[1], k_hw[1], stride[1], dilation[1])
        return top, left, bottom, right

    # ----------------------------------------------------------------------------------------------- graph
    def graph(self) -> QGraph:
        sg = self.sg
        for role, idxs in (("graph input", sg.InputsAsNumpy()), ("graph output", sg.OutputsAsNumpy())):
            for i in idxs:
                if self.sg.Tensors(int(i)).Type() == _T.FLOAT32:
                    raise UserError(f"{self.where}: the {role} tensor {int(i)} ({self.tname(int(i))}) is FLOAT32: "
                                    f"this is a float model, and simulate needs a full-integer int8 .tflite "
                                    f"(convert with inference_input_type=tf.int8)")
        inputs = [self.tensor(int(i), "graph input") for i in sg.InputsAsNumpy()]
        ops = [self.op(k) for k in range(sg.OperatorsLength())]
        outputs = [self.tensor(int(i), "graph output") for i in sg.OutputsAsNumpy()]
        meta = {"source": self.where, "tflite_index": {q: t for t, q in self.index_of.items()}}
        return QGraph(self.tensors, ops, inputs, outputs, name=self.name, metadata=meta)

    def op(self, op_idx: int) -> Op:
        op = self.sg.Operators(op_idx)
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin not in _OP_KINDS:
            name = _BUILTIN_NAMES.get(builtin, f"builtin {builtin}")
            if builtin == _BUILTIN.CUSTOM:
                name = f"CUSTOM {code.CustomCode().decode('utf-8', 'replace')}"
            raise self.op_error(op_idx, name, "this op is not supported; supported are "
                                + ", ".join(k.value for k in OpKind))
        kind = _OP_KINDS[builtin]
        tin = [int(i) for i in op.InputsAsNumpy()]
        tout = [int(i) for i in op.OutputsAsNumpy()]
        if len(tout) != 1:
            raise self.op_error(op_idx, kind.value, f"expected one output, got {len(tout)}")
        opts = self.options(op, kind)
        out_name = self.tname(tout[0])
        if kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED):
            x = self.tensor(tin[0], "input")
            w = self.tensor(tin[1], "filter")
            b = self.tensor(tin[2], "bias") if len(tin) > 2 and tin[2] >= 0 else -1
            y = self.tensor(tout[0], "output")
            params = self.weighted_params(op_idx, kind, opts, x, w, y)
            return Op(kind, (x, w, b), (y,), params, out_name)
        if kind == OpKind.ADD:
            a, c = self.tensor(tin[0], "input 1"), self.tensor(tin[1], "input 2")
            y = self.tensor(tout[0], "output")
            ta, tc, ty = self.tensors[a], self.tensors[c], self.tensors[y]
            act = activation_range(self.activation(op_idx, kind, opts), ty.scale[0], ty.zero_point[0])
            p = add_params(ta.scale[0], tc.scale[0], ty.scale[0])
            return Op(kind, (a, c), (y,), AddParams(**p, act_min=act[0], act_max=act[1]), out_name)
        x = self.tensor(tin[0], "input")
        y = self.tensor(tout[0], "output")
        tx, ty = self.tensors[x], self.tensors[y]
        if kind == OpKind.RESHAPE:
            return Op(kind, (x,), (y,), ReshapeParams(), out_name)
        if kind == OpKind.SOFTMAX:
            beta = float(opts.Beta()) if opts is not None else 1.0
            try:
                params = prepare_softmax(beta, tx.scale[0])
            except ValueError as exc:
                raise self.op_error(op_idx, kind.value, str(exc)) from None
            return Op(kind, (x,), (y,), params, out_name)
        # pooling
        k = (opts.FilterHeight(), opts.FilterWidth())
        stride = (opts.StrideH(), opts.StrideW())
        if len(tx.shape) != 4:
            raise self.op_error(op_idx, kind.value, f"expects an NHWC input, got {tx.shape}")
        pad = self.padding(opts, tx.shape[1:3], k, stride, (1, 1))
        act = activation_range(self.activation(op_idx, kind, opts), ty.scale[0], ty.zero_point[0])
        return Op(kind, (x,), (y,), PoolParams(k, stride, pad, act[0], act[1]), out_name)

    def weighted_params(self, op_idx, kind, opts, x, w, y):
        tx, tw, ty = self.tensors[x], self.tensors[w], self.tensors[y]
        if tw.data is None:
            raise self.op_error(op_idx, kind.value, f"filter tensor ({tw.name}) is not a constant")
        if tw.per_channel and tw.quantized_dim != (3 if kind == OpKind.DEPTHWISE_CONV_2D else 0):
            raise self.op_error(op_idx, kind.value, f"filter ({tw.name}) is quantized along dimension "
                                f"{tw.quantized_dim}, expected the output-channel dimension")
        act_name = self.activation(op_idx, kind, opts)
        act = activation_range(act_name, ty.scale[0], ty.zero_point[0])
        mult, shift = conv_multipliers(tx.scale[0], tw.scale, ty.scale[0])
        if kind == OpKind.FULLY_CONNECTED:
            if opts is not None and opts.WeightsFormat() != 0:
                raise self.op_error(op_idx, kind.value, "shuffled FC weights are not supported")
            return FullyConnectedParams(act[0], act[1], mult, shift)
        cout = tw.shape[0] if kind == OpKind.CONV_2D else tw.shape[3]
        if mult.size == 1:  # per-tensor conv: the kernels take per-channel arrays, so repeat the pair
            mult, shift = np.repeat(mult, cout), np.repeat(shift, cout)
        stride = (opts.StrideH(), opts.StrideW())
        dilation = (opts.DilationHFactor(), opts.DilationWFactor())
        if len(tx.shape) != 4:
            raise self.op_error(op_idx, kind.value, f"expects an NHWC input, got {tx.shape}")
        pad = self.padding(opts, tx.shape[1:3], tw.shape[1:3], stride, dilation)
        depth_mult = 1
        if kind == OpKind.DEPTHWISE_CONV_2D:
            depth_mult = cout // max(tx.shape[3], 1)
        return ConvParams(stride, dilation, pad, act[0], act[1], mult, shift, depth_mult)

