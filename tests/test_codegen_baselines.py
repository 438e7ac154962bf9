"""The code generator on the baselines (docs/baselines.md): FastGRNN (588 kernel calls:
ADD/SUB/MUL with broadcasts and constants, LOGISTIC, TANH, QUANTIZE, PACK, MEAN,
STRIDED_SLICE, int32 MINIMUM and GATHER for the word mask) and PRADO (the projection computed
from the ids in front of the graph, TRANSPOSE, MEAN, CONCATENATION, ...). Small bundles
trained on real sst2 sentences; the generated C, compiled for the host (portable, and with
the DSP paths emulated), gives byte-identical int8 outputs to the TFLite Micro interpreter on
real test sentences; it survives ASan + UBSan, refuses bad ids, cross-compiles with -Werror
and static stack frames, its memory plan never overlaps live tensors, and `mcutext build`
firmware for netduinoplus2 classifies like TFLite Micro under QEMU."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mcutext.codegen.driver import generate
from mcutext.codegen.graph import _schema, read_graph
from mcutext.codegen.lowering import _round_up
from mcutext.codegen.program import build_program
from mcutext.firmware import hostbuild
from mcutext.int8.bundle import load_bundle
from mcutext.text.datasets import load_split
from mcutext.common.errors import McutextError

OUTPUTS = ("logits", "attention", "features")
ARCHS = ("fastgrnn", "prado")
N_HOST = 150      # test sentences compared on the host (TFLM runs FastGRNN at ~0.1 s each)
N_QEMU = 36       # sentences classified over the emulated UART


@pytest.fixture(scope="session")
def baseline_cases(baseline_bundles, tmp_path_factory):
    """The baseline bundles (conftest); the first N_HOST test sentences as ids and TFLite
    Micro's outputs for them."""
    cases = {}
    for arch in ARCHS:
        root = tmp_path_factory.mktemp(f"codegen_{arch}")
        path = baseline_bundles[f"sst2_{arch}"]
        bundle = load_bundle(path)
        texts = load_split("sst2", "test").texts[:N_HOST]
        ids = bundle.tokenize(texts)
        cases[arch] = {"path": path, "bundle": bundle, "texts": texts, "ids": ids,
                       "ref": bundle.run_int8(ids, "tflm"), "root": root}
    return cases


def _assert_same(got: dict, ref: dict, rows=slice(None)):
    for k in OUTPUTS:
        g, r = got[k], ref[k][rows]
        bad = np.nonzero((g != r).any(axis=1))[0]
        assert len(bad) == 0, f"{k}: {len(bad)} of {len(g)} sentences differ (first {bad[:5]})"


EXPECTED_OPS = {
    "fastgrnn": {"ADD", "SUB", "MUL", "LOGISTIC", "TANH", "QUANTIZE", "PACK", "MEAN",
                 "STRIDED_SLICE", "MINIMUM", "GATHER", "FULLY_CONNECTED", "SOFTMAX"},
    "prado": {"PROJECTION", "STRIDED_SLICE", "SUB", "MUL", "ADD", "TRANSPOSE", "SOFTMAX",
              "MEAN", "CONCATENATION", "FULLY_CONNECTED", "CONV_2D", "CONV_2D 1x1"},
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["portable", "dsp"])
@pytest.mark.parametrize("arch", ARCHS)
def test_baseline_matches_tflite_micro_on_real_sentences(baseline_cases, arch, variant):
    c = baseline_cases[arch]
    m = hostbuild.build_model(c["path"], c["root"] / variant, variant)
    info = generate(c["path"], c["root"] / f"info_{variant}")
    assert EXPECTED_OPS[arch] <= set(info["ops"]), set(info["ops"])
    assert len(c["ids"]) == N_HOST and m.num_classes == 2
    _assert_same(m.run(c["ids"]), c["ref"])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_baseline_under_sanitizers_and_bad_ids(baseline_cases, arch):
    """ASan + UBSan: no out-of-bounds access or undefined operation, same bytes; an id
    outside [0, buckets) is refused (PRADO: before the projection runs)."""
    c = baseline_cases[arch]
    exe = hostbuild.build_runner(c["path"], c["root"] / "san", "dsp", sanitize=True)
    ids = c["ids"][:24]
    sizes = (2, c["bundle"].tokenizer.spec.max_words, c["ref"]["features"].shape[1])
    out = hostbuild.run_runner(exe, ids, *sizes)
    assert not out["status"].any()
    _assert_same(out, c["ref"], slice(0, 24))
    bad = ids[:4].copy()
    buckets = c["bundle"].tokenizer.spec.buckets
    bad[0, 0], bad[1, 5], bad[2, -1] = buckets, -1, 2**31 - 1
    bad[3, 0] = buckets - 1                      # the last valid id
    out = hostbuild.run_runner(exe, bad, *sizes)
    assert out["status"].tolist() == [1, 1, 1, 0]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_baseline_memory_plan(baseline_cases, arch):
    """No two buffers alive at the same call overlap; the arena is at most what the live
    buffers need at one call, rounded, plus alignment (checked against the sum of all)."""
    c = baseline_cases[arch]
    b = c["bundle"]
    feed = b.manifest["int8"].get("input")
    proj = dict(feed, buckets=b.tokenizer.spec.buckets,
                max_words=b.tokenizer.spec.max_words) if feed else None
    prog = build_program(read_graph(b.tflite_bytes), "mt_gen", True, True,
                                 proj)
    for plan in prog.plans.values():
        bufs = list(plan.buffers.values()) + list(plan.scratch.values())
        for i, x in enumerate(bufs):
            for y in bufs[i + 1:]:
                if x.last < y.first or y.last < x.first:
                    continue
                assert x.offset + x.size <= y.offset or y.offset + y.size <= x.offset, (x, y)
        peak = max(sum(x.size for x in bufs if x.first <= k <= x.last)
                   for k in range(len(prog.steps)))
        assert peak <= plan.arena_bytes <= sum(_round_up(x.size, 8) for x in bufs)
    if arch == "prado":   # the projection input lives in the arena, written by call 0
        inp = prog.plans["portable"].buffers[prog.root(prog.graph.inputs[0])]
        assert inp.first == 0 and inp.size == 32 * 257 and not prog.ext
    else:                 # FastGRNN reads the caller's ids (reshaped and sliced in place)
        assert prog.ext == set(prog.graph.inputs)


@pytest.mark.slow
def test_unsupported_baseline_configuration_is_a_clear_error(baseline_cases, tmp_path):
    """A CONCATENATION whose inputs differ in quantization (TFLite Micro refuses it too)."""
    import flatbuffers

    schema = _schema()
    src = baseline_cases["prado"]["path"]
    bundle = tmp_path / "bundle"
    shutil.copytree(src, bundle)
    model = schema.ModelT.InitFromPackedBuf(bytearray((bundle / "model_int8.tflite")
                                                      .read_bytes()), 0)
    sg = model.subgraphs[0]
    concat = [k for k, op in enumerate(sg.operators)
              if model.operatorCodes[op.opcodeIndex].builtinCode
              == schema.BuiltinOperator.CONCATENATION]
    assert len(concat) == 1
    t = sg.tensors[sg.operators[concat[0]].inputs[1]]
    t.quantization.scale = [t.quantization.scale[0] * 2]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    (bundle / "model_int8.tflite").write_bytes(bytes(builder.Output()))
    _reseal(bundle)
    with pytest.raises(McutextError, match=rf"CONCATENATION \(operator {concat[0]}\): a "
                                           "requantization"):
        generate(bundle, tmp_path / "gen")


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m0"])
@pytest.mark.parametrize("arch", ARCHS)
def test_baseline_cross_compiles_with_werror_and_bounded_stack(baseline_cases, tmp_path, arch,
                                                               cpu):
    from test_codegen import _cross_compile
    gen = tmp_path / "gen"
    generate(baseline_cases[arch]["path"], gen)
    frames = _cross_compile(gen, tmp_path / "obj", cpu)
    assert "mt_model_run" in frames and "mt_add_s8" in frames
    for fn, (size, kind) in frames.items():
        assert kind == "static", f"{fn}: {kind} stack"
        assert size <= 160, f"{fn}: {size} bytes of stack"


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_baseline_firmware_on_netduinoplus2_matches_tflite_micro(baseline_cases, arch):
    """`mcutext build` for netduinoplus2 (Cortex-M4F, DSP kernels), booted in QEMU: N_QEMU
    real test sentences classified over the UART give TFLite Micro's int8 scores."""
    from mcutext.device.client import Device
    from mcutext.firmware.build import build
    from mcutext.device.qemu import boot
    assert shutil.which("qemu-system-arm"), "qemu-system-arm is part of the setup"
    c = baseline_cases[arch]
    rep = build(c["path"], "netduinoplus2", c["root"] / "fw")
    assert rep["flash_bytes"] <= rep["flash_budget"] and rep["ram_bytes"] <= rep["ram_budget"]
    counts = []
    with boot(rep["elf"], "netduinoplus2") as url, Device(url, timeout=60) as dev:
        for i, text in enumerate(c["texts"][:N_QEMU]):
            r = dev.classify(text)
            want = c["ref"]["logits"][i]
            assert np.array_equal(np.array(r["scores"], dtype=np.int8), want), \
                f"sentence {i} {text!r}: device {r['scores']} TFLM {want.tolist()}"
            counts.append(r["instructions"]["model"])
    print(f"\n{arch} on netduinoplus2: {N_QEMU} sentences identical to TFLite Micro; model "
          f"{np.mean(counts):.0f} instructions per classification (mean); flash "
          f"{rep['flash_bytes']} B, RAM {rep['ram_bytes']} B")


def _reseal(bundle):
    """A bundle whose .tflite was edited on purpose: record its new hash in the manifest."""
    import json

    from mcutext.int8.bundle import write_manifest
    m = json.loads((bundle / "manifest.json").read_text())
    m["int8"]["file_bytes"] = (bundle / "model_int8.tflite").stat().st_size
    write_manifest(bundle, m)       # records the new SHA-256
