"""LOGISTIC and TANH (firmware/kernels/activation.c).
"""

from __future__ import annotations

import math

from ..graph import Op
from ..lowering import Lowering, Step
from ..quant import _f32


def _activation(low: Lowering, op: Op, kernel: str, out_scale: float, out_zp: int):
    x, y = low.int8_act(op.inputs[0], op), low.t(op.outputs[0])
    low.need(y.dtype == "int8" and y.zp == out_zp and y.scale == _f32(out_scale), op,
              f"an output quantization other than scale {out_scale}, zero point {out_zp}")
    # TFLite Micro's Prepare: input_scale * 2^27 as frexp mantissa (rounded to Q31) and
    # exponent; the radius beyond which the output saturates (4 integer bits).
    q, left = math.frexp(float(x.scale) * float(1 << 27))
    mult = int(math.floor(q * (1 << 31) + 0.5))
    low.need(0 <= left <= 31 and mult < 1 << 31, op, f"input scale {x.scale}")
    radius = int(math.floor(15.0 * float(1 << 27) / float(1 << left)))
    low.need(radius >= 1, op, f"input scale {x.scale}")
    low.steps.append(Step(
        op.kind, kernel, "mt_activation_params_t",
        {"size": f"{x.size}u", "input_zp": x.zp, "input_multiplier": mult,
         "input_left_shift": left, "input_range_radius": radius},
        [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))


def logistic(low: Lowering, op: Op):
    _activation(low, op, "mt_logistic_s8", 1.0 / 256, -128)


def tanh(low: Lowering, op: Op):
    _activation(low, op, "mt_tanh_s8", 1.0 / 128, 0)
