"""The code generator on real bundles: the generated C, compiled for the host (portable, and
with the DSP paths emulated), gives byte-identical int8 outputs to the TFLite Micro
interpreter on every test sentence; it cross-compiles for Cortex-M4 and Cortex-M0 with
-Werror; it runs bit-exact under QEMU with the real DSP instructions; its memory plan never
overlaps live tensors; unsupported ops are clear errors."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from mcutext.codegen.driver import generate
from mcutext.codegen.graph import _schema, read_graph
from mcutext.codegen.lowering import _round_up
from mcutext.codegen.program import ALIGN, Buffer, build_program, plan_memory
from mcutext.firmware import hostbuild
from mcutext.int8.bundle import load_bundle
from mcutext.text.datasets import load_split
from mcutext.common.errors import McutextError

from conftest import _train

OUTPUTS = ("logits", "attention", "features")
VARIANTS = ("portable", "dsp")


@pytest.fixture(scope="session")
def clinc150_small_bundle(tmp_path_factory):
    """clinc150 recipe on 3,000 real training sentences, 3 epochs (151 classes)."""
    return _train(tmp_path_factory, "clinc150", limit=3000, epochs=3, test_limit=300)


class _Case:
    """A bundle, its whole test split as token ids, TFLite Micro's outputs, host builds."""

    def __init__(self, path, root):
        self.path = path
        self.bundle = load_bundle(path)
        texts = load_split(self.bundle.manifest["dataset"], "test").texts
        self.ids = self.bundle.tokenize(texts)
        self.ref = self.bundle.run_int8(self.ids, "tflm")
        self.root = root
        self.models = {v: hostbuild.build_model(path, root / v, v) for v in VARIANTS}


@pytest.fixture(scope="session")
def sst2_case(sst2_small_bundle, tmp_path_factory):
    return _Case(sst2_small_bundle, tmp_path_factory.mktemp("codegen_sst2"))


@pytest.fixture(scope="session")
def clinc_case(clinc150_small_bundle, tmp_path_factory):
    return _Case(clinc150_small_bundle, tmp_path_factory.mktemp("codegen_clinc150"))


def _assert_same(got: dict, ref: dict, rows=slice(None)):
    for k in OUTPUTS:
        g, r = got[k], ref[k][rows]
        bad = np.nonzero((g != r).any(axis=1))[0]
        assert len(bad) == 0, f"{k}: {len(bad)} of {len(g)} sentences differ (first {bad[:5]})"


# --- equivalence with TFLite Micro --------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_sst2_matches_tflite_micro_on_every_test_sentence(sst2_case, variant):
    assert len(sst2_case.ids) > 1000
    _assert_same(sst2_case.models[variant].run(sst2_case.ids), sst2_case.ref)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_clinc150_matches_tflite_micro_on_every_test_sentence(clinc_case, variant):
    assert len(clinc_case.ids) > 5000 and clinc_case.models[variant].num_classes == 151
    _assert_same(clinc_case.models[variant].run(clinc_case.ids), clinc_case.ref)


@pytest.mark.slow
def test_portable_only_generation_matches(sst2_case, tmp_path):
    """dsp=False emits no DSP data: every layer takes the portable kernels, even where the
    build could use the DSP paths (-DMT_EMULATE_DSP)."""
    m = hostbuild.build_model(sst2_case.path, tmp_path, "dsp", dsp=False)
    gen = (tmp_path / "gen" / "model.c").read_text()
    assert ".dsp = " not in gen and "MT_CONV_DSP_QUADS" not in gen
    _assert_same(m.run(sst2_case.ids[:300]), sst2_case.ref, slice(0, 300))


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_no_memory_errors_under_sanitizers(sst2_case, variant):
    """ASan + UBSan builds: no out-of-bounds access or undefined operation, same bytes, and
    bad ids are refused."""
    exe = hostbuild.build_runner(sst2_case.path, sst2_case.root / f"san_{variant}", variant,
                                 sanitize=True)
    m = sst2_case.models[variant]
    ids = sst2_case.ids[:300]
    out = hostbuild.run_runner(exe, ids, m.num_classes, m.max_words, m.feature_dim)
    assert not out["status"].any()
    _assert_same(out, sst2_case.ref, slice(0, 300))
    bad = ids[:4].copy()
    bad[0, 0], bad[1, 7], bad[2, -1] = m_buckets(sst2_case), -1, 2**31 - 1
    out = hostbuild.run_runner(exe, bad, m.num_classes, m.max_words, m.feature_dim)
    assert out["status"].tolist() == [1, 1, 1, 0]


def m_buckets(case) -> int:
    return case.bundle.tokenizer.spec.buckets


@pytest.mark.slow
def test_ids_outside_the_buckets_are_refused(sst2_case):
    m = sst2_case.models["dsp"]
    ids = sst2_case.ids[:5].copy()
    ids[0, 3] = m_buckets(sst2_case)          # one past the table
    ids[1, 0] = -5
    ids[2, -1] = m_buckets(sst2_case) - 1     # the last valid id
    assert m.status(ids).tolist() == [1, 1, 0, 0, 0]
    with pytest.raises(McutextError, match="refused"):
        m.run(ids)


# --- the generated sources ---------------------------------------------------------------------

@pytest.mark.slow
def test_generate_reports_and_is_deterministic(sst2_small_bundle, tmp_path):
    a = generate(sst2_small_bundle, tmp_path / "a")
    b = generate(sst2_small_bundle, tmp_path / "b")
    names = sorted(p.rsplit("/", 1)[-1] for p in a["files"])
    assert names == ["head.c", "model.c", "model_gen.h", "model_head.h", "weights.c"]
    for fa, fb in zip(sorted(a["files"]), sorted(b["files"])):
        assert open(fa).read() == open(fb).read()
    # the factory head for personalize.c: the manifest's [H, C] transposed, exactly
    head = load_bundle(sst2_small_bundle).manifest["head"]
    w = np.asarray(head["weights"], np.float32)
    text = (tmp_path / "a" / "head.c").read_text()
    body = text[text.index("mt_gen_head_weights["):]
    body = body[body.index("{") + 1:body.index("}")]
    got = np.array([float.fromhex(v.strip().rstrip("f")) for v in body.split(",") if v.strip()],
                   np.float32)
    assert np.array_equal(got, w.T.reshape(-1))
    hdr = (tmp_path / "a" / "model_head.h").read_text()
    assert f"#define MT_HEAD_MAX_FEATURES {w.shape[0]}\n" in hdr
    assert "#define MT_HEAD_MAX_NEW_LABELS 4\n" in hdr
    assert "#define MT_TRAIN_BUFFER 64u\n" in hdr     # 16 per reserved row, at least 64
    src = (tmp_path / "a" / "model.c").read_text()
    assert src.startswith("/* Generated by mcutext") and "sha256" in src.splitlines()[0]
    rec = load_bundle(sst2_small_bundle).manifest["recipe"]
    L, D = rec["tokenizer"]["max_words"], rec["model"]["embed_dim"]
    F, H, w = rec["model"]["conv_filters"], rec["model"]["feature_dim"], rec["model"]["conv_width"]
    # conv + 1x1 attention conv + attention-weighted sum (MUL) + two dense layers
    assert a["macs"] == L * F * w * D + L * F + L * F + F * H + H * 2
    assert a["ops"] == ["GATHER", "AVERAGE_POOL_2D", "CONV_2D", "CONV_2D 1x1", "SOFTMAX",
                        "MUL+SUM", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert set(a["dsp_ops"]) >= {"AVERAGE_POOL_2D", "CONV_2D", "MUL+SUM", "FULLY_CONNECTED"}
    assert 0 < a["arena_bytes_portable"] <= a["arena_bytes"] < 8192
    assert a["weights_bytes"] > load_bundle(sst2_small_bundle).manifest["int8"]["weights_bytes"]


@pytest.mark.slow
def test_memory_plan_of_the_model(sst2_small_bundle):
    graph = read_graph(load_bundle(sst2_small_bundle).tflite_bytes)
    prog = build_program(graph)
    for plan in prog.plans.values():
        bufs = list(plan.buffers.values()) + list(plan.scratch.values())
        _assert_no_overlap(bufs)
        assert plan.arena_bytes >= max(b.offset + b.size for b in bufs)
    # RESHAPE is an alias: the attention output shares the SOFTMAX buffer with its reshape
    reshapes = [op for op in graph.ops if op.kind == "RESHAPE"]
    assert len(reshapes) == 3
    for op in reshapes:
        assert prog.root(op.outputs[0]) == prog.root(op.inputs[0])
    # the fused MUL's product is never stored
    mul = next(op for op in graph.ops if op.kind == "MUL")
    assert prog.root(mul.outputs[0]) not in prog.buffers


def _assert_no_overlap(bufs):
    for i, a in enumerate(bufs):
        assert a.offset % ALIGN == 0
        for b in bufs[i + 1:]:
            live_together = not (a.last < b.first or b.last < a.first)
            disjoint = a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
            assert disjoint or not live_together, (a, b)


def test_memory_planner_on_random_lifetimes():
    rng = np.random.default_rng(3)
    for _ in range(200):
        bufs = []
        for k in range(int(rng.integers(1, 14))):
            first = int(rng.integers(0, 10))
            bufs.append(Buffer(f"b{k}", int(rng.integers(1, 300)), first,
                                       first + int(rng.integers(0, 5))))
        arena = plan_memory(bufs)
        _assert_no_overlap(bufs)
        assert arena >= max(b.offset + b.size for b in bufs)
        # never worse than giving every buffer its own place
        assert arena <= sum(_round_up(b.size, ALIGN) for b in bufs)
        # at least the largest set of buffers alive at one step
        peak = max(sum(b.size for b in bufs if b.first <= t <= b.last) for t in range(15))
        assert arena >= peak


@pytest.mark.slow
def test_unsupported_op_in_a_bundle_is_a_clear_error(sst2_small_bundle, tmp_path):
    """A bundle whose model uses an op the kernels lack: generate() names the op."""
    import flatbuffers

    schema = _schema()
    bundle = tmp_path / "bundle"
    shutil.copytree(sst2_small_bundle, bundle)
    model = schema.ModelT.InitFromPackedBuf(bytearray((bundle / "model_int8.tflite")
                                                      .read_bytes()), 0)
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.SOFTMAX:
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.HARD_SWISH
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    (bundle / "model_int8.tflite").write_bytes(bytes(builder.Output()))
    _reseal(bundle)
    with pytest.raises(McutextError, match=r"unsupported op HARD_SWISH \(operator 6\)"):
        generate(bundle, tmp_path / "gen")


# --- cross compilation and the real DSP instructions -------------------------------------------

CROSS = {
    "cortex-m4": hostbuild.CPU_FLAGS["cortex-m4"],
    "cortex-m0": hostbuild.CPU_FLAGS["cortex-m0"],
}


def _cross_compile(gen_dir, out_dir, cpu, extra=()):
    cc = shutil.which("arm-none-eabi-gcc")
    assert cc, "arm-none-eabi-gcc is part of the setup (make setup)"
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = hostbuild.kernel_sources() + sorted(gen_dir.glob("*.c"))
    for src in sources:
        cmd = [cc, *CROSS[cpu], "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror",
               "-ffunction-sections", "-fdata-sections", "-fstack-usage", *extra,
               f"-I{gen_dir}", f"-I{hostbuild.FIRMWARE_DIR}", f"-I{hostbuild.KERNELS_DIR}",
               "-c", str(src), "-o", str(out_dir / (src.stem + ".o"))]
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode == 0, f"{cpu} {src.name}:\n{p.stderr}"
    frames = {}
    for su in out_dir.glob("*.su"):
        for line in su.read_text().splitlines():
            where, size, kind = line.split("\t")
            frames[where.rsplit(":", 1)[-1]] = (int(size), kind)
    return frames


@pytest.mark.slow
@pytest.mark.parametrize("cpu,extra,dsp", [("cortex-m4", (), True),
                                           ("cortex-m4", ("-DMT_FORCE_PORTABLE",), True),
                                           ("cortex-m4", (), False),
                                           ("cortex-m0", (), True)])
def test_cross_compiles_with_werror_and_bounded_stack(sst2_small_bundle, tmp_path, cpu, extra,
                                                      dsp):
    gen = tmp_path / "gen"
    generate(sst2_small_bundle, gen, dsp=dsp)
    frames = _cross_compile(gen, tmp_path / "obj", cpu, extra)
    assert "mt_model_run" in frames and "mt_conv_s8" in frames
    for fn, (size, kind) in frames.items():
        assert kind == "static", f"{fn}: {kind} stack"
        assert size <= 160, f"{fn}: {size} bytes of stack"


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("cpu,machine", [("cortex-m4", "mps2-an386"),
                                         ("cortex-m0", "mps2-an385")])
def test_native_code_matches_tflite_micro_under_qemu(sst2_case, tmp_path, cpu, machine):
    """The real instructions: SMLAD, SMMLA, SSAT with shift and the LDRD loops on a Cortex-M4
    (mps2-an386), the portable path built for Cortex-M0 (run on the mps2-an385's M3)."""
    assert shutil.which("qemu-system-arm"), "qemu-system-arm is part of the setup"
    n = 150
    elf = hostbuild.build_semihosted(sst2_case.path, sst2_case.ids[:n], tmp_path, cpu)
    m = sst2_case.models["dsp"]
    out = hostbuild.run_semihosted(elf, machine, m.num_classes, m.max_words, m.feature_dim)
    assert len(out["logits"]) == n and not out["status"].any()
    _assert_same(out, sst2_case.ref, slice(0, n))


@pytest.mark.qemu
@pytest.mark.slow
def test_dsp_path_instruction_budget_on_cortex_m4(sst2_case, tmp_path):
    """QEMU -icount counts instructions exactly (not time): on a Cortex-M4 the DSP path runs
    the model in at most 1.5 instructions per MAC, at least 3x fewer than the portable
    path (32-word sentence)."""
    text = " ".join(["a wonderful surprise with sharp writing but the middle drags"] * 4)
    ids = sst2_case.bundle.tokenize([text])[0]
    assert (ids[-4:] != 0).all()      # all 32 word slots used
    macs = sst2_case.models["dsp"].macs
    dsp = hostbuild.count_instructions(sst2_case.path, ids, tmp_path / "dsp", "cortex-m4")
    port = hostbuild.count_instructions(sst2_case.path, ids, tmp_path / "port", "cortex-m4",
                                        dsp=False)
    assert len(dsp["per_op"]) == 8 and sum(dsp["per_op"]) >= dsp["instructions"]
    assert dsp["instructions"] <= 1.5 * macs, dsp
    assert port["instructions"] >= 3 * dsp["instructions"], (port, dsp)


def _reseal(bundle):
    """A bundle whose .tflite was edited on purpose: record its new hash in the manifest."""
    import json

    from mcutext.int8.bundle import write_manifest
    m = json.loads((bundle / "manifest.json").read_text())
    m["int8"]["file_bytes"] = (bundle / "model_int8.tflite").stat().st_size
    write_manifest(bundle, m)       # records the new SHA-256
