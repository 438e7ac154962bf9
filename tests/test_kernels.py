"""The int8 kernels against the TFLite Micro interpreter, op by op.

Small Keras models, each with several branches of one op kind in different configurations
(shapes that take the specialized, generic and portable paths; zero points at -128, 127 and
in between; fused activations; per-channel and per-tensor weights), are converted to
full-integer TFLite, run in TFLite Micro and - through mcutext.codegen.driver.generate_graph - in
the kernels compiled for the host, portable and with the DSP paths emulated
(-DMT_EMULATE_DSP). Inputs cover the whole int8 range, beyond the calibration range, so the
outputs saturate too. The fixed-point primitives are checked at their extremes against a
Python transcription of gemmlowp's definitions.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

from mcutext.codegen.driver import generate_graph
from mcutext.codegen.graph import Graph, read_graph
from mcutext.codegen.lowering import Lowering
from mcutext.codegen.quant import quantize_multiplier
from mcutext.firmware import hostbuild
from mcutext.common.errors import McutextError

pytestmark = pytest.mark.host

RNG = np.random.default_rng(20251123)
# portable C; DSP paths (emulated) with the generator's specialized loops; DSP paths with the
# kernels' run-time loops only.
VARIANTS = ("portable", "dsp", "dsp-generic")


# --- tiny models -------------------------------------------------------------------------------

def _convert(model, calibration, per_tensor_dense: bool = False) -> bytes:
    import tensorflow as tf

    from mcutext.int8.convert import _quiet_stdout

    names = [t.name for t in model.inputs]

    def representative():   # by name: the graph's input order is the converter's choice
        for sample in calibration:
            yield {n: np.asarray(a) for n, a in zip(names, sample)}

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if per_tensor_dense:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    with _quiet_stdout():
        return bytes(conv.convert())


def _calib(shapes_ranges, n=40):
    """Calibration samples: per input (shape, lo, hi) uniform floats."""
    return [[RNG.uniform(lo, hi, size=(1, *shape)).astype(np.float32)
             for shape, lo, hi in shapes_ranges] for _ in range(n)]


_NAMES = iter(f"in{k:03d}" for k in range(10**6))


def _input(shape, dtype="float32"):
    """A batch-1 Keras input; names sort in creation order, which is the order the converter
    takes calibration samples in (it sorts the signature's inputs by name)."""
    import keras
    return keras.Input(shape, dtype=dtype, batch_size=1, name=next(_NAMES))


def _layers():
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="mcutext_test")
    class Mul(keras.layers.Layer):
        def call(self, inputs):
            return inputs[0] * inputs[1]

    @keras.saving.register_keras_serializable(package="mcutext_test")
    class Sum(keras.layers.Layer):
        def __init__(self, axes, keepdims=False, **kw):
            super().__init__(**kw)
            self.axes, self.keepdims = list(axes), keepdims

        def call(self, x):
            return tf.reduce_sum(x, axis=self.axes, keepdims=self.keepdims)

    @keras.saving.register_keras_serializable(package="mcutext_test")
    class Gather(keras.layers.Layer):
        def __init__(self, rows, width, **kw):
            super().__init__(**kw)
            self.rows, self.width = rows, width

        def build(self, shape):
            self.table = self.add_weight(shape=(self.rows, self.width), name="table",
                                         initializer=keras.initializers.RandomNormal(0, 0.5))

        def call(self, ids):
            return tf.gather(self.table, ids)

    return Mul, Sum, Gather


def _gather_model():
    import keras
    _, _, Gather = _layers()
    ids = _input((24,), "int32")
    outs = [Gather(100, 8)(ids), Gather(100, 12)(ids), Gather(100, 5)(ids)]
    model = keras.Model(ids, outs)
    calib = [[RNG.integers(0, 100, size=(1, 24)).astype(np.int32)] for _ in range(20)]
    return model, calib


def _pool_model():
    import keras
    L = keras.layers
    x1 = _input((32, 1, 8))
    x2 = _input((9, 7, 4))
    outs = [L.AveragePooling2D((4, 1), (4, 1), "valid")(x1),    # DSP 1-D specialization
            L.AveragePooling2D((3, 1), (1, 1), "same")(x1),     # counts 2 and 3
            L.AveragePooling2D((8, 1), (2, 1), "valid")(x1),
            L.AveragePooling2D((2, 2), (2, 2), "same")(x2),     # 2-D, partial windows
            L.AveragePooling2D((3, 3), (2, 2), "valid")(x2)]
    return keras.Model([x1, x2], outs), _calib([((32, 1, 8), -1, 1), ((9, 7, 4), -2, 2)])


def _conv_model():
    import keras
    L = keras.layers
    pos = _input((32, 1, 8))    # calibrated >= 0: zero point -128
    neg = _input((15, 1, 16))   # calibrated <= 0: zero point 127
    sym = _input((10, 1, 6))    # 6 channels: portable only (3-tap); 1x1: a tail of 2
    odd = _input((7, 1, 5))     # 7 rows, 5 channels: 1x1 with a tail of 1 and an odd row
    outs = [L.Conv2D(64, (3, 1), padding="same", activation="relu")(pos),
            L.Conv2D(6, (3, 1), padding="valid")(neg),      # quad + tail, odd rows, signed
            L.Conv2D(8, (5, 1), padding="same", activation="relu6")(neg),  # clamp: generic
            L.Conv2D(3, (2, 1), padding="same")(sym),       # even kernel: pad after only
            L.Conv2D(5, (1, 1), activation="relu")(pos),    # 1x1: FULLY_CONNECTED rows
            L.Conv2D(1, (1, 1))(neg),                       # 1x1 to one channel
            L.Conv2D(2, (1, 1))(sym),                       # two rows per pass, input tail
            L.Conv2D(3, (1, 1))(odd),
            L.Conv2D(6, (1, 1))(odd)]                       # a quad, outputs and tail
    calib = _calib([((32, 1, 8), 0, 2), ((15, 1, 16), -3, 0), ((10, 1, 6), -1, 1),
                    ((7, 1, 5), -2, 1)])
    return keras.Model([pos, neg, sym, odd], outs), calib


def _fc_model():
    import keras
    L = keras.layers
    a = _input((64,))
    b = _input((20,))
    c = _input((10,))
    outs = [L.Dense(32, activation="relu")(a),
            L.Dense(5)(a),                          # a quad and a tail output
            L.Dense(3, activation="relu6")(b),      # clamp
            L.Dense(7)(c)]                          # in_len % 4 = 2: DSP with a tail
    return keras.Model([a, b, c], outs), _calib([((64,), 0, 3), ((20,), -2, 2), ((10,), -1, 0)])


def _softmax_model():
    import keras
    L = keras.layers
    shapes = [(32,), (32,), (1,), (100,), (4, 7)]
    ins = [_input(s) for s in shapes]
    outs = [L.Softmax()(x) for x in ins]
    calib = _calib([((32,), -2, 2), ((32,), -40, 40), ((1,), -1, 1), ((100,), -6, 1),
                    ((4, 7), -3, 3)])
    return keras.Model(ins, outs), calib


def _mul_model():
    import keras
    Mul, Sum, _ = _layers()
    h1 = _input((32, 1, 64))   # >= 0 (zero point -128)
    a1 = _input((32, 1, 1))    # >= 0
    h2 = _input((32, 1, 64))
    a2 = _input((32, 1, 1))
    h3 = _input((8, 1, 12))    # signed
    a3 = _input((8, 1, 1))     # signed
    h4 = _input((6, 1, 300))   # > 255 columns: generic DSP loop
    a4 = _input((6, 1, 1))
    e1 = _input((10,))
    e2 = _input((10,))
    s1 = _input((5, 7))
    outs = [Mul()([h1, a1]),                                  # broadcast MUL alone
            Sum([1, 2])(Mul()([h2, a2])),                     # fused, the model's case
            Sum([1, 2])(Mul()([a3, h3])),                     # fused, signed, swapped
            Sum([1, 2])(Mul()([h4, a4])),
            Mul()([e1, e2]),                                  # elementwise MUL
            Sum([1], keepdims=True)(s1),                      # SUM alone
            Sum([1, 2])(h1)]
    calib = _calib([((32, 1, 64), 0, 4), ((32, 1, 1), 0, 1), ((32, 1, 64), 0, 2),
                    ((32, 1, 1), 0, 0.5), ((8, 1, 12), -2, 2), ((8, 1, 1), -1, 1),
                    ((6, 1, 300), 0, 1), ((6, 1, 1), 0, 1), ((10,), -3, 3), ((10,), -1, 2),
                    ((5, 7), -1, 1)])
    return keras.Model([h1, a1, h2, a2, h3, a3, h4, a4, e1, e2, s1], outs), calib


def _activation_model():
    """LOGISTIC and TANH at several input scales and zero points (512 values per input set:
    every int8 value occurs), QUANTIZE (the converter requantizes a LOGISTIC output that
    feeds a concatenation with another scale)."""
    import keras
    L = keras.layers
    ins = [_input((8, 64)) for _ in range(4)]
    outs = [L.Activation("sigmoid")(ins[0]), L.Activation("tanh")(ins[0]),
            L.Activation("sigmoid")(ins[1]), L.Activation("tanh")(ins[1]),
            L.Activation("sigmoid")(ins[2]), L.Activation("tanh")(ins[3])]
    calib = _calib([((8, 64), -6, 6), ((8, 64), -0.5, 2), ((8, 64), -20, 3),
                    ((8, 64), -0.05, 0.05)])
    return keras.Model(ins, outs), calib


def _elementwise_model():
    """ADD and SUB (same shapes, broadcasts of [L, 1], [C] and scalar constants), MUL by
    constants, MEAN over the last axis, TRANSPOSE, STRIDED_SLICE (rows, a last row, a
    channel), CONCATENATION and PACK: the baselines' configurations."""
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="mcutext_test")
    class Ops(keras.layers.Layer):
        def build(self, shape):
            self.bias = self.add_weight(shape=(12,), name="bias",
                                        initializer=keras.initializers.RandomNormal(0, 0.7))

        def call(self, inputs):
            x, g, y = inputs                       # [1,6,12], [1,6,1], [1,6,12]
            a = x + g                              # broadcast over channels
            b = 1.0 - x                            # scalar constant minus tensor
            c = x - y
            d = y + self.bias                      # constant [12]
            e = 3.0 * y
            m = tf.reduce_mean(x * y, axis=-1)     # [1,6]
            t = tf.transpose(a, (0, 2, 1))         # [1,12,6]
            r = x[:, 2, :] + y[:, -1, :]           # rows by STRIDED_SLICE
            s = tf.concat([x[:, 0, :], y[:, 1, :], c[:, 3, :]], axis=-1)
            p = tf.stack([x[:, k, :] for k in range(6)], axis=1)
            return [a, b, c, d, e, m, t, r, s, p]

    x, g, y = _input((6, 12)), _input((6, 1)), _input((6, 12))
    outs = Ops()([x, g, y])
    calib = _calib([((6, 12), -2, 2), ((6, 1), 0, 1), ((6, 12), -1, 3)])
    return keras.Model([x, g, y], outs), calib


def _mask_model():
    """FastGRNN's word mask on int32 ids: RESHAPE of the model input, STRIDED_SLICE of int32
    (each word's first id), MINIMUM(id, 1), GATHER from a 1-D table by computed indices."""
    import keras

    from mcutext.model.baselines import WordPresence
    ids = _input((24,), "int32")
    model = keras.Model(ids, WordPresence(6, 4)(ids))
    calib = [[RNG.integers(0, 100, size=(1, 24)).astype(np.int32)] for _ in range(20)]
    return model, calib


MODELS = {"gather": _gather_model, "pool": _pool_model, "conv": _conv_model, "fc": _fc_model,
          "fc_per_tensor": _fc_model, "softmax": _softmax_model, "mul": _mul_model,
          "activation": _activation_model, "elementwise": _elementwise_model,
          "mask": _mask_model}


@pytest.fixture(scope="session")
def kernel_models() -> dict[str, bytes]:
    import keras
    out = {}
    for name, make in MODELS.items():
        keras.utils.set_random_seed(7)
        model, calib = make()
        out[name] = _convert(model, calib, per_tensor_dense=name == "fc_per_tensor")
    return out


@pytest.fixture(scope="session")
def kernel_libs(kernel_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("kernel_libs")
    return {v: hostbuild.build_graphs(kernel_models, root / v, v.split("-")[0],
                                      specialize=v != "dsp-generic") for v in VARIANTS}


def _inputs(graph: Graph, n: int) -> list[list[np.ndarray]]:
    """n input sets: random over the full int8 range, plus all -128, all 127, all 0."""
    sets = []
    for k in range(n):
        row = []
        for i in graph.inputs:
            t = graph.tensors[i]
            if t.dtype == "int32":          # gather ids (the table has 100 rows), 40 % zeros
                v = RNG.integers(0, 100, size=t.shape, dtype=np.int32)
                row.append(np.where(RNG.random(t.shape) < 0.4, 0, v).astype(np.int32))
            elif k == 0:
                row.append(np.full(t.shape, -128, dtype=np.int8))
            elif k == 1:
                row.append(np.full(t.shape, 127, dtype=np.int8))
            elif k == 2:
                row.append(np.zeros(t.shape, dtype=np.int8))
            else:
                row.append(RNG.integers(-128, 128, size=t.shape, dtype=np.int8))
        sets.append(row)
    return sets


def _tflm(tflite: bytes, inputs: list[np.ndarray], n_out: int) -> list[np.ndarray]:
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(tflite)
    for k, a in enumerate(inputs):
        it.set_input(a, k)
    it.invoke()
    return [np.array(it.get_output(k)) for k in range(n_out)]


@pytest.mark.slow   # converts small Keras models with the TFLite converter (~30 s in all)
@pytest.mark.parametrize("name", list(MODELS))
def test_kernels_match_tflite_micro(name, kernel_models, kernel_libs):
    tflite = kernel_models[name]
    graph = read_graph(tflite)
    expected_ops = {"gather": {"GATHER"}, "pool": {"AVERAGE_POOL_2D"}, "conv": {"CONV_2D"},
                    "fc": {"FULLY_CONNECTED"}, "fc_per_tensor": {"FULLY_CONNECTED"},
                    "softmax": {"SOFTMAX"}, "mul": {"MUL", "SUM"},
                    "activation": {"LOGISTIC", "TANH"},
                    "elementwise": {"ADD", "SUB", "MUL", "MEAN", "TRANSPOSE", "STRIDED_SLICE",
                                    "CONCATENATION", "PACK"},
                    "mask": {"STRIDED_SLICE", "MINIMUM", "GATHER"}}[name]
    kinds = {op.kind for op in graph.ops} - {"RESHAPE"}
    assert expected_ops <= kinds, kinds
    if name == "fc_per_tensor":
        ws = [graph.tensors[op.inputs[1]] for op in graph.ops if op.kind == "FULLY_CONNECTED"]
        assert all(len(w.scales) == 1 for w in ws)
    outs = [graph.tensors[i] for i in graph.outputs]
    shapes = [t.shape for t in outs]
    for inputs in _inputs(graph, 24):
        ref = _tflm(tflite, inputs, len(outs))
        for variant in VARIANTS:
            status, got = kernel_libs[variant].run(name, inputs, shapes)
            assert status == 0
            for k, (g, r) in enumerate(zip(got, ref)):
                assert np.array_equal(g, r.reshape(g.shape)), \
                    f"{name} output {k} ({variant}): {np.count_nonzero(g != r)} bytes differ"


@pytest.mark.slow
def test_specialized_and_generic_paths_are_covered(kernel_libs):
    """The kernel models exercise each DSP loop: the generator's specializations, and (with
    specialize=False) the run-time loops it falls back to."""
    def sources(variant):
        infos = kernel_libs[variant].graphs
        return infos, "".join(open(f).read() for i in infos.values() for f in i["files"]
                              if f.endswith("_graph.c"))
    infos, src = sources("dsp")
    for needle in ("MT_CONV_DSP_QUADS(", "MT_MUL_SUM_DSP(", "mt_mul_sum_dsp_generic",
                   "MT_AVG_POOL_DSP_1D("):
        assert needle in src, needle
    assert "CONV_2D" in infos["conv"]["dsp_ops"] and "CONV_2D 1x1" in infos["conv"]["dsp_ops"]
    assert "FULLY_CONNECTED" in infos["fc"]["dsp_ops"]
    infos, src = sources("dsp-generic")
    assert "mt_conv_dsp_quads_generic" in src and "MT_CONV_DSP_QUADS(" not in src
    assert "MUL+SUM" in infos["mul"]["dsp_ops"] and "MT_MUL_SUM_DSP(" not in src


@pytest.mark.slow
def test_gather_out_of_range_id_fails_like_tflite_micro(kernel_models, kernel_libs):
    from tflite_micro.python.tflite_micro import runtime
    tflite = kernel_models["gather"]
    graph = read_graph(tflite)
    shapes = [graph.tensors[i].shape for i in graph.outputs]
    for bad in (100, -1, 2**31 - 1, -2**31):
        ids = np.zeros((1, 24), dtype=np.int32)
        ids[0, 5] = bad
        it = runtime.Interpreter.from_bytes(tflite)
        it.set_input(ids, 0)
        with pytest.raises(Exception):
            it.invoke()
        for variant in VARIANTS:
            status, _ = kernel_libs[variant].run("gather", [ids], shapes)
            assert status == 1


# --- fixed-point primitives --------------------------------------------------------------------

def _srdhm_ref(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, transcribed (truncating division)."""
    if a == b == -2**31:
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = ab + nudge
    return int(math.copysign(abs(q) // (1 << 31), q)) if q else 0


def _rdbpot_ref(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def _wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def _mbqm_ref(x: int, m: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return _rdbpot_ref(_srdhm_ref(_wrap32(x * (1 << left)), m), right)


_SHIM = r"""#include "mt_common.h"
int32_t t_srdhm(int32_t a, int32_t b);
int32_t t_rdbpot(int32_t x, int32_t e);
int32_t t_mbqm(int32_t x, int32_t m, int32_t s);
int32_t t_requant(int32_t acc, int32_t m, int32_t add, int32_t neg, int32_t right, int32_t fix);
int32_t t_srdhm(int32_t a, int32_t b) { return mt_srdhm(a, b); }
int32_t t_rdbpot(int32_t x, int32_t e) { return mt_rdbpot(x, e); }
int32_t t_mbqm(int32_t x, int32_t m, int32_t s) { return mt_mbqm(x, m, s); }
int32_t t_requant(int32_t acc, int32_t m, int32_t add, int32_t neg, int32_t right, int32_t fix)
{
    const mt_requant_t q = {m, add, neg};
    return mt_requant_dsp(acc, &q, right, fix);
}
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    d = tmp_path_factory.mktemp("shim")
    (d / "shim.c").write_text(_SHIM)
    lib = ctypes.CDLL(str(hostbuild.compile_shared(
        [d / "shim.c"], d / "shim.so", [hostbuild.KERNELS_DIR], "dsp")))
    for f in ("t_srdhm", "t_rdbpot", "t_mbqm", "t_requant"):
        getattr(lib, f).restype = ctypes.c_int32
    lib.t_srdhm.argtypes = lib.t_rdbpot.argtypes = [ctypes.c_int32] * 2
    lib.t_mbqm.argtypes = [ctypes.c_int32] * 3
    lib.t_requant.argtypes = [ctypes.c_int32] * 6
    return lib


EXTREMES = [-2**31, -2**31 + 1, -2**30 - 1, -2**30, -2**30 + 1, -65536, -3, -2, -1, 0, 1, 2,
            3, 65535, 2**30 - 1, 2**30, 2**30 + 1, 2**31 - 2, 2**31 - 1]


def test_srdhm_and_rounding_divide_at_the_extremes(shim):
    for a in EXTREMES:
        for b in EXTREMES:
            assert shim.t_srdhm(a, b) == _srdhm_ref(a, b), (a, b)
    for x in EXTREMES + [int(v) for v in RNG.integers(-2**31, 2**31, 2000)]:
        for e in (0, 1, 2, 5, 13, 30, 31):
            assert shim.t_rdbpot(x, e) == _rdbpot_ref(x, e), (x, e)
    # ties of the rounding: x = k * 2^e +- 2^(e-1)
    for k in range(-5, 6):
        for e in (1, 3, 8):
            for x in (k * 2**e + 2**(e - 1), k * 2**e - 2**(e - 1)):
                assert shim.t_rdbpot(x, e) == _rdbpot_ref(x, e)


def test_multiply_by_quantized_multiplier(shim):
    mults = [0, 2**30, 2**30 + 1, 2**31 - 1] + [int(v) for v in RNG.integers(2**30, 2**31, 60)]
    for m in mults:
        for s in (-31, -20, -8, -1, 0, 1, 5, 30):
            for x in EXTREMES + [int(v) for v in RNG.integers(-2**20, 2**20, 20)]:
                assert shim.t_mbqm(x, m, s) == _mbqm_ref(x, m, s), (x, m, s)


def test_dsp_requantization_equals_the_reference(shim):
    """mt_requant_t: SMMLA(2^s acc, mult, add - [acc < 0] neg) >> E equals
    zp + MultiplyByQuantizedMultiplier(acc) for every accumulator within the bound the code
    generator checks (|2^s acc| <= 2^30)."""
    low = Lowering(Graph([], [], [], [], ""), "t", True)
    checked = 0
    for _ in range(400):
        m = int(RNG.integers(2**30, 2**31))
        shifts = [int(RNG.integers(-14, 1)) for _ in range(3)] + [int(RNG.integers(-12, 4))]
        zp = int(RNG.integers(-128, 128))
        req = low._requant_dsp([m] * 4, shifts, zp, [0] * 4, [1] * 4)
        if req is None:
            continue
        right, scales, words = req
        for ch, (shift, sc) in enumerate(zip(shifts, scales)):
            mult, add, neg = words[3 * ch:3 * ch + 3]
            lim = 2**30 >> sc
            for acc in [-lim, -lim + 1, -1, 0, 1, lim - 1, lim] + \
                    [int(v) for v in RNG.integers(-lim, lim + 1, 25)]:
                want = _mbqm_ref(acc, m, shift) + zp
                got = shim.t_requant(acc << sc, mult, add, neg, right, 1)
                assert got == want, (acc, m, shift, zp)
                if want <= zp:   # without the sign term, negative sums still end <= zp
                    assert shim.t_requant(acc << sc, mult, add, neg, right, 0) <= zp
                checked += 1
    assert checked > 5000


def test_quantize_multiplier_matches_tflite_definition():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(0.5) == (2**30, 0)
    assert quantize_multiplier(1.0) == (2**30, 1)
    assert quantize_multiplier(0.75) == (3 * 2**29, 0)
    assert quantize_multiplier(2.0**-40) == (0, 0)      # shift < -31: flushed
    # q * 2^31 rounding up to 2^31 moves to the next exponent
    assert quantize_multiplier(1.0 - 2.0**-40) == (2**30, 1)
    for real in RNG.uniform(1e-6, 10, 200):
        m, s = quantize_multiplier(float(real))
        assert 2**30 <= m < 2**31
        assert abs(m * 2.0**(s - 31) - real) <= real * 2**-30


@pytest.mark.slow
def test_unsupported_op_is_a_clear_error(tmp_path):
    import keras
    x = _input((8,))
    y = keras.layers.LeakyReLU()(keras.layers.Dense(4)(x))
    tflite = _convert(keras.Model(x, y), _calib([((8,), -1, 1)]))
    with pytest.raises(McutextError, match="unsupported op LEAKY_RELU"):
        generate_graph(tflite, tmp_path, "t")
