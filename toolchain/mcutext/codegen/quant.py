"""Requantization constants, computed exactly as TFLite Micro's Prepare computes them
(QuantizeMultiplier: frexp, round half away from zero), so that the generated C and the
TFLite Micro interpreter produce the same bytes.
"""

from __future__ import annotations

import math

import numpy as np

from ..common.errors import McutextError


_INT8_MIN, _INT8_MAX = -128, 127
_DSP_LIMIT = 1 << 30      # |2 * accumulator| and |rounding constant| bound of mt_requant_t


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: (Q31 multiplier, shift) with real = m * 2^(shift - 31)."""
    if real == 0.0:
        return 0, 0
    if real < 0 or not math.isfinite(real):
        raise McutextError(f"cannot quantize the multiplier {real!r}")
    q, shift = math.frexp(real)
    q_fixed = math.floor(q * (1 << 31) + 0.5)  # std::round of a positive value (exact here)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def _f32(x) -> float:
    return float(np.float32(x))


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8: zp + roundf(f / scale) in float32."""
    def q(f: float) -> int:
        v = np.float32(f) / np.float32(scale)
        r = math.floor(abs(float(v)) + 0.5) * (1 if v >= 0 else -1)   # roundf
        return int(zero_point) + int(r)
    if activation == 0:          # NONE
        return _INT8_MIN, _INT8_MAX
    if activation == 1:          # RELU
        return max(_INT8_MIN, q(0.0)), _INT8_MAX
    if activation == 2:          # RELU_N1_TO_1
        return max(_INT8_MIN, q(-1.0)), min(_INT8_MAX, q(1.0))
    if activation == 3:          # RELU6
        return max(_INT8_MIN, q(0.0)), min(_INT8_MAX, q(6.0))
    raise McutextError(f"fused activation {activation} is not supported by the int8 kernels")


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling(beta, input_scale, 5) and -CalculateInputRadius(5, shift)."""
    real = min(float(np.float32(beta)) * _f32(input_scale) * float(1 << 26), (1 << 31) - 1.0)
    if not real > 1.0:
        raise McutextError(f"SOFTMAX: input scale {input_scale} x beta {beta} is too small "
                           "for TFLite's int8 softmax")
    mult, shift = quantize_multiplier(real)
    radius = math.floor(31.0 * float(1 << 26) / float(1 << shift))
    return mult, shift, -int(radius)
