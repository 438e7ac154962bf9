"""ADD, SUB (firmware/kernels/add.c) and the int32 MINIMUM of mean pooling.
"""

from __future__ import annotations

import numpy as np

from ..graph import Op
from ..lowering import Lowering, Step, _broadcast_params, _broadcastable
from ..quant import quantize_multiplier


def _add_sub(low: Lowering, op: Op, subtract: bool):
    (a, arg_a), (b, arg_b) = low.operand(op.inputs[0], op), low.operand(op.inputs[1], op)
    y = low.t(op.outputs[0])
    low.need(y.dtype == "int8" and len(y.shape) <= 4, op, f"output {y.dtype}{list(y.shape)}")
    low.need(_broadcastable(a.shape, y.shape) and _broadcastable(b.shape, y.shape), op,
              f"broadcasting {list(a.shape)} and {list(b.shape)} to {list(y.shape)}")
    left = 20                                            # int8 (int16 would be 15)
    twice_max = 2.0 * float(max(np.float32(a.scale), np.float32(b.scale)))
    m1, s1 = quantize_multiplier(float(a.scale) / twice_max)
    m2, s2 = quantize_multiplier(float(b.scale) / twice_max)
    mo, so = quantize_multiplier(twice_max / (float(1 << left) * float(y.scale)))
    low.need(max(s1, s2, so) <= 0, op, "a rescaling multiplier >= 1")
    params = {**_broadcast_params(op, a, b, y), "left_shift": left,
              "input1_mult": m1, "input1_shift": s1, "input2_mult": m2, "input2_shift": s2,
              "output_mult": mo, "output_shift": so,
              "subtract": int(subtract)}
    low.steps.append(Step(
        "SUB" if subtract else "ADD", "mt_add_s8", "mt_add_params_t", params,
        low.acts(a, b), [y.index], [arg_a, arg_b, f"{{t{y.index}}}"]))


def add(low: Lowering, op: Op):
    _add_sub(low, op, subtract=False)


def sub(low: Lowering, op: Op):
    _add_sub(low, op, subtract=True)


def minimum(low: Lowering, op: Op):
    a, b, y = low.t(op.inputs[0]), low.t(op.inputs[1]), low.t(op.outputs[0])
    low.need(a.dtype == b.dtype == y.dtype == "int32", op,
              f"{a.dtype}/{b.dtype} (only unquantized int32)")
    args, steps = [], []
    for t in (a, b):
        low.need(t.size in (1, y.size), op, f"broadcasting {list(t.shape)}")
        steps.append(1 if t.size == y.size and y.size > 1 else 0)
        args.append(low.array("c", "int32_t", t.data.astype(np.int64)) if t.data is not None
                    else f"{{t{t.index}}}")
    low.steps.append(Step(
        "MINIMUM", "mt_minimum_s32", "mt_minimum_params_t",
        {"size": f"{y.size}u", "step1": f"{steps[0]}u", "step2": f"{steps[1]}u"},
        low.acts(a, b), [y.index], args + [f"{{t{y.index}}}"]))
