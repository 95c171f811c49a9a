"""Read a full-integer (int8) .tflite into a QGraph, computing every integer parameter as TFLite Micro does,
and write a QGraph back as a .tflite that TFLite Micro runs.

The flatbuffer is read through the maintained schema package `tflite` (PyPI); nothing here parses bytes by hand
beyond checking the file identifier before handing the buffer over. A file that is not a usable int8 model gets a
UserError that says what is wrong and where (op index and name, tensor index and name).

Writing: that package has no builders, so the writer lays the tables out with flatbuffers.Builder from a table of
schema.fbs field slots (_SCHEMA). A .tflite holds scales and SAME/VALID padding and a fused activation, not the
QGraph's integer parameters: TFLite Micro derives those again when it loads the file. So the writer maps every op
back to what the file can say and checks that deriving gives the same integers (reading the file back gives the
same QGraph); where it cannot, it raises a UserError naming the op.
"""
from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import tflite

from ..errors import GraphError, UserError
from ..packing import pack_int4, unpack_int4
from ..ir import (NUMPY_DTYPES, AddParams, ConvParams, FullyConnectedParams, Op, OpKind, PoolParams, QGraph,
                  ReshapeParams, Tensor)
from ..prepare import ACTIVATIONS, activation_range, add_params, conv_multipliers, prepare_softmax, same_padding

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


def builtin_options(op, cls):
    """An operator's builtin options table read as `cls` (a tflite.*Options class), or None."""
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return None
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def explicit_padding(opts, in_hw, k_hw, stride, dilation) -> tuple[int, int, int, int]:
    """TFLite's SAME / VALID padding of a conv or pool as explicit (top, left, bottom, right)."""
    if opts.Padding() == tflite.Padding.VALID:
        return 0, 0, 0, 0
    top, bottom = same_padding(in_hw[0], k_hw[0], stride[0], dilation[0])
    left, right = same_padding(in_hw[1], k_hw[1], stride[1], dilation[1])
    return top, left, bottom, right


def load_tflite(path: str | Path) -> QGraph:
    """Read an int8 .tflite file into a QGraph (UserError on any file that cannot be used)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such .tflite file; pass the path of an int8 .tflite model")
    return read_tflite(path.read_bytes(), name=path.stem, where=str(path))


def is_tflite(buf: bytes) -> bool:
    """Whether `buf` carries the .tflite flatbuffer identifier (bytes 4-8)."""
    return len(buf) >= 8 and buf[4:8] == b"TFL3"


def check_tflite(buf: bytes, where: str) -> None:
    if not is_tflite(buf):
        raise UserError(f"{where}: not a .tflite flatbuffer (no 'TFL3' identifier in its first 8 bytes); "
                        f"pass a model written by the TFLite converter")


def input_type(path: str | Path) -> str | None:
    """The type name of a .tflite file's first graph input ("INT8", "FLOAT32", ...), or None when the file is not
    a readable single-subgraph .tflite (the reader that loads it then says what is wrong)."""
    buf = Path(path).read_bytes()
    if not is_tflite(buf):
        return None
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        sg = model.Subgraphs(0)
        return _TYPE_NAMES.get(sg.Tensors(int(sg.InputsAsNumpy()[0])).Type())
    except Exception:  # corrupt bytes fail in arbitrary ways inside the schema accessors
        return None


def read_tflite(buf: bytes, name: str = "model", where: str = "<bytes>") -> QGraph:
    check_tflite(buf, where)
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
        return builtin_options(op, _OPTIONS.get(kind))

    def activation(self, op_idx, kind, opts) -> str:
        code = opts.FusedActivationFunction() if opts is not None else 0
        act = _ACT_NAMES.get(code, str(code))
        if act not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
            raise self.op_error(op_idx, kind.value, f"fused activation {act} is not supported")
        return act

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
        pad = explicit_padding(opts, tx.shape[1:3], k, stride, (1, 1))
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
        pad = explicit_padding(opts, tx.shape[1:3], tw.shape[1:3], stride, dilation)
        depth_mult = 1
        if kind == OpKind.DEPTHWISE_CONV_2D:
            depth_mult = cout // max(tx.shape[3], 1)
        return ConvParams(stride, dilation, pad, act[0], act[1], mult, shift, depth_mult)



# ================================================================================================== writer

SCHEMA_VERSION = 3  # the schema version the TFLite converter writes and TFLite Micro expects
BUFFER_ALIGNMENT = 16  # constant data starts 16-byte aligned, as the converter lays it out: int32 biases and
#                        weights are read in place from flash on a device

# schema.fbs field order per table: the k-th field is slot k (vtable offset 4 + 2k, the `Offset(...)` in the
# `tflite` reader classes). Fields the writer never sets are listed too, so a slot is its position in the tuple.
# "ref" is a reference to a string, vector or table.
_SCHEMA = {
    "Model": (("version", "uint32"), ("operator_codes", "ref"), ("subgraphs", "ref"), ("description", "ref"),
              ("buffers", "ref")),
    "SubGraph": (("tensors", "ref"), ("inputs", "ref"), ("outputs", "ref"), ("operators", "ref"), ("name", "ref")),
    "Buffer": (("data", "ref"),),
    "Tensor": (("shape", "ref"), ("type", "int8"), ("buffer", "uint32"), ("name", "ref"), ("quantization", "ref")),
    "QuantizationParameters": (("min", "ref"), ("max", "ref"), ("scale", "ref"), ("zero_point", "ref"),
                               ("details_type", "uint8"), ("details", "ref"), ("quantized_dimension", "int32")),
    "OperatorCode": (("deprecated_builtin_code", "int8"), ("custom_code", "ref"), ("version", "int32"),
                     ("builtin_code", "int32")),
    "Operator": (("opcode_index", "uint32"), ("inputs", "ref"), ("outputs", "ref"),
                 ("builtin_options_type", "uint8"), ("builtin_options", "ref")),
    "Conv2DOptions": (("padding", "int8"), ("stride_w", "int32"), ("stride_h", "int32"),
                      ("fused_activation_function", "int8"), ("dilation_w_factor", "int32"),
                      ("dilation_h_factor", "int32")),
    "DepthwiseConv2DOptions": (("padding", "int8"), ("stride_w", "int32"), ("stride_h", "int32"),
                               ("depth_multiplier", "int32"), ("fused_activation_function", "int8"),
                               ("dilation_w_factor", "int32"), ("dilation_h_factor", "int32")),
    "FullyConnectedOptions": (("fused_activation_function", "int8"), ("weights_format", "int8"),
                              ("keep_num_dims", "bool")),
    "AddOptions": (("fused_activation_function", "int8"),),
    "Pool2DOptions": (("padding", "int8"), ("stride_w", "int32"), ("stride_h", "int32"), ("filter_width", "int32"),
                      ("filter_height", "int32"), ("fused_activation_function", "int8")),
    "ReshapeOptions": (("new_shape", "ref"),),
    "SoftmaxOptions": (("beta", "float32"),),
}
_PREPEND = {
    "ref": (flatbuffers.Builder.PrependUOffsetTRelativeSlot, 0),
    "uint32": (flatbuffers.Builder.PrependUint32Slot, 0),
    "int32": (flatbuffers.Builder.PrependInt32Slot, 0),
    "int8": (flatbuffers.Builder.PrependInt8Slot, 0),
    "uint8": (flatbuffers.Builder.PrependUint8Slot, 0),
    "bool": (flatbuffers.Builder.PrependBoolSlot, False),
    "float32": (flatbuffers.Builder.PrependFloat32Slot, 0.0),
}
_TFLITE_TYPES = {name: t for t, name in _DTYPES.items()}
_TFLITE_TYPES["int2"] = _T.INT4  # TFLite has no INT2: 2-bit filters go out as INT4 (the values fit; see int2_note)
_BUILTIN_OF = {kind: code for code, kind in _OP_KINDS.items()}
_OPTIONS_TABLE = {
    OpKind.CONV_2D: "Conv2DOptions",
    OpKind.DEPTHWISE_CONV_2D: "DepthwiseConv2DOptions",
    OpKind.FULLY_CONNECTED: "FullyConnectedOptions",
    OpKind.ADD: "AddOptions",
    OpKind.AVERAGE_POOL_2D: "Pool2DOptions",
    OpKind.MAX_POOL_2D: "Pool2DOptions",
    OpKind.RESHAPE: "ReshapeOptions",
    OpKind.SOFTMAX: "SoftmaxOptions",
}
# Operator versions as the TFLite converter numbers them for int8 activations and a bias (tools/versioning/
# op_version.cc), keyed by the filter dtype for the weighted ops. TFLite Micro picks kernels by builtin code alone
# and ignores them, but full TFLite refuses a version it does not register, so the file says what the converter would.
_OP_VERSIONS = {
    OpKind.CONV_2D: {"int8": 3, "int4": 7, "int2": 7},
    OpKind.DEPTHWISE_CONV_2D: {"int8": 3, "int4": 7, "int2": 7},
    OpKind.FULLY_CONNECTED: {"int8": 4, "int4": 10, "int2": 10},
    OpKind.ADD: 2,
    OpKind.AVERAGE_POOL_2D: 2,
    OpKind.MAX_POOL_2D: 2,
    OpKind.RESHAPE: 1,
    OpKind.SOFTMAX: 2,
}


def int2_note(graph: QGraph) -> str:
    """One line saying which 2-bit filters a .tflite of `graph` holds as INT4 ("" if none)."""
    names = [op.name for op in graph.ops if len(op.inputs) == 3 and graph.tensors[op.inputs[1]].dtype == "int2"]
    if not names:
        return ""
    return (f"note: model.tflite stores the 2-bit filters of {', '.join(names)} as INT4 (TFLite has no INT2 type; "
            f"the values and results are the same, the flash is twice the C export's)")


def save_tflite(graph: QGraph, path: str | Path) -> Path:
    """Write `graph` as a .tflite file at `path` (see write_tflite); returns the path."""
    path = Path(path)
    data = write_tflite(graph)
    if not path.parent.is_dir():
        raise UserError(f"{path}: the folder {path.parent} does not exist; create it or choose another path")
    path.write_bytes(data)
    return path


def write_tflite(graph: QGraph) -> bytes:
    """The QGraph as .tflite flatbuffer bytes that TFLite Micro runs and read_tflite reads back to the same QGraph.

    Tensor k of the QGraph is tensor k of the file. A QGraph whose integer parameters a .tflite cannot express
    (explicit padding that is neither SAME nor VALID, a clamp no fused activation gives, multipliers that do not
    follow from the scales) raises a UserError naming the op.
    """
    graph.validate()
    return _Writer(graph).model()


class _Writer:
    def __init__(self, graph: QGraph):
        self.g = graph
        self.b = flatbuffers.Builder(1 << 16)
        self.b.ForceDefaults(True)  # every field is stored as given, so no reader depends on schema defaults
        self.opcodes: dict[tuple[int, int], int] = {}  # (builtin code, version) -> index in operator_codes

    # ----------------------------------------------------------------------------------------- flatbuffers
    def table(self, table_name: str, /, **values) -> int:
        fields = _SCHEMA[table_name]
        self.b.StartObject(len(fields))
        for slot, (field, kind) in enumerate(fields):
            value = values.pop(field, None)
            if value is not None:
                prepend, default = _PREPEND[kind]
                prepend(self.b, slot, value, default)
        if values:
            raise KeyError(f"{table_name} has no field(s) {sorted(values)}")
        return self.b.EndObject()

    def numbers(self, values, dtype) -> int:
        return self.b.CreateNumpyVector(np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
                                        .reshape(-1))

    def refs(self, offsets: list[int]) -> int:
        self.b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()

    def raw(self, data: bytes) -> int:
        self.b.Prep(BUFFER_ALIGNMENT, len(data))  # so that the first data byte lands on the alignment
        return self.numbers(np.frombuffer(data, np.uint8), np.uint8)

    # ------------------------------------------------------------------------------------------------ model
    def model(self) -> bytes:
        g, b = self.g, self.b
        buffers = [self.table("Buffer")]  # buffer 0: the empty sentinel that every non-constant tensor names
        buffer_of = {}
        for k, t in enumerate(g.tensors):
            if t.data is not None:
                buffer_of[k] = len(buffers)
                buffers.append(self.table("Buffer", data=self.raw(self.tensor_bytes(t))))
        tensors = [self.tensor(t, buffer_of.get(k, 0)) for k, t in enumerate(g.tensors)]
        operators = [self.operator(i, op) for i, op in enumerate(g.ops)]
        subgraph = self.table("SubGraph", tensors=self.refs(tensors), inputs=self.numbers(g.inputs, np.int32),
                              outputs=self.numbers(g.outputs, np.int32), operators=self.refs(operators),
                              name=b.CreateString("main"))
        codes = [self.table("OperatorCode", deprecated_builtin_code=min(code, 127), version=version,
                            builtin_code=code)
                 for (code, version), _ in sorted(self.opcodes.items(), key=lambda item: item[1])]
        root = self.table("Model", version=SCHEMA_VERSION, operator_codes=self.refs(codes),
                          subgraphs=self.refs([subgraph]), description=b.CreateString("flexround-mcu"),
                          buffers=self.refs(buffers))
        b.Finish(root, file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def tensor_bytes(t: Tensor) -> bytes:
        if t.dtype in ("int4", "int2"):
            return pack_int4(t.data).tobytes()  # element 2k in the low nibble: TFLM's UnpackDenseInt4IntoInt8
        return np.ascontiguousarray(t.data, dtype=np.dtype(NUMPY_DTYPES[t.dtype]).newbyteorder("<")).tobytes()

    def tensor(self, t: Tensor, buffer: int) -> int:
        quant = self.table("QuantizationParameters", scale=self.numbers(t.scale, np.float32),
                           zero_point=self.numbers(t.zero_point, np.int64), quantized_dimension=t.quantized_dim)
        return self.table("Tensor", shape=self.numbers(t.shape, np.int32), type=_TFLITE_TYPES[t.dtype],
                          buffer=buffer, name=self.b.CreateString(t.name), quantization=quant)

    def operator(self, i: int, op: Op) -> int:
        table, fields = _OpOptions(self.g, i, op).fields()
        if "new_shape" in fields:
            fields["new_shape"] = self.numbers(fields["new_shape"], np.int32)
        options = self.table(table, **fields)
        version = _OP_VERSIONS[op.kind]
        if isinstance(version, dict):
            version = version[self.g.tensors[op.inputs[1]].dtype]
        key = (_BUILTIN_OF[op.kind], version)
        opcode = self.opcodes.setdefault(key, len(self.opcodes))
        return self.table("Operator", opcode_index=opcode, inputs=self.numbers(op.inputs, np.int32),
                          outputs=self.numbers(op.outputs, np.int32),
                          builtin_options_type=getattr(tflite.BuiltinOptions, table), builtin_options=options)


class _OpOptions:
    """One op's builtin options, found from its integer parameters, and the check that TFLite Micro's prepare step
    gives those parameters back from the file (scales, SAME/VALID, fused activation)."""

    def __init__(self, graph: QGraph, idx: int, op: Op):
        self.g, self.idx, self.op, self.p = graph, idx, op, op.params
        self.x = graph.tensors[op.inputs[0]]
        self.y = graph.tensors[op.outputs[0]]

    def error(self, msg: str) -> UserError:
        name = f" {self.op.name}" if self.op.name else ""
        return UserError(f"{self.g.name}: op {self.idx} ({self.op.kind.value}{name}) cannot be written to .tflite: "
                         f"{msg}")

    def fields(self) -> tuple[str, dict]:
        kind = self.op.kind
        table = _OPTIONS_TABLE[kind]
        if kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D):
            return table, self.conv()
        if kind == OpKind.FULLY_CONNECTED:
            self.check_multipliers()
            return table, dict(fused_activation_function=self.activation(), weights_format=0, keep_num_dims=False)
        if kind == OpKind.ADD:
            a, b = (self.g.tensors[k] for k in self.op.inputs[:2])
            derived = AddParams(**add_params(a.scale[0], b.scale[0], self.y.scale[0]),
                                act_min=self.p.act_min, act_max=self.p.act_max)
            if derived != self.p:
                raise self.error("its rescale (multiplier, shift) pairs are not the ones TFLite Micro derives from "
                                 "the input and output scales; re-derive them with prepare.add_params")
            return table, dict(fused_activation_function=self.activation())
        if kind == OpKind.RESHAPE:
            return table, dict(new_shape=list(self.y.shape))
        if kind == OpKind.SOFTMAX:
            try:
                derived = prepare_softmax(self.p.beta, self.x.scale[0])
            except ValueError as exc:
                raise self.error(str(exc)) from None
            if derived != self.p:
                raise self.error("its input multiplier, shift and diff_min are not the ones TFLite Micro derives "
                                 "from beta and the input scale; re-derive them with prepare.prepare_softmax")
            return table, dict(beta=float(self.p.beta))
        # pooling
        kh, kw = self.p.filter
        return table, dict(padding=self.padding((kh, kw), (1, 1)), stride_w=self.p.stride[1],
                           stride_h=self.p.stride[0], filter_width=kw, filter_height=kh,
                           fused_activation_function=self.activation())

    def conv(self) -> dict:
        p, w = self.p, self.g.tensors[self.op.inputs[1]]
        self.check_multipliers()
        fields = dict(padding=self.padding(w.shape[1:3], p.dilation), stride_w=p.stride[1], stride_h=p.stride[0],
                      fused_activation_function=self.activation(), dilation_w_factor=p.dilation[1],
                      dilation_h_factor=p.dilation[0])
        if self.op.kind == OpKind.DEPTHWISE_CONV_2D:
            fields["depth_multiplier"] = p.depth_multiplier
        return fields

    def activation(self) -> int:
        """The first fused activation whose clamp, as TFLM computes it for the output quantization, is the op's."""
        wanted = (int(self.p.act_min), int(self.p.act_max))
        scale, zero_point = self.y.scale[0], self.y.zero_point[0]
        for name in ACTIVATIONS:
            if activation_range(name, scale, zero_point) == wanted:
                return getattr(tflite.ActivationFunctionType, name)
        raise self.error(f"its output clamp [{wanted[0]}, {wanted[1]}] is not what any fused activation "
                         f"({', '.join(ACTIVATIONS)}) gives for the output scale {float(scale):g} and zero point "
                         f"{int(zero_point)}; clamp with one of those activations in the model")

    def padding(self, k_hw, dilation) -> int:
        pad = tuple(int(v) for v in self.p.padding)
        if pad == (0, 0, 0, 0):
            return tflite.Padding.VALID
        in_h, in_w = self.x.shape[1:3]
        top, bottom = same_padding(in_h, k_hw[0], self.p.stride[0], dilation[0])
        left, right = same_padding(in_w, k_hw[1], self.p.stride[1], dilation[1])
        if pad == (top, left, bottom, right):
            return tflite.Padding.SAME
        raise self.error(f"padding (top, left, bottom, right) = {pad} is neither VALID (0, 0, 0, 0) nor SAME "
                         f"{(top, left, bottom, right)} for input {self.x.shape[1:3]}, window {tuple(k_hw)}, stride "
                         f"{tuple(self.p.stride)}; a .tflite can only say SAME or VALID, so give the layer one of "
                         f"those paddings")

    def check_multipliers(self) -> None:
        w = self.g.tensors[self.op.inputs[1]]
        qdim = 3 if self.op.kind == OpKind.DEPTHWISE_CONV_2D else 0
        if w.per_channel and w.quantized_dim != qdim:
            raise self.error(f"filter {w.name} is quantized along dimension {w.quantized_dim}; TFLite Micro needs "
                             f"the output-channel dimension {qdim}")
        mult, shift = conv_multipliers(self.x.scale[0], w.scale, self.y.scale[0])
        ours_m, ours_s = np.atleast_1d(self.p.multiplier), np.atleast_1d(self.p.shift)
        if mult.size == 1 and ours_m.size > 1:  # per-tensor conv: the QGraph repeats the pair per channel
            mult, shift = np.repeat(mult, ours_m.size), np.repeat(shift, ours_m.size)
        if not (np.array_equal(mult, ours_m) and np.array_equal(shift, ours_s)):
            raise self.error("its (multiplier, shift) pairs are not the ones TFLite Micro derives from the input, "
                             "filter and output scales; re-derive them with prepare.conv_multipliers")
