"""GATHER (firmware/kernels/gather.c): the hashed embedding lookup.
"""

from __future__ import annotations

import numpy as np

from ..graph import Op
from ..lowering import Lowering, Step


def gather(low: Lowering, op: Op):
    table = low.const(op.inputs[0], op, "int8")
    ids = low.t(op.inputs[1])
    out = low.t(op.outputs[0])
    o = op.options
    axis = getattr(o, "axis", 0) if o is not None else 0
    batch = getattr(o, "batchDims", 0) if o is not None else 0
    low.need(axis == 0 and batch == 0, op, f"axis {axis} / batch_dims {batch}")
    low.need(ids.dtype == "int32" and ids.data is None, op, "constant or non-int32 indices")
    low.need(out.dtype == "int8", op, f"{out.dtype} output")
    rows = table.shape[0]
    row_bytes = int(np.prod(table.shape[1:])) if len(table.shape) > 1 else 1
    low.need(out.size == ids.size * row_bytes, op, "an output shape that is not ids x row")
    tbl = low.array("table", "int8_t", table.data.astype(np.int8))
    low.steps.append(Step(
        "GATHER", "mt_gather_s8", "mt_gather_params_t",
        {"table": tbl, "rows": f"{rows}u", "row_bytes": f"{row_bytes}u"},
        [], [out.index], [f"{{t{ids.index}}}", f"{ids.size}u", f"{{t{out.index}}}"],
        status_range=True))
