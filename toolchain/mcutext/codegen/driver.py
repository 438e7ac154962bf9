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

from pathlib import Path

from ..common.errors import McutextError
from .emit import (ENCODING, HEADER, SOURCE, WEIGHTS, _c_string, _emit_sources, _off_name,
                   _summary, _write, robust_table_bytes, robust_table_c)
from .graph import read_graph
from .head import _emit_head
from .program import build_program


def generate(bundle_path: str | Path, out_dir: str | Path, dsp: bool = True,
             specialize: bool = True) -> dict:
    """Generate model.c, weights.c and model_gen.h (firmware/model_api.h) for a bundle.

    dsp=False leaves every layer on the portable kernels (no DSP data is emitted), for
    comparing the two paths on a Cortex-M4."""
    from ..int8.bundle import load_bundle

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
        from ..int8.bundle import ENCODING_FILE
        files[ENCODING] = robust_table_c(bundle.encoding_table, f"{p}_encoding",
                                         f"{Path(bundle_path).name}/{ENCODING_FILE}")
    head = _emit_head(bundle, outs["features"], g_sha=graph.sha256, what=what)
    files.update(head)
    paths = _write(Path(out_dir), files)
    summary = _summary(prog, paths)
    summary["encoding_bytes"] = robust_table_bytes(bundle.encoding_table) if spec.robust else 0
    return summary


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
