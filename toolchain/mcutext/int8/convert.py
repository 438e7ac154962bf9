"""Full-integer int8 conversion and its verification in the TFLite Micro interpreter."""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ..common import quiet  # noqa: E402
from ..common.errors import McutextError  # noqa: E402
from ..model.student import OUTPUT_NAMES  # noqa: E402

# Builtin ops that both TFLite Micro and the mcutext code generator run. A converted model
# with any other op is refused here, by name, instead of failing later on the device.
SUPPORTED_OPS = ("GATHER", "RESHAPE", "AVERAGE_POOL_2D", "CONV_2D", "SOFTMAX", "MUL", "SUM",
                 "FULLY_CONNECTED")


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema
    return schema


def read_model(tflite: bytes):
    """Parse a .tflite flatbuffer into the schema's object API (ModelT)."""
    schema = _schema()
    if len(tflite) < 8 or tflite[4:8] != b"TFL3":
        raise McutextError("not a TFLite flatbuffer (missing the 'TFL3' identifier)")
    try:
        return schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    except Exception as e:  # the flatbuffer reader raises assorted errors on corrupt input
        raise McutextError(f"corrupt TFLite flatbuffer ({type(e).__name__}: {e})") from None


def op_names(model) -> list[str]:
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        out.append(names.get(builtin, f"CUSTOM({code.customCode!r})" if code.customCode
                             else f"BUILTIN_{builtin}"))
    return out


def weights_bytes(model) -> int:
    """Bytes of constant tensor data (weights, biases, shape constants)."""
    total = 0
    for t in model.subgraphs[0].tensors:
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        if buf is not None and buf.data is not None:
            total += len(buf.data)
    return total


def output_order(model) -> dict[str, int]:
    """Map output name (logits/attention/features) to its position among the subgraph outputs."""
    sg = model.subgraphs[0]
    if not model.signatureDefs:
        raise McutextError("the converted model has no signature; cannot identify its outputs")
    sig = model.signatureDefs[0]
    by_key = {o.name.decode(): o.tensorIndex for o in sig.outputs}
    order = {}
    for k, name in enumerate(OUTPUT_NAMES):
        idx = by_key.get(f"output_{k}")
        if idx is None or idx not in list(sg.outputs):
            raise McutextError(f"the converted model lacks output '{name}'")
        order[name] = list(sg.outputs).index(idx)
    return order


def tensor_quant(model, tensor_index: int) -> tuple[float, int]:
    q = model.subgraphs[0].tensors[tensor_index].quantization
    return float(q.scale[0]), int(q.zeroPoint[0])


def check_ops(model, allowed: tuple[str, ...] = SUPPORTED_OPS) -> list[str]:
    """The model's op names; an op outside `allowed` is an error. The baselines pass a longer
    list (mcutext.model.baselines.EXTRA_OPS: ops TFLite Micro runs, the firmware not yet)."""
    names = op_names(model)
    bad = sorted(set(n for n in names if n not in allowed))
    if bad:
        raise McutextError(
            f"the int8 model uses op(s) that TFLite Micro or the mcutext firmware cannot run: "
            f"{', '.join(bad)}",
            hint=f"supported ops: {', '.join(allowed)}")
    return names


def to_int8(keras_model, calibration_ids: np.ndarray) -> bytes:
    """Convert a batch-1 Keras model to a full-integer int8 TFLite flatbuffer.

    Input stays int32 (token ids); every output is int8. A model with a float input (the
    PRADO baseline's projection features) gets an int8 input, quantized with the scale the
    calibration gives it.
    """
    import tensorflow as tf
    float_input = np.issubdtype(np.asarray(calibration_ids).dtype, np.floating)

    def representative():
        for row in calibration_ids:
            yield [row[None].astype(np.float32 if float_input else np.int32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_output_type = tf.int8
    if float_input:
        conv.inference_input_type = tf.int8
    with _quiet_stdout():
        tflite = conv.convert()
    return bytes(tflite)


@contextlib.contextmanager
def _quiet_stdout():
    """The converter prints progress to stdout (from Python and from C++); keep stdout clean
    for `--json` output by pointing file descriptor 1 at /dev/null meanwhile (and its C++
    log lines on stderr, unless --verbose: mcutext.common.quiet)."""
    with quiet.fd_to_devnull(1), quiet.library_stderr(), open(os.devnull, "w") as sink, \
            contextlib.redirect_stdout(sink):
        yield


def tflm_interpreter(tflite: bytes):
    """Load the model in the real TFLite Micro interpreter; unsupported ops are a clear error."""
    from tflite_micro.python.tflite_micro import runtime
    try:
        return runtime.Interpreter.from_bytes(tflite)
    except Exception as e:  # TFLM reports failures as RuntimeError with its log text
        raise McutextError(f"TFLite Micro cannot load the model: {str(e).strip()[:300]}") from None
