"""MUL, and a MUL whose product only feeds a SUM fused with it (firmware/kernels/mul.c).
"""

from __future__ import annotations

from ..graph import Op
from ..quant import _INT8_MAX, _INT8_MIN
from ..lowering import Lowering, Step, _broadcast_params, _broadcastable, _c_list
from ..quant import activation_range, quantize_multiplier


def mul(low: Lowering, op: Op):
    (a, arg_a), (b, arg_b) = low.operand(op.inputs[0], op), low.operand(op.inputs[1], op)
    y = low.t(op.outputs[0])
    low.need(len(y.shape) <= 4, op, f"a {len(y.shape)}-D output")
    low.need(_broadcastable(a.shape, y.shape) and _broadcastable(b.shape, y.shape), op,
              f"broadcasting {list(a.shape)} x {list(b.shape)} to {list(y.shape)}")
    real = float(a.scale) * float(b.scale) / float(y.scale)
    mult, shift = quantize_multiplier(real)
    params = {**_broadcast_params(op, a, b, y), "mult": mult, "shift": shift}
    low.steps.append(Step(
        "MUL", "mt_mul_s8", "mt_mul_params_t", params, low.acts(a, b), [y.index],
        [arg_a, arg_b, f"{{t{y.index}}}"], macs=y.size))


def mul_sum(low: Lowering, mul: Op, sum_op: Op):
    a, b = low.int8_act(mul.inputs[0], mul), low.int8_act(mul.inputs[1], mul)
    m = low.t(mul.outputs[0])
    y = low.t(sum_op.outputs[0])
    x, s = (a, b) if a.shape == m.shape else (b, a)
    cols = m.shape[-1]
    rows = m.size // cols
    mm, ms = quantize_multiplier(float(a.scale) * float(b.scale) / float(m.scale))
    act = getattr(mul.options, "fusedActivationFunction", 0) if mul.options is not None else 0
    lo, hi = activation_range(act, m.scale, m.zp)
    sm, ss = quantize_multiplier(float(m.scale) / float(y.scale))
    low.need(y.size == cols, sum_op, f"output shape {list(y.shape)}")
    params = {"rows": f"{rows}u", "cols": f"{cols}u", "x_zp": x.zp, "s_zp": s.zp,
              "mul_zp": m.zp, "mul_mult": mm, "mul_shift": ms, "mul_act_min": lo,
              "mul_act_max": hi, "sum_zp": y.zp, "sum_mult": sm, "sum_shift": ss}
    dsp = False
    bound = 255 * 255
    req = low._requant_dsp([mm], [ms], m.zp, [bound], [255], max_scale=7) \
        if low.dsp and cols % 4 == 0 and lo == _INT8_MIN and hi == _INT8_MAX else None
    sreq = low._requant_dsp([sm], [ss], y.zp, [rows * 255], [0])
    if req is not None and sreq is not None:
        right, (scale,), words_q = req
        sright, (sscale,), swords = sreq
        params.update({"dsp_sum_scale": sscale, "dsp_sum_right": sright,
                       "dsp_sum_q": _c_list(swords)})
        fix = 0 if (x.zp == _INT8_MIN and s.zp == _INT8_MIN) else 1
        params.update({"dsp_scale": scale, "dsp_right": right,
                       "dsp_q": _c_list(words_q), "dsp_signed_fix": fix})
        if cols <= 255 and low.specialize:   # the row stride is a post-increment immediate
            fn = f"{low.prefix}_mul_sum{len(low.steps)}"
            low.specializations.append(f"MT_MUL_SUM_DSP({fn}, {cols}u, {right}, {fix})\n")
            params["dsp_fn"] = f"MT_MUL_SUM_DSP_REF({fn})"
        else:
            params["dsp_fn"] = "MT_MUL_SUM_DSP_REF(mt_mul_sum_dsp_generic)"
        dsp = True
    low.steps.append(Step(
        "MUL+SUM", "mt_mul_sum_s8", "mt_mul_sum_params_t", params, [x.index, s.index],
        [y.index], [f"{{t{x.index}}}", f"{{t{s.index}}}", f"{{t{y.index}}}", "{scratch}"],
        scratch=0, scratch_dsp=rows * 8 if dsp else -1, macs=m.size, dsp=dsp,
        dsp_kernel="mt_mul_sum_s8_dsp" if dsp else ""))
