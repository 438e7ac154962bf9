"""The int8 TFLite flatbuffer read into plain tensors and ops (no TFLite runtime needed).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from ..common.errors import McutextError
from .quant import _f32


SUPPORTED_OPS = ("GATHER", "RESHAPE", "AVERAGE_POOL_2D", "CONV_2D", "SOFTMAX", "MUL", "SUM",
                 "FULLY_CONNECTED",
                 # the baselines' ops (docs/baselines.md): FastGRNN, PRADO
                 "ADD", "SUB", "LOGISTIC", "TANH", "QUANTIZE", "MEAN", "STRIDED_SLICE",
                 "TRANSPOSE", "PACK", "CONCATENATION", "MINIMUM")


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - the package is a dependency
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


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
