"""A user's PyTorch nn.Module -> FloatGraph, through torch.fx symbolic tracing.

The traced graph is walked node by node and mapped onto FloatGraph's few kinds:
  Conv2d (groups 1, or depthwise: groups == in_channels)  -> conv, with its padding made explicit
  BatchNorm2d right after a Conv2d                          -> folded into that conv (quant/fold.py)
  ReLU / ReLU6 (modules, F.relu, F.relu6, torch.relu, x.relu()) -> the producer's fused activation
  Linear -> linear;  + / torch.add -> add;  AvgPool2d, MaxPool2d, AdaptiveAvgPool2d, x.mean((2, 3)) -> pools
  torch.flatten, nn.Flatten, x.view(x.size(0), -1), x.reshape(...), x.flatten(1) -> flatten
  Dropout, Identity, x.contiguous() -> nothing (inference);  softmax over the last dim of (N, K) -> softmax

PyTorch flattens NCHW maps channel-major, FloatGraph flattens NHWC (the integer graph's order). A Linear that reads
a flattened C x H x W map with H * W > 1 therefore gets its columns permuted from (c, h, w) to (h, w, c) order, so
the FloatGraph computes the module's logits with the module's own weights.

The module is run once (in eval mode, on zeros; its training flags are restored) to learn every tensor's shape.
Anything else is refused with a UserError naming the layer's path in the module (e.g. `features.3.conv.1`) and
its type, or for a function call, the function and the module it was called in.
"""
from __future__ import annotations

import numbers
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import UserError
from ..quant.fold import fold_bn
from ..quant.graph import FloatGraph, FNode
from .tflite_float import compose_activations

SUPPORTED = ("Conv2d (groups 1 or depthwise), BatchNorm2d after a Conv2d, ReLU, ReLU6, Linear, residual add, "
             "AvgPool2d, MaxPool2d, AdaptiveAvgPool2d, flatten/view, Dropout, Identity, Softmax")
# Node kinds whose output can carry a fused activation into the integer graph.
_CAN_FUSE = ("conv", "linear", "add", "avgpool", "maxpool")
_PASS_THROUGH_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d)


class _BatchSize:
    """What x.size(0) / x.shape[0] evaluates to while tracing: only good as the first size of a flatten view."""


class _Shape:
    """x.shape while tracing: only its element 0 (the batch size) is used."""


def trace_module(module: nn.Module, input_shape, input_scale: float, input_zero_point: int,
                 name: str | None = None) -> FloatGraph:
    """Trace `module` (taking one NCHW float input of shape (N, *input_shape)) into a FloatGraph.

    input_shape: (C, H, W). input_scale / input_zero_point: how the module's real input maps to int8
    (q = round(x / scale) + zero_point), fixed by the data's preprocessing.
    """
    model_name = name or type(module).__name__
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else ()
    if len(shape) != 3 or not all(isinstance(d, numbers.Integral) and d > 0 for d in shape):
        raise UserError(f"{model_name}: input_shape {input_shape!r} must be (C, H, W), three positive integers")
    shape = tuple(int(d) for d in shape)
    if not (isinstance(input_scale, numbers.Real) and 0 < input_scale < float("inf")):
        raise UserError(f"{model_name}: input_scale {input_scale!r} must be a positive finite number")
    if (isinstance(input_zero_point, bool) or not isinstance(input_zero_point, numbers.Integral)
            or not -128 <= input_zero_point <= 127):
        raise UserError(f"{model_name}: input_zero_point {input_zero_point!r} must be an integer in [-128, 127]")
    if not isinstance(module, nn.Module):
        raise UserError(f"{model_name}: expected a torch.nn.Module, got {type(module).__name__}")
    try:
        traced = fx.symbolic_trace(module)
    except Exception as exc:  # data-dependent control flow, unsupported Python constructs ...
        raise UserError(f"{model_name}: torch.fx cannot trace this module ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())}); remove data-dependent control flow from forward()") from None
    tracer = _Lowering(model_name, traced)
    tracer.check_supported()
    tracer.propagate_shapes(shape)
    nodes, output = tracer.lower()
    meta = {"frontend": "torch_fx", "source": model_name, "module_paths": tracer.paths}
    return FloatGraph(model_name, nodes, shape, float(input_scale), int(input_zero_point), output=output,
                      metadata=meta)


def _caller(node: fx.Node) -> tuple[str, str]:
    """(path, class name) of the innermost module a call was made in; ('', '') for the top-level forward.

    From the trace's module stack: the traced GraphModule keeps only leaf layers with their own classes."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = next(reversed(stack.values()))
    return path, getattr(cls, "__name__", str(cls))


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced module once, recording each node's output shape in node.meta["shape"]."""

    def __init__(self, module: fx.GraphModule):
        super().__init__(module)
        self.failed: fx.Node | None = None
        self.reason = ""  # the failure in one line, before the interpreter appends its own context

    def run_node(self, node: fx.Node):
        try:
            result = super().run_node(node)
        except Exception as exc:
            if self.failed is None:
                self.failed, self.reason = node, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            raise
        if isinstance(result, torch.Tensor):
            node.meta["shape"] = tuple(result.shape)
        return result


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pool_out(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    span = size + 2 * pad - kernel
    return (-(-span // stride) if ceil else span // stride) + 1


class _Lowering:
    def __init__(self, model_name: str, traced: fx.GraphModule):
        self.model_name = model_name
        self.traced = traced
        self.modules = dict(traced.named_modules())
        self.nodes: list[FNode] = []
        self.fnodes: dict[str, FNode] = {}
        self.values: dict[fx.Node, object] = {}  # fx node -> value name ("input" / FNode name) or a size marker
        self.alias_of: dict[fx.Node, fx.Node] = {}  # pass-through node -> the node whose value it forwards
        self.chw_flat: dict[str, tuple[int, int, int]] = {}  # flatten node -> (C, H, W) it flattened, if H*W > 1
        self.paths: dict[str, str] = {}  # FNode name -> module path (for reports)

    # ----------------------------------------------------------------------------------------------- errors
    def error(self, node: fx.Node, msg: str) -> UserError:
        if node.op == "call_module":
            mod = self.modules[node.target]
            where = f"layer '{node.target}' ({type(mod).__name__})"
        elif node.op == "output":
            where = "the value forward() returns"
        else:
            fn = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
            path, cls = _caller(node)
            where = f"{node.op.replace('_', ' ')} '{fn}' (fx node {node.name}) in " + (
                f"layer '{path}' ({cls})" if path else "the top-level forward")
        return UserError(f"{self.model_name}: {where}: {msg}")

    def unsupported(self, node: fx.Node) -> UserError:
        return self.error(node, f"not supported by the torch.fx frontend; supported are {SUPPORTED}")

    # ----------------------------------------------------------------------------------------------- passes
    def check_supported(self) -> None:
        """Refuse unknown layers before running anything (an LSTM fed a 4-D map would fail obscurely otherwise)."""
        for node in self.traced.graph.nodes:
            if node.op in ("placeholder", "output"):
                continue
            if node.op == "get_attr":
                raise self.error(node, "reads a parameter or buffer directly; only layers (modules) may hold weights")
            if self.handler(node) is None:
                raise self.unsupported(node)

    def propagate_shapes(self, shape: tuple[int, int, int]) -> None:
        placeholders = [n for n in self.traced.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise UserError(f"{self.model_name}: forward() takes {len(placeholders)} inputs; one image tensor is "
                            f"supported")
        modes = {m: m.training for m in self.traced.modules()}
        recorder = _ShapeRecorder(self.traced)
        try:
            self.traced.eval()
            with torch.no_grad():
                recorder.run(torch.zeros(1, *shape))
        except Exception as exc:
            if recorder.failed is None:
                raise UserError(f"{self.model_name}: running the module failed ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())})") from None
            raise self.error(recorder.failed, f"fails on a (1, {', '.join(map(str, shape))}) input "
                                              f"({recorder.reason}); check input_shape") from None
        finally:
            for m, training in modes.items():
                m.train(training)

    def lower(self) -> tuple[list[FNode], str]:
        output = None
        for node in self.traced.graph.nodes:
            if node.op == "placeholder":
                self.values[node] = "input"
            elif node.op == "output":
                output = self.output(node)
            else:
                self.handler(node)(node)
        return self.nodes, output

    # ----------------------------------------------------------------------------------------------- helpers
    def shape(self, node: fx.Node) -> tuple[int, ...]:
        return node.meta.get("shape", ())

    def arg(self, node: fx.Node, i: int = 0, linear: bool = False) -> str:
        """The value name of node's i-th argument, which must be a computed tensor."""
        src = node.args[i] if i < len(node.args) else None
        value = self.values.get(src) if isinstance(src, fx.Node) else None
        if not isinstance(value, str):
            raise self.error(node, f"argument {i} is not a tensor computed from the input (constants and sizes are "
                                   f"not supported here)")
        if value in self.chw_flat and not linear:
            c, h, w = self.chw_flat[value]
            raise self.error(node, f"reads a flattened {c}x{h}x{w} map; only a Linear may follow a flatten of a map "
                                   f"larger than 1x1 (its columns are reordered for the NHWC flatten)")
        return value

    def emit(self, node: fx.Node, fnode: FNode) -> None:
        self.nodes.append(fnode)
        self.fnodes[fnode.name] = fnode
        self.values[node] = fnode.name
        self.paths[fnode.name] = node.target if node.op == "call_module" else _caller(node)[0]

    def forward_value(self, node: fx.Node, src: fx.Node) -> None:
        """node computes nothing new (dropout, identity, a folded BN, a fused ReLU): it forwards src's value."""
        self.values[node] = self.values[src]
        self.alias_of[node] = src

    def sole_reader(self, node: fx.Node, value: str) -> bool:
        """True if `node` is the only reader of `value`, following pass-through nodes back to its producer."""
        src = node.args[0]
        while True:
            if len(src.users) != 1:
                return False
            if src not in self.alias_of:
                return self.values.get(src) == value
            src = self.alias_of[src]

    # ----------------------------------------------------------------------------------------------- dispatch
    def handler(self, node: fx.Node):
        """The method that lowers `node`, or None if its layer or function is not supported."""
        if node.op == "call_module":
            mod = self.modules[node.target]
            for types, method in ((nn.Conv2d, self.conv), (nn.BatchNorm2d, self.batchnorm), (nn.Linear, self.linear),
                                  ((nn.ReLU, nn.ReLU6, nn.Hardtanh), self.activation),
                                  ((nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d), self.pool_module),
                                  (nn.Flatten, self.flatten), (_PASS_THROUGH_MODULES, self.pass_through),
                                  (nn.Softmax, self.softmax)):
                if type(mod) in (types if isinstance(types, tuple) else (types,)):
                    return method
            return None
        if node.op == "call_function":
            return {operator.add: self.add, operator.iadd: self.add, torch.add: self.add,
                    F.relu: self.activation, torch.relu: self.activation, F.relu6: self.activation,
                    torch.flatten: self.flatten, F.adaptive_avg_pool2d: self.pool_function,
                    F.avg_pool2d: self.pool_function, F.max_pool2d: self.pool_function,
                    F.softmax: self.softmax, torch.softmax: self.softmax,
                    getattr: self.shape_attribute, operator.getitem: self.shape_item}.get(node.target)
        if node.op == "call_method":
            return {"relu": self.activation, "relu_": self.activation, "add": self.add, "view": self.flatten,
                    "reshape": self.flatten, "flatten": self.flatten, "size": self.size, "mean": self.mean,
                    "contiguous": self.pass_through, "softmax": self.softmax}.get(node.target)
        return None

    # ----------------------------------------------------------------------------------------------- layers
    def conv(self, node: fx.Node) -> None:
        conv: nn.Conv2d = self.modules[node.target]
        x = self.arg(node)
        if conv.padding_mode != "zeros":
            raise self.error(node, f"padding_mode '{conv.padding_mode}' is not supported; use zero padding")
        if conv.groups not in (1, conv.in_channels):
            raise self.error(node, f"groups={conv.groups} (in_channels {conv.in_channels}): only groups=1 and "
                                   f"depthwise (groups=in_channels) convolutions are supported")
        kh, kw = conv.kernel_size
        dh, dw = conv.dilation
        if isinstance(conv.padding, str):  # 'valid', or 'same' (stride 1): the odd pixel goes after, as in TF
            th, tw = ((dh * (kh - 1), dw * (kw - 1)) if conv.padding == "same" else (0, 0))
            pad = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
        else:
            ph, pw = conv.padding
            pad = (ph, pw, ph, pw)
        bias = conv.bias.detach().float().clone() if conv.bias is not None else None
        self.emit(node, FNode("conv", node.name, [x], conv.weight.detach().float().clone(), bias,
                              tuple(conv.stride), pad, tuple(conv.dilation), conv.groups))

    def batchnorm(self, node: fx.Node) -> None:
        bn: nn.BatchNorm2d = self.modules[node.target]
        x = self.arg(node)
        conv = self.fnodes.get(x)
        if conv is None or conv.kind != "conv" or conv.act != "NONE" or not self.sole_reader(node, x):
            raise self.error(node, "a BatchNorm2d must directly follow a Conv2d whose output nothing else reads "
                                   "(it is folded into that conv)")
        if bn.running_mean is None or bn.running_var is None:
            raise self.error(node, "has no running statistics (track_running_stats=False); it cannot be folded")
        if not bn.affine:  # fold_bn reads gamma/beta: give it the identity affine of a BN without them
            bn = nn.BatchNorm2d(bn.num_features, bn.eps).eval()
            bn.running_mean.copy_(self.modules[node.target].running_mean)
            bn.running_var.copy_(self.modules[node.target].running_var)
        conv.weight, conv.bias = fold_bn(conv.weight, conv.bias, bn)
        self.forward_value(node, node.args[0])

    def linear(self, node: fx.Node) -> None:
        fc: nn.Linear = self.modules[node.target]
        x = self.arg(node, linear=True)
        if len(self.shape(node.args[0])) != 2:
            raise self.error(node, f"input of shape {self.shape(node.args[0])}: only (N, features) is supported; "
                                   f"flatten first")
        w = fc.weight.detach().float().clone()
        if x in self.chw_flat:  # torch's (c, h, w) column order -> the NHWC flatten's (h, w, c)
            c, h, wd = self.chw_flat[x]
            w = w.reshape(-1, c, h, wd).permute(0, 2, 3, 1).reshape(w.shape[0], -1).contiguous()
        bias = fc.bias.detach().float().clone() if fc.bias is not None else None
        self.emit(node, FNode("linear", node.name, [x], w, bias))

    def activation(self, node: fx.Node) -> None:
        if node.op == "call_module":
            mod = self.modules[node.target]
            if isinstance(mod, nn.ReLU6):
                act = "RELU6"
            elif isinstance(mod, nn.Hardtanh):
                if (mod.min_val, mod.max_val) != (0.0, 6.0):
                    raise self.error(node, f"Hardtanh({mod.min_val}, {mod.max_val}): only the ReLU6 range (0, 6) is "
                                           f"supported")
                act = "RELU6"
            else:
                act = "RELU"
        else:
            act = "RELU6" if node.target is F.relu6 else "RELU"
        x = self.arg(node)
        producer = self.fnodes.get(x)
        if producer is None or producer.kind not in _CAN_FUSE or not self.sole_reader(node, x):
            what = "the input" if producer is None else f"a {producer.kind}"
            raise self.error(node, f"{act} must follow a conv, linear, add or pool whose output nothing else reads "
                                   f"(it is fused into it); here it follows {what}")
        producer.act = compose_activations(producer.act, act)
        self.forward_value(node, node.args[0])

    def add(self, node: fx.Node) -> None:
        if node.kwargs.get("alpha", 1) != 1 or len(node.args) != 2:
            raise self.error(node, "only a plain sum of two tensors is supported (no alpha, no out=)")
        a, b = self.arg(node, 0), self.arg(node, 1)
        if self.shape(node.args[0]) != self.shape(node.args[1]):
            raise self.error(node, f"adds {self.shape(node.args[0])} and {self.shape(node.args[1])}: broadcasting "
                                   f"is not supported")
        self.emit(node, FNode("add", node.name, [a, b]))

    def pool_module(self, node: fx.Node) -> None:
        mod = self.modules[node.target]
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            self.adaptive_pool(node, mod.output_size)
        elif isinstance(mod, nn.AvgPool2d):
            self.pool(node, "avgpool", mod.kernel_size, mod.stride, mod.padding, 1, mod.ceil_mode,
                      mod.count_include_pad, mod.divisor_override)
        else:
            if mod.return_indices:
                raise self.error(node, "return_indices=True is not supported")
            self.pool(node, "maxpool", mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode)

    def pool_function(self, node: fx.Node) -> None:
        if node.target is F.adaptive_avg_pool2d:
            names = ("output_size",)
        elif node.target is F.avg_pool2d:
            names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
        else:
            names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        kw = dict(zip(names, node.args[1:]), **node.kwargs)
        if node.target is F.adaptive_avg_pool2d:
            self.adaptive_pool(node, kw["output_size"])
            return
        if kw.get("return_indices"):
            raise self.error(node, "return_indices=True is not supported")
        kind = "avgpool" if node.target is F.avg_pool2d else "maxpool"
        kw.pop("return_indices", None)
        kw.setdefault("stride", None)
        kernel, stride = kw.pop("kernel_size"), kw.pop("stride")
        self.pool(node, kind, kernel, stride, **kw)

    def pool(self, node, kind, kernel, stride, padding=0, dilation=1, ceil_mode=False, count_include_pad=True,
             divisor_override=None) -> None:
        x = self.arg(node)
        n, c, h, w = self.shape(node.args[0])
        k = _pair(kernel)
        s = _pair(stride) if stride else k  # torch: no stride (None, []) means stride = kernel
        p = _pair(padding)
        if _pair(dilation) != (1, 1):
            raise self.error(node, "dilated pooling is not supported")
        if divisor_override:
            raise self.error(node, "divisor_override is not supported")
        if kind == "avgpool" and count_include_pad and p != (0, 0):
            raise self.error(node, "average pooling with padding counts the padded zeros (count_include_pad=True); "
                                   "TFLite divides by the valid taps only: set count_include_pad=False")
        if ceil_mode and (_pool_out(h, k[0], s[0], p[0], True), _pool_out(w, k[1], s[1], p[1], True)) != (
                _pool_out(h, k[0], s[0], p[0], False), _pool_out(w, k[1], s[1], p[1], False)):
            raise self.error(node, f"ceil_mode=True changes the output size on a {h}x{w} map; use ceil_mode=False "
                                   f"or pad explicitly")
        self.emit(node, FNode(kind, node.name, [x], stride=s, padding=(p[0], p[1], p[0], p[1]), kernel=k))

    def adaptive_pool(self, node: fx.Node, output_size) -> None:
        x = self.arg(node)
        n, c, h, w = self.shape(node.args[0])
        oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
        oh, ow = oh or h, ow or w  # None keeps that size
        if h % oh or w % ow:
            raise self.error(node, f"adaptive pooling of a {h}x{w} map to {oh}x{ow}: only sizes that divide the map "
                                   f"evenly (e.g. to 1x1) are supported")
        k = (h // oh, w // ow)
        self.emit(node, FNode("avgpool", node.name, [x], stride=k, kernel=k))

    def mean(self, node: fx.Node) -> None:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        shape = self.shape(node.args[0])
        dims = sorted(d % 4 for d in ((dims,) if isinstance(dims, int) else (dims or ())))
        if len(shape) != 4 or dims != [2, 3]:
            raise self.error(node, f"mean over dims {dims} of {shape}: only a global average over H and W is supported")
        x = self.arg(node)
        pool = FNode("avgpool", node.name if keepdim else f"{node.name}_pool", [x], stride=shape[2:], kernel=shape[2:])
        if keepdim:
            self.emit(node, pool)
            return
        self.nodes.append(pool)
        self.fnodes[pool.name] = pool
        self.paths[pool.name] = _caller(node)[0]
        self.emit(node, FNode("flatten", node.name, [pool.name]))

    def flatten(self, node: fx.Node) -> None:
        in_shape, out_shape = self.shape(node.args[0]), self.shape(node)
        if node.op == "call_module":
            mod = self.modules[node.target]
            ok = mod.start_dim == 1 and mod.end_dim in (-1, len(in_shape) - 1)
        elif node.op == "call_method" and node.target in ("view", "reshape"):
            sizes = node.args[1:]
            if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
                sizes = tuple(sizes[0])
            ok = len(sizes) == 2 and (sizes[0] in (-1, 1) or isinstance(self.values.get(sizes[0]), _BatchSize))
        else:  # torch.flatten(x, 1) / x.flatten(1)
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            ok = start == 1 and end in (-1, len(in_shape) - 1)
        if not ok or len(out_shape) != 2 or out_shape[0] != in_shape[0]:
            raise self.error(node, f"reshapes {in_shape} to {out_shape}: only a flatten to (N, features) is supported")
        x = self.arg(node)
        if len(in_shape) == 2:  # already flat
            self.forward_value(node, node.args[0])
            return
        if len(in_shape) != 4:
            raise self.error(node, f"flattens a {in_shape} tensor; only (N, C, H, W) maps are supported")
        self.emit(node, FNode("flatten", node.name, [x]))
        _, c, h, w = in_shape
        if h * w > 1:
            self.chw_flat[node.name] = (c, h, w)

    def softmax(self, node: fx.Node) -> None:
        if node.op == "call_module":
            dim = self.modules[node.target].dim
        else:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        shape = self.shape(node.args[0])
        if len(shape) != 2 or dim not in (1, -1):
            raise self.error(node, f"softmax over dim {dim} of {shape}: only the last dim of (N, K) is supported")
        self.emit(node, FNode("softmax", node.name, [self.arg(node)]))

    def pass_through(self, node: fx.Node) -> None:
        self.arg(node, linear=True)  # a dropout between a flatten and its Linear keeps the column fix-up valid
        self.forward_value(node, node.args[0])

    # ----------------------------------------------------------------------------------------------- sizes
    def size(self, node: fx.Node) -> None:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if dim != 0:
            raise self.error(node, "only x.size(0) (the batch size, inside a flatten view) is supported")
        self.values[node] = _BatchSize()

    def shape_attribute(self, node: fx.Node) -> None:
        if node.args[1] != "shape":
            raise self.unsupported(node)
        self.values[node] = _Shape()

    def shape_item(self, node: fx.Node) -> None:
        if not (isinstance(self.values.get(node.args[0]), _Shape) and node.args[1] == 0):
            raise self.error(node, "only x.shape[0] (the batch size, inside a flatten view) is supported")
        self.values[node] = _BatchSize()

    def output(self, node: fx.Node) -> str:
        out = node.args[0]
        if not isinstance(out, fx.Node):
            raise UserError(f"{self.model_name}: forward() returns {type(out).__name__}; one tensor is supported")
        value = self.arg(node)
        if value == "input":
            raise UserError(f"{self.model_name}: forward() returns its input unchanged; nothing to quantize")
        return value
