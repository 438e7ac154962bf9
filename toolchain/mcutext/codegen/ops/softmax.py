"""SOFTMAX (firmware/kernels/softmax.c).
"""

from __future__ import annotations

from ..graph import Op
from ..lowering import Lowering, Step
from ..quant import _f32, softmax_params


def softmax(low: Lowering, op: Op):
    x, y = low.int8_act(op.inputs[0], op), low.t(op.outputs[0])
    low.need(y.dtype == "int8", op, f"{y.dtype} output")
    low.need(y.zp == -128 and y.scale == _f32(1.0 / 256), op,
              "an output quantization other than scale 1/256, zero point -128")
    depth = x.shape[-1]
    rows = x.size // depth
    beta = getattr(op.options, "beta", 1.0) if op.options is not None else 1.0
    mult, shift, diff_min = softmax_params(beta, x.scale)
    low.steps.append(Step(
        "SOFTMAX", "mt_softmax_s8", "mt_softmax_params_t",
        {"rows": f"{rows}u", "depth": f"{depth}u", "input_multiplier": mult,
         "input_left_shift": shift, "diff_min": diff_min},
        [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}", "{scratch}"],
        scratch=depth * 4))
