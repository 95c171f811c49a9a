"""Fake quantization evaluated with the integer graph's arithmetic at every rounding point (no gradients).

The training-time fake quant (fakequant.ActFakeQuant) divides a float32 conv output by the output step: the real
multiplier s_in * s_w / s_out applied to a float32 sum. The integer kernels apply the Q31 multiplier (31 bits of
that ratio, TFLite's QuantizeMultiplier) to the exact int32 accumulator, and the ADD rescales each input with its
own Q31 multiplier before summing. Values near a rounding boundary then land on different sides: measured by
benchmarks/fakequant_gap.py from the first conv on (10 of 4.9 M values in ResNet-8, more in MobileNetV2's
per-channel depthwise layers, where small accumulators meet large per-channel multipliers), compounding to a
different argmax now and then.

For evaluation the module can instead run `exact_node` at each conv, linear, ADD and average pool: the node's
integer inputs are recovered exactly (every fake-quant value is (q - z) * s, so x / s in float64 is q - z), the
conv sums integers in float64 (exact below 2^53), the bias and the (multiplier, shift) pairs come from the
same functions lower.py uses, and the rounding is fixedpoint.requantize, the simulator's ADD and average pool.
Its outputs are the same float grid values as the training path's, so the rest of the graph runs unchanged.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..fixedpoint import requantize
from ..prepare import activation_range, add_params, conv_multipliers, quantize_bias
from ..sim.elementwise import elementwise_add_s8
from ..sim.pooling import avgpool_s8

EXACT_KINDS = ("conv", "linear", "add", "avgpool")


def _grid(x: torch.Tensor, quant) -> tuple[np.ndarray, float, int]:
    """The integers q - z of a fake-quant value x = (q - z) * s, as int64 numpy; with s and z."""
    s, z = float(np.float32(quant.qparams.scale)), int(quant.qparams.zero_point)
    return np.rint(x.detach().double().numpy() / s).astype(np.int64), s, z


def _value(q: np.ndarray, quant) -> torch.Tensor:
    """int8 results q -> their fake-quant values (q - z) * s (float32, as the training path gives)."""
    s, z = np.float32(quant.qparams.scale), int(quant.qparams.zero_point)
    return torch.from_numpy(((q.astype(np.int64) - z) * s).astype(np.float32))


def exact_node(module, n, xs: list[torch.Tensor]) -> torch.Tensor:
    """Node n's quantized output, computed as the integer kernel computes it (module: the GraphModule)."""
    from .fakequant import _quantizer_of  # the grid a node's input is on (through flattens)

    out_q = module.act_quant[n.name]
    s_out, z_out = float(np.float32(out_q.qparams.scale)), int(out_q.qparams.zero_point)
    act_min, act_max = activation_range(n.act, s_out, z_out)
    if n.kind in ("conv", "linear"):
        in_q = _quantizer_of(module, module.graph, n.inputs[0])
        x, s_in, _ = _grid(xs[0], in_q)
        wq = module.weight_fns[n.name]
        w_scale = np.atleast_1d(wq.scale.detach().cpu().numpy().astype(np.float32))
        w_int = wq.integers(module.weights[n.name]).detach().double()
        cout = w_int.shape[0]
        xt = torch.from_numpy(x.astype(np.float64))
        if n.kind == "conv":
            t, l, b, r = n.padding
            xt = F.pad(xt, (l, r, t, b)) if (t or l or b or r) else xt  # padding holds z: q - z = 0
            acc = F.conv2d(xt, w_int, None, n.stride, 0, n.dilation, n.groups).numpy()
            acc = np.moveaxis(acc, 1, -1)  # channels last, where the (multiplier, shift) pairs broadcast
        else:
            acc = F.linear(xt, w_int).numpy()
        acc = np.rint(acc).astype(np.int64)
        bias = module.bias(n.name)
        if bias is not None:
            acc += quantize_bias(bias.detach().cpu().numpy(), s_in, np.broadcast_to(w_scale, (cout,))).astype(np.int64)
        mult, shift = conv_multipliers(s_in, w_scale, s_out)
        y = np.clip(requantize(acc, np.broadcast_to(mult, (cout,)), np.broadcast_to(shift, (cout,))) + z_out,
                    act_min, act_max)
        return _value(np.moveaxis(y, -1, 1) if n.kind == "conv" else y, out_q)
    if n.kind == "add":
        qa, qb = (_quantizer_of(module, module.graph, i) for i in n.inputs)
        (a, s1, z1), (b, s2, z2) = _grid(xs[0], qa), _grid(xs[1], qb)
        p = add_params(s1, s2, s_out)
        y = elementwise_add_s8((a + z1).astype(np.int8), (b + z2).astype(np.int8), -z1, -z2, z_out, act_min=act_min,
                               act_max=act_max, **p)
        return _value(y, out_q)
    if n.kind == "avgpool":  # input and output share the grid
        x, _, z = _grid(xs[0], out_q)
        nhwc = np.ascontiguousarray(np.moveaxis(x + z, 1, -1)).astype(np.int8)
        y = avgpool_s8(nhwc, n.kernel, n.stride, n.padding, act_min, act_max)
        return _value(np.moveaxis(y, -1, 1), out_q)
    raise ValueError(f"no exact form for {n.kind}")
