"""The quantizer: BN folding, observers, round to nearest, fake quant that predicts the integer graph."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from flexround_mcu.quant.fold import fold_bn
from flexround_mcu.quant.observers import RangeObserver, qparams_from_range
from flexround_mcu.quant.rounding import RoundToNearest, search_scale
from flexround_mcu.quant.rounding.base import qmax_for, qmin_for


def test_bn_folding_is_equivalent():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, padding=1, bias=True)
    bn = nn.BatchNorm2d(7, eps=1e-3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.1, 3.0)
    bn.eval()
    x = torch.randn(4, 5, 9, 9)
    w, b = fold_bn(conv.weight, conv.bias, bn)
    folded = nn.functional.conv2d(x, w, b, padding=1)
    assert torch.allclose(folded, bn(conv(x)), atol=1e-5, rtol=1e-5)
    w2, b2 = fold_bn(conv.weight, None, bn)  # a conv without bias folds too
    assert torch.allclose(nn.functional.conv2d(x, w2, b2, padding=1), bn(conv(x) - conv.bias[None, :, None, None]),
                          atol=1e-5, rtol=1e-5)


def test_qparams_include_zero_and_cover_the_range():
    q = qparams_from_range(0.0, 6.0)
    assert q.zero_point == -128 and q.scale == pytest.approx(6.0 / 255)
    q = qparams_from_range(-1.0, 3.0)
    assert q.quantize(torch.tensor(0.0)).item() - q.zero_point == 0  # real zero is exact
    assert q.quantize(torch.tensor([-1.0, 3.0])).tolist() == [-128.0, 127.0]
    q = qparams_from_range(2.0, 5.0)  # widened to include 0
    assert q.zero_point == -128


def test_mse_observer_clips_outliers():
    torch.manual_seed(0)
    x = torch.randn(100000)
    x[0] = 40.0
    mm, mse = RangeObserver("minmax"), RangeObserver("mse")
    mm.observe(x)
    mse.observe(x)
    assert mse.qparams().scale < mm.qparams().scale


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
@pytest.mark.parametrize("per_channel", [False, True])
def test_rtn_integers_in_range_and_step_zero(bits, per_channel):
    torch.manual_seed(1)
    w = torch.randn(6, 4, 3, 3) * torch.linspace(0.1, 2, 6)[:, None, None, None]
    q = RoundToNearest(w, bits, per_channel)
    ints = q.integers(w)
    assert qmin_for(bits) <= ints.min() and ints.max() <= qmax_for(bits)
    assert torch.equal(ints, torch.round(ints))
    assert q.scale.shape == ((6,) if per_channel else (1,))
    assert torch.allclose(q(w), ints * q.scale_like(w))
    # the searched grid is at least as good as min/max in the Lp score it optimises
    mm = search_scale(w, bits, per_channel, "minmax")
    assert torch.all(q.scale <= mm + 1e-9)


def test_bad_bits_rejected():
    with pytest.raises(ValueError):
        qmax_for(5)
