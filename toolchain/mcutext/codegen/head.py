"""The factory head for on-device personalization: model_head.h (the maxima of
firmware/personalize.h, sized to the model) and head.c (firmware/personalize.c's start).
"""

from __future__ import annotations

import math

import numpy as np

from ..common.errors import McutextError
from .emit import HEAD_HEADER, HEAD_SOURCE, _banner, _c_string
from .graph import Tensor
from .quant import _f32

# Rows reserved for added labels when the manifest's head has no `max_new_labels`; the
# host simulator (mcutext.device.personalize) uses the same default.
DEFAULT_MAX_NEW_LABELS = 4


def _c_float(x) -> str:
    """A float32 as an exact C hex-float literal."""
    v = float(np.float32(x))
    if not math.isfinite(v):
        raise McutextError(f"head: non-finite value {v!r} in the factory head")
    return v.hex() + "f"


def _emit_head(bundle, features: Tensor, g_sha: str, what: str) -> dict[str, str]:
    """model_head.h (the maxima of firmware/personalize.h, sized to this model) and head.c
    (the factory head as an mt_head_factory_t: docs/personalization.md)."""
    head = bundle.manifest.get("head")
    if not head or "weights" not in head or "bias" not in head:
        raise McutextError("the bundle's manifest has no head weights (retrain the bundle "
                           "with this mcutext)")
    w = np.asarray(head["weights"], dtype=np.float32)          # [H, C]
    b = np.asarray(head["bias"], dtype=np.float32).reshape(-1)
    labels = bundle.labels
    if w.ndim != 2 or w.shape[1] != len(labels) or b.size != len(labels):
        raise McutextError(f"head weights {list(w.shape)} / bias {b.size} do not match "
                           f"{len(labels)} labels")
    h, c0 = int(w.shape[0]), int(w.shape[1])
    if h != features.size:
        raise McutextError(f"head input {h} differs from the features output "
                           f"({features.size} values)")
    q = head.get("input_quantization")
    if q is not None and (_f32(q["scale"]) != features.scale
                          or int(q["zero_point"]) != features.zp):
        raise McutextError("the head's input quantization differs from the model's features "
                           "output")
    n_new = int(head.get("max_new_labels", DEFAULT_MAX_NEW_LABELS))
    if not 0 <= n_new <= 255:
        raise McutextError(f"head max_new_labels {n_new}: 0..255 expected")
    if n_new == 0:   # firmware/personalize.c sizes arrays by it: 0 does not compile
        raise McutextError(f"{bundle.path / 'manifest.json'}: head max_new_labels 0: the "
                           "personalizable firmware needs at least one reserved row",
                           hint="build with --no-personalize, or train with "
                                "model.max_new_labels >= 1")
    mean = head.get("feature_mean")
    p = "mt_gen_head"
    hdr = (_banner(what, g_sha)
           + "/* Personalization sizes for firmware/personalize.h (docs/personalization.md):\n"
           " * the head of this model (features -> classes) and its reserved rows. */\n"
           "#ifndef MT_MODEL_HEAD_H\n#define MT_MODEL_HEAD_H\n\n"
           "#define MT_PERSONALIZE 1\n"
           f"#ifndef MT_HEAD_MAX_FEATURES\n#define MT_HEAD_MAX_FEATURES {h}\n#endif\n"
           f"#ifndef MT_HEAD_MAX_NEW_LABELS\n#define MT_HEAD_MAX_NEW_LABELS {n_new}\n#endif\n"
           f"#ifndef MT_HEAD_MAX_CLASSES\n#define MT_HEAD_MAX_CLASSES ({c0} + "
           "MT_HEAD_MAX_NEW_LABELS)\n#endif\n"
           "/* examples kept for `head train` / `head imprint`: 16 per reserved row, >= 64 */\n"
           f"#ifndef MT_TRAIN_BUFFER\n#define MT_TRAIN_BUFFER {train_buffer(n_new)}u\n#endif\n"
           "\n#endif\n")

    def arr(name: str, vals) -> str:
        vals = np.asarray(vals, np.float32).reshape(-1)
        rows = [", ".join(_c_float(v) for v in vals[i:i + 4]) for i in range(0, vals.size, 4)]
        return (f"static const float {name}[{vals.size}] = {{\n    "
                + ",\n    ".join(rows) + ",\n};\n\n")

    label_list = ",\n".join(f"    {_c_string(lbl)}" for lbl in labels)
    src = (_banner(what, g_sha)
           + '#include "personalize.h"\n\n'
           + f"/* [C0 {c0}][H {h}], class-major: the manifest's [H, C] transposed. */\n"
           + arr(f"{p}_weights", np.ascontiguousarray(w.T))
           + arr(f"{p}_bias", b)
           + (arr(f"{p}_mean", np.asarray(mean, np.float32).reshape(h)) if mean is not None
              else "")
           + f"static const char *const {p}_labels[{c0}] = {{\n{label_list},\n}};\n\n"
           + "const mt_head_factory_t mt_model_head = {\n"
           f"    .num_classes = {c0}u,\n"
           f"    .feature_dim = {h}u,\n"
           f"    .max_new_labels = {n_new}u,\n"
           f"    .weights = {p}_weights,\n"
           f"    .bias = {p}_bias,\n"
           f"    .feature_mean = {p + '_mean' if mean is not None else '0'},\n"
           f"    .labels = {p}_labels,\n"
           "};\n")
    return {HEAD_HEADER: hdr, HEAD_SOURCE: src}


def train_buffer(max_new_labels: int) -> int:
    """Examples the firmware keeps for `head train` and `head imprint` (MT_TRAIN_BUFFER)."""
    return max(64, 16 * max_new_labels)
