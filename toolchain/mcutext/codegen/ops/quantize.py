"""QUANTIZE (firmware/kernels/quantize.c).
"""

from __future__ import annotations

from ..graph import Op
from ..lowering import Lowering, Step
from ..quant import quantize_multiplier


def quantize(low: Lowering, op: Op):
    x, y = low.int8_act(op.inputs[0], op), low.t(op.outputs[0])
    low.need(y.dtype == "int8", op, f"{x.dtype} -> {y.dtype}")
    mult, shift = quantize_multiplier(float(x.scale) / float(y.scale))
    low.steps.append(Step(
        "QUANTIZE", "mt_quantize_s8", "mt_quantize_params_t",
        {"size": f"{x.size}u", "input_zp": x.zp, "output_zp": y.zp, "mult": mult,
         "shift": shift},
        [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))
