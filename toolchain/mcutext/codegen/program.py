"""The lowered graph as a program: the op families' lowering functions, and the static arena
plan over the tensors' lifetimes (greedy, one offset per tensor, per kernel path).
"""

from __future__ import annotations

import dataclasses

from ..common.errors import McutextError
from .graph import Graph
from .lowering import Lowering, _round_up
from .lowering import Array, Step

from .ops import activation, add, conv, copy, fully_connected, gather, mul, pooling, quantize
from .ops import reduce, softmax
from .ops.projection import projection as lower_projection

# op kind -> the function that lowers it (one module per kernel family, as firmware/kernels/)
HANDLERS = {
    "GATHER": gather.gather, "RESHAPE": copy.reshape, "AVERAGE_POOL_2D": pooling.average_pool_2d,
    "CONV_2D": conv.conv_2d, "SOFTMAX": softmax.softmax, "MUL": mul.mul, "SUM": reduce.sum,
    "MUL+SUM": mul.mul_sum,   # a MUL whose product only feeds a SUM (Lowering.lower)
    "FULLY_CONNECTED": fully_connected.fully_connected, "ADD": add.add, "SUB": add.sub,
    "LOGISTIC": activation.logistic, "TANH": activation.tanh, "QUANTIZE": quantize.quantize,
    "MEAN": reduce.mean, "STRIDED_SLICE": copy.strided_slice, "TRANSPOSE": copy.transpose,
    "PACK": copy.pack, "CONCATENATION": copy.concatenation, "MINIMUM": add.minimum,
}

ALIGN = 8                 # arena offsets and const arrays (LDRD needs 4; 8 for good measure)


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
    low = Lowering(graph, prefix, dsp, specialize, HANDLERS)
    if projection is not None:
        lower_projection(low, projection, graph.inputs[0], int(projection["buckets"]),
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
