"""Code generator: model_int8.tflite -> C for the firmware (docs/codegen.md).

The int8 flatbuffer is parsed on the host; every op becomes one call of a kernel of
firmware/kernels/ with a constant parameter struct, every activation tensor gets a fixed
offset in one static arena (greedy plan over tensor lifetimes), RESHAPE is an alias, and a
MUL whose product only feeds a SUM is fused with it (the product is never stored). The
device does no flatbuffer parsing and no allocation.

    generate(bundle_path, out_dir)   -> model.c, weights.c, model_gen.h implementing
                                        firmware/model_api.h
    generate_graph(tflite, out_dir, prefix)
                                     -> the same for any graph of supported ops, with a
                                        generic entry point (used by the kernel tests)

Requantization constants are computed here exactly as TFLite Micro computes them in its
Prepare step (QuantizeMultiplier: frexp, round half away from zero), so the generated C and
the TFLite Micro interpreter produce the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np

from . import __version__
from .errors import McutextError

SUPPORTED_OPS = ("GATHER", "RESHAPE", "AVERAGE_POOL_2D", "CONV_2D", "SOFTMAX", "MUL", "SUM",
                 "FULLY_CONNECTED",
                 # the baselines' ops (docs/baselines.md): FastGRNN, PRADO
                 "ADD", "SUB", "LOGISTIC", "TANH", "QUANTIZE", "MEAN", "STRIDED_SLICE",
                 "TRANSPOSE", "PACK", "CONCATENATION", "MINIMUM")
ALIGN = 8                 # arena offsets and const arrays (LDRD needs 4; 8 for good measure)
HEADER = "model_gen.h"
SOURCE = "model.c"
WEIGHTS = "weights.c"
ENCODING = "encoding.c"  # the robust encoding's table (tokenizer spec version 2 only)
HEAD_HEADER = "model_head.h"   # personalization sizes (firmware/personalize.h includes it)
HEAD_SOURCE = "head.c"         # the factory head for firmware/personalize.c
_INT8_MIN, _INT8_MAX = -128, 127
_DSP_LIMIT = 1 << 30      # |2 * accumulator| and |rounding constant| bound of mt_requant_t


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - the package is a dependency
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


# --- TFLite arithmetic, host side ----------------------------------------------------------

def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: (Q31 multiplier, shift) with real = m * 2^(shift - 31)."""
    if real == 0.0:
        return 0, 0
    if real < 0 or not math.isfinite(real):
        raise McutextError(f"cannot quantize the multiplier {real!r}")
    q, shift = math.frexp(real)
    q_fixed = math.floor(q * (1 << 31) + 0.5)  # std::round of a positive value (exact here)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def _f32(x) -> float:
    return float(np.float32(x))


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8: zp + roundf(f / scale) in float32."""
    def q(f: float) -> int:
        v = np.float32(f) / np.float32(scale)
        r = math.floor(abs(float(v)) + 0.5) * (1 if v >= 0 else -1)   # roundf
        return int(zero_point) + int(r)
    if activation == 0:          # NONE
        return _INT8_MIN, _INT8_MAX
    if activation == 1:          # RELU
        return max(_INT8_MIN, q(0.0)), _INT8_MAX
    if activation == 2:          # RELU_N1_TO_1
        return max(_INT8_MIN, q(-1.0)), min(_INT8_MAX, q(1.0))
    if activation == 3:          # RELU6
        return max(_INT8_MIN, q(0.0)), min(_INT8_MAX, q(6.0))
    raise McutextError(f"fused activation {activation} is not supported by the int8 kernels")


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling(beta, input_scale, 5) and -CalculateInputRadius(5, shift)."""
    real = min(float(np.float32(beta)) * _f32(input_scale) * float(1 << 26), (1 << 31) - 1.0)
    if not real > 1.0:
        raise McutextError(f"SOFTMAX: input scale {input_scale} x beta {beta} is too small "
                           "for TFLite's int8 softmax")
    mult, shift = quantize_multiplier(real)
    radius = math.floor(31.0 * float(1 << 26) / float(1 << shift))
    return mult, shift, -int(radius)


# --- the graph -----------------------------------------------------------------------------

@dataclasses.dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: np.ndarray | None
    zero_points: np.ndarray | None
    qdim: int
    data: np.ndarray | None

    @property
    def scale(self) -> float:
        if self.scales is None or len(self.scales) == 0:
            raise McutextError(f"tensor '{self.name}' is not quantized")
        return _f32(self.scales[0])

    @property
    def zp(self) -> int:
        if self.zero_points is None or len(self.zero_points) == 0:
            return 0
        return int(self.zero_points[0])

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * {"int8": 1, "int16": 2, "int32": 4, "float32": 4}.get(self.dtype, 4)


@dataclasses.dataclass
class Op:
    index: int
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: object


@dataclasses.dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    sha256: str


_DTYPES = {"INT8": "int8", "INT32": "int32", "INT16": "int16", "FLOAT32": "float32",
           "UINT8": "uint8", "INT64": "int64", "BOOL": "bool"}
_NP = {"int8": np.int8, "int32": np.int32, "int16": np.int16, "float32": np.float32,
       "uint8": np.uint8, "int64": np.int64, "bool": np.bool_}


def read_graph(tflite: bytes) -> Graph:
    """Parse the flatbuffer into tensors (shapes, quantization, constant data) and ops."""
    schema = _schema()
    if len(tflite) < 8 or tflite[4:8] != b"TFL3":
        raise McutextError("not a TFLite flatbuffer (missing the 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    except Exception as e:  # corrupt input raises assorted errors inside the reader
        raise McutextError(f"corrupt TFLite flatbuffer ({type(e).__name__}: {e})") from None
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise McutextError("the model must have exactly one subgraph")
    sg = model.subgraphs[0]
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    tensors = []
    for i, t in enumerate(sg.tensors):
        dtype = _DTYPES.get(type_names.get(t.type, ""), f"type{t.type}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        q = t.quantization
        scales = zps = None
        qdim = 0
        if q is not None and q.scale is not None and len(q.scale):
            scales = np.asarray(q.scale, dtype=np.float32)
            zps = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], dtype=np.int64)
            qdim = int(q.quantizedDimension)
        data = None
        buf = model.buffers[t.buffer] if 0 < t.buffer < len(model.buffers) else None
        if buf is not None and buf.data is not None and len(buf.data):
            raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
            if dtype in _NP:
                data = np.frombuffer(raw, dtype=_NP[dtype]).reshape(shape if shape else ())
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name)
        tensors.append(Tensor(i, name, shape, dtype, scales, zps, qdim, data))
    ops = []
    for k, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if code.customCode:
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) \
                else str(code.customCode)
            kind = f"CUSTOM({custom})"
        else:
            kind = op_names.get(builtin, f"BUILTIN_{builtin}")
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        ops.append(Op(k, kind, ins, outs, op.builtinOptions))
    return Graph(tensors, ops, [int(i) for i in sg.inputs], [int(i) for i in sg.outputs],
                 hashlib.sha256(tflite).hexdigest())


# --- lowering: ops -> kernel calls -----------------------------------------------------------

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


class _Lowering:
    def __init__(self, graph: Graph, prefix: str, dsp: bool, specialize: bool = True):
        self.g = graph
        self.prefix = prefix
        self.dsp = dsp
        self.specialize = specialize
        self.arrays: list[Array] = []
        self.steps: list[Step] = []
        self.alias: dict[int, int] = {}   # tensor -> tensor whose buffer it shares
        self.specializations: list[str] = []   # kernel instantiations for the model.c
        self._shared: dict[tuple, str] = {}

    # helpers
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

    # --- ops
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
                    self.mul_sum(op, nxt)
                    skip.add(nxt.index)
                    continue
            getattr(self, op.kind.lower())(op)

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

    def gather(self, op: Op):
        table = self.const(op.inputs[0], op, "int8")
        ids = self.t(op.inputs[1])
        out = self.t(op.outputs[0])
        o = op.options
        axis = getattr(o, "axis", 0) if o is not None else 0
        batch = getattr(o, "batchDims", 0) if o is not None else 0
        self.need(axis == 0 and batch == 0, op, f"axis {axis} / batch_dims {batch}")
        self.need(ids.dtype == "int32" and ids.data is None, op, "constant or non-int32 indices")
        self.need(out.dtype == "int8", op, f"{out.dtype} output")
        rows = table.shape[0]
        row_bytes = int(np.prod(table.shape[1:])) if len(table.shape) > 1 else 1
        self.need(out.size == ids.size * row_bytes, op, "an output shape that is not ids x row")
        tbl = self.array("table", "int8_t", table.data.astype(np.int8))
        self.steps.append(Step(
            "GATHER", "mt_gather_s8", "mt_gather_params_t",
            {"table": tbl, "rows": f"{rows}u", "row_bytes": f"{row_bytes}u"},
            [], [out.index], [f"{{t{ids.index}}}", f"{ids.size}u", f"{{t{out.index}}}"],
            status_range=True))

    def reshape(self, op: Op):
        src, dst = self.t(op.inputs[0]), self.t(op.outputs[0])
        self.need(src.data is None, op, "reshaping a constant")
        self.need(op.outputs[0] not in self.g.outputs or op.inputs[0] not in self.g.inputs, op,
                  "a model output that is a reshaped model input")
        self.need(src.size == dst.size and src.dtype == dst.dtype, op, "a size-changing reshape")
        self.alias[dst.index] = src.index

    def average_pool_2d(self, op: Op):
        x, y = self.int8_act(op.inputs[0], op), self.t(op.outputs[0])
        o = op.options
        self.need(len(x.shape) == 4 and len(y.shape) == 4 and x.shape[0] == 1, op,
                  f"input shape {list(x.shape)}")
        self.need(x.scale == y.scale and x.zp == y.zp, op, "different input/output quantization")
        _, h, w, c = x.shape
        fh, fw, sh, sw = o.filterHeight, o.filterWidth, o.strideH, o.strideW
        (oh, ph), (ow, pw) = _padding(o.padding, h, fh, sh), _padding(o.padding, w, fw, sw)
        self.need((1, oh, ow, c) == tuple(y.shape), op, f"output shape {list(y.shape)}")
        lo, hi = activation_range(o.fusedActivationFunction, y.scale, y.zp)
        params = {"in_h": f"{h}u", "in_w": f"{w}u", "channels": f"{c}u", "out_h": f"{oh}u",
                  "out_w": f"{ow}u", "filter_h": f"{fh}u", "filter_w": f"{fw}u",
                  "stride_h": f"{sh}u", "stride_w": f"{sw}u", "pad_h": f"{ph}u",
                  "pad_w": f"{pw}u", "act_min": lo, "act_max": hi}
        full = ph == 0 and (oh - 1) * sh + fh <= h        # every window complete
        dsp = False
        if (self.dsp and self.specialize and w == 1 and ow == 1 and fw == 1 and c % 4 == 0
                and full
                and 2 <= fh <= 128 and fh & (fh - 1) == 0 and lo == _INT8_MIN
                and hi == _INT8_MAX):
            fn = f"{self.prefix}_avg_pool{len(self.steps)}"
            self.specializations.append(
                f"MT_AVG_POOL_DSP_1D({fn}, {fh}u, {c}u, {fh.bit_length() - 1})\n")
            params["dsp_1d"] = f"MT_AVG_POOL_DSP_REF({fn})"
            dsp = True
        self.steps.append(Step(
            "AVERAGE_POOL_2D", "mt_avg_pool_s8", "mt_avg_pool_params_t", params,
            [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"], dsp=dsp,
            dsp_kernel="mt_avg_pool_s8_dsp" if dsp else ""))

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

    def conv_2d(self, op: Op):
        x = self.int8_act(op.inputs[0], op)
        w = self.const(op.inputs[1], op, "int8")
        y = self.t(op.outputs[0])
        o = op.options
        self.need(len(x.shape) == 4 and x.shape[0] == 1 and len(w.shape) == 4, op,
                  f"input shape {list(x.shape)}")
        _, h, wd, cin = x.shape
        cout, kh, kw, wcin = w.shape
        self.need(wcin == cin, op, "grouped convolution")
        self.need(o.dilationHFactor == 1 and o.dilationWFactor == 1, op, "dilation")
        self.need(o.strideH == 1 and o.strideW == 1, op, f"stride {o.strideH}x{o.strideW}")
        mults, shifts = self._per_channel(op, x, w, y, cout, conv_style=True)
        bias = self._bias(op, op.inputs[2] if len(op.inputs) > 2 else -1, cout)
        lo, hi = activation_range(o.fusedActivationFunction, y.scale, y.zp)
        wk = w.data.astype(np.int64)
        if kh == 1 and kw == 1:
            # A 1x1 convolution is a dense layer applied at every position.
            self.need(tuple(y.shape) == (1, h, wd, cout), op, f"output shape {list(y.shape)}")
            self._fc_step(op, "CONV_2D 1x1", x, y, wk.reshape(cout, cin), bias, mults, shifts,
                          lo, hi, rows=h * wd)
            return
        self.need(wd == 1 and kw == 1, op, f"a {kh}x{kw} kernel over width {wd} (only 1-D "
                  "convolutions along H with W = 1)")
        out_len, pad = _padding(o.padding, h, kh, 1)
        self.need(tuple(y.shape) == (1, out_len, 1, cout), op, f"output shape {list(y.shape)}")
        wsum = wk.reshape(cout, -1).sum(axis=1)
        folded = bias - x.zp * wsum
        _check_accumulator(self, op, folded, wk.reshape(cout, -1))
        params = {
            "in_len": f"{h}u", "out_len": f"{out_len}u", "in_ch": f"{cin}u",
            "out_ch": f"{cout}u", "taps": f"{kh}u", "pad_before": f"{pad}u",
            "input_zp": x.zp, "output_zp": y.zp, "act_min": lo, "act_max": hi,
            "weights": self.array("w", "int8_t", w.data.astype(np.int8)),
            "bias": self.array("b", "int32_t", folded),
            "mult": self.array("m", "int32_t", mults),
            "shift": self.array("s", "int32_t", shifts)}
        dsp = False
        wflat = wk.reshape(cout, kh * cin)
        bound = np.abs(bias) + 255 * np.abs(wflat).sum(axis=1)
        req = self._requant_dsp(mults, shifts, y.zp, bound, np.abs(wflat).max(axis=1)) \
            if self.dsp and cin % 4 == 0 else None
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
            params["dsp"] = self.array("dsp", "int32_t", np.concatenate(parts), "dsp")
            params["dsp_right"] = right
            params["dsp_signed_fix"] = fix
            if quads and lo == _INT8_MIN and hi == _INT8_MAX and self.specialize:
                fn = f"{self.prefix}_conv_quads{len(self.steps)}"
                self.specializations.append(
                    f"MT_CONV_DSP_QUADS({fn}, {nw}u, {fix}, {right})\n")
                params["dsp_quads"] = f"MT_CONV_DSP_REF({fn})"
            elif quads:   # an activation clamp: the run-time quad loop
                params["dsp_quads"] = "MT_CONV_DSP_REF(mt_conv_dsp_quads_generic)"
            dsp = True
        if dsp:
            self.portable_only(params)
        self.steps.append(Step(
            "CONV_2D", "mt_conv_s8", "mt_conv_params_t", params, [x.index], [y.index],
            [f"{{t{x.index}}}", f"{{t{y.index}}}", "{scratch}"],
            scratch=_round_up((out_len + kh - 1) * cin, 4),
            scratch_dsp=((out_len + kh - 1) * cin * 2 + (out_len // 2) * kh * cin * 4) if dsp
            else -1,
            macs=out_len * cout * kh * cin, dsp=dsp, dsp_kernel="mt_conv_s8_dsp" if dsp else ""))

    def fully_connected(self, op: Op):
        x = self.int8_act(op.inputs[0], op)
        w = self.const(op.inputs[1], op, "int8")
        y = self.t(op.outputs[0])
        o = op.options
        self.need(getattr(o, "weightsFormat", 0) == 0, op, "shuffled weights")
        self.need(not getattr(o, "asymmetricQuantizeInputs", False), op, "hybrid quantization")
        self.need(len(w.shape) == 2, op, f"weights of shape {list(w.shape)}")
        out_len, in_len = w.shape
        self.need(x.size % in_len == 0, op, "an input size that is not a multiple of the rows")
        rows = x.size // in_len
        self.need(y.size == rows * out_len, op, f"output shape {list(y.shape)}")
        mults, shifts = self._per_channel(op, x, w, y, out_len, conv_style=False)
        bias = self._bias(op, op.inputs[2] if len(op.inputs) > 2 else -1, out_len)
        lo, hi = activation_range(o.fusedActivationFunction, y.scale, y.zp)
        self._fc_step(op, "FULLY_CONNECTED", x, y, w.data.astype(np.int64), bias, mults, shifts,
                      lo, hi, rows=rows)

    def _fc_step(self, op, name, x, y, wmat, bias, mults, shifts, lo, hi, rows):
        out_len, in_len = wmat.shape
        folded = bias - x.zp * wmat.sum(axis=1)
        _check_accumulator(self, op, folded, wmat)
        params = {
            "rows": f"{rows}u", "in_len": f"{in_len}u", "out_len": f"{out_len}u",
            "input_zp": x.zp, "output_zp": y.zp, "act_min": lo, "act_max": hi,
            "weights": self.array("w", "int8_t", wmat.astype(np.int8)),
            "bias": self.array("b", "int32_t", folded),
            "mult": self.array("m", "int32_t", mults),
            "shift": self.array("s", "int32_t", shifts)}
        dsp = False
        bound = np.abs(bias) + 255 * np.abs(wmat).sum(axis=1)
        req = self._requant_dsp(mults, shifts, y.zp, bound, np.abs(wmat).max(axis=1)) \
            if self.dsp else None
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
            params["weights_dsp"] = self.array("wd", "int32_t", np.concatenate(parts), "dsp")
            params["bias_dsp"] = self.array("bd", "int32_t", folded * sc, "dsp")
            params["requant_dsp"] = self.array("rq", "mt_requant_t", words_q, "dsp")
            params["dsp_right"] = right
            params["dsp_signed_fix"] = 0 if lo >= y.zp else 1
            dsp = True
        if dsp:
            self.portable_only(params)
        self.steps.append(Step(
            name, "mt_fully_connected_s8", "mt_fc_params_t", params, [x.index], [y.index],
            [f"{{t{x.index}}}", f"{{t{y.index}}}"], macs=rows * in_len * out_len, dsp=dsp,
            dsp_kernel="mt_fully_connected_s8_dsp" if dsp else ""))

    def softmax(self, op: Op):
        x, y = self.int8_act(op.inputs[0], op), self.t(op.outputs[0])
        self.need(y.dtype == "int8", op, f"{y.dtype} output")
        self.need(y.zp == -128 and y.scale == _f32(1.0 / 256), op,
                  "an output quantization other than scale 1/256, zero point -128")
        depth = x.shape[-1]
        rows = x.size // depth
        beta = getattr(op.options, "beta", 1.0) if op.options is not None else 1.0
        mult, shift, diff_min = softmax_params(beta, x.scale)
        self.steps.append(Step(
            "SOFTMAX", "mt_softmax_s8", "mt_softmax_params_t",
            {"rows": f"{rows}u", "depth": f"{depth}u", "input_multiplier": mult,
             "input_left_shift": shift, "diff_min": diff_min},
            [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}", "{scratch}"],
            scratch=depth * 4))

    def mul(self, op: Op):
        (a, arg_a), (b, arg_b) = self.operand(op.inputs[0], op), self.operand(op.inputs[1], op)
        y = self.t(op.outputs[0])
        self.need(len(y.shape) <= 4, op, f"a {len(y.shape)}-D output")
        self.need(_broadcastable(a.shape, y.shape) and _broadcastable(b.shape, y.shape), op,
                  f"broadcasting {list(a.shape)} x {list(b.shape)} to {list(y.shape)}")
        real = float(a.scale) * float(b.scale) / float(y.scale)
        mult, shift = quantize_multiplier(real)
        params = {**_broadcast_params(op, a, b, y), "mult": mult, "shift": shift}
        self.steps.append(Step(
            "MUL", "mt_mul_s8", "mt_mul_params_t", params, self.acts(a, b), [y.index],
            [arg_a, arg_b, f"{{t{y.index}}}"], macs=y.size))

    def mul_sum(self, mul: Op, sum_op: Op):
        a, b = self.int8_act(mul.inputs[0], mul), self.int8_act(mul.inputs[1], mul)
        m = self.t(mul.outputs[0])
        y = self.t(sum_op.outputs[0])
        x, s = (a, b) if a.shape == m.shape else (b, a)
        cols = m.shape[-1]
        rows = m.size // cols
        mm, ms = quantize_multiplier(float(a.scale) * float(b.scale) / float(m.scale))
        act = getattr(mul.options, "fusedActivationFunction", 0) if mul.options is not None else 0
        lo, hi = activation_range(act, m.scale, m.zp)
        sm, ss = quantize_multiplier(float(m.scale) / float(y.scale))
        self.need(y.size == cols, sum_op, f"output shape {list(y.shape)}")
        params = {"rows": f"{rows}u", "cols": f"{cols}u", "x_zp": x.zp, "s_zp": s.zp,
                  "mul_zp": m.zp, "mul_mult": mm, "mul_shift": ms, "mul_act_min": lo,
                  "mul_act_max": hi, "sum_zp": y.zp, "sum_mult": sm, "sum_shift": ss}
        dsp = False
        bound = 255 * 255
        req = self._requant_dsp([mm], [ms], m.zp, [bound], [255], max_scale=7) \
            if self.dsp and cols % 4 == 0 and lo == _INT8_MIN and hi == _INT8_MAX else None
        sreq = self._requant_dsp([sm], [ss], y.zp, [rows * 255], [0])
        if req is not None and sreq is not None:
            right, (scale,), words_q = req
            sright, (sscale,), swords = sreq
            params.update({"dsp_sum_scale": sscale, "dsp_sum_right": sright,
                           "dsp_sum_q": _c_list(swords)})
            fix = 0 if (x.zp == _INT8_MIN and s.zp == _INT8_MIN) else 1
            params.update({"dsp_scale": scale, "dsp_right": right,
                           "dsp_q": _c_list(words_q), "dsp_signed_fix": fix})
            if cols <= 255 and self.specialize:   # the row stride is a post-increment immediate
                fn = f"{self.prefix}_mul_sum{len(self.steps)}"
                self.specializations.append(f"MT_MUL_SUM_DSP({fn}, {cols}u, {right}, {fix})\n")
                params["dsp_fn"] = f"MT_MUL_SUM_DSP_REF({fn})"
            else:
                params["dsp_fn"] = "MT_MUL_SUM_DSP_REF(mt_mul_sum_dsp_generic)"
            dsp = True
        self.steps.append(Step(
            "MUL+SUM", "mt_mul_sum_s8", "mt_mul_sum_params_t", params, [x.index, s.index],
            [y.index], [f"{{t{x.index}}}", f"{{t{s.index}}}", f"{{t{y.index}}}", "{scratch}"],
            scratch=0, scratch_dsp=rows * 8 if dsp else -1, macs=m.size, dsp=dsp,
            dsp_kernel="mt_mul_sum_s8_dsp" if dsp else ""))

    def sum(self, op: Op):
        x, y = self.int8_act(op.inputs[0], op), self.t(op.outputs[0])
        outer, reduce_n, inner = self._reduce_block(op, x, y)
        mult, shift = quantize_multiplier(float(x.scale) / float(y.scale))
        self.steps.append(Step(
            "SUM", "mt_sum_s8", "mt_sum_params_t",
            {"outer": f"{outer}u", "reduce": f"{reduce_n}u", "inner": f"{inner}u",
             "input_zp": x.zp, "output_zp": y.zp, "mult": mult, "shift": shift},
            [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))

    # --- the baselines' ops (TFLite Micro reference semantics, docs/baselines.md) ---------

    def _add_sub(self, op: Op, subtract: bool):
        (a, arg_a), (b, arg_b) = self.operand(op.inputs[0], op), self.operand(op.inputs[1], op)
        y = self.t(op.outputs[0])
        self.need(y.dtype == "int8" and len(y.shape) <= 4, op, f"output {y.dtype}{list(y.shape)}")
        self.need(_broadcastable(a.shape, y.shape) and _broadcastable(b.shape, y.shape), op,
                  f"broadcasting {list(a.shape)} and {list(b.shape)} to {list(y.shape)}")
        left = 20                                            # int8 (int16 would be 15)
        twice_max = 2.0 * float(max(np.float32(a.scale), np.float32(b.scale)))
        m1, s1 = quantize_multiplier(float(a.scale) / twice_max)
        m2, s2 = quantize_multiplier(float(b.scale) / twice_max)
        mo, so = quantize_multiplier(twice_max / (float(1 << left) * float(y.scale)))
        self.need(max(s1, s2, so) <= 0, op, "a rescaling multiplier >= 1")
        params = {**_broadcast_params(op, a, b, y), "left_shift": left,
                  "input1_mult": m1, "input1_shift": s1, "input2_mult": m2, "input2_shift": s2,
                  "output_mult": mo, "output_shift": so,
                  "subtract": int(subtract)}
        self.steps.append(Step(
            "SUB" if subtract else "ADD", "mt_add_s8", "mt_add_params_t", params,
            self.acts(a, b), [y.index], [arg_a, arg_b, f"{{t{y.index}}}"]))

    def add(self, op: Op):
        self._add_sub(op, subtract=False)

    def sub(self, op: Op):
        self._add_sub(op, subtract=True)

    def _activation(self, op: Op, kernel: str, out_scale: float, out_zp: int):
        x, y = self.int8_act(op.inputs[0], op), self.t(op.outputs[0])
        self.need(y.dtype == "int8" and y.zp == out_zp and y.scale == _f32(out_scale), op,
                  f"an output quantization other than scale {out_scale}, zero point {out_zp}")
        # TFLite Micro's Prepare: input_scale * 2^27 as frexp mantissa (rounded to Q31) and
        # exponent; the radius beyond which the output saturates (4 integer bits).
        q, left = math.frexp(float(x.scale) * float(1 << 27))
        mult = int(math.floor(q * (1 << 31) + 0.5))
        self.need(0 <= left <= 31 and mult < 1 << 31, op, f"input scale {x.scale}")
        radius = int(math.floor(15.0 * float(1 << 27) / float(1 << left)))
        self.need(radius >= 1, op, f"input scale {x.scale}")
        self.steps.append(Step(
            op.kind, kernel, "mt_activation_params_t",
            {"size": f"{x.size}u", "input_zp": x.zp, "input_multiplier": mult,
             "input_left_shift": left, "input_range_radius": radius},
            [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))

    def logistic(self, op: Op):
        self._activation(op, "mt_logistic_s8", 1.0 / 256, -128)

    def tanh(self, op: Op):
        self._activation(op, "mt_tanh_s8", 1.0 / 128, 0)

    def quantize(self, op: Op):
        x, y = self.int8_act(op.inputs[0], op), self.t(op.outputs[0])
        self.need(y.dtype == "int8", op, f"{x.dtype} -> {y.dtype}")
        mult, shift = quantize_multiplier(float(x.scale) / float(y.scale))
        self.steps.append(Step(
            "QUANTIZE", "mt_quantize_s8", "mt_quantize_params_t",
            {"size": f"{x.size}u", "input_zp": x.zp, "output_zp": y.zp, "mult": mult,
             "shift": shift},
            [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))

    def mean(self, op: Op):
        x, y = self.int8_act(op.inputs[0], op), self.t(op.outputs[0])
        self.need(y.dtype == "int8", op, f"{y.dtype} output")
        # With equal quantization TFLite Micro's versions differ (some divide the sum, some
        # requantize); the baselines' MEANs always requantize.
        self.need(x.scale != y.scale or x.zp != y.zp, op,
                  "equal input and output quantization")
        outer, n, inner = self._reduce_block(op, x, y)
        # QuantizedMeanOrSum: QuantizeMultiplier(s_in / s_out), then the 1/n folded into it.
        mult, shift = quantize_multiplier(float(x.scale) / float(y.scale))
        k = min(n.bit_length() - 1, 32, 31 + shift)
        self.need(k >= 0, op, "an output scale this much larger than the input's")
        mult = (mult << k) // n
        shift -= k
        self.need(0 < mult < 1 << 31 and -31 <= shift <= 30, op, "the rescaled mean multiplier")
        self.steps.append(Step(
            "MEAN", "mt_sum_s8", "mt_sum_params_t",
            {"outer": f"{outer}u", "reduce": f"{n}u", "inner": f"{inner}u",
             "input_zp": x.zp, "output_zp": y.zp, "mult": mult, "shift": shift},
            [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))

    def _reduce_block(self, op: Op, x: Tensor, y: Tensor) -> tuple[int, int, int]:
        """(outer, reduced, inner) of a reduction over one block of adjacent axes."""
        axes = self.t(op.inputs[1])
        self.need(axes.data is not None, op, "non-constant axes")
        rank = len(x.shape)
        red = sorted({int(v) % rank for v in np.asarray(axes.data).reshape(-1)})
        self.need(bool(red), op, "an empty axis list")
        first, last = red[0], red[-1]
        self.need(all(d in red or x.shape[d] == 1 for d in range(first, last + 1)), op,
                  "reducing non-adjacent axes")
        outer = int(np.prod(x.shape[:first])) if first else 1
        n = int(np.prod([x.shape[d] for d in red]))
        inner = int(np.prod(x.shape[last + 1:])) if last + 1 < rank else 1
        self.need(y.size == outer * inner and n >= 1, op, f"output shape {list(y.shape)}")
        return outer, n, inner

    def _copy(self, op: Op, x: Tensor, y: Tensor, sizes, strides, offset: int):
        """A strided copy of x into y (dense), or an alias when it is all of x in order."""
        self.need(x.dtype == y.dtype and x.dtype in ("int8", "int32"), op,
                  f"{x.dtype} -> {y.dtype}")
        if x.dtype == "int8":
            self.same_quant(op, x, y)
        dims = _merge_dims(sizes, strides)
        self.need(int(np.prod([d for d, _ in dims])) == y.size, op,
                  f"output shape {list(y.shape)}")
        if (offset == 0 and len(dims) <= 1 and (not dims or dims[0][1] == 1)
                and y.size == x.size and self.root(x.index) not in self.g.inputs
                and y.index not in self.g.outputs):
            self.alias[y.index] = x.index            # the whole input in order: no copy
            return
        self.need(len(dims) <= 4, op, "a copy of more than 4 dimensions")
        dims = [(1, 0)] * (4 - len(dims)) + dims
        self.steps.append(Step(
            op.kind, "mt_strided_copy", "mt_strided_copy_params_t",
            {"shape": _c_list([d for d, _ in dims], "u"),
             "stride": _c_list([s_ for _, s_ in dims], "u"), "offset": f"{offset}u",
             "elem_bytes": f"{4 if x.dtype == 'int32' else 1}u"},
            [x.index], [y.index], [f"{{t{x.index}}}", f"{{t{y.index}}}"]))

    def strided_slice(self, op: Op):
        x, y = self.t(op.inputs[0]), self.t(op.outputs[0])
        self.need(x.data is None, op, "slicing a constant")
        begin, end, step = (self.t(i) for i in op.inputs[1:4])
        self.need(all(t.data is not None for t in (begin, end, step)), op,
                  "non-constant begin / end / strides")
        o = op.options
        bm, em, sm = o.beginMask, o.endMask, o.shrinkAxisMask
        self.need(o.ellipsisMask == 0 and o.newAxisMask == 0 and not getattr(o, "offset", False),
                  op, "ellipsis / new-axis masks or offset mode")
        rank = len(x.shape)
        b, e, st = (np.asarray(t.data).reshape(-1).astype(int) for t in (begin, end, step))
        self.need(len(b) == len(e) == len(st) == rank, op, "begin/end/strides of another rank")
        dense = _dense_strides(x.shape)
        sizes, strides, offset = [], [], 0
        for d in range(rank):
            dim = x.shape[d]
            self.need(st[d] >= 1, op, f"stride {st[d]}")
            self.need(not (sm >> d & 1 and (bm | em) >> d & 1), op, "a masked shrink axis")
            start = 0 if bm >> d & 1 else int(b[d]) + (dim if b[d] < 0 else 0)
            start = min(max(start, 0), dim)
            if sm >> d & 1:
                self.need(start < dim, op, "a shrink axis out of range")
                stop = start + 1
            else:
                stop = dim if em >> d & 1 else int(e[d]) + (dim if e[d] < 0 else 0)
                stop = min(max(stop, 0), dim)
            n = max(0, -(-(stop - start) // int(st[d])))
            sizes.append(n)
            strides.append(int(st[d]) * dense[d])
            offset += start * dense[d]
        self.need(int(np.prod(sizes)) == y.size and y.size > 0, op,
                  f"output shape {list(y.shape)}")
        self._copy(op, x, y, sizes, strides, offset)

    def transpose(self, op: Op):
        x, y = self.t(op.inputs[0]), self.t(op.outputs[0])
        self.need(x.data is None, op, "transposing a constant")
        perm_t = self.t(op.inputs[1])
        self.need(perm_t.data is not None, op, "a non-constant permutation")
        rank = len(x.shape)
        perm = [int(v) % rank for v in np.asarray(perm_t.data).reshape(-1)]
        self.need(sorted(perm) == list(range(rank)), op, f"permutation {perm}")
        self.need(tuple(y.shape) == tuple(x.shape[d] for d in perm), op,
                  f"output shape {list(y.shape)}")
        dense = _dense_strides(x.shape)
        self._copy(op, x, y, [x.shape[d] for d in perm], [dense[d] for d in perm], 0)

    def _concat(self, op: Op, ins: list[Tensor], y: Tensor, axis: int, in_rank: int):
        self.need(y.dtype == "int8", op, f"{y.dtype} output")
        for t in ins:
            self.need(t.dtype == "int8" and t.data is None, op,
                      f"input '{t.name}' ({t.dtype}{' constant' if t.data is not None else ''})")
            self.same_quant(op, t, y)
        outer = int(np.prod(y.shape[:axis])) if axis else 1
        blocks = [int(np.prod(t.shape[axis:])) if axis < in_rank else 1 for t in ins]
        self.need(outer * sum(blocks) == y.size, op, f"output shape {list(y.shape)}")
        self.steps.append(Step(
            op.kind, "mt_concat_s8", "mt_concat_params_t",
            {"inputs": f"{len(ins)}u", "outer": f"{outer}u",
             "bytes": self.array("blk", "uint32_t", blocks)},
            [t.index for t in ins], [y.index],
            ["{list:" + ",".join(str(t.index) for t in ins) + "}", f"{{t{y.index}}}"]))

    def pack(self, op: Op):
        ins = [self.t(i) for i in op.inputs]
        y = self.t(op.outputs[0])
        rank = len(ins[0].shape)
        axis = op.options.axis % (rank + 1)
        self.need(all(t.shape == ins[0].shape for t in ins), op, "inputs of different shapes")
        self._concat(op, ins, y, axis, rank)

    def concatenation(self, op: Op):
        ins = [self.t(i) for i in op.inputs]
        y = self.t(op.outputs[0])
        o = op.options
        self.need(o.fusedActivationFunction == 0, op, "a fused activation")
        rank = len(y.shape)
        axis = o.axis % rank
        self._concat(op, ins, y, axis, rank)

    def minimum(self, op: Op):
        a, b, y = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        self.need(a.dtype == b.dtype == y.dtype == "int32", op,
                  f"{a.dtype}/{b.dtype} (only unquantized int32)")
        args, steps = [], []
        for t in (a, b):
            self.need(t.size in (1, y.size), op, f"broadcasting {list(t.shape)}")
            steps.append(1 if t.size == y.size and y.size > 1 else 0)
            args.append(self.array("c", "int32_t", t.data.astype(np.int64)) if t.data is not None
                        else f"{{t{t.index}}}")
        self.steps.append(Step(
            "MINIMUM", "mt_minimum_s32", "mt_minimum_params_t",
            {"size": f"{y.size}u", "step1": f"{steps[0]}u", "step2": f"{steps[1]}u"},
            self.acts(a, b), [y.index], args + [f"{{t{y.index}}}"]))

    # --- PRADO: the projection in front of the graph ------------------------------------------

    def projection(self, feed: dict, input_index: int, buckets: int, max_words: int):
        """The ids -> int8 projection input step (firmware/projection.c), written into the
        graph's input tensor in the arena."""
        t = self.t(input_index)
        p, k = int(feed["feature_size"]), int(feed["features_per_word"])
        lut = np.asarray(feed["lut"], dtype=np.int64)
        if (t.dtype != "int8" or t.size != max_words * (p + 1) or len(lut) != 2 * k + 2
                or int(feed["max_words"]) != max_words):
            raise McutextError(f"PRADO input {t.dtype}{list(t.shape)} does not match the "
                               f"manifest's projection (P {p}, K {k}, {max_words} words)")
        if t.scales is None or t.scale != _f32(feed["scale"]) or t.zp != int(feed["zero_point"]):
            raise McutextError("the manifest's projection quantization differs from the "
                               "model input's")
        lut_name = self.array("lut", "int8_t", lut)
        fn = f"{self.prefix}_project"
        self.specializations.append(
            f"/* ids -> the int8 projection input (docs/baselines.md); an id outside\n"
            f" * [0, {buckets}) is refused like the embedding lookup refuses it. */\n"
            f"static mt_status_t {fn}(const mt_projection_spec_t *spec, const int32_t *ids,\n"
            f"                        int8_t *out)\n{{\n"
            f"    for (uint32_t i = 0; i < {max_words * k}u; ++i) {{\n"
            f"        if ((uint32_t)ids[i] >= {buckets}u) {{\n"
            f"            return MT_ERR_RANGE;\n        }}\n    }}\n"
            f"    return mt_projection_input(spec, ids, {max_words}u, {lut_name}, out);\n}}\n\n")
        self.steps.append(Step(
            "PROJECTION", fn, "mt_projection_spec_t",
            {"feature_size": f"{p}u", "features_per_word": f"{k}u",
             "seed": f"{int(feed['seed'])}u"},
            [], [t.index], ["ids", f"{{t{t.index}}}"], status_range=True,
            header="projection.h"))


def _check_accumulator(low: _Lowering, op: Op, folded: np.ndarray, wmat: np.ndarray):
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


# --- memory plan -----------------------------------------------------------------------------

@dataclasses.dataclass
class Buffer:
    key: str
    size: int
    first: int
    last: int
    offset: int = -1


def plan_memory(buffers: list[Buffer], align: int = ALIGN) -> int:
    """Greedy placement (largest first) at the lowest offset that does not overlap any placed
    buffer alive at the same time. Returns the arena size."""
    placed: list[Buffer] = []
    for b in sorted(buffers, key=lambda b: (-b.size, b.first, b.key)):
        live = sorted((p for p in placed if not (p.last < b.first or b.last < p.first)),
                      key=lambda p: p.offset)
        offset = 0
        for p in live:
            if offset + b.size <= p.offset:
                break
            offset = max(offset, _round_up(p.offset + p.size, align))
        b.offset = offset
        placed.append(b)
    return _round_up(max((b.offset + b.size for b in buffers), default=0), align)


def _round_up(v: int, a: int) -> int:
    return (v + a - 1) // a * a


# --- emission ----------------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    buffers: dict[int, Buffer]       # root tensor -> buffer
    scratch: dict[int, Buffer]       # step index -> buffer
    arena_bytes: int


@dataclasses.dataclass
class Program:
    graph: Graph
    prefix: str
    steps: list[Step]
    arrays: list[Array]
    plans: dict[str, Plan]           # "dsp" (MT_USE_DSP) and "portable"
    alias: dict[int, int]
    specializations: list[str] = dataclasses.field(default_factory=list)
    ext: set[int] = dataclasses.field(default_factory=set)   # inputs passed in by the caller

    @property
    def buffers(self) -> dict[int, Buffer]:
        return self.plans["dsp"].buffers

    @property
    def scratch(self) -> dict[int, Buffer]:
        return self.plans["dsp"].scratch

    @property
    def arena_bytes(self) -> int:
        return self.plans["dsp"].arena_bytes

    def root(self, i: int) -> int:
        while i in self.alias:
            i = self.alias[i]
        return i

    def offset(self, tensor: int) -> int:
        return self.buffers[self.root(tensor)].offset

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    @property
    def weights_bytes(self) -> int:
        """Constant data a DSP build links (the larger; see weights_bytes_for)."""
        return self.weights_bytes_for("dsp")

    def weights_bytes_for(self, path: str) -> int:
        return sum(a.nbytes for a in self.arrays if a.path in ("both", path))


def build_program(graph: Graph, prefix: str = "mt_gen", dsp: bool = True,
                  specialize: bool = True, projection: dict | None = None) -> Program:
    """Lower the graph to kernel calls and plan the arena. dsp=False emits no DSP data
    (portable kernels everywhere); specialize=False emits no shape-specialized loops (the
    DSP paths then use the kernels' run-time loops; for tests). projection (PRADO): the
    manifest's int8.input plus `buckets` and `max_words`; the graph's input is then computed
    from the token ids by firmware/projection.c as the first step."""
    low = _Lowering(graph, prefix, dsp, specialize)
    if projection is not None:
        low.projection(projection, graph.inputs[0], int(projection["buckets"]),
                       int(projection["max_words"]))
    low.lower()
    low.settle_paths()
    written = {low.root(t) for s in low.steps for t in s.writes}
    ext = {t for t in graph.inputs if t not in written}   # inputs the caller passes in
    n = len(low.steps)
    buffers: dict[int, Buffer] = {}

    def use(t: int, k: int):
        r = low.root(t)
        if r in ext:
            return
        tensor = graph.tensors[r]
        b = buffers.get(r)
        if b is None:
            buffers[r] = Buffer(f"t{r}", tensor.nbytes, k, k)
        else:
            b.first, b.last = min(b.first, k), max(b.last, k)

    for k, s in enumerate(low.steps):
        for t in s.writes + s.reads:
            use(t, k)
    for t in graph.outputs:
        r = low.root(t)
        if r in ext or r not in buffers:
            raise McutextError(f"model output '{graph.tensors[t].name}' is not computed by "
                               "any op (a constant or an input)")
        buffers[r].last = n
    plans = {}
    for path in ("dsp", "portable"):
        bufs = {r: dataclasses.replace(b) for r, b in buffers.items()}
        scratch = {}
        for k, st in enumerate(low.steps):
            size = st.scratch_dsp if path == "dsp" and st.scratch_dsp >= 0 else st.scratch
            if size:
                scratch[k] = Buffer(f"scratch{k}", size, k, k)
        arena = plan_memory(list(bufs.values()) + list(scratch.values()))
        plans[path] = Plan(bufs, scratch, arena)
    return Program(graph, prefix, low.steps, low.arrays, plans, low.alias, low.specializations,
                   ext)


def _banner(what: str, sha: str) -> str:
    return (f"/* Generated by mcutext {__version__} codegen from {what} (sha256 {sha[:16]}).\n"
            " * Do not edit: regenerate with `mcutext build`. */\n")


def _c_string(s: str) -> str:
    out = []
    for ch in s.encode("utf-8"):
        if ch in (0x22, 0x5C):
            out.append("\\" + chr(ch))
        elif 0x20 <= ch < 0x7F and ch != 0x3F:   # '?' escaped: no trigraphs
            out.append(chr(ch))
        else:
            out.append(f"\\{ch:03o}")
    return '"' + "".join(out) + '"'


def _emit_array(a: Array) -> str:
    vals = a.values.astype(np.int64)
    lines = []
    if a.ctype == "mt_requant_t":   # (mult, add, right) triples
        for i in range(0, len(vals), 3):
            lines.append("    {" + ", ".join(_c_int(int(v)) for v in vals[i:i + 3]) + "},")
    else:
        per = 24 if a.ctype == "int8_t" else 8
        for i in range(0, len(vals), per):
            lines.append("    " + ", ".join(_c_int(int(v)) for v in vals[i:i + per]) + ",")
    return (f"const {a.ctype} {a.name}[{_array_len(a)}] __attribute__((aligned({ALIGN}))) = "
            "{\n" + "\n".join(lines) + "\n};\n")


def _array_len(a: Array) -> int:
    return a.values.size // 3 if a.ctype == "mt_requant_t" else a.values.size


def robust_table_c(table, name: str, what: str) -> str:
    """C source of a RobustTable as `const mt_robust_table_t name` (firmware/tokenizer.h): the
    keys and both code columns as const arrays in flash."""
    n = len(table.keys)
    out = [_banner(what, table.sha256), '#include <stdint.h>\n\n#include "tokenizer.h"\n\n']
    if n == 0:
        out.append(f"const mt_robust_table_t {name} = {{{table.codes}u, 0u, 0, 0, 0}};\n")
        return "".join(out)

    def rows(vals, fmt: str, per: int) -> str:
        return "\n".join("    " + ", ".join(fmt.format(int(v)) for v in vals[i:i + per]) + ","
                         for i in range(0, len(vals), per))

    out.append(f"static const uint32_t {name}_keys[{n}] = {{\n"
               f"{rows(table.keys, '0x{:08X}u', 8)}\n}};\n")
    for col in ("exact", "near"):
        out.append(f"static const uint16_t {name}_{col}[{n}] = {{\n"
                   f"{rows(getattr(table, col), '{}u', 16)}\n}};\n")
    out.append(f"\nconst mt_robust_table_t {name} = {{{table.codes}u, {n}u, {name}_keys, "
               f"{name}_exact, {name}_near}};\n")
    return "".join(out)


def robust_table_bytes(table) -> int:
    """Flash of a table in the firmware: 4 + 2 + 2 bytes per key and the 20-byte descriptor
    (on a 32-bit core)."""
    return 8 * len(table.keys) + 20


def _c_int(v: int) -> str:
    return "(-2147483647 - 1)" if v == -2**31 else str(v)


def _emit_params(prog: Program, k: int, s: Step) -> str:
    common, dsp, port = [], [], []
    for key, val in s.params.items():
        line = f"    .{key} = {val if isinstance(val, str) else _c_int(int(val))},"
        if s.dsp_kernel and key in Step.PORTABLE_FIELDS:
            port.append(line)
        elif s.dsp_kernel and (key.startswith("dsp") or key.endswith("_dsp")):
            dsp.append(line)
        else:
            common.append(line)
    body = common
    if dsp or port:   # each build refers to (and so links) only its own path's arrays
        body = common + ["#if MT_USE_DSP"] + dsp + (["#else"] + port if port else []) + \
            ["#endif"]
    return (f"static const {s.params_type} {prog.prefix}_op{k} = {{\n" + "\n".join(body)
            + "\n};\n")


def _emit_call(prog: Program, k: int, s: Step, input_expr, params_name: str = "") -> str:
    def tensor(t: int, const: bool = False) -> str:
        r = prog.root(t)
        dtype = prog.graph.tensors[r].dtype
        ctype = {"int8": "int8_t", "int32": "int32_t"}.get(dtype, "int8_t")
        if r in prog.ext:
            return f"(const {ctype} *){input_expr(r)}"
        q = "const " if const else ""
        return f"({q}{ctype} *)(void *)({prog.prefix}_arena + {_off_name(prog, 't', r)})"

    args = []
    for a in s.args:
        if a == "{scratch}":
            args.append(f"{prog.prefix}_arena + {_off_name(prog, 's', k)}")
        elif a.startswith("{list:"):     # an array of int8 tensor pointers (CONCATENATION)
            ts = [int(v) for v in a[6:-1].split(",")]
            if any(prog.root(t) in prog.ext for t in ts):   # caller's buffers: on the stack
                ptrs = ",\n        ".join(tensor(t, const=True) for t in ts)
                args.append(f"(const int8_t *const[]){{\n        {ptrs}}}")
            else:                                           # arena addresses: a constant
                args.append(f"{prog.prefix}_in{k}")
        elif a.startswith("{t"):
            args.append(tensor(int(a[2:-1])))
        else:
            args.append(a)
    call = f"(&{params_name or f'{prog.prefix}_op{k}'}, {', '.join(args)})"
    if s.status_range:
        fail = "st == MT_ERR_RANGE ? MT_GEN_BAD_INPUT : MT_GEN_KERNEL_ERROR"
    else:
        fail = "MT_GEN_KERNEL_ERROR"
    if s.dsp_kernel:
        calls = (f"#if MT_USE_DSP\n    st = {s.dsp_kernel}{call};\n#else\n"
                 f"    st = {s.kernel}{call};\n#endif\n")
    else:
        calls = f"    st = {s.kernel}{call};\n"
    return (f"    MT_GEN_PROFILE({k});   /* {s.op} */\n" + calls
            + f"    if (st != MT_OK) {{\n        return {fail};\n    }}\n")


_KERNEL_HEADERS = {"mt_gather_s8": "gather.h", "mt_avg_pool_s8": "avg_pool.h",
                   "mt_conv_s8": "conv.h", "mt_fully_connected_s8": "fully_connected.h",
                   "mt_softmax_s8": "softmax.h", "mt_mul_s8": "mul.h", "mt_mul_sum_s8": "mul.h",
                   "mt_sum_s8": "reduce.h", "mt_add_s8": "add.h", "mt_logistic_s8": "activation.h",
                   "mt_tanh_s8": "activation.h", "mt_quantize_s8": "quantize.h",
                   "mt_strided_copy": "copy.h", "mt_concat_s8": "copy.h",
                   "mt_minimum_s32": "copy.h"}


def _off_name(prog: Program, kind: str, key: int) -> str:
    """Macro of a tensor's (kind 't', root index) or a step's scratch ('s', step) offset."""
    return f"{prog.prefix.upper()}_{kind.upper()}{key}"


def _emit_plan(prog: Program) -> str:
    """The arena size and offsets as macros, one set per kernel path when they differ."""
    g, p = prog.graph, prog.prefix

    def block(plan: Plan) -> str:
        lines = [f"#define {p.upper()}_ARENA {max(plan.arena_bytes, ALIGN)}u"]
        for r, b in sorted(plan.buffers.items(), key=lambda kv: (kv[1].offset, kv[0])):
            t = g.tensors[r]
            lines.append(f"#define {_off_name(prog, 't', r)} {b.offset}u   /* "
                         f"[{b.offset}, {b.offset + b.size}) ops {b.first}..{b.last} "
                         f"{t.dtype}{list(t.shape)} {_comment(t.name[:48])} */")
        for k, st in enumerate(prog.steps):
            b = plan.scratch.get(k)
            if b is not None:
                lines.append(f"#define {_off_name(prog, 's', k)} {b.offset}u   /* "
                             f"[{b.offset}, {b.offset + b.size}) op {k} scratch ({st.op}) */")
            elif "{scratch}" in st.args:
                lines.append(f"#define {_off_name(prog, 's', k)} 0u   /* op {k}: no scratch "
                             "on this path */")
        return "\n".join(lines) + "\n"

    dsp, port = block(prog.plans["dsp"]), block(prog.plans["portable"])
    text = ("/* Memory plan: byte offsets in the one arena, from the tensors' lifetimes (ops\n"
            " * index the calls below). The DSP kernels need more scratch than the portable\n"
            " * ones, hence one plan per path when they differ. */\n")
    if dsp == port:
        return text + dsp
    return text + f"#if MT_USE_DSP\n{dsp}#else\n{port}#endif\n"


def _comment(s: str) -> str:
    return s.replace("*/", "* /").replace("/*", "/ *")


CALLS_PER_PART = 48   # a long call sequence is split into functions of this many calls


def _emit_sources(prog: Program, what: str, header_name: str, api_code: str,
                  input_expr, extra_includes: list[str],
                  run_param: tuple[str, str] = ("const int32_t *", "ids")) -> dict[str, str]:
    g = prog.graph
    p = prog.prefix
    includes = sorted({s.header or _KERNEL_HEADERS[s.kernel] for s in prog.steps})
    header = (_banner(what, g.sha256)
              + f"#ifndef {p.upper()}_GEN_H\n#define {p.upper()}_GEN_H\n\n#include <stdint.h>\n\n"
              + '#include "mt_common.h"\n\n'
              + "#if MT_USE_DSP\n"
              + f"#define {p.upper()}_WEIGHTS_BYTES {prog.weights_bytes_for('dsp')}u\n"
              + "#else\n"
              + f"#define {p.upper()}_WEIGHTS_BYTES {prog.weights_bytes_for('portable')}u\n"
              + "#endif\n"
              + f"#define {p.upper()}_MACS {prog.macs}u\n\n"
              + "".join(f"extern const {a.ctype} {a.name}[{_array_len(a)}];\n"
                        for a in prog.arrays)
              + f"\n#endif\n")
    body = [_banner(what, g.sha256)]
    body += [f'#include "{h}"\n' for h in extra_includes + includes + [header_name]]
    body.append("\n#define MT_GEN_BAD_INPUT 1\n#define MT_GEN_KERNEL_ERROR 2\n"
                "/* Profiling hook: MT_GEN_PROFILE(k) runs before call k and with k = number of\n"
                " * calls at the end (define it, e.g. to read a counter, when compiling). */\n"
                "#ifndef MT_GEN_PROFILE\n#define MT_GEN_PROFILE(k) ((void)0)\n#endif\n\n")
    body.append(_emit_plan(prog))
    body.append(f"\nstatic uint8_t {p}_arena[{p.upper()}_ARENA] "
                f"__attribute__((aligned({ALIGN})));\n\n")
    if prog.specializations:
        body.append("/* Kernel loops specialized to the layers' shapes. */\n"
                    + "".join(prog.specializations) + "\n")
    # Input lists of CONCATENATION / PACK: constant arrays of arena addresses.
    for k, s in enumerate(prog.steps):
        for a in s.args:
            if a.startswith("{list:"):
                roots = [prog.root(int(v)) for v in a[6:-1].split(",")]
                if any(r in prog.ext for r in roots):
                    continue
                ptrs = ",\n    ".join(f"(const int8_t *)(const void *)({p}_arena + "
                                       f"{_off_name(prog, 't', r)})" for r in roots)
                body.append(f"static const int8_t *const {p}_in{k}[{len(roots)}] = {{\n"
                            f"    {ptrs},\n}};\n")
    # One parameter struct per distinct content (the baselines repeat many op configurations).
    names, seen = [], {}
    for k, s in enumerate(prog.steps):
        text = _emit_params(prog, k, s)
        key = (s.params_type, text.split(" = {", 1)[1])
        if key not in seen:
            seen[key] = f"{p}_op{k}"
            body.append(text)
        names.append(seen[key])
    calls = [_emit_call(prog, k, s, input_expr, names[k]) for k, s in enumerate(prog.steps)]
    if len(calls) > CALLS_PER_PART:
        # FastGRNN unrolls into hundreds of calls: in one function the compiler keeps the
        # addresses it shares between calls in stack slots (hundreds of bytes on a Cortex-M0);
        # functions of a few dozen calls keep the frames small and static.
        ptype, pname = run_param
        parts = []
        for j in range(0, len(calls), CALLS_PER_PART):
            fn = f"{p}_part{j // CALLS_PER_PART}"
            body.append(f"\nstatic __attribute__((noinline)) int {fn}({ptype}{pname})\n{{\n"
                        f"    mt_status_t st;\n    (void){pname};\n"
                        + "".join(calls[j:j + CALLS_PER_PART])
                        + "    (void)st;\n    return 0;\n}\n")
            parts.append(f"    {{\n        const int r = {fn}({pname});\n"
                         "        if (r != 0) {\n            return r;\n        }\n    }\n")
        calls = parts
    body.append("\n" + api_code.replace("@CALLS@", "".join(calls)).replace(
        "@N@", str(len(prog.steps))))
    weights = [_banner(what, g.sha256), '#include <stdint.h>\n\n', f'#include "{header_name}"\n\n']
    weights += [_emit_array(a) for a in prog.arrays]
    return {"header": header, "source": "".join(body), "weights": "".join(weights)}


def _write(out_dir: Path, files: dict[str, str]) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    return paths


def _summary(prog: Program, paths: list[str]) -> dict:
    return {
        "files": paths,
        "arena_bytes": prog.arena_bytes,
        "arena_bytes_portable": prog.plans["portable"].arena_bytes,
        "weights_bytes": prog.weights_bytes,
        "weights_bytes_portable": prog.weights_bytes_for("portable"),
        "macs": prog.macs,
        "ops": [s.op for s in prog.steps],
        "dsp_ops": [s.op for s in prog.steps if s.dsp],
        "plan": {prog.graph.tensors[r].name: [b.offset, b.size]
                 for r, b in prog.buffers.items()},
    }


# --- public API ------------------------------------------------------------------------------

def generate(bundle_path: str | Path, out_dir: str | Path, dsp: bool = True,
             specialize: bool = True) -> dict:
    """Generate model.c, weights.c and model_gen.h (firmware/model_api.h) for a bundle.

    dsp=False leaves every layer on the portable kernels (no DSP data is emitted), for
    comparing the two paths on a Cortex-M4."""
    from .bundle import load_bundle

    bundle = load_bundle(bundle_path)
    tflite = bundle.tflite_bytes
    graph = read_graph(tflite)
    m = bundle.manifest
    if len(graph.inputs) != 1:
        raise McutextError(f"the model has {len(graph.inputs)} inputs; one (token ids) expected")
    inp = graph.tensors[graph.inputs[0]]
    spec = bundle.tokenizer.spec
    feed = m["int8"].get("input")
    projection = None
    if feed:   # PRADO: the model's input is the int8 projection of the ids
        if feed.get("kind") != "prado_projection" or int(feed.get("version", 0)) != 1:
            raise McutextError(f"unsupported int8 input kind {feed.get('kind')!r} "
                               f"(version {feed.get('version')})")
        if int(feed["features_per_word"]) != spec.features_per_word:
            raise McutextError("the projection's features per word differ from the tokenizer's")
        projection = dict(feed, buckets=spec.buckets, max_words=spec.max_words)
    elif inp.dtype != "int32" or inp.size != spec.seq_len:
        raise McutextError(f"model input {inp.dtype}{list(inp.shape)} does not match the "
                           f"tokenizer (int32 x {spec.seq_len})")
    order = m["int8"]["output_order"]
    outs = {}
    for name in ("logits", "attention", "features"):
        pos = order.get(name)
        if pos is None or pos >= len(graph.outputs):
            raise McutextError(f"the manifest has no position for output '{name}'")
        t = graph.tensors[graph.outputs[pos]]
        if t.dtype != "int8":
            raise McutextError(f"output '{name}' is {t.dtype}, int8 expected")
        outs[name] = t
    labels = bundle.labels
    if outs["logits"].size != len(labels):
        raise McutextError(f"the logits output has {outs['logits'].size} values for "
                           f"{len(labels)} labels")
    if outs["attention"].size != spec.max_words:
        raise McutextError(f"the attention output has {outs['attention'].size} values for "
                           f"{spec.max_words} words")
    prog = build_program(graph, "mt_gen", dsp, specialize, projection)
    p = prog.prefix

    def out_fn(name: str) -> str:
        off = _off_name(prog, "t", prog.root(outs[name].index))
        return (f"const int8_t *mt_model_{name}(void)\n{{\n"
                f"    return (const int8_t *)(const void *)({p}_arena + {off});\n}}\n\n")

    label_list = ",\n".join(f"    {_c_string(lbl)}" for lbl in labels)
    api = (
        (f"extern const mt_robust_table_t {p}_encoding; /* {ENCODING} */\n\n"
         if spec.robust else "")
        + f"static const char *const {p}_labels[{len(labels)}] = {{\n{label_list},\n}};\n\n"
        "const mt_model_info_t mt_model_info = {\n"
        f"    .name = {_c_string(bundle.name)},\n"
        f"    .num_classes = {len(labels)}u,\n"
        f"    .labels = {p}_labels,\n"
        f"    .tokenizer = {{.buckets = {spec.buckets}u, .max_words = {spec.max_words}u,\n"
        f"                  .features_per_word = {spec.features_per_word}u, "
        f".seed = {spec.seed}u,\n"
        f"                  .max_word_bytes = {spec.max_word_bytes}u"
        + (f",\n                  .robust = &{p}_encoding" if spec.robust else "") + "},\n"
        f"    .seq_len = {spec.seq_len}u,\n"
        f"    .feature_dim = {outs['features'].size}u,\n"
        + "".join(f"    .{n}_q = {{.scale = {outs[n].scale!r}f, .zero_point = {outs[n].zp}}},\n"
                  for n in ("logits", "attention", "features"))
        + f"    .arena_bytes = {p.upper()}_ARENA,\n"
        f"    .weights_bytes = {p.upper()}_WEIGHTS_BYTES,\n"
        f"    .macs = {prog.macs}u,\n"
        "};\n\n"
        "int mt_model_run(const int32_t *ids)\n{\n    mt_status_t st;\n"
        "    if (ids == 0) {\n        return MT_GEN_KERNEL_ERROR;\n    }\n"
        "@CALLS@    MT_GEN_PROFILE(@N@);\n    (void)st;\n    return 0;\n}\n\n"
        + out_fn("logits") + out_fn("attention") + out_fn("features"))
    what = f"{Path(bundle_path).name}/model_int8.tflite"
    src = _emit_sources(prog, what, HEADER, api, lambda r: "ids", ["model_api.h"])
    files = {HEADER: src["header"], SOURCE: src["source"], WEIGHTS: src["weights"]}
    if spec.robust:
        from .bundle import ENCODING_FILE
        files[ENCODING] = robust_table_c(bundle.encoding_table, f"{p}_encoding",
                                         f"{Path(bundle_path).name}/{ENCODING_FILE}")
    head = _emit_head(bundle, outs["features"], g_sha=graph.sha256, what=what)
    files.update(head)
    paths = _write(Path(out_dir), files)
    summary = _summary(prog, paths)
    summary["encoding_bytes"] = robust_table_bytes(bundle.encoding_table) if spec.robust else 0
    return summary


def _c_float(x) -> str:
    """A float32 as an exact C hex-float literal."""
    v = float(np.float32(x))
    if not math.isfinite(v):
        raise McutextError(f"head: non-finite value {v!r} in the factory head")
    return v.hex() + "f"


def _emit_head(bundle, features: Tensor, g_sha: str, what: str) -> dict[str, str]:
    """model_head.h (the maxima of firmware/personalize.h, sized to this model) and head.c
    (the factory head as an mt_head_factory_t: docs/personalization.md)."""
    from .personalize import DEFAULT_MAX_NEW_LABELS

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


def generate_graph(tflite: bytes, out_dir: str | Path, prefix: str = "mt_graph",
                   dsp: bool = True, specialize: bool = True) -> dict:
    """Generate C for any graph of supported ops, with a generic entry point:

        int  <prefix>_run(const void *const *inputs);   inputs in the graph's order
        const void *<prefix>_output(uint32_t k);        k-th graph output (arena pointer)

    Files: <prefix>_graph.c, <prefix>_weights.c, <prefix>_graph.h."""
    graph = read_graph(tflite)
    prog = build_program(graph, prefix, dsp, specialize)
    p = prefix
    outs = ", ".join(_off_name(prog, "t", prog.root(t)) for t in graph.outputs)
    api = (f"static const uint32_t {p}_out_offsets[{len(graph.outputs)}] = {{{outs}}};\n\n"
           f"const void *{p}_output(uint32_t k);\nint {p}_run(const void *const *inputs);\n\n"
           f"const void *{p}_output(uint32_t k)\n{{\n"
           f"    return k < {len(graph.outputs)}u ? (const void *)({p}_arena + "
           f"{p}_out_offsets[k]) : 0;\n}}\n\n"
           f"int {p}_run(const void *const *inputs)\n{{\n    mt_status_t st;\n"
           "@CALLS@    MT_GEN_PROFILE(@N@);\n    (void)st;\n    return 0;\n}\n")
    index = {t: k for k, t in enumerate(graph.inputs)}
    src = _emit_sources(prog, f"{prefix}.tflite", f"{prefix}_graph.h", api,
                        lambda r: f"inputs[{index[r]}]", [],
                        run_param=("const void *const *", "inputs"))
    src["source"] = src["source"].replace('#include "', '#include <stdint.h>\n#include "', 1)
    paths = _write(Path(out_dir), {f"{prefix}_graph.h": src["header"],
                                   f"{prefix}_graph.c": src["source"],
                                   f"{prefix}_weights.c": src["weights"]})
    return _summary(prog, paths)
