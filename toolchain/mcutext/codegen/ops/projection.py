"""PRADO's projection in front of the graph: token ids -> the int8 input
(firmware/projection.c).
"""

from __future__ import annotations

import numpy as np

from ...common.errors import McutextError
from ..lowering import Lowering, Step
from ..quant import _f32


def projection(low: Lowering, feed: dict, input_index: int, buckets: int, max_words: int):
    """The ids -> int8 projection input step (firmware/projection.c), written into the
    graph's input tensor in the arena."""
    t = low.t(input_index)
    p, k = int(feed["feature_size"]), int(feed["features_per_word"])
    lut = np.asarray(feed["lut"], dtype=np.int64)
    if (t.dtype != "int8" or t.size != max_words * (p + 1) or len(lut) != 2 * k + 2
            or int(feed["max_words"]) != max_words):
        raise McutextError(f"PRADO input {t.dtype}{list(t.shape)} does not match the "
                           f"manifest's projection (P {p}, K {k}, {max_words} words)")
    if t.scales is None or t.scale != _f32(feed["scale"]) or t.zp != int(feed["zero_point"]):
        raise McutextError("the manifest's projection quantization differs from the "
                           "model input's")
    lut_name = low.array("lut", "int8_t", lut)
    fn = f"{low.prefix}_project"
    low.specializations.append(
        f"/* ids -> the int8 projection input (docs/baselines.md); an id outside\n"
        f" * [0, {buckets}) is refused like the embedding lookup refuses it. */\n"
        f"static mt_status_t {fn}(const mt_projection_spec_t *spec, const int32_t *ids,\n"
        f"                        int8_t *out)\n{{\n"
        f"    for (uint32_t i = 0; i < {max_words * k}u; ++i) {{\n"
        f"        if ((uint32_t)ids[i] >= {buckets}u) {{\n"
        f"            return MT_ERR_RANGE;\n        }}\n    }}\n"
        f"    return mt_projection_input(spec, ids, {max_words}u, {lut_name}, out);\n}}\n\n")
    low.steps.append(Step(
        "PROJECTION", fn, "mt_projection_spec_t",
        {"feature_size": f"{p}u", "features_per_word": f"{k}u",
         "seed": f"{int(feed['seed'])}u"},
        [], [t.index], ["ids", f"{{t{t.index}}}"], status_range=True,
        header="projection.h"))
