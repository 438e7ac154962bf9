"""FULLY_CONNECTED, portable and DSP paths (firmware/kernels/fully_connected.c).
"""

from __future__ import annotations

import numpy as np

from ..graph import Op
from ..lowering import Lowering, Step, _check_accumulator, _pack_sxtb16_order
from ..quant import activation_range


def fully_connected(low: Lowering, op: Op):
    x = low.int8_act(op.inputs[0], op)
    w = low.const(op.inputs[1], op, "int8")
    y = low.t(op.outputs[0])
    o = op.options
    low.need(getattr(o, "weightsFormat", 0) == 0, op, "shuffled weights")
    low.need(not getattr(o, "asymmetricQuantizeInputs", False), op, "hybrid quantization")
    low.need(len(w.shape) == 2, op, f"weights of shape {list(w.shape)}")
    out_len, in_len = w.shape
    low.need(x.size % in_len == 0, op, "an input size that is not a multiple of the rows")
    rows = x.size // in_len
    low.need(y.size == rows * out_len, op, f"output shape {list(y.shape)}")
    mults, shifts = low._per_channel(op, x, w, y, out_len, conv_style=False)
    bias = low._bias(op, op.inputs[2] if len(op.inputs) > 2 else -1, out_len)
    lo, hi = activation_range(o.fusedActivationFunction, y.scale, y.zp)
    _fc_step(low, op, "FULLY_CONNECTED", x, y, w.data.astype(np.int64), bias, mults, shifts,
                  lo, hi, rows=rows)


def _fc_step(low: Lowering, op, name, x, y, wmat, bias, mults, shifts, lo, hi, rows):
    out_len, in_len = wmat.shape
    folded = bias - x.zp * wmat.sum(axis=1)
    _check_accumulator(low, op, folded, wmat)
    params = {
        "rows": f"{rows}u", "in_len": f"{in_len}u", "out_len": f"{out_len}u",
        "input_zp": x.zp, "output_zp": y.zp, "act_min": lo, "act_max": hi,
        "weights": low.array("w", "int8_t", wmat.astype(np.int8)),
        "bias": low.array("b", "int32_t", folded),
        "mult": low.array("m", "int32_t", mults),
        "shift": low.array("s", "int32_t", shifts)}
    dsp = False
    bound = np.abs(bias) + 255 * np.abs(wmat).sum(axis=1)
    req = low._requant_dsp(mults, shifts, y.zp, bound, np.abs(wmat).max(axis=1)) \
        if low.dsp else None
    if req is not None:
        right, scales, words_q = req
        sc = (1 << np.asarray(scales, dtype=np.int64))
        g = in_len // 4
        scaled = wmat * sc[:, None]
        words = (_pack_sxtb16_order(scaled[:, :4 * g]) if g         # [out][2g]
                 else np.zeros((out_len, 0), dtype=np.int64))
        tail = scaled[:, 4 * g:]                                     # [out][in % 4]
        quads = out_len // 4 * 4
        parts = []
        for f in range(0, quads, 4):    # [group][ch][2], then [tail input][ch]
            parts.append(words[f:f + 4].reshape(4, g, 2).transpose(1, 0, 2).reshape(-1))
            parts.append(tail[f:f + 4].T.reshape(-1))
        for f in range(quads, out_len):
            parts += [words[f], tail[f]]
        params["weights_dsp"] = low.array("wd", "int32_t", np.concatenate(parts), "dsp")
        params["bias_dsp"] = low.array("bd", "int32_t", folded * sc, "dsp")
        params["requant_dsp"] = low.array("rq", "mt_requant_t", words_q, "dsp")
        params["dsp_right"] = right
        params["dsp_signed_fix"] = 0 if lo >= y.zp else 1
        dsp = True
    if dsp:
        low.portable_only(params)
    low.steps.append(Step(
        name, "mt_fully_connected_s8", "mt_fc_params_t", params, [x.index], [y.index],
        [f"{{t{x.index}}}", f"{{t{y.index}}}"], macs=rows * in_len * out_len, dsp=dsp,
        dsp_kernel="mt_fully_connected_s8_dsp" if dsp else ""))
