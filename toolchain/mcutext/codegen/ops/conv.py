"""CONV_2D with per-channel requantization, portable and DSP (SXTB16) paths
(firmware/kernels/conv.c).
"""

from __future__ import annotations

import numpy as np

from ..graph import Op
from ..quant import _INT8_MAX, _INT8_MIN
from ..lowering import (Lowering, Step, _check_accumulator, _pack_sxtb16_order, _padding,
                        _round_up)
from ..quant import activation_range
from .fully_connected import _fc_step


def conv_2d(low: Lowering, op: Op):
    x = low.int8_act(op.inputs[0], op)
    w = low.const(op.inputs[1], op, "int8")
    y = low.t(op.outputs[0])
    o = op.options
    low.need(len(x.shape) == 4 and x.shape[0] == 1 and len(w.shape) == 4, op,
              f"input shape {list(x.shape)}")
    _, h, wd, cin = x.shape
    cout, kh, kw, wcin = w.shape
    low.need(wcin == cin, op, "grouped convolution")
    low.need(o.dilationHFactor == 1 and o.dilationWFactor == 1, op, "dilation")
    low.need(o.strideH == 1 and o.strideW == 1, op, f"stride {o.strideH}x{o.strideW}")
    mults, shifts = low._per_channel(op, x, w, y, cout, conv_style=True)
    bias = low._bias(op, op.inputs[2] if len(op.inputs) > 2 else -1, cout)
    lo, hi = activation_range(o.fusedActivationFunction, y.scale, y.zp)
    wk = w.data.astype(np.int64)
    if kh == 1 and kw == 1:
        # A 1x1 convolution is a dense layer applied at every position.
        low.need(tuple(y.shape) == (1, h, wd, cout), op, f"output shape {list(y.shape)}")
        _fc_step(low, op, "CONV_2D 1x1", x, y, wk.reshape(cout, cin), bias, mults, shifts,
                      lo, hi, rows=h * wd)
        return
    low.need(wd == 1 and kw == 1, op, f"a {kh}x{kw} kernel over width {wd} (only 1-D "
              "convolutions along H with W = 1)")
    out_len, pad = _padding(o.padding, h, kh, 1)
    low.need(tuple(y.shape) == (1, out_len, 1, cout), op, f"output shape {list(y.shape)}")
    wsum = wk.reshape(cout, -1).sum(axis=1)
    folded = bias - x.zp * wsum
    _check_accumulator(low, op, folded, wk.reshape(cout, -1))
    params = {
        "in_len": f"{h}u", "out_len": f"{out_len}u", "in_ch": f"{cin}u",
        "out_ch": f"{cout}u", "taps": f"{kh}u", "pad_before": f"{pad}u",
        "input_zp": x.zp, "output_zp": y.zp, "act_min": lo, "act_max": hi,
        "weights": low.array("w", "int8_t", w.data.astype(np.int8)),
        "bias": low.array("b", "int32_t", folded),
        "mult": low.array("m", "int32_t", mults),
        "shift": low.array("s", "int32_t", shifts)}
    dsp = False
    wflat = wk.reshape(cout, kh * cin)
    bound = np.abs(bias) + 255 * np.abs(wflat).sum(axis=1)
    req = low._requant_dsp(mults, shifts, y.zp, bound, np.abs(wflat).max(axis=1)) \
        if low.dsp and cin % 4 == 0 else None
    if req is not None:
        right, scales, words_q = req
        fix = 0 if lo >= y.zp else 1
        sc = (1 << np.asarray(scales, dtype=np.int64))
        words = _pack_sxtb16_order(wflat * sc[:, None])             # [cout][nw]
        nw = words.shape[1]
        bias_s = folded * sc
        req3 = np.asarray(words_q, dtype=np.int64).reshape(cout, 3)[:, :3 if fix else 2]
        quads = cout // 4 * 4
        parts = []
        for f in range(0, quads, 4):    # biases, weights per word j (4 channels), requant
            parts += [bias_s[f:f + 4], words[f:f + 4].T.reshape(-1),
                      req3[f:f + 4].reshape(-1)]
        for f in range(quads, cout):    # bias, weights, requant
            parts += [bias_s[f:f + 1], words[f], req3[f]]
        params["dsp"] = low.array("dsp", "int32_t", np.concatenate(parts), "dsp")
        params["dsp_right"] = right
        params["dsp_signed_fix"] = fix
        if quads and lo == _INT8_MIN and hi == _INT8_MAX and low.specialize:
            fn = f"{low.prefix}_conv_quads{len(low.steps)}"
            low.specializations.append(
                f"MT_CONV_DSP_QUADS({fn}, {nw}u, {fix}, {right})\n")
            params["dsp_quads"] = f"MT_CONV_DSP_REF({fn})"
        elif quads:   # an activation clamp: the run-time quad loop
            params["dsp_quads"] = "MT_CONV_DSP_REF(mt_conv_dsp_quads_generic)"
        dsp = True
    if dsp:
        low.portable_only(params)
    low.steps.append(Step(
        "CONV_2D", "mt_conv_s8", "mt_conv_params_t", params, [x.index], [y.index],
        [f"{{t{x.index}}}", f"{{t{y.index}}}", "{scratch}"],
        scratch=_round_up((out_len + kh - 1) * cin, 4),
        scratch_dsp=((out_len + kh - 1) * cin * 2 + (out_len // 2) * kh * cin * 4) if dsp
        else -1,
        macs=out_len * cout * kh * cin, dsp=dsp, dsp_kernel="mt_conv_s8_dsp" if dsp else ""))
