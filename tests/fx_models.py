"""PyTorch models for `flexround-mcu export package.module:factory` tests (importable as tests.fx_models).

mobilenet_v2_tiny() returns a small MobileNetV2-style network (inverted residuals: 1x1 expand, 3x3 depthwise,
1x1 linear projection; ReLU6; BatchNorm; residual adds) trained briefly, seeded, on the 4,000 lossless CIFAR-10
training images of the data folder (cifar10-calib), with input pixel / 255 (so --input-scale 1/255
--input-zero-point -128: q = pixel - 128). The trained weights are cached in the temporary folder under a key of
this file's text, the data folder and the torch version, so a second call (or a second test) only loads them.

The other factories are bad input for the CLI's error paths.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT_SCALE = "1/255"  # the model's input is pixel / 255 = (q + 128) / 255, q = pixel - 128
INPUT_ZERO_POINT = -128
EPOCHS = 4
BATCH = 64
TRAIN_SEED = 0
last_training: dict = {}  # what the last mobilenet_v2_tiny() call did: {"trained": bool, "seconds": float, ...}


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Tiny(nn.Module):
    """32x32x3 -> 10 classes: stem (stride 2), six inverted residual blocks (three with a residual add), a 1x1
    head conv, global average pooling, dropout and a linear classifier."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, stride=2),            # 16x16
            InvertedResidual(16, 16, 1, 1),
            InvertedResidual(16, 24, 2, 4),         # 8x8
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 32, 2, 4),         # 4x4
            InvertedResidual(32, 32, 1, 4),
            conv_bn(32, 64, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def _cache_path() -> Path:
    from flexround_mcu.data import data_root

    key = hashlib.sha256(b"\0".join([Path(__file__).read_bytes(), str(data_root()).encode(),
                                     torch.__version__.encode()])).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "flexround-mcu-tests" / f"mobilenet_v2_tiny-{key}.pt"


def train(model: nn.Module, epochs: int = EPOCHS, seed: int = TRAIN_SEED) -> nn.Module:
    """A few epochs of SGD on cifar10-calib (pixel / 255, random horizontal flips), seeded, on one thread (two
    threads on two shared cores spent several times the CPU time per step here)."""
    from flexround_mcu.data import load_dataset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, load_dataset("cifar10-calib"), epochs, seed)
    finally:
        torch.set_num_threads(threads)


def _train(model: nn.Module, ds, epochs: int, seed: int) -> nn.Module:
    x = torch.from_numpy(ds.x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    y = torch.from_numpy(ds.y)
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(y) + BATCH - 1) // BATCH)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps, pct_start=0.25)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), BATCH):
            idx = order[i:i + BATCH]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def mobilenet_v2_tiny() -> nn.Module:
    """The trained MobileNetV2Tiny (trained on the first call, then loaded from the cache)."""
    t0 = time.perf_counter()
    torch.manual_seed(TRAIN_SEED)
    model = MobileNetV2Tiny()
    path = _cache_path()
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        last_training.update(trained=False, seconds=time.perf_counter() - t0, cache=str(path))
        return model.eval()
    train(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)  # another process may have written the same weights meanwhile: either copy is whole
    last_training.update(trained=True, seconds=time.perf_counter() - t0, cache=str(path))
    return model.eval()


# --- bad input ----------------------------------------------------------------------------------------------------

def not_a_module():
    """Returns the weights, not the model."""
    return {"weight": torch.zeros(3)}


def broken():
    raise RuntimeError("the checkpoint file is missing")
