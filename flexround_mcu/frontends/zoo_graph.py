"""Zoo models (torch) -> FloatGraph, with BatchNorm folded. (User models will go through torch.fx instead.)"""
from __future__ import annotations

from ..prepare import same_padding
from ..quant.fold import fold_bn
from ..quant.graph import FloatGraph, FNode


def _conv_node(name, conv, bn, inputs, in_hw, act):
    k, s = conv.kernel_size, conv.stride
    top, bottom = same_padding(in_hw[0], k[0], s[0])
    left, right = same_padding(in_hw[1], k[1], s[1])
    w, b = (fold_bn(conv.weight, conv.bias, bn) if bn is not None
            else (conv.weight.detach().float(), conv.bias.detach().float()))
    out_hw = (-(-in_hw[0] // s[0]), -(-in_hw[1] // s[1]))
    return FNode("conv", name, inputs, w, b, tuple(s), (top, left, bottom, right), tuple(conv.dilation),
                 conv.groups, act=act), out_hw


def resnet8_to_graph(model, input_hw=(32, 32)) -> FloatGraph:
    """The MLPerf Tiny ResNet-8 (zoo.resnet8.ResNet8) as conv/add/pool/linear nodes, TF 'same' padding explicit.

    Input: raw 0..255 pixels, so int8 input = pixel - 128 exactly (scale 1, zero point -128), as the reference
    int8 model takes it."""
    nodes = []
    n, hw = _conv_node("conv0", model.conv0, model.bn0, ["input"], input_hw, "RELU")
    nodes.append(n)
    x = "conv0"
    for k, stack in enumerate((model.stack1, model.stack2, model.stack3), start=1):
        c1, hw1 = _conv_node(f"s{k}_conv1", stack.conv1, stack.bn1, [x], hw, "RELU")
        c2, _ = _conv_node(f"s{k}_conv2", stack.conv2, stack.bn2, [c1.name], hw1, "NONE")
        nodes += [c1, c2]
        skip = x
        if stack.shortcut is not None:
            sc, _ = _conv_node(f"s{k}_short", stack.shortcut, None, [x], hw, "NONE")
            nodes.append(sc)
            skip = sc.name
        # Keras adds (conv2 + shortcut); the order of the ADD inputs follows the .tflite reference.
        nodes.append(FNode("add", f"s{k}_add", [c2.name, skip], act="RELU"))
        x, hw = f"s{k}_add", hw1
    nodes.append(FNode("avgpool", "pool", [x], kernel=hw, stride=hw))
    nodes.append(FNode("flatten", "flatten", ["pool"]))
    fc = model.fc
    nodes.append(FNode("linear", "fc", ["flatten"], fc.weight.detach().float(), fc.bias.detach().float()))
    nodes.append(FNode("softmax", "softmax", ["fc"]))
    return FloatGraph("resnet8", nodes, (3,) + tuple(input_hw), 1.0, -128)
