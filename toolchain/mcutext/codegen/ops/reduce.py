"""SUM and MEAN over axes (firmware/kernels/reduce.c).
"""

from __future__ import annotations

import numpy as np

from ..graph import Op, Tensor
from ..lowering import Lowering, Step
from ..quant import quantize_multiplier


def sum(low: Lowering, op: Op):
    x, y = low.int8_act(op.inputs[0], op), low.t(op.outputs[0])
    outer, reduce_n, inner = _reduce_block(low, op, x, y)
    mult, shift = quantize_multiplier(float(x.scale) / float(y.scale))
    low.steps.append(Step(
        "SUM", "mt_sum_s8", "mt_sum_params_t",
        {"outer": f"{outer}u", "reduce": f"{reduce_n}u", "inner": f"{inner}u",
         "input_zp": x.zp, "output_zp": y.zp, "mult": mult, "shift": shift},
        [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))


def mean(low: Lowering, op: Op):
    x, y = low.int8_act(op.inputs[0], op), low.t(op.outputs[0])
    low.need(y.dtype == "int8", op, f"{y.dtype} output")
    # With equal quantization TFLite Micro's versions differ (some divide the sum, some
    # requantize); the baselines' MEANs always requantize.
    low.need(x.scale != y.scale or x.zp != y.zp, op,
              "equal input and output quantization")
    outer, n, inner = _reduce_block(low, op, x, y)
    # QuantizedMeanOrSum: QuantizeMultiplier(s_in / s_out), then the 1/n folded into it.
    mult, shift = quantize_multiplier(float(x.scale) / float(y.scale))
    k = min(n.bit_length() - 1, 32, 31 + shift)
    low.need(k >= 0, op, "an output scale this much larger than the input's")
    mult = (mult << k) // n
    shift -= k
    low.need(0 < mult < 1 << 31 and -31 <= shift <= 30, op, "the rescaled mean multiplier")
    low.steps.append(Step(
        "MEAN", "mt_sum_s8", "mt_sum_params_t",
        {"outer": f"{outer}u", "reduce": f"{n}u", "inner": f"{inner}u",
         "input_zp": x.zp, "output_zp": y.zp, "mult": mult, "shift": shift},
        [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))


def _reduce_block(low: Lowering, op: Op, x: Tensor, y: Tensor) -> tuple[int, int, int]:
    """(outer, reduced, inner) of a reduction over one block of adjacent axes."""
    axes = low.t(op.inputs[1])
    low.need(axes.data is not None, op, "non-constant axes")
    rank = len(x.shape)
    red = sorted({int(v) % rank for v in np.asarray(axes.data).reshape(-1)})
    low.need(bool(red), op, "an empty axis list")
    first, last = red[0], red[-1]
    low.need(all(d in red or x.shape[d] == 1 for d in range(first, last + 1)), op,
              "reducing non-adjacent axes")
    outer = int(np.prod(x.shape[:first])) if first else 1
    n = int(np.prod([x.shape[d] for d in red]))
    inner = int(np.prod(x.shape[last + 1:])) if last + 1 < rank else 1
    low.need(y.size == outer * inner and n >= 1, op, f"output shape {list(y.shape)}")
    return outer, n, inner
