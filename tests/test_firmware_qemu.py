"""The firmware in real qemu-system-arm, over the emulated UART (pyserial socket://).

The real sst2 model (the full recipe's architecture, trained on 2,000 sentences) is built for
netduinoplus2 (Cortex-M4F, DSP kernels) and microbit (Cortex-M0, 16 KB RAM, portable
kernels). On both, 200 sst2 test sentences classified over the UART give label and int8
scores byte-identical to the TFLite Micro interpreter; explanations give TFLM's attention;
hostile input (overlong lines, NUL, invalid UTF-8, binary garbage, unknown commands) gets
error lines and the device keeps serving. Every emulated board (mps2-an386 and the others)
boots and agrees on a smaller sample in test_boards_qemu.py. The protocol's corner cases are
tested without QEMU in test_protocol_c.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from mcutext.device.client import Device, DeviceError

pytestmark = pytest.mark.qemu

BOARDS = ["netduinoplus2", "microbit"]
N_SENTENCES = 200


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    from mcutext.text.datasets import load_split
    return load_split("sst2", "test").texts[:N_SENTENCES]


@pytest.fixture(scope="module")
def bundle(sst2_small_bundle):
    from mcutext.int8.bundle import load_bundle
    return load_bundle(sst2_small_bundle)


@pytest.fixture(scope="module")
def reference(bundle, sentences) -> dict:
    """TFLite Micro's raw int8 outputs (logits, attention, features) for the sentences."""
    return bundle.run_int8(bundle.tokenize(sentences), "tflm")


def tflm(bundle, texts) -> dict:
    return bundle.run_int8(bundle.tokenize(texts), "tflm")


@pytest.fixture(scope="module")
def builds(sst2_small_bundle, tmp_path_factory) -> dict:
    """The firmware for each board, with the test-only `fault` command (MT_FAULT_COMMAND:
    an #if'd branch of the dispatcher, nothing else differs from a normal build)."""
    from mcutext.firmware.build import build
    out = tmp_path_factory.mktemp("fw")
    return {b: build(sst2_small_bundle, b, out / b, defines={"MT_FAULT_COMMAND": "1"})
            for b in BOARDS + ["mps2-an386"]}


@pytest.fixture(scope="module", params=BOARDS)
def device(request, builds, tmp_path_factory):
    from mcutext.device.qemu import boot
    res = builds[request.param]
    log = tmp_path_factory.mktemp(f"session_{request.param}") / "session.log"
    with boot(res["elf"], request.param) as url:
        with Device(url, timeout=30, log=log) as dev:
            dev.build_report = res
            yield dev


def scores(r: dict) -> np.ndarray:
    return np.array(r["scores"], dtype=np.int8)


def test_info(device, bundle):
    info = device.info()
    spec = bundle.tokenizer.spec
    rep = device.build_report
    assert info["protocol"] == 1
    assert info["model"] == bundle.name and info["labels"] == bundle.labels
    assert info["board"] == rep["board"] and info["cpu"] == rep["cpu"]
    assert info["kernels"] == rep["kernels"] == ("dsp" if rep["cpu"] == "cortex-m4" else
                                                 "portable")
    assert info["profile"] == 0
    assert info["tokenizer"] == {"version": spec.version, "buckets": spec.buckets,
                                 "max_words": spec.max_words,
                                 "features_per_word": spec.features_per_word,
                                 "seed": spec.seed, "max_word_bytes": spec.max_word_bytes}
    assert info["seq_len"] == spec.seq_len
    assert info["counter"] == "instructions"
    assert info["flash"] == {"used": rep["flash_bytes"], "budget": rep["flash_budget"]}
    assert info["ram"] == {"used": rep["ram_bytes"], "budget": rep["ram_budget"]}
    assert info["weights"] == rep["weights_bytes"] and info["macs"] == rep["macs"]
    assert info["stack"]["budget"] == rep["stack_reserve"]


def test_classify_matches_tflite_micro(device, bundle, reference, sentences):
    q = bundle.manifest["int8"]["outputs"]["logits"]
    counts = []
    for i, text in enumerate(sentences):
        r = device.classify(text)
        want = reference["logits"][i]
        assert np.array_equal(scores(r), want), f"sentence {i} {text!r}: device {r['scores']} " \
                                                f"TFLM {want.tolist()}"
        assert r["label_index"] == int(np.argmax(want)) and r["label"] == bundle.labels[
            r["label_index"]]
        assert r["words"] == bundle.tokenizer.num_words(text)
        exact = (want.astype(np.float64) - q["zero_point"]) * np.float64(np.float32(q["scale"]))
        assert np.abs(np.array(r["logits"]) - exact).max() <= 0.0005 + 1e-9
        assert r["unit"] == "instructions"
        counts.append((r["instructions"]["tokenizer"], r["instructions"]["model"]))
    tok, model = np.array(counts).T
    assert (tok > 0).all() and (model > 0).all() and (model > tok).all()
    # -icount makes execution deterministic; the timer's phase against the first instruction
    # of a region makes +-1, a SysTick wrap interrupt inside the region a few more
    # (docs/boards.md).
    again = device.classify(sentences[0])["instructions"]
    assert abs(again["tokenizer"] - counts[0][0]) <= 32
    assert abs(again["model"] - counts[0][1]) <= 32
    print(f"\n{device.build_report['board']}: {len(sentences)} sentences identical to TFLite "
          f"Micro; instructions per classification: tokenizer {tok.mean():.0f} (mean), model "
          f"{model.mean():.0f} (mean, {model.min()}..{model.max()})")


def test_explain_gives_tflite_micro_attention(device, bundle, reference, sentences):
    for i, text in enumerate(sentences[:12]):
        r = device.explain(text)
        words = bundle.tokenizer.display_words(text)
        assert [a["word"] for a in r["attribution"]] == words
        assert [a["attention"] for a in r["attribution"]] == \
            reference["attention"][i][:len(words)].tolist()
        assert np.array_equal(scores(r), reference["logits"][i])


def test_odd_but_valid_text_is_the_tokenizers_business(device, bundle):
    texts = ["café naïve — 😀", "", "\x01\x02\x7f", "!!!???...", "A" * 300, "one\ttab  two",
             "MiXeD CaSe don't", "\u00ff" * 40]
    want = tflm(bundle, texts)["logits"]
    for t, w in zip(texts, want):
        assert np.array_equal(scores(device.classify(t)), w), t


def test_long_text_is_cut_to_what_the_model_sees(device, bundle, sentences):
    text = " ".join(sentences[:20]) * 3
    assert len(text.encode()) > device.info()["line_max"]
    want = tflm(bundle, [text])["logits"][0]
    assert np.array_equal(scores(device.classify(text)), want)


def test_hostile_input_gets_errors_and_the_device_keeps_serving(device, reference, sentences):
    known, want = sentences[3], reference["logits"][3]
    line_max = device.info()["line_max"]

    def still_serves():
        assert np.array_equal(scores(device.classify(known)), want)
        assert device.ping() >= 0

    cases = [
        (b"classify " + b"x" * (line_max + 500), 2),   # overlong: discarded up to the newline
        (b"y" * (5 * line_max), 2),
        (b"classify a\x00b", 3),                        # NUL byte
        (b"\x00" * 50, 3),
        (b"frobnicate now", 1),                         # unknown command
        (b"CLASSIFY upper case", 1),
        (b"classify caf\xe9", 7),                       # Latin-1, not UTF-8
        (b"\xff\xfe\x80garbage", 7),
        (b"classify \xed\xa0\x80", 7),                  # an encoded surrogate
    ]
    for line, code in cases:
        device.write(line + b"\n")
        with pytest.raises(DeviceError) as e:
            device.read_reply()
        assert e.value.code == code, (line[:40], e.value)
        still_serves()

    # CR LF and CR line ends, as terminals send them.
    device.write(b"ping crlf\r\n")
    assert device.read_reply() == [b"pong crlf"]
    device.write(b"ping cr\r")
    assert device.read_reply() == [b"pong cr"]

    # Random binary, with and without newlines: whatever it answers, a sync (LF + ping with a
    # fresh token) finds the device serving again.
    rng = random.Random(1234)
    for size in (64, 4096):
        device.write(bytes(rng.randrange(256) for _ in range(size)))
        device.sync()
        still_serves()
    device.write(bytes(rng.choice(b"abc \x00\xff\x80") for _ in range(3000)))  # no newline
    device.sync()
    still_serves()
    stats = device.stats()
    assert stats["failed"] >= len(cases) and stats["classified"] > N_SENTENCES


def test_fits_with_the_protocol_running(device):
    """After everything above (classify, explain, hostile input), the stack's high-water mark
    is inside its reserve and flash/RAM inside the board's budget."""
    rep = device.build_report
    stats = device.stats()
    assert 0 < stats["stack"]["used"] < stats["stack"]["budget"] == rep["stack_reserve"]
    assert rep["flash_bytes"] <= rep["flash_budget"] and rep["ram_bytes"] <= rep["ram_budget"]
    print(f"\n{rep['board']}: flash {rep['flash_bytes']} / {rep['flash_budget']} B, RAM "
          f"{rep['ram_bytes']} / {rep['ram_budget']} B (stack high-water "
          f"{stats['stack']['used']} of {stats['stack']['budget']} B)")


def test_same_counts_on_both_cortex_m4_boards(builds, sentences):
    """netduinoplus2 (SysTick at 168 MHz) and mps2-an386 (25 MHz) run the same M4 code: equal
    instruction counts check the tick-to-instruction conversion of both."""
    from mcutext.device.qemu import boot
    counts = {}
    for board in ("netduinoplus2", "mps2-an386"):
        with boot(builds[board]["elf"], board) as url, Device(url, timeout=30) as dev:
            counts[board] = [dev.classify(t)["instructions"] for t in sentences[:5]]
    for a, b in zip(counts["netduinoplus2"], counts["mps2-an386"]):
        for k in ("tokenizer", "model"):
            assert abs(a[k] - b[k]) <= 32, (a, b)


def test_vanished_board_is_a_clear_error(builds):
    """QEMU (the 'board') goes away in the middle of a session."""
    from mcutext.common.errors import McutextError
    from mcutext.device.qemu import Qemu
    res = builds["netduinoplus2"]
    vm = Qemu(res["elf"], "netduinoplus2")
    with vm:
        dev = Device(vm.url, timeout=5)
        assert dev.classify("fine")["scores"]
        vm.stop()
        with pytest.raises(McutextError) as e:
            dev.classify("still there?")
        assert "lost the connection" in str(e.value) or "no answer" in str(e.value)
        assert "cable" in e.value.hint
        dev.close()
    assert not vm.running


@pytest.mark.parametrize("board", BOARDS + ["mps2-an386"])
def test_cpu_fault_is_reported_and_the_board_resets(board, builds):
    """The test-only `fault` command executes an undefined instruction: the board's vector
    table sends it to the fault handler, which reports `error 6`, resets the chip
    (SYSRESETREQ), and the firmware boots again and serves."""
    from mcutext.device.qemu import boot
    with boot(builds[board]["elf"], board) as url, Device(url, timeout=30) as dev:
        dev.classify("warm up the stack")
        dev.write(b"fault\n")
        assert dev.read_line() == b""      # the handler starts on a fresh line
        assert dev.read_line() == b"error 6 CPU fault, resetting"
        banner = dev.read_line()
        assert banner.startswith(b"# mcutext firmware ") and banner.endswith(b" ready")
        assert dev.stats()["requests"] == 1   # counters restarted: a real reset
        assert dev.classify("and it serves again")["words"] == 4
