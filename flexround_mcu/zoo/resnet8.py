"""The MLPerf Tiny image-classification ResNet-8 (`resnet_v1_eembc`) in PyTorch, and its Keras .h5 weight reader.

The model matches the Keras reference layer for layer:

    input (raw 0..255 pixels) -> conv0 3x3/16 -> bn0 -> ReLU
    stack1: conv1 3x3/16    -> bn1 -> ReLU -> conv2 3x3/16 -> bn2 -> + identity           -> ReLU
    stack2: conv1 3x3/32 s2 -> bn1 -> ReLU -> conv2 3x3/32 -> bn2 -> + shortcut 1x1/32 s2  -> ReLU
    stack3: conv1 3x3/64 s2 -> bn1 -> ReLU -> conv2 3x3/64 -> bn2 -> + shortcut 1x1/64 s2  -> ReLU
    AvgPool 8x8 -> flatten -> fc 64->10 (logits; the Keras model applies a softmax here, argmax is the same)

Every conv has a bias and is followed by a BatchNorm2d (eps 1e-3, as in Keras) except the 1x1 shortcuts, which have
none. Keras 'same' padding is asymmetric for stride 2 (0 before, 1 after on a 32-wide input), so each 3x3 conv is
preceded by an explicit `SamePad2d` and itself uses padding=0.

Module tree: `conv0`, `bn0`, `stack{1,2,3}.{conv1,bn1,conv2,bn2,shortcut}` (shortcut is None in stack1), `pool`, `fc`.
`ResNet8.named_layers()` gives the same modules under flat names (`conv0`, `bn0`, `s1_conv1`, `s1_bn1`, ...,
`s2_short`, `s3_short`, `fc`), and `KERAS_NAMES` maps each flat name to its Keras layer.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flexround_mcu.errors import UserError

BN_EPS = 1e-3  # Keras BatchNormalization's default, used by the reference model
NUM_CLASSES = 10
INPUT_SHAPE_NHWC = (32, 32, 3)

# Flat layer name -> Keras layer name in pretrainedResnet.h5. From the file's `model_config` topology:
#   conv2d -> batch_normalization -> relu = a0
#   stack 1: conv2d_1 -> bn_1 -> relu -> conv2d_2 -> bn_2; add(a0, bn_2) -> relu = a2
#   stack 2: conv2d_3 -> bn_3 -> relu -> conv2d_4 -> bn_4; conv2d_5 (1x1 s2) on a2; add(conv2d_5, bn_4) -> relu = a4
#   stack 3: conv2d_6 -> bn_5 -> relu -> conv2d_7 -> bn_6; conv2d_8 (1x1 s2) on a4; add(conv2d_8, bn_6) -> relu
#   average_pooling2d (8x8) -> flatten -> dense (softmax)
KERAS_NAMES: dict[str, str] = OrderedDict([
    ("conv0", "conv2d"), ("bn0", "batch_normalization"),
    ("s1_conv1", "conv2d_1"), ("s1_bn1", "batch_normalization_1"),
    ("s1_conv2", "conv2d_2"), ("s1_bn2", "batch_normalization_2"),
    ("s2_conv1", "conv2d_3"), ("s2_bn1", "batch_normalization_3"),
    ("s2_conv2", "conv2d_4"), ("s2_bn2", "batch_normalization_4"),
    ("s2_short", "conv2d_5"),
    ("s3_conv1", "conv2d_6"), ("s3_bn1", "batch_normalization_5"),
    ("s3_conv2", "conv2d_7"), ("s3_bn2", "batch_normalization_6"),
    ("s3_short", "conv2d_8"),
    ("fc", "dense"),
])

# Keras layer -> the layers feeding it, for the layers whose wiring the shapes alone do not pin down.
_KERAS_INBOUND: dict[str, set[str]] = {
    "batch_normalization": {"conv2d"},
    "batch_normalization_1": {"conv2d_1"}, "batch_normalization_2": {"conv2d_2"},
    "batch_normalization_3": {"conv2d_3"}, "batch_normalization_4": {"conv2d_4"},
    "batch_normalization_5": {"conv2d_6"}, "batch_normalization_6": {"conv2d_7"},
    "conv2d_5": {"activation_2"}, "conv2d_8": {"activation_4"},
    "add_1": {"conv2d_5", "batch_normalization_4"}, "add_2": {"conv2d_8", "batch_normalization_6"},
}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: (before, after), the extra pixel going after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePad2d(nn.Module):
    """Zero padding as TensorFlow's padding='same' does it for a (kernel, stride) conv that follows (padding=0)."""

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size, self.stride)
        left, right = same_padding(x.shape[-1], self.kernel_size, self.stride)
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=0, bias=True)


class ResidualStack(nn.Module):
    """One residual stack: relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x)))))), shortcut = identity if None."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad1 = SamePad2d(3, stride)
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.pad2 = SamePad2d(3, 1)
        self.conv2 = _conv(cout, cout, 3)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        # A 1x1 conv with 'same' padding never pads, whatever the stride: no SamePad2d needed. No BN (as in Keras).
        self.shortcut = _conv(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(self.pad1(x))))
        h = self.bn2(self.conv2(self.pad2(h)))
        s = x if self.shortcut is None else self.shortcut(x)
        return F.relu(s + h)


class ResNet8(nn.Module):
    """MLPerf Tiny ResNet-8. Input: NCHW float32 of raw 0..255 pixels (see `to_nchw`). Output: logits (N, 10)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.pad0 = SamePad2d(3, 1)
        self.conv0 = _conv(3, 16, 3)
        self.bn0 = nn.BatchNorm2d(16, eps=BN_EPS)
        self.stack1 = ResidualStack(16, 16, 1)
        self.stack2 = ResidualStack(16, 32, 2)
        self.stack3 = ResidualStack(32, 64, 2)
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.conv0(self.pad0(x))))
        x = self.stack3(self.stack2(self.stack1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))

    def named_layers(self) -> OrderedDict[str, nn.Module]:
        """The weight layers under their flat names (conv0, bn0, s1_conv1, ..., s2_short, ..., fc), in Keras order."""
        out: OrderedDict[str, nn.Module] = OrderedDict(conv0=self.conv0, bn0=self.bn0)
        for i, stack in enumerate((self.stack1, self.stack2, self.stack3), start=1):
            out[f"s{i}_conv1"], out[f"s{i}_bn1"] = stack.conv1, stack.bn1
            out[f"s{i}_conv2"], out[f"s{i}_bn2"] = stack.conv2, stack.bn2
            if stack.shortcut is not None:
                out[f"s{i}_short"] = stack.shortcut
        out["fc"] = self.fc
        return out


def to_nchw(images_uint8_nhwc) -> torch.Tensor:
    """uint8 NHWC RGB images (N,32,32,3) -> the model's input: float32 NCHW tensor of raw 0..255 values."""
    x = np.asarray(images_uint8_nhwc)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise UserError(f"ResNet-8 input: expected uint8 images of shape (N,H,W,3), got {x.dtype} {x.shape}: "
                        "pass raw RGB pixels as stored in the CIFAR-10 datasets")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()


# --- weights from the Keras .h5 -------------------------------------------------------------------------------

_HOW = "pass the MLPerf Tiny pretrainedResnet.h5 (resnet_v1_eembc) or a file saved from the same Keras architecture"


def keras_tensors(model: ResNet8):
    """(flat name, keras tensor path, torch parameter, expected Keras shape, keras->torch converter) in file order."""
    layers = model.named_layers()
    for flat, keras in KERAS_NAMES.items():
        m = layers[flat]
        if isinstance(m, nn.Conv2d):
            co, ci, kh, kw = m.weight.shape
            yield flat, f"{keras}/{keras}/kernel:0", m.weight, (kh, kw, ci, co), lambda a: a.transpose(3, 2, 0, 1)
            yield flat, f"{keras}/{keras}/bias:0", m.bias, (co,), None
        elif isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            for key, t in (("gamma", m.weight), ("beta", m.bias),
                           ("moving_mean", m.running_mean), ("moving_variance", m.running_var)):
                yield flat, f"{keras}/{keras}/{key}:0", t, (c,), None
        else:  # nn.Linear
            out_f, in_f = m.weight.shape
            yield flat, f"{keras}/{keras}/kernel:0", m.weight, (in_f, out_f), lambda a: a.T
            yield flat, f"{keras}/{keras}/bias:0", m.bias, (out_f,), None


def _keras2_inbound(model_config) -> dict[str, set[str]] | None:
    """Layer name -> names of its input layers, from a Keras 2 functional `model_config`; None if not that format."""
    try:
        cfg = json.loads(model_config)
        out = {}
        for layer in cfg["config"]["layers"]:
            nodes = layer.get("inbound_nodes") or []
            out[layer["name"]] = {str(inp[0]) for node in nodes for inp in node}
        return out
    except Exception:  # Keras 3 or another layout: the tensor names and shapes are checked regardless
        return None


def _check_topology(f, path: str) -> None:
    raw = f.attrs.get("model_config")
    if raw is None:
        return
    inbound = _keras2_inbound(raw.decode() if isinstance(raw, bytes) else raw)
    if inbound is None:
        return
    for layer, want in _KERAS_INBOUND.items():
        got = inbound.get(layer)
        if got != want:
            found = "absent" if got is None else f"fed by {', '.join(sorted(got)) or 'nothing'}"
            raise UserError(f"{path}: the model_config topology is not ResNet-8's: layer {layer} is {found}, "
                            f"expected fed by {', '.join(sorted(want))}: {_HOW}")


def load_keras_h5(model: ResNet8, path: str | os.PathLike) -> ResNet8:
    """Copy the weights of a Keras ResNet-8 .h5 (read with h5py, no TensorFlow) into `model`; returns `model`.

    Raises a one-line UserError for a missing or non-HDF5 file, a missing or misshapen tensor (named, with the
    expected and found shape) and a tensor holding NaN or inf. On error the model is left unchanged.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"weights file {path} does not exist: {_HOW}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        why = " ".join(str(e).split())
        raise UserError(f"weights file {path} is not a readable HDF5 file ({why}): {_HOW}") from None
    arrays = []
    with f:
        _check_topology(f, path)
        # A full-model save keeps the weights under model_weights/; a save_weights() file at the root.
        root, prefix = (f["model_weights"], "model_weights/") if "model_weights" in f else (f, "")
        for flat, tname, param, shape, convert in keras_tensors(model):
            where = f"{path}: tensor {prefix}{tname} (for {flat})"
            ds = root.get(tname)
            if not isinstance(ds, h5py.Dataset):
                raise UserError(f"{where} is missing, expected shape {shape}: this is not a ResNet-8 file; {_HOW}")
            if ds.shape != shape:
                raise UserError(f"{where} has shape {ds.shape}, expected {shape}: this is not a ResNet-8 file; {_HOW}")
            if ds.dtype.kind not in "fiu":
                raise UserError(f"{where} holds {ds.dtype}, expected floats: {_HOW}")
            a = np.asarray(ds[()], dtype=np.float64)
            if not np.isfinite(a).all():
                bad = int(np.size(a) - np.isfinite(a).sum())
                raise UserError(f"{where} holds {bad} NaN/inf value(s): the file is corrupt; {_HOW}")
            if convert is not None:
                a = convert(a)
            arrays.append((param, torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))))
    with torch.no_grad():
        for param, t in arrays:
            param.copy_(t)
    return model


def resnet8(weights: str | os.PathLike | None = None) -> ResNet8:
    """A ResNet8 in eval mode, with the weights of the Keras .h5 at `weights` if given (random init otherwise)."""
    model = ResNet8()
    if weights is not None:
        load_keras_h5(model, weights)
    return model.eval()
