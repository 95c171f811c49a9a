"""Float quantization parameters -> the integer op parameters of the QGraph (TFLM's "prepare" step).

Shared by the .tflite reader and (later) lower.py, so that an imported model and one of ours get their
multipliers from the same code. Every effective scale is formed in float64 from float32-stored scales, in
TFLM's order of operations: a different order changes the last bit of a multiplier (apache/tvm#10817).
"""
from __future__ import annotations

import math

import numpy as np

from .fixedpoint import quantize_multiplier, quantize_multiplier_greater_than_one
from .ir import SoftmaxParams

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLM CalculateActivationRangeQuantized for int8: the fused activation as a clamp on the output integers.

    quantize(f) = zero_point + round_half_away(f / scale), with f / scale computed in float32 as TFLM does.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unsupported fused activation {activation!r}")
    qmin, qmax = -128, 127
    scale32 = np.float32(scale)

    def quantize(f: float) -> int:
        r = float(np.float32(np.float32(f) / scale32))  # the float32 quotient, widened exactly
        return int(zero_point) + int(np.copysign(np.floor(abs(r) + 0.5), r))  # std::round: half away

    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))


def conv_multipliers(input_scale: float, filter_scales, output_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (multiplier, shift) for conv / depthwise / fully connected.

    effective_c = (double)s_in * (double)s_w[c] / (double)s_out (kernel_util.cc PopulateConvolutionQuantizationParams;
    fully_connected_common.cc uses the same product order).
    """
    s_in = float(np.float32(input_scale))
    s_out = float(np.float32(output_scale))
    pairs = [quantize_multiplier(s_in * float(s_w) / s_out)
             for s_w in np.atleast_1d(np.asarray(filter_scales, dtype=np.float32))]
    mult = np.array([m for m, _ in pairs], dtype=np.int32)
    shift = np.array([s for _, s in pairs], dtype=np.int32)
    return mult, shift


def add_params(s1: float, s2: float, s_out: float, left_shift: int = 20) -> dict:
    """TFLM CalculateOpDataAdd for int8: inputs rescaled to twice the larger input scale, then to the output."""
    s1, s2, s_out = (np.float32(s) for s in (s1, s2, s_out))
    twice_max = 2.0 * float(max(s1, s2))  # std::max over the float32 scales, then widened
    m1, sh1 = quantize_multiplier(float(s1) / twice_max)
    m2, sh2 = quantize_multiplier(float(s2) / twice_max)
    mo, sho = quantize_multiplier(twice_max / (float(1 << left_shift) * float(s_out)))
    return dict(left_shift=left_shift, input1_multiplier=m1, input1_shift=sh1, input2_multiplier=m2,
                input2_shift=sh2, output_multiplier=mo, output_shift=sho)


def quantize_bias(bias: np.ndarray, input_scale: float, weight_scales: np.ndarray) -> np.ndarray:
    """int32 bias with scale s_in * s_w (float32 product, as the TFLite converter stores it), round half away."""
    scale = (np.float32(input_scale) * weight_scales.astype(np.float32)).astype(np.float64)
    q = np.sign(bias) * np.floor(np.abs(bias.astype(np.float64)) / scale + 0.5)
    return np.clip(q, -(1 << 31) + 1, (1 << 31) - 1).astype(np.int32)


def same_padding(in_size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one axis: the odd extra pixel goes after."""
    out = -(-in_size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - in_size, 0)
    return total // 2, total - total // 2


SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5


def prepare_softmax(beta: float, input_scale: float) -> SoftmaxParams:
    """TFLM int8 softmax prepare (CalculateSoftmaxParams): PreprocessSoftmaxScaling and CalculateInputRadius.

    beta and the input scale are float32 in the model and widened to double; input_multiplier/input_left_shift
    turn an int8 difference from the row maximum into Q5.26, and differences below diff_min (which would
    overflow that format) give an output of -128.
    """
    bits = SOFTMAX_SCALED_DIFF_INTEGER_BITS
    beta_d = float(np.float32(beta))
    scale_d = float(np.float32(input_scale))
    if not (math.isfinite(beta_d) and math.isfinite(scale_d)) or beta_d <= 0.0 or scale_d <= 0.0:
        raise ValueError(f"beta and input_scale must be finite and > 0, got {beta!r}, {input_scale!r}")
    # Left-to-right double products, then the cap of the double-rounding build.
    real = min(beta_d * scale_d * float(1 << (31 - bits)), float((1 << 31) - 1))
    multiplier, left_shift = quantize_multiplier_greater_than_one(real)  # TFLM TFLITE_CHECKs real > 1
    # CalculateInputRadius(5, left_shift) with 31 total signed bits, in double, floored.
    radius = math.floor(1.0 * ((1 << bits) - 1) * float(1 << (31 - bits)) / float(1 << left_shift))
    return SoftmaxParams(beta=beta_d, input_multiplier=int(multiplier), input_left_shift=int(left_shift),
                         diff_min=-int(radius))
