"""AVERAGE_POOL_2D (firmware/kernels/avg_pool.c).
"""

from __future__ import annotations

from ..graph import Op
from ..quant import _INT8_MAX, _INT8_MIN
from ..lowering import Lowering, Step, _padding
from ..quant import activation_range


def average_pool_2d(low: Lowering, op: Op):
    x, y = low.int8_act(op.inputs[0], op), low.t(op.outputs[0])
    o = op.options
    low.need(len(x.shape) == 4 and len(y.shape) == 4 and x.shape[0] == 1, op,
              f"input shape {list(x.shape)}")
    low.need(x.scale == y.scale and x.zp == y.zp, op, "different input/output quantization")
    _, h, w, c = x.shape
    fh, fw, sh, sw = o.filterHeight, o.filterWidth, o.strideH, o.strideW
    (oh, ph), (ow, pw) = _padding(o.padding, h, fh, sh), _padding(o.padding, w, fw, sw)
    low.need((1, oh, ow, c) == tuple(y.shape), op, f"output shape {list(y.shape)}")
    lo, hi = activation_range(o.fusedActivationFunction, y.scale, y.zp)
    params = {"in_h": f"{h}u", "in_w": f"{w}u", "channels": f"{c}u", "out_h": f"{oh}u",
              "out_w": f"{ow}u", "filter_h": f"{fh}u", "filter_w": f"{fw}u",
              "stride_h": f"{sh}u", "stride_w": f"{sw}u", "pad_h": f"{ph}u",
              "pad_w": f"{pw}u", "act_min": lo, "act_max": hi}
    full = ph == 0 and (oh - 1) * sh + fh <= h        # every window complete
    dsp = False
    if (low.dsp and low.specialize and w == 1 and ow == 1 and fw == 1 and c % 4 == 0
            and full
            and 2 <= fh <= 128 and fh & (fh - 1) == 0 and lo == _INT8_MIN
            and hi == _INT8_MAX):
        fn = f"{low.prefix}_avg_pool{len(low.steps)}"
        low.specializations.append(
            f"MT_AVG_POOL_DSP_1D({fn}, {fh}u, {c}u, {fh.bit_length() - 1})\n")
        params["dsp_1d"] = f"MT_AVG_POOL_DSP_REF({fn})"
        dsp = True
    low.steps.append(Step(
        "AVERAGE_POOL_2D", "mt_avg_pool_s8", "mt_avg_pool_params_t", params,
        [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"], dsp=dsp,
        dsp_kernel="mt_avg_pool_s8_dsp" if dsp else ""))
