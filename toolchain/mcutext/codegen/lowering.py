"""What lowering an op means: the kernel call steps and constant arrays a graph becomes, and
the checks and requantization helpers every op family shares.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..common.errors import McutextError
from .graph import Graph, Op, SUPPORTED_OPS, Tensor
from .quant import _DSP_LIMIT, _f32, activation_range, quantize_multiplier


@dataclasses.dataclass
class Array:
    name: str
    ctype: str          # int8_t, int32_t, mt_requant_t
    values: np.ndarray  # flat
    path: str = "both"  # the kernel path that reads it: both, dsp, portable

    @property
    def nbytes(self) -> int:
        return self.values.size * (1 if self.ctype == "int8_t" else 4)


@dataclasses.dataclass
class Step:
    op: str                       # op kind(s), for comments and reports
    kernel: str                   # C function
    params_type: str
    params: dict                  # field -> C expression
    reads: list[int]              # tensor indices (buffers) read
    writes: list[int]             # tensor indices written
    args: list[str]               # call arguments after &params, with {t<idx>} / {scratch}
    scratch: int = 0              # scratch bytes (portable path)
    scratch_dsp: int = -1         # scratch bytes when the DSP path runs (-1: same)
    macs: int = 0
    dsp: bool = False             # has DSP-path data
    status_range: bool = False    # MT_ERR_RANGE means a bad input id
    dsp_kernel: str = ""          # DSP-only entry called when MT_USE_DSP (dsp data present)
    header: str = ""              # the kernel's header when not in _KERNEL_HEADERS

    # Fields (and so arrays) each path reads: with a DSP entry, a build links only its own.
    PORTABLE_FIELDS = ("weights", "bias", "mult", "shift")


class Lowering:
    """The graph lowered to kernel calls: the steps, the constant arrays and the tensor
    aliases, and the checks every op family shares. Each op kind is lowered by the function
    `handlers` maps it to (the op modules: conv.py, fully_connected.py, ...)."""

    def __init__(self, graph: Graph, prefix: str, dsp: bool, specialize: bool = True,
                 handlers: dict | None = None):
        self.g = graph
        self.prefix = prefix
        self.dsp = dsp
        self.specialize = specialize
        self.arrays: list[Array] = []
        self.steps: list[Step] = []
        self.alias: dict[int, int] = {}   # tensor -> tensor whose buffer it shares
        self.specializations: list[str] = []   # kernel instantiations for the model.c
        self._shared: dict[tuple, str] = {}
        self.handlers = handlers or {}   # op kind (and "MUL+SUM") -> lowering function

    def t(self, i: int) -> Tensor:
        return self.g.tensors[i]

    def root(self, i: int) -> int:
        while i in self.alias:
            i = self.alias[i]
        return i

    def array(self, stem: str, ctype: str, values, path: str = "both") -> str:
        """A constant array; identical contents share one (FastGRNN's unrolled steps repeat
        their weights)."""
        vals = np.asarray(values).reshape(-1)
        key = (stem, ctype, path, vals.astype(np.int64).tobytes())
        name = self._shared.get(key)
        if name is None:
            name = f"{self.prefix}_{stem}{len(self.arrays)}"
            self.arrays.append(Array(name, ctype, vals, path))
            self._shared[key] = name
        return name

    def settle_paths(self):
        """An array shared by layers: its path is what all its users need (portable_only
        marks the arrays of one layer)."""
        need: dict[str, set] = {}
        for st in self.steps:
            for key, val in st.params.items():
                if not isinstance(val, str):
                    continue
                if st.dsp_kernel and key in Step.PORTABLE_FIELDS:
                    path = "portable"
                elif st.dsp_kernel and (key.startswith("dsp") or key.endswith("_dsp")):
                    path = "dsp"
                else:
                    path = "both"
                need.setdefault(val, set()).add(path)
        for a in self.arrays:
            paths = need.get(a.name)
            if paths:
                a.path = paths.pop() if len(paths) == 1 else "both"

    def portable_only(self, params: dict):
        """A layer with DSP data: its portable arrays are read by the portable path only."""
        names = {params[f] for f in Step.PORTABLE_FIELDS if f in params}
        for a in self.arrays:
            if a.name in names:
                a.path = "portable"

    def need(self, cond: bool, op: Op, what: str):
        if not cond:
            raise McutextError(f"{op.kind} (operator {op.index}): {what} is not supported by "
                               "the mcutext kernels")

    def int8_act(self, i: int, op: Op) -> Tensor:
        t = self.t(i)
        self.need(t.dtype == "int8", op, f"tensor '{t.name}' of type {t.dtype}")
        self.need(t.data is None, op, f"a constant input '{t.name}'")
        if t.scales is not None and len(t.scales) > 1:
            self.need(False, op, f"per-channel quantized activations ('{t.name}')")
        return t

    def const(self, i: int, op: Op, dtype: str) -> Tensor:
        t = self.t(i)
        self.need(t.data is not None, op, f"a non-constant '{t.name}' where weights are expected")
        self.need(t.dtype == dtype, op, f"{t.dtype} weights ('{t.name}')")
        return t

    def operand(self, i: int, op: Op) -> tuple[Tensor, str]:
        """An int8 per-tensor input that may be a constant: (tensor, call argument)."""
        t = self.t(i)
        self.need(t.dtype == "int8", op, f"tensor '{t.name}' of type {t.dtype}")
        self.need(t.scales is not None and len(t.scales) == 1, op,
                  f"a tensor without one scale ('{t.name}')")
        if t.data is None:
            return t, f"{{t{t.index}}}"
        return t, self.array("c", "int8_t", t.data.astype(np.int8))

    @staticmethod
    def acts(*ts: Tensor) -> list[int]:
        return [t.index for t in ts if t.data is None]

    def same_quant(self, op: Op, a: Tensor, b: Tensor):
        self.need(a.scale == b.scale and a.zp == b.zp, op,
                  f"a requantization ('{a.name}' and '{b.name}' differ in scale or zero point)")

    def lower(self):
        consumers: dict[int, list[int]] = {}
        for op in self.g.ops:
            for i in op.inputs:
                if i >= 0:
                    consumers.setdefault(i, []).append(op.index)
        skip = set()
        for op in self.g.ops:
            if op.kind not in SUPPORTED_OPS:
                raise McutextError(
                    f"unsupported op {op.kind} (operator {op.index}): the mcutext code "
                    f"generator handles {', '.join(SUPPORTED_OPS)}")
        for op in self.g.ops:
            if op.index in skip:
                continue
            if op.kind == "MUL":
                nxt = self._fusable_sum(op, consumers)
                if nxt is not None:
                    self.handlers["MUL+SUM"](self, op, nxt)
                    skip.add(nxt.index)
                    continue
            self.handlers[op.kind](self, op)

    def _fusable_sum(self, op: Op, consumers) -> Op | None:
        out = op.outputs[0]
        users = consumers.get(out, [])
        if len(users) != 1 or out in self.g.outputs:
            return None
        nxt = self.g.ops[users[0]]
        if nxt.kind != "SUM" or nxt.inputs[0] != out:
            return None
        a, b = (self.t(i) for i in op.inputs[:2])
        if a.data is not None or b.data is not None or a.dtype != "int8" or b.dtype != "int8":
            return None
        shape = self.t(out).shape
        x, s = (a, b) if a.shape == shape else (b, a) if b.shape == shape else (None, None)
        if x is None or len(shape) < 2:
            return None
        # s must be x's shape with the last axis 1; SUM must reduce every axis but the last
        # (batch axes of size 1 may stay).
        if tuple(s.shape) != tuple(shape[:-1]) + (1,):
            return None
        axes = self.t(nxt.inputs[1])
        if axes.data is None:
            return None
        rank = len(shape)
        red = sorted({int(v) % rank for v in np.asarray(axes.data).reshape(-1)})
        kept = [d for d in range(rank) if d not in red]
        if rank - 1 in red or any(shape[d] != 1 for d in kept[:-1]):
            return None
        return nxt

    def _per_channel(self, op: Op, x: Tensor, w: Tensor, y: Tensor, channels: int,
                     conv_style: bool) -> tuple[list[int], list[int]]:
        """Multipliers and shifts per output channel, as TFLite Micro's Prepare computes them."""
        self.need(w.scales is not None, op, "unquantized weights")
        self.need(all(int(z) == 0 for z in w.zero_points), op, "asymmetric weights")
        per_channel = len(w.scales) > 1
        if per_channel:
            self.need(len(w.scales) == channels and w.qdim == 0, op,
                      "per-channel scales along an axis other than the output channels")
        mults, shifts = [], []
        for ch in range(channels):
            ws = _f32(w.scales[ch if per_channel else 0])
            if per_channel or conv_style:
                real = x.scale * ws / y.scale          # double product (per-channel path)
            else:                                      # GetQuantizedConvolutionMultipler:
                real = float(np.float32(x.scale) * np.float32(ws)) / y.scale  # float product
            m, s = quantize_multiplier(real)
            mults.append(m)
            shifts.append(s)
        return mults, shifts

    def _bias(self, op: Op, idx: int, channels: int) -> np.ndarray:
        if idx < 0:
            return np.zeros(channels, dtype=np.int64)
        b = self.const(idx, op, "int32")
        self.need(b.size == channels, op, "a bias of the wrong size")
        return b.data.astype(np.int64).reshape(-1)

    def _requant_dsp(self, mults, shifts, zp, acc_bound, wmax, max_scale=8):
        """DSP requantization of a layer (mt_requant_t): (E, per-channel scale exponents,
        (mult, add, neg) words), or None when some channel does not fit (then the layer
        stays on the portable path)."""
        rights = [max(-s, 0) for s in shifts]
        lefts = [max(s, 0) for s in shifts]
        right = max(rights) + 1
        if right > 31:
            return None
        scales, words = [], []
        for m, r, left, bound, w in zip(mults, rights, lefts, acc_bound, wmax):
            d = right - r
            sc = 1 + left + d
            if sc > max_scale or int(w) << sc >= 1 << 15 or int(bound) << sc > _DSP_LIMIT:
                return None
            c = zp * (1 << r) + ((1 << (r - 1)) if r >= 1 else 0)
            add = (1 << (d - 1)) + c * (1 << d)
            if abs(add) > _DSP_LIMIT:
                return None
            scales.append(sc)
            words += [int(m), add, (1 << d) if r >= 1 else 0]
        return right, scales, words


def _check_accumulator(low: Lowering, op: Op, folded: np.ndarray, wmat: np.ndarray):
    """The kernels accumulate folded bias + sum w * x (x the raw int8 input) in int32; every
    partial sum must fit (so must TFLite Micro's own accumulator, which this bounds too)."""
    bound = np.abs(folded) + 128 * np.abs(wmat).sum(axis=1)
    low.need(bool(np.all(bound < 2**31)), op, "weights and bias large enough to overflow the "
             "int32 accumulator")


def _padding(padding: int, size: int, filt: int, stride: int) -> tuple[int, int]:
    """(output size, padding before) as TFLite computes them (Padding.SAME = 0, VALID = 1)."""
    if padding == 0:
        out = (size + stride - 1) // stride
    elif padding == 1:
        out = (size - filt + stride) // stride
    else:
        raise McutextError(f"unknown padding {padding}")
    total = max((out - 1) * stride + filt - size, 0)
    return out, total // 2


def _broadcastable(shape, out_shape) -> bool:
    if len(shape) > len(out_shape):
        return False
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    return all(s in (1, o) for s, o in zip(shape, out_shape))


def _dense_strides(shape) -> list[int]:
    return [int(np.prod(shape[d + 1:])) if d + 1 < len(shape) else 1 for d in range(len(shape))]


def _merge_dims(sizes, strides) -> list[tuple[int, int]]:
    """(size, stride) per dimension with size-1 dimensions dropped and dimensions that step
    through memory as one merged (outermost first)."""
    dims = [(int(n), int(s)) for n, s in zip(sizes, strides) if n != 1]
    out: list[tuple[int, int]] = []
    for n, s in dims:
        if out and out[-1][1] == s * n:
            out[-1] = (out[-1][0] * n, s)
        else:
            out.append((n, s))
    return out


def _broadcast_params(op, a, b, y) -> dict:
    """The parameters an elementwise two-input kernel (ADD/SUB, MUL) shares: the output's
    4-D shape, each input's broadcast strides, the zero points and the fused activation's
    int8 range."""
    act = getattr(op.options, "fusedActivationFunction", 0) if op.options is not None else 0
    lo, hi = activation_range(act, y.scale, y.zp)
    shape = (1,) * (4 - len(y.shape)) + tuple(y.shape)
    return {"shape": _c_list(shape, "u"),
            "stride1": _c_list(_bcast_strides(a.shape, shape), "u"),
            "stride2": _c_list(_bcast_strides(b.shape, shape), "u"),
            "input1_zp": a.zp, "input2_zp": b.zp, "output_zp": y.zp,
            "act_min": lo, "act_max": hi}


def _bcast_strides(shape, out_shape) -> list[int]:
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    dense = [int(np.prod(shape[d + 1:])) if d + 1 < len(shape) else 1 for d in range(len(shape))]
    return [0 if shape[d] == 1 and out_shape[d] != 1 else dense[d] for d in range(len(shape))]


def _pack_sxtb16_order(wmat: np.ndarray) -> np.ndarray:
    """[rows][n] int16 values (n % 4 == 0) -> [rows][n/2] int32 words, each group of four
    w0..w3 as (w0 | w2 << 16), (w1 | w3 << 16): the order SXTB16 / SXTB16 ROR 8 unpack."""
    w = np.asarray(wmat, dtype=np.int64)
    assert w.shape[1] % 4 == 0 and np.abs(w).max(initial=0) < 2**15
    g = w.reshape(w.shape[0], -1, 4) & 0xFFFF
    even = g[:, :, 0] | (g[:, :, 2] << 16)
    odd = g[:, :, 1] | (g[:, :, 3] << 16)
    words = np.stack([even, odd], axis=2).reshape(w.shape[0], -1)
    return words.astype(np.uint32).view(np.int32).astype(np.int64)


def _c_list(values, suffix: str = "") -> str:
    return "{" + ", ".join(f"{int(v)}{suffix}" for v in values) + "}"


def _round_up(v: int, a: int) -> int:
    return (v + a - 1) // a * a
