"""Fake-quant model -> QGraph: integer weights, int32 biases, (multiplier, shift) pairs, activation ranges.

Everything float is decided in quant/ (scales, zero points, integer weights); this step only converts layouts
(torch NCHW/OIHW -> NHWC, [C_out, KH, KW, C_in], depthwise [1, KH, KW, C_out]), types the weights of layers at
4 bits or fewer as int4, and computes the integer op parameters with the same code the .tflite reader uses
(prepare.py), so both paths round alike.
"""
from __future__ import annotations

import numpy as np

from .ir import (AddParams, ConvParams, FullyConnectedParams, Op, OpKind, PoolParams, QGraph, ReshapeParams,
                 Tensor)
from .prepare import activation_range, add_params, conv_multipliers, prepare_softmax, quantize_bias
from .quant.fakequant import QuantizedModel


def weight_dtype(bits: int) -> str:
    """The QGraph dtype of a layer's weights: "int2" at 2 bits (the grid [-2, 1]; codegen packs four per
    byte for the s2 kernels), "int4" at 3 or 4 bits (grids [-3, 3] and [-7, 7] fit [-8, 7]; two per byte for the
    s4 kernels), "int8" otherwise. The values stay unpacked in int8 arrays in the QGraph either way."""
    return "int2" if bits <= 2 else "int4" if bits <= 4 else "int8"


def lower(qm: QuantizedModel, name: str | None = None) -> QGraph:
    g = qm.graph
    tensors: list[Tensor] = []
    ops: list[Op] = []
    index: dict[str, int] = {}   # node name -> its output tensor
    shapes: dict[str, tuple] = {}  # node name -> NHWC (or (1, C)) shape

    def add_tensor(t: Tensor) -> int:
        tensors.append(t)
        return len(tensors) - 1

    def activation(node_name: str, shape: tuple) -> int:
        q = qm.qparams[node_name]
        index[node_name] = add_tensor(Tensor(node_name, shape, "int8", q.scale, q.zero_point))
        shapes[node_name] = shape
        return index[node_name]

    c, h, w = g.input_shape
    activation("input", (1, h, w, c))
    for n in g.nodes:
        x_name = n.inputs[0]
        x_shape, x_q = shapes[x_name], qm.qparams[x_name]
        y_q = qm.qparams[n.name]
        if n.kind in ("conv", "linear"):
            ints = qm.weight_integers(n.name).cpu().numpy().astype(np.int8)
            w_scale = np.atleast_1d(qm.weight_scale(n.name).cpu().numpy().astype(np.float32))
            cout = ints.shape[0]
            per_channel = w_scale.size > 1
            w_dtype = weight_dtype(qm.bits[n.name])
            bias = qm.module.bias(n.name)
            bias = bias.detach().cpu().numpy() if bias is not None else np.zeros(cout, np.float32)
            b_int = quantize_bias(bias, x_q.scale, np.broadcast_to(w_scale, (cout,)))
            mult, shift = conv_multipliers(x_q.scale, w_scale, y_q.scale)
            act = activation_range(n.act, y_q.scale, y_q.zero_point)
            if n.kind == "conv":
                if n.is_depthwise:
                    mult_c = ints.shape[0] // x_shape[3]
                    data = ints.transpose(1, 2, 3, 0)  # (C_out, 1, KH, KW) -> (1, KH, KW, C_out)
                    qdim = 3
                    kind = OpKind.DEPTHWISE_CONV_2D
                else:
                    mult_c = 1
                    data = ints.transpose(0, 2, 3, 1)  # OIHW -> [C_out, KH, KW, C_in]
                    qdim = 0
                    kind = OpKind.CONV_2D
                kh, kw = data.shape[1:3]
                t, l, b, r = n.padding
                oh = (x_shape[1] + t + b - ((kh - 1) * n.dilation[0] + 1)) // n.stride[0] + 1
                ow = (x_shape[2] + l + r - ((kw - 1) * n.dilation[1] + 1)) // n.stride[1] + 1
                out_shape = (1, oh, ow, cout)
                if not per_channel:
                    mult, shift = np.repeat(mult, cout), np.repeat(shift, cout)
                params = ConvParams(n.stride, n.dilation, n.padding, act[0], act[1], mult, shift, mult_c)
            else:
                data, qdim, kind = ints, 0, OpKind.FULLY_CONNECTED
                out_shape = (1, cout)
                params = FullyConnectedParams(act[0], act[1], mult, shift)
            wt = add_tensor(Tensor(f"{n.name}.weight", data.shape, w_dtype, w_scale,
                                   np.zeros(w_scale.size, np.int64), qdim, np.ascontiguousarray(data)))
            bt = add_tensor(Tensor(f"{n.name}.bias", (cout,), "int32",
                                   np.float32(x_q.scale) * np.broadcast_to(w_scale, (cout,)),
                                   np.zeros(cout, np.int64), 0, b_int))
            y = activation(n.name, out_shape)
            ops.append(Op(kind, (index[x_name], wt, bt), (y,), params, n.name))
        elif n.kind == "add":
            b_name = n.inputs[1]
            act = activation_range(n.act, y_q.scale, y_q.zero_point)
            p = add_params(x_q.scale, qm.qparams[b_name].scale, y_q.scale)
            y = activation(n.name, x_shape)
            ops.append(Op(OpKind.ADD, (index[x_name], index[b_name]), (y,),
                          AddParams(**p, act_min=act[0], act_max=act[1]), n.name))
        elif n.kind in ("avgpool", "maxpool"):
            t, l, b, r = n.padding
            oh = (x_shape[1] + t + b - n.kernel[0]) // n.stride[0] + 1
            ow = (x_shape[2] + l + r - n.kernel[1]) // n.stride[1] + 1
            act = activation_range(n.act, y_q.scale, y_q.zero_point)
            y = activation(n.name, (1, oh, ow, x_shape[3]))
            kind = OpKind.AVERAGE_POOL_2D if n.kind == "avgpool" else OpKind.MAX_POOL_2D
            ops.append(Op(kind, (index[x_name],), (y,), PoolParams(n.kernel, n.stride, n.padding, act[0], act[1]),
                          n.name))
        elif n.kind == "flatten":
            y = activation(n.name, (1, int(np.prod(x_shape[1:]))))
            ops.append(Op(OpKind.RESHAPE, (index[x_name],), (y,), ReshapeParams(), n.name))
        elif n.kind == "softmax":
            y = activation(n.name, x_shape)
            ops.append(Op(OpKind.SOFTMAX, (index[x_name],), (y,), prepare_softmax(1.0, x_q.scale), n.name))
        else:  # pragma: no cover - FloatGraph validates kinds
            raise ValueError(n.kind)
    meta = {"method": qm.method, "granularity": qm.granularity, "bits": dict(qm.bits),
            "logits_tensor": index[g.logits]}
    return QGraph(tensors, ops, [index["input"]], [index[g.output]], name=name or g.name, metadata=meta)
