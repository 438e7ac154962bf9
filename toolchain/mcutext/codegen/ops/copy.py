"""RESHAPE (an alias), STRIDED_SLICE, TRANSPOSE, PACK, CONCATENATION: strided copies
(firmware/kernels/copy.c).
"""

from __future__ import annotations

import numpy as np

from ..graph import Op, Tensor
from ..lowering import Lowering, Step, _c_list, _dense_strides, _merge_dims


def reshape(low: Lowering, op: Op):
    src, dst = low.t(op.inputs[0]), low.t(op.outputs[0])
    low.need(src.data is None, op, "reshaping a constant")
    low.need(op.outputs[0] not in low.g.outputs or op.inputs[0] not in low.g.inputs, op,
              "a model output that is a reshaped model input")
    low.need(src.size == dst.size and src.dtype == dst.dtype, op, "a size-changing reshape")
    low.alias[dst.index] = src.index


def _copy(low: Lowering, op: Op, x: Tensor, y: Tensor, sizes, strides, offset: int):
    """A strided copy of x into y (dense), or an alias when it is all of x in order."""
    low.need(x.dtype == y.dtype and x.dtype in ("int8", "int32"), op,
              f"{x.dtype} -> {y.dtype}")
    if x.dtype == "int8":
        low.same_quant(op, x, y)
    dims = _merge_dims(sizes, strides)
    low.need(int(np.prod([d for d, _ in dims])) == y.size, op,
              f"output shape {list(y.shape)}")
    if (offset == 0 and len(dims) <= 1 and (not dims or dims[0][1] == 1)
            and y.size == x.size and low.root(x.index) not in low.g.inputs
            and y.index not in low.g.outputs):
        low.alias[y.index] = x.index            # the whole input in order: no copy
        return
    low.need(len(dims) <= 4, op, "a copy of more than 4 dimensions")
    dims = [(1, 0)] * (4 - len(dims)) + dims
    low.steps.append(Step(
        op.kind, "mt_strided_copy", "mt_strided_copy_params_t",
        {"shape": _c_list([d for d, _ in dims], "u"),
         "stride": _c_list([s_ for _, s_ in dims], "u"), "offset": f"{offset}u",
         "elem_bytes": f"{4 if x.dtype == 'int32' else 1}u"},
        [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))


def strided_slice(low: Lowering, op: Op):
    x, y = low.t(op.inputs[0]), low.t(op.outputs[0])
    low.need(x.data is None, op, "slicing a constant")
    begin, end, step = (low.t(i) for i in op.inputs[1:4])
    low.need(all(t.data is not None for t in (begin, end, step)), op,
              "non-constant begin / end / strides")
    o = op.options
    bm, em, sm = o.beginMask, o.endMask, o.shrinkAxisMask
    low.need(o.ellipsisMask == 0 and o.newAxisMask == 0 and not getattr(o, "offset", False),
              op, "ellipsis / new-axis masks or offset mode")
    rank = len(x.shape)
    b, e, st = (np.asarray(t.data).reshape(-1).astype(int) for t in (begin, end, step))
    low.need(len(b) == len(e) == len(st) == rank, op, "begin/end/strides of another rank")
    dense = _dense_strides(x.shape)
    sizes, strides, offset = [], [], 0
    for d in range(rank):
        dim = x.shape[d]
        low.need(st[d] >= 1, op, f"stride {st[d]}")
        low.need(not (sm >> d & 1 and (bm | em) >> d & 1), op, "a masked shrink axis")
        start = 0 if bm >> d & 1 else int(b[d]) + (dim if b[d] < 0 else 0)
        start = min(max(start, 0), dim)
        if sm >> d & 1:
            low.need(start < dim, op, "a shrink axis out of range")
            stop = start + 1
        else:
            stop = dim if em >> d & 1 else int(e[d]) + (dim if e[d] < 0 else 0)
            stop = min(max(stop, 0), dim)
        n = max(0, -(-(stop - start) // int(st[d])))
        sizes.append(n)
        strides.append(int(st[d]) * dense[d])
        offset += start * dense[d]
    low.need(int(np.prod(sizes)) == y.size and y.size > 0, op,
              f"output shape {list(y.shape)}")
    _copy(low, op, x, y, sizes, strides, offset)


def transpose(low: Lowering, op: Op):
    x, y = low.t(op.inputs[0]), low.t(op.outputs[0])
    low.need(x.data is None, op, "transposing a constant")
    perm_t = low.t(op.inputs[1])
    low.need(perm_t.data is not None, op, "a non-constant permutation")
    rank = len(x.shape)
    perm = [int(v) % rank for v in np.asarray(perm_t.data).reshape(-1)]
    low.need(sorted(perm) == list(range(rank)), op, f"permutation {perm}")
    low.need(tuple(y.shape) == tuple(x.shape[d] for d in perm), op,
              f"output shape {list(y.shape)}")
    dense = _dense_strides(x.shape)
    _copy(low, op, x, y, [x.shape[d] for d in perm], [dense[d] for d in perm], 0)


def _concat(low: Lowering, op: Op, ins: list[Tensor], y: Tensor, axis: int, in_rank: int):
    low.need(y.dtype == "int8", op, f"{y.dtype} output")
    for t in ins:
        low.need(t.dtype == "int8" and t.data is None, op,
                  f"input '{t.name}' ({t.dtype}{' constant' if t.data is not None else ''})")
        low.same_quant(op, t, y)
    outer = int(np.prod(y.shape[:axis])) if axis else 1
    blocks = [int(np.prod(t.shape[axis:])) if axis < in_rank else 1 for t in ins]
    low.need(outer * sum(blocks) == y.size, op, f"output shape {list(y.shape)}")
    low.steps.append(Step(
        op.kind, "mt_concat_s8", "mt_concat_params_t",
        {"inputs": f"{len(ins)}u", "outer": f"{outer}u",
         "bytes": low.array("blk", "uint32_t", blocks)},
        [t.index for t in ins], [y.index],
        ["{list:" + ",".join(str(t.index) for t in ins) + "}", f"{{t{y.index}}}"]))


def pack(low: Lowering, op: Op):
    ins = [low.t(i) for i in op.inputs]
    y = low.t(op.outputs[0])
    rank = len(ins[0].shape)
    axis = op.options.axis % (rank + 1)
    low.need(all(t.shape == ins[0].shape for t in ins), op, "inputs of different shapes")
    _concat(low, op, ins, y, axis, rank)


def concatenation(low: Lowering, op: Op):
    ins = [low.t(i) for i in op.inputs]
    y = low.t(op.outputs[0])
    o = op.options
    low.need(o.fusedActivationFunction == 0, op, "a fused activation")
    rank = len(y.shape)
    axis = o.axis % rank
    _concat(low, op, ins, y, axis, rank)
