"""Export a QGraph as a self-contained C project: weights, a static-arena model, test data and a test harness.

TFLM's prepare step happens here, in Python: every kernel parameter (offsets, per-channel multiplier and shift
tables, padding, dims, activation range) becomes a `static const` struct or a `const` array, and
`frk_model_invoke` is a straight list of kernel calls on fixed arena offsets. The output is deterministic: the
same graph and data give byte-identical files (no timestamps, no float formatting, graph order throughout).

The project is written into a temporary folder next to `out_dir` and renamed into place only when complete.
Every project carries the board files (boards/: startup, semihosting, linker scripts) and a Makefile for every
target of flexround_mcu/toolchain/targets.py; `target` only picks the default TARGET (recorded in project.json).
memory.txt holds the memory report (weight bytes per layer against their floor, the arena plan).

int4 and int2 filters (Tensor dtypes "int4" / "int2", values held unpacked in the QGraph) are written packed, two or
four values per byte (CMSIS-NN's s4 layout and our s2 one, flexround_mcu/packing.py), as `const uint8_t` arrays of
packed_size(count, bits) bytes, and their ops
call the frk_*_s4 / frk_*_s2 kernels; the memory report counts those packed bytes.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..resources import KERNELS_DIR, TEMPLATES_DIR
from ..packing import PACKED_BITS, pack_filter, packed_size
from ..ir import OpKind, QGraph
from ..toolchain import targets as _targets
from .arena import ArenaPlan, plan_arena
from .inplace import band_offset
from .kernels import KERNEL_SETS, plan_kernels

PACKAGE_DIR = Path(__file__).resolve().parents[1]
MARKER = ".flexround-mcu-project"
MARKER_TEXT = "flexround-mcu C project: export_c_project() may replace this folder.\n"
TARGETS = tuple(_targets.TARGETS)  # host, cortex-m4, cortex-m7, cortex-m55: the table in toolchain/targets.py
PROJECT_FILE = "project.json"
MEMORY_FILE = "memory.txt"
VALUES_PER_LINE = 16
ARENA_ALIGNMENT = 16

# Files rendered from flexround_mcu/templates/<name>.j2, in this order (output path -> template).
TEMPLATE_FILES = {"weights.h": "weights.h", "weights.c": "weights.c", "model.h": "model.h", "model.c": "model.c",
                  "test_data.h": "test_data.h", "test_data.c": "test_data.c", "main.c": "main.c",
                  "Makefile": "Makefile", "CMakeLists.txt": "CMakeLists.txt",
                  "cmake/arm-none-eabi.cmake": "arm-none-eabi.cmake", "README.txt": "README.txt"}
# What a library-only export (harness=False) leaves out: the test harness, its data and the QEMU board files.
HARNESS_FILES = ("test_data.h", "test_data.c", "main.c")

_KIND_SHORT = {
    OpKind.CONV_2D: "conv",
    OpKind.DEPTHWISE_CONV_2D: "dwconv",
    OpKind.FULLY_CONNECTED: "fc",
    OpKind.ADD: "add",
    OpKind.AVERAGE_POOL_2D: "avgpool",
    OpKind.MAX_POOL_2D: "maxpool",
    OpKind.RESHAPE: "reshape",
    OpKind.SOFTMAX: "softmax",
}
# The C element type of each constant dtype; int4 / int2 tensors are written packed, two / four values per byte.
_CTYPES = {"int8": "int8_t", "int4": "uint8_t", "int2": "uint8_t", "int32": "int32_t"}
_CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int32_t": 4}
_INT32_MIN = -(1 << 31)


# ------------------------------------------------------------------------------------------------ C helpers
def c_identifier(text: str) -> str:
    """A valid C identifier from any text: other characters become '_', a leading digit gets a '_' prefix."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", text) or "_"
    return "_" + s if s[0].isdigit() else s


def c_comment(text: str) -> str:
    """Text safe inside /* ... */: printable ASCII only, no comment delimiters, no trigraphs, one line."""
    s = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(text))
    s = s.replace("*/", "* /").replace("/*", "/ *")
    while "??" in s:
        s = s.replace("??", "? ?")
    return s


def c_int(v: int) -> str:
    v = int(v)
    return "(-2147483647 - 1)" if v == _INT32_MIN else str(v)


def format_values(values: np.ndarray, per_line: int = VALUES_PER_LINE, indent: str = "    ") -> str:
    """C initializer lines: `per_line` right-aligned values each, comma separated (trailing comma allowed)."""
    flat = np.asarray(values).reshape(-1).astype(np.int64)
    if flat.size == 0:
        return indent + "0"
    width = max(len(c_int(flat.min())), len(c_int(flat.max())))
    items = [c_int(v).rjust(width) for v in flat.tolist()]
    return "\n".join(indent + ", ".join(items[i:i + per_line]) + ","
                     for i in range(0, len(items), per_line))


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _call(fn: str, args: list[str], indent: str = "    ", width: int = 116) -> str:
    """`fn(args);` on one line, or wrapped with continuation lines aligned after the parenthesis."""
    one = f"{indent}{fn}({', '.join(args)});"
    if len(one) <= width:
        return one
    lines, cur = [], f"{indent}{fn}("
    pad = " " * len(cur)
    for i, a in enumerate(args):
        piece = a + (");" if i == len(args) - 1 else ",")
        if cur.strip() and not cur.endswith("(") and len(cur) + 1 + len(piece) > width:
            lines.append(cur)
            cur = pad + piece
        else:
            cur += ("" if cur.endswith("(") else " ") + piece
    lines.append(cur)
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- the C model
@dataclass
class CArray:
    name: str
    ctype: str
    values: np.ndarray
    comment: str
    align: int = 4
    op: int = -1      # the op that first uses it (shared constants count for the first op only)
    role: str = ""    # filter, bias, multiplier, shift or constant

    @property
    def nbytes(self) -> int:
        """Bytes the C array takes (padding for alignment not included)."""
        return self.length * _CTYPE_BYTES[self.ctype]

    @property
    def length(self) -> int:
        return max(int(self.values.size), 1)

    @property
    def body(self) -> str:
        return format_values(self.values)


@dataclass
class COp:
    index: int
    kind: str
    comment: str
    decls: list[str] = field(default_factory=list)
    statement: str = ""
    kernel: str = ""                               # the function the statement calls ("" for none)
    args: list[str] = field(default_factory=list)  # its arguments


class _Lowering:
    """Turns a QGraph plus its arena plan into C arrays, parameter structs and one statement per op."""

    def __init__(self, graph: QGraph, plan: ArenaPlan, choices):
        self.g, self.plan = graph, plan
        self.choices = choices
        self.scratch_bytes = max([c.scratch_bytes for c in self.choices] + [plan.band_scratch, 0])
        self.arrays: list[CArray] = []
        self.const_names: dict[int, str] = {}
        self.names: set[str] = set()
        self.producer = {op.outputs[0]: k for k, op in enumerate(graph.ops)}
        self.band_of = {f.output: f for f in plan.fusions}
        self.current_op = -1
        self.ops = [self.lower(k, op) for k, op in enumerate(graph.ops)]
        for f in plan.fusions:
            self.fuse(f)
        for r in plan.rings:
            self.ring(r)

    # names and pointers
    def root(self, t: int) -> int:
        while t in self.producer and self.g.ops[self.producer[t]].kind == OpKind.RESHAPE:
            t = self.g.ops[self.producer[t]].inputs[0]
        return t

    def add_array(self, name: str, ctype: str, values: np.ndarray, comment: str, role: str = "constant") -> str:
        name = c_identifier(name)
        base, n = name, 2
        while name in self.names:
            name, n = f"{base}_{n}", n + 1
        self.names.add(name)
        self.arrays.append(CArray(name, ctype, np.asarray(values), c_comment(comment), op=self.current_op,
                                  role=role))
        return name

    def const_tensor(self, t: int, name: str, role: str = "constant") -> str:
        """The C array of constant tensor t, emitted once (named after the first op that uses it); int4 / int2
        values packed two / four per byte."""
        if t not in self.const_names:
            tensor = self.g.tensors[t]
            comment = f"tensor {t}: {tensor.name} {tensor.dtype} [{_shape(tensor.shape)}]"
            values = tensor.data
            if tensor.dtype in PACKED_BITS:
                values = pack_filter(tensor.data, tensor.dtype)
                per_byte = {"int4": "two", "int2": "four"}[tensor.dtype]
                comment += (f", {tensor.size} values packed {per_byte} per byte (lowest bits first) in "
                            f"{values.size} bytes")
            self.const_names[t] = self.add_array(name, _CTYPES[tensor.dtype], values, comment, role)
        return self.const_names[t]

    def ptr(self, t: int, op_name: str, role: str) -> str:
        r = self.root(t)
        if r in self.g.inputs:
            return "input"
        if self.g.tensors[r].is_constant:
            return self.const_tensor(r, f"{op_name}_{role}")
        if r in self.band_of:
            return "band"  # a fused conv's output: the band buffer in scratch (fuse)
        return f"frk_arena + {self.plan.offsets[t]}"

    def _band_args(self, op: COp, out: str) -> list[str]:
        """A conv statement's arguments for one band (the locals of frk_conv_rows), writing to `out`."""
        args = list(op.args)
        args[0], args[4], args[5], args[9], args[10] = ("&band_params", "&band_input", f"{op.args[5]} + at",
                                                        "&band_output", out)
        return args

    def _band_view(self, k: int, rows: int) -> list[str]:
        return ["            frk_conv_params band_params;",
                "            frk_dims band_input, band_output;",
                f"            const int32_t at = frk_conv_rows(&op{k}_params, &op{k}_input_dims, &op{k}_output_dims, "
                f"row, {rows},",
                "                                             &band_params, &band_input, &band_output);"]

    def ring(self, r) -> None:
        """Op r.op computed r.rows output rows at a time into a ring of r.bands bands in scratch, band j copied to
        the output once band j + r.bands - 1 is done (codegen/inplace.py Ring)."""
        op = self.ops[r.op]
        _, out_h, out_w, out_c = self.g.tensors[r.output].shape
        row_bytes = out_w * out_c
        n_bands = -(-out_h // r.rows)
        ring_at = band_offset(self.choices[r.op].scratch_bytes)
        y_ptr = op.args[10]
        body = [
            f"    {{ /* op {r.op}: {op.kind}, {r.rows} output row(s) a band into a ring of {r.bands} in scratch, each "
            f"band copied to its place once the {r.bands - 1} after it are done (memory.txt) */",
            f"        int8_t *const ring = frk_scratch + {ring_at};",
            "        int32_t band;",
            f"        for (band = 0; band < {n_bands + r.bands - 1}; ++band) {{",
            f"            const int32_t row = band * {r.rows}, copy = band - {r.bands - 1};",
            f"            if (band < {n_bands}) {{",
            *["    " + line for line in self._band_view(r.op, r.rows)],
            _call(op.kernel, self._band_args(op, f"ring + band % {r.bands} * {r.band_bytes}"),
                  indent="                "),
            "            }",
            "            if (copy >= 0) {",
            f"                const int32_t left = {out_h} - copy * {r.rows};",
            f"                memcpy({y_ptr} + copy * {r.band_bytes}, ring + copy % {r.bands} * {r.band_bytes},",
            f"                       (size_t)(left < {r.rows} ? left : {r.rows}) * {row_bytes});",
            "            }",
            "        }",
            "    }"]
        op.statement = "\n".join(body)

    def fuse(self, f) -> None:
        """The conv of `f` and its ADD as one loop over bands of `f.rows` output rows (codegen/inplace.py): the conv
        computes a band into scratch after its kernel's own scratch, the ADD adds it to the same rows of the
        residual and writes the sum over them."""
        conv, add = self.ops[f.conv], self.ops[f.add]
        y = self.g.tensors[f.output]
        _, out_h, out_w, out_c = y.shape
        k = f.conv
        band_at = band_offset(self.choices[k].scratch_bytes)
        row_bytes = out_w * out_c
        cargs = self._band_args(conv, "band")
        res = self.ptr(f.residual, "", "")
        aargs = [f"{res} + done" if a == res else a for a in add.args]
        aargs[3] = "n"
        aargs[4] = f"{self.ptr(self.g.ops[f.add].outputs[0], '', '')} + done"
        body = [
            f"    {{ /* op {k} + op {f.add}: {conv.kind} fused with ADD, {f.rows} output row(s) a band (memory.txt) */",
            f"        int8_t *const band = frk_scratch + {band_at};",
            "        int32_t row;",
            f"        for (row = 0; row < {out_h}; row += {f.rows}) {{",
            *self._band_view(k, f.rows),
            f"            const int32_t n = band_output.h * {row_bytes}, done = row * {row_bytes};",
            _call(conv.kernel, cargs, indent="            "),
            _call(add.kernel, aargs, indent="            "),
            "        }",
            "    }"]
        conv.statement = "\n".join(body)
        add.statement = f"    /* computed with op {k}, a band at a time */"

    # ops
    def lower(self, k: int, op) -> COp:
        g, p = self.g, op.params
        self.current_op = k
        x = g.tensors[op.inputs[0]]
        y = g.tensors[op.outputs[0]]
        short = _KIND_SHORT[op.kind]
        name = f"op{k}_{short}"
        shapes = f"[{_shape(x.shape)}] -> [{_shape(y.shape)}]"
        if op.kind == OpKind.ADD:
            shapes = f"[{_shape(x.shape)}] + [{_shape(g.tensors[op.inputs[1]].shape)}] -> [{_shape(y.shape)}]"
        c = COp(k, op.kind.value, c_comment(f"op {k}: {op.kind.value} {shapes}"))
        label = c_comment(f"op {k}: {op.kind.value}" + (f" ({op.name})" if op.name else ""))
        x_ptr = self.ptr(op.inputs[0], name, "input")
        y_ptr = self.ptr(op.outputs[0], name, "output")
        zp_in, zp_out = int(x.zero_point[0]), int(y.zero_point[0])

        if op.kind in (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED):
            w_idx, b_idx = op.inputs[1], op.inputs[2]
            w = g.tensors[w_idx]
            choice = self.choices[k]
            kernel = choice.name  # QGraph.validate admits int8, int4 and int2 filters only
            if choice.fast:
                # The fast kernel's own layout of this filter and the bias with the input offset folded in
                # (docs/arithmetic.md 6): arrays of this op alone, even where the tensor is shared.
                filt = self.add_array(f"{name}_filter", _CTYPES[w.dtype], choice.filter_values,
                                      f"tensor {w_idx}: {w.name} {w.dtype} [{_shape(w.shape)}] in the layout of "
                                      f"{kernel} ({choice.filter_values.size} bytes)", "filter")
                bias = self.add_array(f"{name}_kernel_bias", "int32_t", choice.kernel_bias,
                                      f"op {k}: bias + input_offset * sum(w) per output channel", "bias")
            else:
                filt = self.const_tensor(w_idx, f"{name}_filter", "filter")
                bias = self.const_tensor(b_idx, f"{name}_bias", "bias") if b_idx != -1 else "NULL"
            tail = (["frk_scratch" if choice.scratch_bytes else "NULL"] if choice.fast else [])
            mult = np.atleast_1d(np.asarray(p.multiplier, dtype=np.int64))
            shift = np.atleast_1d(np.asarray(p.shift, dtype=np.int64))
            # One pair for all channels (per-tensor weights; the QGraph repeats it for conv ops) is written once
            # and the kernel told per_channel = 0: C_out - 1 copies of it would be flash for nothing.
            if np.all(mult == mult[0]) and np.all(shift == shift[0]):
                mult, shift = mult[:1], shift[:1]
            per_channel = str(int(mult.size > 1))
            m_name = self.add_array(f"{name}_multiplier", "int32_t", mult, f"op {k}: requantization multipliers",
                                    "multiplier")
            s_name = self.add_array(f"{name}_shift", "int32_t", shift, f"op {k}: requantization shifts", "shift")
            if op.kind == OpKind.FULLY_CONNECTED:
                depth = w.shape[1]
                batch = x.size // depth
                c.decls.append(_struct("frk_fc_params", f"op{k}_params", label, [
                    ("input_offset", -zp_in), ("output_offset", zp_out),
                    ("act_min", p.act_min), ("act_max", p.act_max)]))
                c.statement = _call(kernel, [
                    f"&op{k}_params", m_name, s_name, per_channel, str(batch), str(depth), x_ptr, filt, bias,
                    str(w.shape[0]), y_ptr] + tail)
                return c
            c.decls.append(_struct("frk_conv_params", f"op{k}_params", label, [
                ("input_offset", -zp_in), ("output_offset", zp_out),
                ("stride_h", p.stride[0]), ("stride_w", p.stride[1]),
                ("dilation_h", p.dilation[0]), ("dilation_w", p.dilation[1]),
                ("pad_top", p.padding[0]), ("pad_left", p.padding[1]),
                ("act_min", p.act_min), ("act_max", p.act_max),
                ("depth_multiplier", p.depth_multiplier if op.kind == OpKind.DEPTHWISE_CONV_2D else 1)]))
            c.decls += [_dims(f"op{k}_input_dims", x.shape), _dims(f"op{k}_filter_dims", w.shape),
                        _dims(f"op{k}_output_dims", y.shape)]
            c.kernel, c.args = kernel, [f"&op{k}_params", m_name, s_name, per_channel, f"&op{k}_input_dims", x_ptr,
                                        f"&op{k}_filter_dims", filt, bias, f"&op{k}_output_dims", y_ptr] + tail
            c.statement = _call(c.kernel, c.args)
            return c

        if op.kind == OpKind.ADD:
            x2 = g.tensors[op.inputs[1]]
            x2_ptr = self.ptr(op.inputs[1], name, "input2")
            choice = self.choices[k]
            c.decls.append(_struct("frk_add_params", f"op{k}_params", label, [
                ("input1_offset", -zp_in), ("input1_multiplier", p.input1_multiplier),
                ("input1_shift", p.input1_shift),
                ("input2_offset", -int(x2.zero_point[0])), ("input2_multiplier", p.input2_multiplier),
                ("input2_shift", p.input2_shift),
                ("left_shift", p.left_shift),
                ("output_offset", zp_out), ("output_multiplier", p.output_multiplier),
                ("output_shift", p.output_shift),
                ("act_min", p.act_min), ("act_max", p.act_max)]))
            if choice.table is not None:  # the dsp ADD (docs/arithmetic.md 6.4)
                table = self.add_array(f"{name}_table", "int32_t", choice.table,
                                       f"op {k}: 2 * rescaled input {'1' if choice.swap_inputs else '2'} + the "
                                       f"other input's offset * 2^20, by byte")
                first, second = (x2_ptr, x_ptr) if choice.swap_inputs else (x_ptr, x2_ptr)
                c.args = [f"&op{k}_params", first, second, str(y.size), y_ptr, table]
            else:
                c.args = [f"&op{k}_params", x_ptr, x2_ptr, str(y.size), y_ptr]
            c.kernel = choice.name
            c.statement = _call(c.kernel, c.args)
            return c

        if op.kind in (OpKind.AVERAGE_POOL_2D, OpKind.MAX_POOL_2D):
            c.decls.append(_struct("frk_pool_params", f"op{k}_params", label, [
                ("stride_h", p.stride[0]), ("stride_w", p.stride[1]),
                ("pad_top", p.padding[0]), ("pad_left", p.padding[1]),
                ("act_min", p.act_min), ("act_max", p.act_max)]))
            c.decls += [_dims(f"op{k}_input_dims", x.shape), _dims(f"op{k}_output_dims", y.shape)]
            c.statement = _call(self.choices[k].name, [f"&op{k}_params", f"&op{k}_input_dims", x_ptr, str(p.filter[0]),
                                     str(p.filter[1]), f"&op{k}_output_dims", y_ptr])
            return c

        if op.kind == OpKind.SOFTMAX:
            depth = y.shape[-1]
            c.decls.append(_struct("frk_softmax_params", f"op{k}_params", label, [
                ("input_multiplier", p.input_multiplier), ("input_left_shift", p.input_left_shift),
                ("diff_min", p.diff_min)]))
            call = _call("frk_softmax_s8", [f"&op{k}_params", str(y.size // depth), str(depth), x_ptr, y_ptr],
                         indent="")
            c.statement = f"    if ({call[:-1]} != 0) {{\n        return -1; /* softmax out of range */\n    }}"
            return c

        if op.kind == OpKind.RESHAPE:
            where = "the caller's input" if x_ptr == "input" else x_ptr
            c.statement = f"    /* no code: the output aliases the input bytes ({c_comment(where)}) */"
            return c
        raise NotImplementedError(op.kind)  # unreachable: QGraph.validate admits only the kinds above


def kernel_table(graph: QGraph, choices) -> str:
    """One line per op that runs a kernel: op, kind, kernel, and why a dsp export kept the portable one."""
    lines = []
    for k, (op, choice) in enumerate(zip(graph.ops, choices)):
        if choice.name:
            why = f" (portable: {choice.reason})" if choice.reason else ""
            lines.append(f"op {k}: {op.kind.value} -> {choice.name}{why}")
    return "\n".join(lines)


def _struct(ctype: str, name: str, comment: str, fields: list[tuple[str, int]]) -> str:
    body = "\n".join(f"    .{f} = {c_int(v)}," for f, v in fields)
    return f"/* {comment} */\nstatic const {ctype} {name} = {{\n{body}\n}};"


def _dims(name: str, shape) -> str:
    n, h, w, ch = (int(d) for d in shape)
    return f"static const frk_dims {name} = {{ .n = {n}, .h = {h}, .w = {w}, .c = {ch} }};"


# --------------------------------------------------------------------------------------------- memory report
_WEIGHTED = (OpKind.CONV_2D, OpKind.DEPTHWISE_CONV_2D, OpKind.FULLY_CONNECTED)


@dataclass(frozen=True)
class LayerWeights:
    """The flash one op's constant arrays take (as written to weights.c) and its floor.

    filter_bytes is the filter array as written: 1 byte per int8 weight, or the packed bytes of an int4 / int2
    filter (packed_size(filter_values, bits) = ceil(filter_values / 2) / ceil(filter_values / 4)). floor: the filter at that size, 4 bytes per int32
    bias, and 8 (an int32 multiplier and an int32 shift) per requantization channel: per output channel for
    per-channel weights, once for per-tensor weights. filter_dtype / filter_values: the op's filter tensor
    ("int8", "int4" or "int2", its element count); "" and 0 for an op without a filter of its own. bits: the
    layer's weight bits (the quantizer's, from the graph's metadata: a 3-bit layer is an int4 filter), 0 without
    a filter.
    """

    op: int
    kind: str
    name: str
    filter_bytes: int
    bias_bytes: int
    table_bytes: int      # multiplier + shift arrays
    other_bytes: int      # other constants (e.g. a constant ADD operand)
    floor_bytes: int
    arrays: tuple[str, ...]
    filter_dtype: str = ""
    filter_values: int = 0
    bits: int = 0

    @property
    def total_bytes(self) -> int:
        return self.filter_bytes + self.bias_bytes + self.table_bytes + self.other_bytes


@dataclass(frozen=True)
class MemoryReport:
    """Weight bytes per layer, the activation arena plan, and both against their floors."""

    model: str
    layers: tuple[LayerWeights, ...]
    arena: ArenaPlan
    scratch: tuple[tuple[int, str, int], ...] = ()  # (op, kernel, bytes) of each op that needs scratch

    @property
    def scratch_bytes(self) -> int:
        """The one frk_scratch buffer of model.c: the largest need of any op (0: none, and no buffer)."""
        return max([b for _, _, b in self.scratch] + [0])

    @property
    def weight_bytes(self) -> int:
        return sum(layer.total_bytes for layer in self.layers)

    @property
    def weight_floor_bytes(self) -> int:
        return sum(layer.floor_bytes for layer in self.layers)

    @property
    def weight_arrays(self) -> tuple[str, ...]:
        return tuple(a for layer in self.layers for a in layer.arrays)

    def to_dict(self) -> dict:
        return {
            "weight_bytes": self.weight_bytes,
            "weight_floor_bytes": self.weight_floor_bytes,
            "arena_bytes": self.arena.arena_size,
            "arena_floor_bytes": self.arena.floor,
            "arena_without_inplace_bytes": self.arena.arena_without_inplace,
            "shared_memory": self.arena.sharing_lines(),
            "scratch_bytes": self.scratch_bytes,
            "layers": [{"op": la.op, "kind": la.kind, "name": la.name, "bits": la.bits or None,
                        "filter_dtype": la.filter_dtype,
                        "filter_values": la.filter_values, "filter_bytes": la.filter_bytes,
                        "bias_bytes": la.bias_bytes, "table_bytes": la.table_bytes, "other_bytes": la.other_bytes,
                        "total_bytes": la.total_bytes, "floor_bytes": la.floor_bytes} for la in self.layers],
        }

    def text(self) -> str:
        """The report as fixed-width text (memory.txt of an exported project)."""
        head = (f"{'op':>4}  {'kind':<17}  {'bits':>4}  {'dtype':<5}  {'filter':>8}  {'bias':>7}  {'tables':>7}  "
                f"{'other':>6}  {'total':>8}  {'floor':>8}  name")
        rule = "-" * (len(head) + 44)
        out = [f"Memory report: {self.model}", "",
               "Weights in flash (the const arrays of weights.c), bytes per layer",
               head, rule]
        for la in self.layers:
            out.append(f"{la.op:>4}  {la.kind:<17}  {la.bits or '-':>4}  {la.filter_dtype or '-':<5}  "
                       f"{la.filter_bytes:>8}  {la.bias_bytes:>7}  {la.table_bytes:>7}  {la.other_bytes:>6}  {la.total_bytes:>8}  "
                       f"{la.floor_bytes:>8}  {_tail(la.name, 48)}")
        tot = lambda f: sum(getattr(la, f) for la in self.layers)  # noqa: E731
        out += [rule,
                f"{'':>4}  {'total':<17}  {'':>4}  {'':<5}  {tot('filter_bytes'):>8}  {tot('bias_bytes'):>7}  "
                f"{tot('table_bytes'):>7}  {tot('other_bytes'):>6}  {self.weight_bytes:>8}  "
                f"{self.weight_floor_bytes:>8}",
                "filter: int8 weights one per byte, int4 (3- and 4-bit) weights packed two per byte (CMSIS-NN s4 "
                "layout), int2 weights four per byte (docs/arithmetic.md 1);",
                "floor: 1 byte per int8 weight, a half / a quarter byte per int4 / int2 weight (rounded up per "
                "tensor), 4 per int32 "
                "bias, 8 per requantization channel (int32 multiplier and shift);",
                f"weights / floor = {_ratio(self.weight_bytes, self.weight_floor_bytes)} "
                f"(the firmware adds up to 3 bytes of alignment per 1-byte array)",
                "",
                "Activation arena (RAM): which tensor lives where (offset) and when (first and last op)",
                self.arena.table(),
                "",
                f"peak arena {self.arena.arena_size} bytes, floor {self.arena.floor} bytes (the largest sum of "
                f"tensors alive at one op, no op writing over its input): peak / floor = "
                f"{_ratio(self.arena.arena_size, self.arena.floor)}; the plan without in-place or fusion: "
                f"{self.arena.arena_without_inplace or self.arena.arena_size} bytes",
                "in place: an output placed over the input its op reads last, at a shift the kernel's access order "
                "makes safe (codegen/inplace.py: every step's writes end below every later step's reads);",
                "fused: a conv and the residual ADD after it run a band of rows at a time (docs/arithmetic.md 8);",
                "ring: an op computes rows into a ring in scratch and copies each over its input once no later row "
                "reads it (only under --ram-budget)",
                "",
                "Scratch (RAM): frk_scratch, one buffer the fast kernels share, the size of the largest need"]
        out += [f"  op {k:>3}  {kernel:<52} {n:>8} bytes" for k, kernel, n in self.scratch] or ["  none"]
        out += [f"scratch {self.scratch_bytes} bytes; arena + scratch {self.arena.arena_size + self.scratch_bytes} "
                f"bytes (the board's statics and stack come on top: report.json memory.ram_split)"]
        return "\n".join(out) + "\n"


def _tail(name: str, width: int) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.4f}" if b else "n/a"


def _memory_report(graph: QGraph, plan: ArenaPlan, low: "_Lowering") -> MemoryReport:
    layers = []
    for k, op in enumerate(graph.ops):
        arrays = [a for a in low.arrays if a.op == k]
        if not arrays:
            continue
        by_role = lambda *roles: sum(a.nbytes for a in arrays if a.role in roles)  # noqa: E731
        floor = by_role("constant")
        filter_dtype, filter_values, bits = "", 0, 0
        if op.kind in _WEIGHTED:
            w = graph.tensors[op.inputs[1]]
            owned = {a.role for a in arrays}
            if "filter" in owned:
                filter_dtype, filter_values = w.dtype, int(w.size)
                bits = int(graph.metadata.get("bits", {}).get(op.name, PACKED_BITS.get(w.dtype, 8)))
                floor += packed_size(w.size, PACKED_BITS[w.dtype]) if w.dtype in PACKED_BITS else int(w.size)
            if "bias" in owned:
                floor += 4 * int(graph.tensors[op.inputs[2]].size)
            floor += 8 * max(int(np.size(w.scale)), 1)
        layers.append(LayerWeights(k, op.kind.value, c_comment(op.name or ""), by_role("filter"), by_role("bias"),
                                   by_role("multiplier", "shift"), by_role("constant"), floor,
                                   tuple(a.name for a in arrays), filter_dtype, filter_values, bits))
    fused = {f.conv: f for f in plan.fusions}
    rings = {r.op: r for r in plan.rings}
    scratch = []
    for k, ch in enumerate(low.choices):
        f, r = fused.get(k), rings.get(k)
        if f is not None:  # the kernel's own scratch, then the band the ADD reads (_Lowering.fuse)
            scratch.append((k, f"{ch.name} + {f.rows}-row band", f.scratch_bytes(ch.scratch_bytes)))
        elif r is not None:  # the kernel's own scratch, then the ring (_Lowering.ring)
            scratch.append((k, f"{ch.name} + ring of {r.bands} x {r.rows} row(s)",
                            r.scratch_bytes(ch.scratch_bytes)))
        elif ch.scratch_bytes:
            scratch.append((k, ch.name, ch.scratch_bytes))
    return MemoryReport(c_comment(graph.name), tuple(layers), plan, tuple(scratch))


def _kernel_set(target: str, kernels: str | None) -> str:
    if kernels is None:
        return _targets.get_target(target).kernels
    if kernels not in KERNEL_SETS:
        raise UserError(f"unknown kernel set {kernels!r}: choose one of {', '.join(KERNEL_SETS)}")
    return kernels


def memory_report(graph: QGraph, target: str = "host", kernels: str | None = None,
                  ram_budget: int | None = None) -> MemoryReport:
    """The memory report of `graph` as export_c_project writes it for `target` (weights per layer in the layouts
    of the target's kernels, arena plan, floors)."""
    _check_graph(graph)
    return _memory_report(graph, *_plan(graph, _kernel_set(target, kernels), ram_budget))


def _plan(graph: QGraph, kernels: str, ram_budget: int | None = None) -> tuple[ArenaPlan, _Lowering]:
    """The kernels of every op, the arena plan their access orders allow (within ram_budget bytes of arena +
    scratch, if given), and the C model of both."""
    choices = plan_kernels(graph, kernels)
    plan = plan_arena(graph, ARENA_ALIGNMENT, [c.name for c in choices], [c.scratch_bytes for c in choices],
                      ram_budget)
    return plan, _Lowering(graph, plan, choices)


# ---------------------------------------------------------------------------------------------- the export
def _check_graph(graph: QGraph) -> None:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UserError(f"{graph.name}: the C export needs exactly one graph input and one output, got "
                        f"{len(graph.inputs)} and {len(graph.outputs)}")
    for role, t in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        tensor = graph.tensors[t]
        if tensor.dtype != "int8" or tensor.is_constant:
            raise UserError(f"{graph.name}: graph {role} tensor {t} ({tensor.name}) must be an int8 activation, "
                            f"got {tensor.dtype}{' constant' if tensor.is_constant else ''}")
        if tensor.shape[0] != 1:
            raise UserError(f"{graph.name}: graph {role} tensor {t} ({tensor.name}) has batch {tensor.shape[0]}; "
                            f"the C export runs one input per invoke: export the model with batch 1")


def _check_data(graph: QGraph, test_inputs, expected_outputs) -> tuple[np.ndarray, np.ndarray]:
    t_in, t_out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    x, y = np.asarray(test_inputs), np.asarray(expected_outputs)
    for what, arr, t in (("test_inputs", x, t_in), ("expected_outputs", y, t_out)):
        if arr.dtype != np.int8:
            raise UserError(f"{what} must be int8, got {arr.dtype}")
        shapes = {(t.size,), tuple(t.shape[1:])}
        if arr.ndim < 2 or len(arr) == 0 or tuple(arr.shape[1:]) not in shapes:
            raise UserError(f"{what} must have shape (N, {t.size}) or (N, {', '.join(map(str, t.shape[1:]))}) "
                            f"with N >= 1 for tensor {t.name}, got {tuple(arr.shape)}")
    if len(x) != len(y):
        raise UserError(f"test_inputs has {len(x)} inputs but expected_outputs has {len(y)} rows: pass one "
                        f"expected output per input")
    return x.reshape(len(x), -1), y.reshape(len(y), -1)


def _kernel_files() -> list[Path]:
    header = KERNELS_DIR / "frk_nn.h"
    sources = sorted(KERNELS_DIR.glob("frk_*.c"))
    if not header.is_file() or not sources:
        raise UserError(f"kernel sources not found in {KERNELS_DIR} (need frk_nn.h and frk_*.c): "
                        f"reinstall flexround-mcu (its firmware/kernels/ folder is incomplete)")
    return sorted(set(KERNELS_DIR.glob("frk_*.h")) | {header}) + sources


def _check_destination(out_dir: Path, force: bool) -> None:
    if not os.path.lexists(out_dir):
        return
    ours = out_dir.is_dir() and not out_dir.is_symlink() and (out_dir / MARKER).is_file()
    if ours:
        return
    if not force:
        raise UserError(f"{out_dir} already exists and is not a flexround-mcu C project (no {MARKER} in it): "
                        f"choose another folder, or pass force=True to replace it")
    resolved = out_dir.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve() or resolved in PACKAGE_DIR.parents \
            or resolved == PACKAGE_DIR:
        raise UserError(f"refusing to replace {out_dir}: it is the file system root, the home folder or holds "
                        f"flexround-mcu itself; choose a dedicated output folder")


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              autoescape=False)


def render_project(graph: QGraph, test_inputs: np.ndarray | None, expected_outputs: np.ndarray | None,
                   target: str = "host", kernels: str | None = None,
                   ram_budget: int | None = None, harness: bool = True) -> dict[str, bytes]:
    """The generated files (relative path -> bytes), kernels included, without writing anything.

    kernels: "portable" or "dsp" (codegen/kernels.py); default: the target's (dsp on the Cortex-M boards).
    harness=False: the model as a library only (model, weights, kernels, Makefile / CMakeLists.txt building
    libfrk_model.a): no test harness, no test data, no board files; test_inputs and expected_outputs are unused.
    The files both variants hold are byte for byte the same."""
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    kernels = _kernel_set(target, kernels)
    _check_graph(graph)
    if harness:
        x, y = _check_data(graph, test_inputs, expected_outputs)
    else:
        x = y = np.zeros((0, 0), np.int8)
    kernel_files = _kernel_files()
    boards = _targets.board_files() if harness else []
    plan, low = _plan(graph, kernels, ram_budget)
    t_in, t_out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    out_ptr = low.ptr(graph.outputs[0], "model", "output")
    model_name = c_comment(graph.name)
    ctx = dict(
        model_name=model_name,
        c_model_name=c_identifier(graph.name),
        harness=harness,
        num_ops=len(graph.ops),
        input_size=t_in.size, output_size=t_out.size,
        input_desc=c_comment(f"tensor {graph.inputs[0]} ({t_in.name}) [{_shape(t_in.shape)}] int8, "
                             f"zero point {int(t_in.zero_point[0])}"),
        output_desc=c_comment(f"tensor {graph.outputs[0]} ({t_out.name}) [{_shape(t_out.shape)}] int8, "
                              f"zero point {int(t_out.zero_point[0])}"),
        input_zero_point=int(t_in.zero_point[0]), output_zero_point=int(t_out.zero_point[0]),
        arena_size=plan.arena_size, arena_floor=plan.floor, arena_alignment=plan.alignment,
        arena_table=[c_comment(line) for line in plan.table().splitlines()],
        arrays=low.arrays, ops=low.ops, output_ptr=out_ptr,
        kernels=kernels, scratch_bytes=low.scratch_bytes,
        kernel_lines=[c_comment(line) for line in kernel_table(graph, low.choices).splitlines()],
        weight_bytes=sum(a.values.size * _CTYPE_BYTES[a.ctype] for a in low.arrays),
        test_count=len(x),
        test_inputs=[format_values(row) for row in x],
        expected_outputs=[format_values(row) for row in y],
        target=target,
        kernel_sources=[f"kernels/{p.name}" for p in kernel_files if p.suffix == ".c"],
        kernel_headers=[f"kernels/{p.name}" for p in kernel_files if p.suffix == ".h"],
        target_names=list(TARGETS),
        cortex_targets=[t for t in _targets.TARGETS.values() if t.is_cortex_m],
        board_sources=[f"boards/{n}" for n in _targets.BOARD_SOURCES],
        board_headers=[f"boards/{n}" for n in _targets.BOARD_HEADERS],
    )
    env = _environment()
    files = {name: env.get_template(template + ".j2").render(**ctx).encode("ascii")
             for name, template in TEMPLATE_FILES.items() if harness or name not in HARNESS_FILES}
    for p in kernel_files:
        files[f"kernels/{p.name}"] = p.read_bytes()
    for p in boards:
        files[f"boards/{p.name}"] = p.read_bytes()
    report = _memory_report(graph, plan, low)
    files[MEMORY_FILE] = report.text().encode("ascii")
    project = {
        "format": 1,
        "target": target,
        "model": model_name,
        "test_inputs": len(x),
        "harness": harness,
        "input_size": t_in.size,
        "output_size": t_out.size,
        "arena_bytes": plan.arena_size,
        "arena_floor_bytes": plan.floor,
        "arena_without_inplace_bytes": plan.arena_without_inplace,
        "ram_budget": ram_budget,
        "kernels": kernels,
        "scratch_bytes": low.scratch_bytes,
        "op_kernels": [c.name for c in low.choices],
        "weight_bytes": report.weight_bytes,
        "weight_floor_bytes": report.weight_floor_bytes,
        "weight_arrays": list(report.weight_arrays),
    }
    files[PROJECT_FILE] = (json.dumps(project, indent=2, sort_keys=True) + "\n").encode("ascii")
    files[MARKER] = MARKER_TEXT.encode("ascii")
    return files


def export_c_project(graph: QGraph, out_dir, test_inputs: np.ndarray | None, expected_outputs: np.ndarray | None,
                     target: str = "host", force: bool = False, kernels: str | None = None,
                     ram_budget: int | None = None, harness: bool = True) -> Path:
    """Write the C project for `graph` to `out_dir` (see the module docstring); returns its path.

    test_inputs: int8 (N, ...) graph inputs; expected_outputs: int8 (N, output size), e.g. the simulator's.
    An existing out_dir is replaced only if it is a previous export (it holds the marker file) or force=True.
    """
    out_dir = Path(out_dir)
    if out_dir.name in ("", ".", ".."):
        out_dir = out_dir.resolve()
    _check_destination(out_dir, force)
    files = render_project(graph, test_inputs, expected_outputs, target, kernels, ram_budget, harness)

    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {parent}: {e.strerror}: choose a writable output folder") from None
    tmp = parent / f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    old = None
    try:
        tmp.mkdir()
        for rel in sorted(files):
            if rel == MARKER:
                continue
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[rel])
        (tmp / MARKER).write_bytes(files[MARKER])  # last: only a complete project carries the marker
        _check_destination(out_dir, force)  # again: something may have appeared while we rendered
        if os.path.lexists(out_dir):
            old = parent / f".{out_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if old is not None:
                os.replace(old, out_dir)
            raise
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write the C project to {out_dir}: {e.strerror or e}: check the folder's "
                        f"permissions and free space") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return out_dir
