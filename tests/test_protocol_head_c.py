"""The personalization commands of the firmware core (`label`, `learn`, `head`: docs/protocol.md)
built for the host with personalize.c and head_blob.c, a fake board, a fake model whose
features are a simple function of the token ids, and a fake factory head, under
AddressSanitizer and UBSan: the
framing and argument errors, and the learned head against the numpy reference
(mcutext.device.personalize.HeadSimulator). The real model under QEMU: test_personalize_qemu.py.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from mcutext.device.personalize import HeadSimulator
from mcutext.text.tokenizer import Tokenizer, TokenizerSpec

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
# the application's files (firmware/app_internal.h says what each owns)
APP_SOURCES = ("app.c", "classify.c", "diagnostics.c", "head_commands.c", "head_storage.c",
               "reply.c", "train_buffer.c")
SPEC = TokenizerSpec(buckets=10240, max_words=8, typo_features=True, max_word_bytes=6)
LABELS = ["neg", "pos"]
H, N_NEW = 8, 2
FEAT_SCALE = 0.03125
W = (np.arange(2 * H, dtype=np.float32).reshape(2, H) - 7.5) / np.float32(8)   # [C0][H]
B = np.array([0.25, -0.125], np.float32)

MODEL_HEAD_H = f"""#ifndef MT_MODEL_HEAD_H
#define MT_MODEL_HEAD_H
#define MT_PERSONALIZE 1
#define MT_HEAD_MAX_FEATURES {H}
#define MT_HEAD_MAX_NEW_LABELS {N_NEW}
#define MT_HEAD_MAX_CLASSES (2 + {N_NEW})
#endif
"""

FAKE = r"""
#include <stdio.h>
#include "app.h"
#include "board.h"
#include "model_api.h"
#include "personalize.h"

__asm__(".data\n.balign 8\n"
        ".globl __stack_limit\n__stack_limit:\n.fill 256, 4, 0xA5A5A5A5\n"
        ".globl __stack_top\n__stack_top:\n"
        ".globl __mt_flash_start\n__mt_flash_start:\n.space 104\n"
        ".globl __mt_flash_used_end\n__mt_flash_used_end:\n"
        ".globl __mt_ram_start\n__mt_ram_start:\n.space 48\n"
        ".globl __mt_ram_used_end\n__mt_ram_used_end:\n.text\n");

void board_init(void) {}
void board_uart_putc(uint8_t c) { putchar(c); if (c == '\n') fflush(stdout); }
int board_uart_getc(void) { int c = getchar(); return c == EOF ? -1 : c; }
static uint32_t ticks;
uint32_t board_counter_ticks(void) { return ticks += 5u; }
uint32_t board_counter_convert(uint32_t t) { return t * 2u; }
const char *board_counter_unit(void) { return "instructions"; }

static const char *const labels[] = {"neg", "pos"};
const mt_model_info_t mt_model_info = {
    "fake", 2u, labels,
    {BUCKETS, MAX_WORDS, FPW, 0u, MAX_WORD_BYTES, 0},
    MAX_WORDS * FPW, FEAT_DIM,
    {0.02f, 0}, {0.004f, -128}, {FEAT_SCALE, FEAT_ZP},
    1111u, 2222u, 3333u};
static int8_t logits[2], att[MAX_WORDS], feat[FEAT_DIM];
int mt_model_run(const int32_t *ids) {
    for (uint32_t i = 0; i < 2u; i++) logits[i] = (int8_t)(ids[0] + 37 * (int32_t)i);
    for (uint32_t i = 0; i < MAX_WORDS; i++) att[i] = (int8_t)ids[i * FPW];
    for (uint32_t k = 0; k < FEAT_DIM; k++)
        feat[k] = (int8_t)((ids[k] * 7 + (int32_t)k) % 200 - 100);
    return 0;
}
const int8_t *mt_model_logits(void) { return logits; }
const int8_t *mt_model_attention(void) { return att; }
const int8_t *mt_model_features(void) { return feat; }

static const float head_w[] = {HEAD_W};
static const float head_b[] = {HEAD_B};
const mt_head_factory_t mt_model_head = {2u, FEAT_DIM, N_NEW, head_w, head_b, 0, labels};

int main(void) {
    board_init();
    mt_app_init();
    int c;
    while ((c = board_uart_getc()) >= 0) mt_app_feed((uint8_t)c);
    return 0;
}
"""


@pytest.fixture(scope="module")
def core(tmp_path_factory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("no host C compiler (gcc) found: install build-essential")
    d = tmp_path_factory.mktemp("core_head")
    (d / "fake.c").write_text(FAKE)
    (d / "model_head.h").write_text(MODEL_HEAD_H)
    defines = {
        "BUCKETS": f"{SPEC.buckets}u", "MAX_WORDS": f"{SPEC.max_words}u",
        "FPW": f"{SPEC.features_per_word}u", "MAX_WORD_BYTES": f"{SPEC.max_word_bytes}u",
        "FEAT_DIM": f"{H}u", "FEAT_SCALE": f"{FEAT_SCALE!r}f", "FEAT_ZP": "3",
        "N_NEW": f"{N_NEW}u",
        "HEAD_W": ",".join(float(v).hex() + "f" for v in W.reshape(-1)),
        "HEAD_B": ",".join(float(v).hex() + "f" for v in B),
        "MT_LINE_MAX": "200u", "MT_MAX_SEQ_LEN": f"{SPEC.seq_len}u",
        "MT_BOARD_NAME": '"host"', "MT_FIRMWARE_VERSION": '"9.9.9"',
    }
    exe = d / "core"
    sources = [FIRMWARE / f for f in (*APP_SOURCES, "protocol.c", "tokenizer.c", "personalize.c",
                                       "head_blob.c", "slots.c", "storage.c")]
    subprocess.run([cc, "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
                    "-ffp-contract=off", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", f"-I{d}", f"-I{FIRMWARE}",
                    f"-I{FIRMWARE / 'kernels'}", *[f"-D{k}={v}" for k, v in defines.items()],
                    *map(str, sources), str(d / "fake.c"), "-lm", "-o", str(exe)], check=True)
    return exe


HEAD_USAGE = (b"error 4 usage: head state | head reset | head config ... | head export | "
              b"head import ... | head save | head train EPOCHS | head imprint")


def talk(core: Path, lines: list[bytes]) -> list[bytes]:
    data = b"".join(ln + b"\n" for ln in lines)
    p = subprocess.run([str(core)], input=data, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    out = p.stdout.split(b"\r\n")[:-1]
    assert out[0].startswith(b"# mcutext firmware 9.9.9 protocol 1")
    return out[1:]


def finals(out: list[bytes]) -> list[bytes]:
    return [ln for ln in out if ln == b"ok" or ln.startswith(b"error ")]


def learn_line(label: str, text: str, crc_xor: int = 0) -> bytes:
    payload = label.encode() + b"\t" + text.encode()
    return b"learn %08x " % (zlib.crc32(payload) ^ crc_xor) + payload


def features(text: str) -> np.ndarray:
    ids = Tokenizer(SPEC).encode(text.encode()).astype(np.int64)
    return np.array([(ids[k] * 7 + k) % 200 - 100 for k in range(H)], np.int8)


def bits(v: bytes) -> float:
    return struct.unpack("<f", struct.pack("<I", int(v, 16)))[0]


def test_help_and_state(core):
    out = talk(core, [b"help", b"head state"])
    assert out[0] == b"commands ping info stats classify explain label learn keep eval head help"
    assert out[2:] == [b"updates 0", b"personalized 0", b"rows 4", b"feature-dim 8",
                       b"new-labels 0 of 2", b"config lr 0.050 momentum 0.000 l2 0.000",
                       b"label 0 neg factory", b"label 1 pos factory", b"buffer 0 of 64",
                       b"storage none", b"ok"]


def test_argument_errors(core):
    usage_label = b"error 4 usage: label add NAME | label remove NAME | label rename OLD NEW"
    usage_learn = b"error 4 usage: learn <crc32 hex> LABEL<TAB>text"
    cases = [
        (b"label", usage_label), (b"label add", usage_label), (b"label add a b", usage_label),
        (b"label frob a", usage_label), (b"label rename a", usage_label),
        (b"label add " + b"x" * 24, b"error 4 a label name is 1 to 23 printable ASCII "
                                    b"characters without space"),
        (b"label add " + b"x" * 300, b"error 2 line too long (max 200 bytes)"),
        (b"label add neg", b"error 4 the label exists already"),
        (b"label remove pos", b"error 4 factory labels cannot be removed or renamed"),
        (b"label remove zz", b"error 4 no such label"),
        (b"label rename zz yy", b"error 4 no such label"),
        (b"label add \x01x", b"error 4 a label name is 1 to 23 printable ASCII characters "
                             b"without space"),
        (b"head", HEAD_USAGE), (b"head states", HEAD_USAGE),
        (b"learn", usage_learn), (b"learn 1234567", usage_learn),
        (b"learn 1234567g neg\thi", usage_learn), (b"learn 12345678neg\thi", usage_learn),
        (learn_line("neg", "hi", 1), b"error 8 CRC mismatch: example not learned"),
        (learn_line("neg", "hi")[:-1], b"error 8 CRC mismatch: example not learned"),
        (b"learn %08x neg hi" % zlib.crc32(b"neg hi"), usage_learn),
        (learn_line("nope", "hi"), b"error 4 no such label"),
        (learn_line("x" * 80, "hi"), b"error 4 no such label"),
        (b"learn %08x \thi" % zlib.crc32(b"\thi"), b"error 4 no such label"),
    ]
    out = talk(core, [c for c, _ in cases] + [b"head state"])
    assert out[:len(cases)] == [want for _, want in cases]
    assert out[len(cases)] == b"updates 0"        # nothing was learned
    # upper-case hex is fine too
    out = talk(core, [learn_line("neg", "hi").upper().replace(b"LEARN", b"learn")
                      .replace(b"NEG\tHI", b"neg\thi")])
    assert out[-1] == b"ok"


def test_learn_and_classify_agree_with_simulator(core):
    rng = random.Random(5)
    words = ["good", "bad", "film", "hello", "morning", "awful", "great", "hi", "plot", "dull"]
    sim = HeadSimulator(W.T, B, LABELS, N_NEW, FEAT_SCALE, 3)
    lines = [b"label add greet", b"label add other", b"label remove other"]
    sim.add_label("greet")
    sim.add_label("other")
    sim.remove_label("other")
    texts, labs = [], []
    for i in range(30):
        t = " ".join(rng.choice(words) for _ in range(rng.randint(0, 9)))
        lab = ["neg", "pos", "greet"][i % 3]
        texts.append(t)
        labs.append(lab)
        lines.append(learn_line(lab, t))
    checks = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) for _ in range(20)]
    lines += [b"classify " + t.encode() for t in checks] + [b"head state", b"head reset",
                                                            b"classify " + checks[0].encode()]
    out = talk(core, lines)
    assert finals(out) == [b"ok"] * len(lines)
    replies, cur = [], []
    for ln in out:
        if ln == b"ok":
            replies.append(cur)
            cur = []
        else:
            cur.append(ln)
    assert replies[0] == [b"label 2 greet"] and replies[1] == [b"label 3 other"]
    for i, (t, lab) in enumerate(zip(texts, labs)):
        r = dict(ln.split(b" ", 1) for ln in replies[3 + i])
        f = sim.dequantize(features(t))
        if sim.updates:
            z = sim.scores(f)
            top = np.sort(z[np.isfinite(z)])[::-1]
            if top[0] - top[1] > 1e-4:
                assert int(r[b"predicted"].split()[0]) == int(np.argmax(z)), i
        loss = sim.step(f, sim.index(lab))
        assert bits(r[b"loss"].split()[1]) == pytest.approx(loss, rel=1e-5, abs=1e-6), i
        assert r[b"learned"].split()[1].decode() == lab and r[b"updates"] == b"%d" % (i + 1)
        assert r[b"cost"].startswith(b"instructions tokenizer ") and b" step " in r[b"cost"]
    base = 3 + len(texts)
    for k, t in enumerate(checks):
        r = dict(ln.split(b" ", 1) for ln in replies[base + k])
        z = sim.scores(sim.dequantize(features(t)))
        got = np.array([bits(v) for v in r[b"head-bits"].split()], np.float32)
        assert np.array_equal(np.isfinite(got), np.isfinite(z))
        np.testing.assert_allclose(got[np.isfinite(z)], z[np.isfinite(z)], rtol=1e-5,
                                   atol=1e-6)
        assert r[b"head"].split()[3] == b"-"      # the removed row is not scored
        idx, name = r[b"label"].split()
        assert int(idx) == int(np.argmax(z)) and name.decode() == sim.labels[int(idx)]
    state = replies[base + len(checks)]
    assert state[:2] == [b"updates 30", b"personalized 1"]
    assert b"label 2 greet added" in state and b"new-labels 1 of 2" in state
    assert replies[-1][0].startswith(b"label ") and not any(
        ln.startswith(b"head") for ln in replies[-1])        # factory again: the int8 answer


def test_garbage_in_personalization_commands(core):
    """Random argument bytes: one final line each, no sanitizer report."""
    rng = random.Random(11)
    alphabet = b"ab \t\x01\xffneg pos 0123456789abcdef\\"
    lines = []
    for _ in range(400):
        verb = rng.choice([b"label", b"label add", b"label rename", b"learn", b"head",
                           b"learn 00000000"])
        arg = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        lines.append((verb + b" " + arg).replace(b"\n", b" "))
    lines += [learn_line("neg", "fine"), b"ping end"]
    out = talk(core, lines)
    assert len(finals(out)) == len(lines)
    assert out[-2:] == [b"pong end", b"ok"]


def test_head_config(core):
    usage = (b"error 4 usage: head config [lr X] [momentum X] [l2 X] (decimals, e.g. 0.05)")
    cases = [
        (b"head config", [b"config lr 0.050 momentum 0.000 l2 0.000", b"ok"]),
        (b"head config lr 0.1 momentum .9 l2 0.001",
         [b"config lr 0.100 momentum 0.900 l2 0.001", b"ok"]),
        (b"head config l2 0", [b"config lr 0.100 momentum 0.900 l2 0.000", b"ok"]),
        (b"head config lr", [usage]), (b"head config lr x", [usage]),
        (b"head config lr .", [usage]), (b"head config lr 1e-3", [usage]),
        (b"head config lr -1", [usage]), (b"head config lr 0.12345678", [usage]),
        (b"head config rate 1", [usage]), (b"head config lr 1.2.3", [usage]),
        (b"head config lr 0", [b"error 4 lr in (0, 100], momentum in [0, 1), l2 in [0, 100]"]),
        (b"head config momentum 1", [b"error 4 lr in (0, 100], momentum in [0, 1), l2 in "
                                     b"[0, 100]"]),
        (b"head configure", [HEAD_USAGE]),
        (b"head config lr 0.0000001", [b"config lr 0.000 momentum 0.900 l2 0.000", b"ok"]),
    ]
    out = talk(core, [c for c, _ in cases])
    want = [ln for _, w in cases for ln in w]
    assert out == want


def test_learn_with_momentum_and_l2_agrees(core):
    from mcutext.device.personalize import UpdateConfig
    texts = ["good film", "bad plot", "hello there", "awful dull film", "great morning hi",
             "hi", "good good", "dull"] * 3
    labs = ["pos", "neg", "greet", "neg", "greet", "greet", "pos", "neg"] * 3
    sim = HeadSimulator(W.T, B, LABELS, N_NEW, FEAT_SCALE, 3,
                        UpdateConfig(lr=0.2, momentum=0.75, l2=0.05))
    sim.add_label("greet")
    lines = [b"head config lr 0.2 momentum 0.75 l2 0.05", b"label add greet"]
    lines += [learn_line(lab, t) for t, lab in zip(texts, labs)]
    out = talk(core, lines)
    assert finals(out) == [b"ok"] * len(lines)
    losses = [bits(ln.split()[2]) for ln in out if ln.startswith(b"loss ")]
    want = [sim.step(sim.dequantize(features(t)), sim.index(lab)) for t, lab in zip(texts, labs)]
    np.testing.assert_allclose(losses, want, rtol=1e-5, atol=1e-6)


def test_train_eval_and_save_without_storage(core):
    """`head train N` repeats the buffered examples' steps (oldest first, a removed label's
    examples dropped) as the simulator does; `eval` scores without learning; `head save`
    without storage is error 9 and changes nothing."""
    from mcutext.device.personalize import UpdateConfig
    texts = ["good film", "bad plot", "hello there", "awful dull film", "great morning hi"]
    labs = ["pos", "neg", "greet", "neg", "bye"]
    sim = HeadSimulator(W.T, B, LABELS, N_NEW, FEAT_SCALE, 3, UpdateConfig(lr=0.2))
    sim.add_label("greet")
    lines = [b"head config lr 0.2", b"head train 1", b"label add greet", b"label add bye"]
    lines += [learn_line(lab, t) for t, lab in zip(texts, labs)]
    lines += [b"label remove bye", b"head train 3", b"head train 0", b"head train 101",
              b"head save", b"head state"]
    ev = [("pos", "good good"), ("neg", "hello there"), ("greet", "hi there")]
    lines += [b"eval %08x %s" % (zlib.crc32(f"{lab}\t{t}".encode()), f"{lab}\t{t}".encode())
              for lab, t in ev]
    lines += [b"eval 00000000 pos\thi", b"eval reset", b"head state"]
    out = talk(core, lines)
    assert finals(out) == [b"ok", b"error 4 no buffered examples (learn some first)", b"ok",
                           b"ok"] + [b"ok"] * 5 + [b"ok", b"ok",
                           b"error 4 usage: head train EPOCHS (1 to 100)",
                           b"error 4 usage: head train EPOCHS (1 to 100)",
                           b"error 9 no storage on this board", b"ok", b"ok", b"ok", b"ok",
                           b"error 8 CRC mismatch: example not evaluated", b"ok", b"ok"]
    # the simulator: the same steps, then 3 epochs over the 4 examples left (bye removed:
    # its row and its buffered example go)
    sim.add_label("bye")
    for t, lab in zip(texts, labs):
        sim.step(sim.dequantize(features(t)), sim.index(lab))
    sim.remove_label("bye")
    kept = [(sim.dequantize(features(t)), sim.index(lab)) for t, lab in zip(texts, labs)
            if lab != "bye"]
    want_loss, want_correct = [], []
    for _ in range(3):
        want_correct.append(sum(int(sim.predict(f) == y) for f, y in kept))
        ls = [sim.step(f, y) for f, y in kept]
        want_loss.append(np.float32(np.sum(np.float32(ls), dtype=np.float32))
                         / np.float32(len(ls)))
    epochs = [ln.split() for ln in out if ln.startswith(b"epoch ")]
    assert [(int(e[1]), int(e[8])) for e in epochs] == [(1, 4), (2, 4), (3, 4)]
    np.testing.assert_allclose([bits(e[4]) for e in epochs], want_loss, rtol=1e-5)
    assert [int(e[6]) for e in epochs] == want_correct
    assert b"updates 17" in out
    state = out[out.index(b"error 9 no storage on this board") + 1:]
    assert b"buffer 4 of 64" in state and b"storage none" in state
    # eval: the personalized head's argmax and loss, no update, a running tally
    loss_lines = [ln for ln in out if ln.startswith(b"loss ")][-3:]
    for (lab, t), ln in zip(ev, loss_lines):
        z = sim.scores(sim.dequantize(features(t)))
        p = np.exp(z - z.max())
        p /= p.sum()
        np.testing.assert_allclose(bits(ln.split()[2]), -np.log(p[sim.index(lab)]), rtol=1e-5)
    tallies = [ln for ln in out if ln.startswith(b"tally ")]
    correct = [int(sim.predict(sim.dequantize(features(t))) == sim.index(lab)) for lab, t in ev]
    assert tallies == [b"tally %d of %d" % (sum(correct[:k + 1]), k + 1) for k in range(3)]
    assert b"updates 17" in out[out.index(tallies[-1]):]   # eval did not learn


def _blob(out: list[bytes]) -> bytes:
    size = next(int(ln.split()[1]) for ln in out if ln.startswith(b"blob "))
    data = b""
    for ln in out:
        if ln.startswith(b"data "):
            _, off, hx = ln.split(b" ")
            assert int(off) == len(data)
            data += bytes.fromhex(hx.decode())
    assert len(data) == size
    return data


def _last_ok(out: list[bytes], k: int) -> int:
    """Index just after the k-th `ok` (the replies before it belong to the setup)."""
    n = 0
    for i, ln in enumerate(out):
        n += ln == b"ok"
        if n == k:
            return i + 1
    raise AssertionError(out)


def _import_lines(blob: bytes, step: int = 50) -> list[bytes]:
    return [b"head import %d %s" % (o, blob[o:o + step].hex().encode())
            for o in range(0, len(blob), step)] + [b"head import end %d" % len(blob)]


def test_export_import_round_trip(core):
    teach = [b"head config lr 0.3", b"label add greet"] + [
        learn_line(lab, t) for lab, t in (("greet", "hello there"), ("pos", "good film"),
                                          ("neg", "dull plot"), ("greet", "hi"))]
    out = talk(core, teach + [b"head export"])
    blob = _blob(out)
    # the simulator reads it: same format, same factory fingerprint
    sim = HeadSimulator(W.T, B, LABELS, N_NEW, FEAT_SCALE, 3)
    sim.load_blob(blob)
    assert sim.updates == 4 and sim.labels[2] == "greet"
    check = [b"classify hello good", b"head state"]
    ref = talk(core, teach + check)
    ref = ref[_last_ok(ref, len(teach)):]                 # the replies to `check`
    # a fresh device imports it and answers the same (the config is not part of the blob)
    out = talk(core, _import_lines(blob) + check + [b"head export"])
    assert out[out.index(b"updates 4") + 1] == b"ok"
    assert _blob(out) == blob
    got = [ln for ln in out if not ln.startswith((b"data ", b"blob ", b"received "))]
    got = got[got.index(b"updates 4") + 2:]
    got = got[:len(ref)]
    # (the example buffer is not part of the blob: an imported head starts with none)
    assert b"buffer 0 of 64" in got and b"buffer 4 of 64" in ref
    assert [ln for ln in got if not ln.startswith((b"config ", b"buffer "))] == \
        [ln for ln in ref if not ln.startswith((b"config ", b"buffer "))]
    # damaged, truncated, out of order, foreign: refused, the head unchanged
    bad = bytearray(blob)
    bad[40] ^= 0x10
    out = talk(core, _import_lines(bytes(bad)) + [b"head state"])
    assert b"error 8 CRC mismatch: blob not loaded" in out and b"updates 0" in out
    out = talk(core, _import_lines(blob)[:-2] + [b"head import end %d" % len(blob)])
    assert out[-1] == b"error 4 import: length differs from the data received"
    out = talk(core, [b"head import 0 00", b"head import 5 00", b"head import end 1"])
    assert out[-2].startswith(b"error 4 usage: head import") and out[-1].startswith(b"error 4")
    out = talk(core, [b"head import 0 0g", b"head import 0 abc", b"head import x 00",
                      b"head import 0 " + b"00" * 70, b"head import 70 00",
                      b"head import end 71"])
    assert [ln.split(b" ")[0] for ln in out] == [b"error", b"error", b"error", b"received",
                                                  b"ok", b"received", b"ok", b"error"]
    other = HeadSimulator(W.T * 2, B, LABELS, N_NEW, FEAT_SCALE, 3).blob()
    out = talk(core, _import_lines(other))
    assert out[-1] == b"error 4 blob of another model or firmware build"


def keep_line(label: str, text: str, crc_xor: int = 0) -> bytes:
    payload = f"{label}\t{text}".encode()
    return b"keep %08x " % (zlib.crc32(payload) ^ crc_xor) + payload


def test_keep_imprint_and_train_agree_with_simulator(core):
    """`keep` buffers an example without a step (CRC-framed like learn); `head imprint` sets
    each added label's row from the mean direction of its kept examples (one update each);
    `head train` then trains over them; the float head's scores equal the simulator's."""
    from mcutext.device.personalize import UpdateConfig
    kept = [("greet", "hello there"), ("greet", "hi hello morning"), ("bye", "see you later"),
            ("greet", "good morning hi")]
    checks = ["hello", "good film", "see you", "awful plot", "hi there morning"]
    lines = [b"head imprint", b"label add greet", b"label add bye", b"head imprint",
             keep_line("greet", "hello", crc_xor=1), keep_line("nosuch", "hello"),
             b"keep 1234 greet\thello"]
    lines += [keep_line(lab, t) for lab, t in kept]
    lines += [b"head imprint", b"head config lr 0.2", b"head train 2"]
    lines += [b"classify " + t.encode() for t in checks]
    out = talk(core, lines)
    f = finals(out)
    assert f[:3] == [b"error 4 no buffered examples of added labels (keep some first)", b"ok",
                     b"ok"]
    assert f[3] == b"error 4 no buffered examples of added labels (keep some first)"
    assert f[4] == b"error 8 CRC mismatch: example not kept"
    assert f[5].startswith(b"error ") and f[6] == b"error 4 usage: keep <crc32 hex> LABEL<TAB>text"
    assert f[7:] == [b"ok"] * (len(kept) + 3 + len(checks))
    assert b"kept 2 greet" in out and b"buffer 4 of 64" in out
    assert b"imprinted 2 greet examples 3" in out and b"imprinted 3 bye examples 1" in out
    assert b"updates 2" in out          # one update per imprinted label, no learn step
    sim = HeadSimulator(W.T, B, LABELS, N_NEW, FEAT_SCALE, 3, UpdateConfig(lr=0.05))
    sim.add_label("greet")
    sim.add_label("bye")
    F = np.stack([sim.dequantize(features(t)) for _, t in kept])
    Y = np.array([sim.index(lab) for lab, _ in kept])
    assert sim.imprint_mean(F, Y) == [2, 3]
    sim.config = UpdateConfig(lr=0.2)
    losses = sim.train(F, Y, 2)
    epochs = [ln.split() for ln in out if ln.startswith(b"epoch ")]
    np.testing.assert_allclose([bits(e[4]) for e in epochs], losses, rtol=1e-5)
    heads = [ln for ln in out if ln.startswith(b"head-bits ")]
    assert len(heads) == len(checks)
    for t, ln in zip(checks, heads):
        z = sim.scores(sim.dequantize(features(t)))
        got = np.array([bits(v) for v in ln.split()[1:]], np.float32)
        np.testing.assert_allclose(got, z, rtol=1e-5, atol=1e-6)


# --- refusals change nothing (issue 16, the device side) ----------------------------------

OVERFLOW = b"error 4 the step would make the head overflow (lower lr or l2): not learned"


def exports(out: list[bytes]) -> list[bytes]:
    """Every `head export` blob of a session, in order."""
    blobs, cur = [], None
    for ln in out:
        if ln.startswith(b"blob "):
            cur = [ln]
        elif ln.startswith(b"data ") and cur is not None:
            cur.append(ln)
        elif ln == b"ok" and cur is not None:
            blobs.append(_blob(cur))
            cur = None
    return blobs


def extreme_blob(big: float, updates: int = 7) -> bytes:
    """A head (as `head import` takes it) with an added label `big` whose weight 0 is `big`
    (its pull target 0), so that lr 3 and l2 1 make every step double it and flip its sign,
    and a label `new` waiting for its first example."""
    sim = HeadSimulator(W.T, B, LABELS, N_NEW, FEAT_SCALE, 3)
    i = sim.add_label("big")
    sim._fresh.discard(i)
    sim.W[i, 0] = np.float32(big)
    sim.add_label("new")
    sim.updates = updates
    return sim.blob()


def test_refused_learn_of_a_fresh_label_changes_nothing(core):
    """The first example of an added label imprints its row; a step refused after that
    imprint (another row would overflow) must leave the row as it was, byte for byte."""
    blob = extreme_blob(3.0e38)
    lines = _import_lines(blob) + [b"head config lr 3 l2 1", b"head export",
                                   learn_line("new", "hello there"), b"head export",
                                   b"head state"]
    out = talk(core, lines)
    assert OVERFLOW in out
    before, after = exports(out)
    assert before == blob and after == blob
    assert b"label 3 new fresh" in out and b"buffer 0 of 64" in out


def test_refused_train_prints_one_line_and_changes_nothing(core):
    """`head train` that overflows part way: one error line, no `epoch` lines, the head and
    its momentum as before the command (a learn after it equals a learn without it)."""
    blob = extreme_blob(1.0e30)
    keep = [keep_line(lab, t) for lab, t in (("pos", "good film"), ("neg", "dull plot"),
                                              ("big", "hello"), ("pos", "great"))]
    setup = _import_lines(blob) + keep + [b"head config lr 3 l2 1 momentum 0.2",
                                          learn_line("pos", "fine")]
    after = [b"head export", learn_line("neg", "awful"), b"head export", b"head state"]
    ref = talk(core, setup + after)
    out = talk(core, setup + [b"head export", b"head train 100"] + after)
    k = _last_ok(out, len(setup) + 1)
    assert out[k] == OVERFLOW
    assert not any(ln.startswith(b"epoch ") for ln in out)
    got = exports(out)
    assert got[0] == got[1]                           # the refused train changed nothing
    assert got[1:] == exports(ref)                    # momentum too: the next step is equal
    assert out[-13:] == ref[-13:]                     # head state: updates, buffer, ...


def test_update_count_saturates(core):
    """An imported head at the largest update count stays personalized after a step: the
    count saturates at 2^32 - 1 instead of wrapping to 0 (the factory model)."""
    blob = extreme_blob(0.5, updates=0xFFFFFFFF)
    out = talk(core, _import_lines(blob) + [learn_line("pos", "good film"),
                                            b"classify good film", b"head state"])
    assert b"updates 4294967295" in out[out.index(b"learned 1 pos"):]
    assert any(ln.startswith(b"head-bits ") for ln in out)
    assert b"personalized 1" in out


def test_head_config_takes_long_decimals(core):
    """A value of at most 7 significant digits and 9 decimals is valid however many leading
    zeros it has (docs/protocol.md), also beyond 19 bytes."""
    out = talk(core, [b"head config lr 0000000000000000000000.5 l2 000000000000000000000",
                      b"head config momentum 00000000000000000000000000000000.000000001"])
    assert out == [b"config lr 0.500 momentum 0.000 l2 0.000", b"ok",
                   b"config lr 0.500 momentum 0.000 l2 0.000", b"ok"]


def replies(out: list[bytes]) -> list[tuple[list[bytes], bytes]]:
    """The session's replies, one per request: (data lines, final line)."""
    got, cur = [], []
    for ln in out:
        if ln == b"ok" or ln.startswith(b"error "):
            got.append((cur, ln))
            cur = []
        else:
            cur.append(ln)
    assert cur == [], cur
    return got


def _refusal_cases(blob: bytes) -> list[list[bytes]]:
    """Every refusal of the protocol's commands that the host core can reach, each a list of
    request lines whose last one is refused (the lines before it are accepted)."""
    damaged = bytearray(blob)
    damaged[40] ^= 0x10
    foreign = HeadSimulator(W.T * 2, B, LABELS, N_NEW, FEAT_SCALE, 3).blob()
    bad_flags = bytearray(blob)
    bad_flags[32] = 7                                    # a factory row's flags
    bad_flags[-4:] = struct.pack("<I", zlib.crc32(bytes(bad_flags[:-4])))
    return [[ln] for ln in [
        b"frob", b"x" * 300, b"classify a\x00b", b"classify \xff\xfe",
        b"label", b"label frob x", b"label add neg", b"label add " + b"x" * 24,
        b"label add \x01x", b"label add third", b"label remove pos", b"label remove zz",
        b"label rename zz yy", b"label rename greet pos", b"label rename greet " + b"y" * 30,
        b"label rename neg yes",
        b"learn", b"learn 1234567g neg\thi", learn_line("neg", "hi", crc_xor=1),
        learn_line("neg", "hi")[:-1], learn_line("nope", "hi"), learn_line("x" * 80, "hi"),
        b"learn %08x neg hi" % zlib.crc32(b"neg hi"),
        b"keep", keep_line("greet", "hi", crc_xor=4), keep_line("nope", "hi"),
        b"eval", b"eval 00000000 pos\thi", b"eval %08x nope\thi" % zlib.crc32(b"nope\thi"),
        b"head", b"head frob", b"head states", b"head config lr", b"head config lr 0",
        b"head config lr 101", b"head config momentum 1", b"head config l2 100.5",
        b"head config lr 0.1 momentum 2", b"head config lr 1e-3", b"head config rate 1",
        b"head config lr 0.2 lr -1",
        b"head import 5 00", b"head import 0 0g", b"head import 0 abc", b"head import x 00",
        b"head import end 3", b"head import 0 " + b"00" * 90 + b" ",
        b"head save", b"head train", b"head train 0", b"head train 101", b"head train 2x",
    ]] + [
        _import_lines(bytes(damaged)), _import_lines(foreign), _import_lines(bytes(bad_flags)),
        _import_lines(blob)[:-2] + [b"head import end %d" % len(blob)],
        _import_lines(blob)[:2] + [b"head import 0 00"] + _import_lines(blob)[2:],
    ]


def _check_refusals(core, setup: list[bytes], cases: list[list[bytes]],
                    probe: list[bytes]) -> None:
    """Each case after `setup`: its last line gets exactly one line, an error, and `head
    export`, `head state` and `head config` after it are those just before it, byte for byte;
    then `probe` (further learning, whose steps use the momentum and the buffer) answers as in
    a session without the refused lines."""
    look = [b"head export", b"head state", b"head config"]
    lines, ref_lines = list(setup), list(setup)
    for case in cases:
        lines += case[:-1] + look + case[-1:] + look
        ref_lines += case[:-1]
    out = replies(talk(core, lines + probe))
    ref = replies(talk(core, ref_lines + probe))
    assert all(final == b"ok" for _, final in ref[len(ref_lines):]), ref
    k = len(setup)
    for case in cases:
        k += len(case) - 1
        before = out[k:k + len(look)]
        assert before[0][1] == b"ok" and before[0][0][0].startswith(b"blob ")
        data, final = out[k + len(look)]
        assert final.startswith(b"error ") and data == [], (case[-1][:60], data, final)
        after = out[k + len(look) + 1:k + 2 * len(look) + 1]
        assert after == before, case[-1][:60]
        k += 2 * len(look) + 1
    assert out[k:] == ref[len(ref_lines):]


def test_every_refusal_changes_nothing(core):
    """Every refusal of every state-changing command (label, learn, keep, eval, head ...)
    on a personalized head with an added label, a fresh one, momentum and buffered examples:
    `head export` and `head state` stay byte-identical and the next steps are the same."""
    setup = [b"head config lr 0.2 momentum 0.5 l2 0.01", b"label add greet",
             b"label add bye"] + [
        learn_line(lab, t) for lab, t in (("greet", "hello there"), ("pos", "good film"),
                                          ("neg", "dull plot"), ("greet", "hi"))] + [
        keep_line("greet", "hello friend"), keep_line("pos", "great")]
    blob = exports(talk(core, setup + [b"head export"]))[0]
    probe = [learn_line("bye", "see you"), learn_line("greet", "hello"), b"head train 2",
             b"head imprint", b"classify hello film", b"head export", b"head state",
             b"eval %08x pos\tgood" % zlib.crc32(b"pos\tgood")]
    _check_refusals(core, setup, _refusal_cases(blob), probe)


def test_every_overflow_refusal_changes_nothing(core):
    """The refusals that need a head of extreme values: a learn that would overflow (on a
    scored row, and on a fresh label's first example), `head train` without examples and
    with a step that overflows, `head imprint` without examples of added labels."""
    blob = extreme_blob(2.0e38)
    setup = _import_lines(blob) + [b"head config lr 3 l2 1 momentum 0.2"]
    cases = [[b"head train 3"], [b"head imprint"], [learn_line("pos", "good film")],
             [learn_line("new", "hello")], [learn_line("big", "hello")],
             [keep_line("pos", "good film"), keep_line("neg", "dull"), b"head train 3"],
             [b"head imprint"]]
    probe = [b"head config lr 0.01 l2 0 momentum 0", b"classify good film", b"head export",
             b"head state"]
    _check_refusals(core, setup, cases, probe)
