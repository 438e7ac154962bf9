"""The firmware core (the application's files, protocol.c, tokenizer.c) built for the host, with
a fake board on stdin/stdout and a fake model: the serial protocol of docs/protocol.md and the
host client (mcutext.device.client) against it, without QEMU, under AddressSanitizer and UBSan.

The fake model's outputs are simple functions of the token ids (logits[i] = ids[0] + 37 i,
attention[w] = ids[w * F]), so every reply can be predicted from the Python tokenizer.
The QEMU tests (test_firmware_qemu.py) run the same core with real models on the boards.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcutext.device.client import Device, DeviceError, compact_text, unescape
from mcutext.common.errors import McutextError
from mcutext.text.tokenizer import Tokenizer, TokenizerSpec

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
# the application's files (firmware/app_internal.h says what each owns)
APP_SOURCES = ("app.c", "classify.c", "diagnostics.c", "head_commands.c", "head_storage.c",
               "reply.c", "train_buffer.c")
SPEC = TokenizerSpec(buckets=10240, max_words=8, typo_features=True, max_word_bytes=6)
LABELS = ["neg", "pos\\x", "caf\xe9"]   # a backslash and a non-ASCII byte: escaped by the device
LOGITS_Q = (np.float32(0.02443857304751873), -39)
ATTENTION_Q = (np.float32(1 / 256), -128)
LINE_MAX = 160
FAIL_WORD = b"modelfail"  # the fake model fails when the first word is this one

FAKE = r"""
#include <stdio.h>
#include "app.h"
#include "board.h"
#include "model_api.h"

/* The linker-script symbols of docs/boards.md: a 1 KB "stack" (not the host's real stack, so
 * the core does not paint it) and made-up flash/RAM spans. */
__asm__(".data\n.balign 8\n"
        ".globl __stack_limit\n__stack_limit:\n.fill 256, 4, 0xA5A5A5A5\n"
        ".globl __stack_top\n__stack_top:\n"
        ".globl __mt_flash_start\n__mt_flash_start:\n.space 104\n"
        ".globl __mt_flash_used_end\n__mt_flash_used_end:\n"
        ".globl __mt_ram_start\n__mt_ram_start:\n.space 48\n"
        ".globl __mt_ram_used_end\n__mt_ram_used_end:\n.text\n");

void board_init(void) {}
/* Flushed at every line end: the core also serves interactive sessions (CoreServer). */
void board_uart_putc(uint8_t c) { putchar(c); if (c == '\n') fflush(stdout); }
int board_uart_getc(void) { int c = getchar(); return c == EOF ? -1 : c; }
static uint32_t ticks;
uint32_t board_counter_ticks(void) { return ticks += 5u; }
uint32_t board_counter_convert(uint32_t t) { return t * 2u; }
const char *board_counter_unit(void) { return "instructions"; }

static const char *const labels[] = {LABELS};
const mt_model_info_t mt_model_info = {
    "fake\x01model", NUM_CLASSES, labels,
    {BUCKETS, MAX_WORDS, FPW, 0u, MAX_WORD_BYTES, 0},
    MAX_WORDS * FPW, 16u,
    {LOGITS_SCALE, LOGITS_ZP}, {ATT_SCALE, ATT_ZP}, {0.5f, 0},
    1111u, 2222u, 3333u};
static int8_t logits[NUM_CLASSES], att[MAX_WORDS], feat[16];
int mt_model_run(const int32_t *ids) {
    if (ids[0] == FAIL_ID) return 1;
    for (uint32_t i = 0; i < NUM_CLASSES; i++) logits[i] = (int8_t)(ids[0] + 37 * (int32_t)i);
    for (uint32_t i = 0; i < MAX_WORDS; i++) att[i] = (int8_t)ids[i * FPW];
    return 0;
}
const int8_t *mt_model_logits(void) { return logits; }
const int8_t *mt_model_attention(void) { return att; }
const int8_t *mt_model_features(void) { return feat; }

int main(void) {
    board_init();
    mt_app_init();
    int c;
    while ((c = board_uart_getc()) >= 0) mt_app_feed((uint8_t)c);
    return 0;
}
"""


def _c_str(b: bytes) -> str:
    return '"' + "".join(f"\\x{c:02x}" for c in b) + '"'


@pytest.fixture(scope="session")
def core(tmp_path_factory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("no host C compiler (gcc) found: install build-essential")
    d = tmp_path_factory.mktemp("core")
    (d / "fake.c").write_text(FAKE)
    fail_id = int(Tokenizer(SPEC).encode(FAIL_WORD)[0])
    defines = {
        "LABELS": ", ".join(_c_str(label.encode("latin-1")) for label in LABELS),
        "NUM_CLASSES": f"{len(LABELS)}u", "BUCKETS": f"{SPEC.buckets}u",
        "MAX_WORDS": f"{SPEC.max_words}u", "FPW": f"{SPEC.features_per_word}u",
        "MAX_WORD_BYTES": f"{SPEC.max_word_bytes}u", "FAIL_ID": str(fail_id),
        "LOGITS_SCALE": f"{float(LOGITS_Q[0])!r}f", "LOGITS_ZP": str(LOGITS_Q[1]),
        "ATT_SCALE": f"{float(ATTENTION_Q[0])!r}f", "ATT_ZP": str(ATTENTION_Q[1]),
        "MT_LINE_MAX": f"{LINE_MAX}u", "MT_MAX_SEQ_LEN": f"{SPEC.seq_len}u",
        "MT_BOARD_NAME": '"host"', "MT_BOARD_FLASH_BYTES": "4096u", "MT_BOARD_RAM_BYTES": "512u",
        "MT_FIRMWARE_VERSION": '"9.9.9"',
    }
    exe = d / "core"
    sources = [FIRMWARE / f for f in (*APP_SOURCES, "protocol.c", "tokenizer.c")] + [d / "fake.c"]
    subprocess.run([cc, "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    f"-I{FIRMWARE}", f"-I{FIRMWARE / 'kernels'}",
                    *[f"-D{k}={v}" for k, v in defines.items()], *map(str, sources),
                    "-o", str(exe)], check=True)
    return exe


def talk(core: Path, data: bytes) -> bytes:
    p = subprocess.run([str(core)], input=data, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    return p.stdout


def replies(out: bytes) -> list[bytes]:
    """The lines after the boot notice; every line must end in CR LF."""
    assert out.endswith(b"\r\n") or out == b""
    lines = out.split(b"\r\n")[:-1]
    assert all(b"\r" not in ln and b"\n" not in ln for ln in lines)
    assert lines[0].startswith(b"# mcutext firmware 9.9.9 protocol 1 board host model "
                               b"fake\\x01model ready")
    return lines[1:]


def milli(q: int, scale: np.float32, zp: int) -> str:
    """The device's dequantization: round half away from zero of (q - zp) * scale * 1000."""
    v = (q - zp) * Fraction(float(scale)) * 1000
    r = int(abs(v) + Fraction(1, 2)) * (1 if v >= 0 else -1)
    return f"{'-' if r < 0 else ''}{abs(r) // 1000}.{abs(r) % 1000:03d}"


def expected_classify(text: bytes, explain: bool = False) -> list[bytes]:
    tok = Tokenizer(SPEC)
    ids = tok.encode(text)
    logits = [np.int8(np.int32(ids[0]) + 37 * i) for i in range(len(LABELS))]
    best = int(np.argmax(logits))
    esc = LABELS[best].encode("latin-1").replace(b"\\", b"\\\\").replace(b"\xe9", b"\\xe9")
    lines = [b"label %d %s" % (best, esc),
             b"scores " + b" ".join(b"%d" % v for v in logits),
             b"logits " + " ".join(milli(int(v), *LOGITS_Q) for v in logits).encode(),
             b"words %d" % tok.num_words(text),
             # the fake counter: 5 ticks per read, x2 = 10 per region, minus the overhead of 10
             b"cost instructions tokenizer 0 model 0"]
    if explain:
        for i, w in enumerate(tok.words(text)):
            a = int(np.int8(ids[i * SPEC.features_per_word]))
            weight = milli(a, *ATTENTION_Q)
            word = b"".join(bytes([c]) if 0x20 <= c < 0x7F and c != 0x5C else
                            b"\\\\" if c == 0x5C else b"\\x%02x" % c for c in w)
            lines.append(b"word %d %d %s %s" % (i, a, weight.encode(), word))
    return lines + [b"ok"]


# --- the protocol, line by line --------------------------------------------------------------

def test_ping_help_and_line_ends(core):
    out = replies(talk(core, b"ping\nping abc\r\nping x y\rhelp\n\n\r\n\r\r"))
    assert out == [b"pong", b"ok", b"pong abc", b"ok", b"pong x y", b"ok",
                   b"commands ping info stats classify explain help", b"ok"]


def test_info(core):
    out = replies(talk(core, b"info\n"))
    assert out[-1] == b"ok"
    assert out[:9] == [b"firmware 9.9.9", b"protocol 1", b"board host", b"cpu unknown",
                       b"kernels portable", b"profile 0", b"model fake\\x01model",
                       b"classes 3", b"label 0 neg"]
    assert b"label 1 pos\\\\x" in out and b"label 2 caf\\xe9" in out
    assert (b"tokenizer version 1 buckets 10240 max-words 8 features-per-word 4 seed 0 "
            b"max-word-bytes 6") in out
    for line in (b"seq-len 32", b"feature-dim 16", b"arena 1111", b"weights 2222",
                 b"macs 3333", b"flash 104 of 4096", b"ram 48 of 512", b"line-max 160",
                 b"counter instructions"):
        assert line in out


@pytest.mark.parametrize("text", [b"a gripping, funny movie", b"", b"CAPS and caf\xc3\xa9 !!",
                                  b"averyveryverylongword x" * 3, b"one\ttab"])
def test_classify_and_explain(core, text):
    out = replies(talk(core, b"classify " + text + b"\nexplain " + text + b"\n"))
    want = expected_classify(text) + expected_classify(text, explain=True)
    assert out == want


def test_classify_without_argument(core):
    assert replies(talk(core, b"classify\n")) == expected_classify(b"")


def test_model_error(core):
    out = replies(talk(core, b"classify ModelFail now\nping\n"))
    assert out == [b"error 5 model run failed", b"pong", b"ok"]


@pytest.mark.parametrize("line,code", [
    (b"frobnicate now", 1), (b"CLASSIFY upper", 1), (b"Ping", 1), (b"pingx", 1),
    (b"x" * (LINE_MAX + 1), 2), (b"classify " + b"y" * 5000, 2),
    (b"classify a\x00b", 3), (b"\x00", 3), (b"\x00" * (LINE_MAX + 10), 2),
    (b"classify caf\xe9", 7), (b"\xff\xfe\x80garbage", 7), (b"classify \xc3", 7),
    (b"classify \xed\xa0\x80 surrogate", 7), (b"classify \xc0\xaf overlong", 7),
])
def test_errors_then_still_serving(core, line, code):
    out = replies(talk(core, line + b"\nping still\n"))
    assert len(out) == 3 and out[1:] == [b"pong still", b"ok"], out
    assert out[0].startswith(b"error %d " % code), out[0]


def test_line_of_exactly_line_max_bytes_is_accepted(core):
    text = b"ping " + b"z" * (LINE_MAX - 5)
    assert replies(talk(core, text + b"\n")) == [b"pong " + b"z" * (LINE_MAX - 5), b"ok"]


def test_unknown_command_detail_is_escaped_and_cut(core):
    out = replies(talk(core, b"\x01\x02\\" + b"q" * 40 + b" arg\n"))
    assert out == [b"error 1 unknown command (try help): '\\x01\\x02\\\\" + b"q" * 29 + b"...'"]


def test_stats_counts_lines_errors_and_classifications(core):
    out = replies(talk(core, b"ping\nnope\nclassify a\nexplain b\n\x00\nstats\n"))
    stats = out[out.index(b"error 3 line contains a NUL byte") + 1:]
    assert stats[0].startswith(b"stack ") and stats[0].endswith(b" of 1024")
    assert stats[1:] == [b"requests 6", b"failed 2", b"classified 2", b"ok"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=400),
                          st.sampled_from([b"\n", b"\r", b"\x00", b"classify ", b"ping ",
                                           b"\xc3", b"\xff", b"explain a b c\n"])),
                max_size=30).map(b"".join))
def test_random_bytes_never_stop_the_device(core, garbage):
    """Whatever came before, LF + `ping <token>` gets its pong; every line ends in CR LF."""
    out = replies(talk(core, garbage + b"\nping sync123\n"))
    assert out[-2:] == [b"pong sync123", b"ok"]
    for line in out[:-2]:
        assert all(0x20 <= c < 0x7F for c in line), line   # replies are printable ASCII


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_utf8_check_agrees_with_python(core, data):
    """The device accepts a line exactly when Python's strict UTF-8 decoder does."""
    data = data.replace(b"\n", b" ").replace(b"\r", b" ").replace(b"\x00", b" ")
    out = replies(talk(core, b"ping x" + data + b"\n"))
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError as e:
        valid, start = False, e.start
    if valid:
        assert out[-1] == b"ok" and unescape(out[0]) == b"pong x" + data
    else:
        assert out == [b"error 7 invalid UTF-8 at byte %d" % (6 + start)]


# --- the host client against the host-built core, over a real TCP socket --------------------

class CoreServer:
    """Serves the host-built core on 127.0.0.1 like QEMU does: one client at a time, one
    core process for all of them (its state survives a reconnect, as a board's does); the
    core's stdin and stdout bridged to the socket."""

    def __init__(self, core: Path):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.proc = subprocess.Popen([str(core)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.conn: socket.socket | None = None
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._serve, daemon=True).start()

    def _pump_out(self):
        while True:
            b = self.proc.stdout.read1(4096)
            if not b:
                break
            conn = self.conn
            if conn is None:
                continue   # nobody connected: the bytes are lost, as on a UART
            try:
                conn.sendall(b)
            except OSError:
                pass

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn = conn
            while True:
                try:
                    b = conn.recv(4096)
                except OSError:
                    break
                if not b:
                    break
                self.proc.stdin.write(b)
                self.proc.stdin.flush()
            self.conn = None
            conn.close()

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.listener.close()


@pytest.fixture
def served(core):
    srv = CoreServer(core)
    yield srv
    srv.close()


def test_device_client_end_to_end(served, tmp_path):
    with Device(served.url, timeout=10, log=tmp_path / "session.log") as dev:
        info = dev.info()
        assert info["model"] == "fake\x01model"
        assert info["labels"] == ["neg", "pos\\x", "caf\ufffd"]
        assert info["tokenizer"]["max_words"] == 8 and info["line_max"] == LINE_MAX
        assert info["stack"]["budget"] == 1024 and info["flash"] == {"used": 104,
                                                                     "budget": 4096}
        text = "a gripping, funny movie"
        r = dev.classify(text)
        ids = Tokenizer(SPEC).encode(text)
        assert r["scores"] == [int(np.int8(np.int32(ids[0]) + 37 * i)) for i in range(3)]
        assert r["words"] == 5 and r["unit"] == "instructions"
        assert r["instructions"] == {"tokenizer": 0, "model": 0}
        e = dev.explain(text)
        assert [a["word"] for a in e["attribution"]] == ["a", "grippi", ",", "funny", "movie"]
        assert all(0 <= a["weight"] <= 1 for a in e["attribution"])
        assert dev.ping() >= 0
        with pytest.raises(DeviceError) as err:
            dev.command("nope")
        assert err.value.code == 1
        # Text longer than a line: compacted to the words the model sees, same result.
        long_text = "supercalifragilistic " * 30 + "end"
        assert len(long_text) > LINE_MAX
        assert dev.classify(long_text)["scores"] == dev.classify(
            "superc " * 8)["scores"]
        with pytest.raises(DeviceError) as err:
            dev.classify(b"caf\xe9")
        assert err.value.code == 7
        stats = dev.stats()
        assert stats["classified"] >= 3 and stats["failed"] == 2
        assert stats["stack"]["budget"] == 1024


def test_client_resyncs_after_garbage(served):
    with Device(served.url, timeout=10) as dev:
        rng = random.Random(7)
        dev.write(bytes(rng.randrange(256) for _ in range(3000)))
        dev.sync()
        assert dev.classify("still fine")["words"] == 2


# --- the client's text compaction -------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=200),
                      st.text(max_size=120).map(lambda s: s.encode("utf-8"))),
       max_words=st.integers(1, 12), max_word_bytes=st.integers(1, 8))
def test_compact_text_tokenizes_like_the_whole_text(data, max_words, max_word_bytes):
    tok = Tokenizer(TokenizerSpec(max_words=max_words, max_word_bytes=max_word_bytes))
    c = compact_text(data, max_words, max_word_bytes)
    assert np.array_equal(tok.encode(c), tok.encode(data))
    assert len(c) <= max(0, max_words * (max_word_bytes + 4) - 1)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    c.decode("utf-8")  # valid UTF-8 stays valid


def test_unescape_inverts_the_firmware_escaping():
    assert unescape(rb"caf\xc3\xa9 \\x41 \x00") == "café \\x41 \0".encode()


# --- timeouts and vanished ports ----------------------------------------------------------------

def test_silent_port_times_out_with_a_hint():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"socket://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(McutextError) as e:
            Device(url, timeout=0.3)
    assert "no answer" in str(e.value) and "baud" in e.value.hint


def test_refused_port_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(McutextError, match="cannot open"):
            Device(f"socket://127.0.0.1:{port}", timeout=1)


def test_socket_closed_in_the_middle_of_a_reply():
    """A fake device answers the handshake, then dies halfway through a classify reply."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def fake_device():
        conn, _ = server.accept()
        buf = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.startswith(b"ping"):
                    conn.sendall(b"pong" + line[4:] + b"\r\nok\r\n")
                elif line == b"info":
                    conn.sendall(b"protocol 1\r\nlabel 0 neg\r\nline-max 100\r\nok\r\n")
                elif line.startswith(b"classify"):
                    conn.sendall(b"label 0 neg\r\nscores 1")   # ... and the board vanishes
                    conn.close()
                    return

    t = threading.Thread(target=fake_device, daemon=True)
    t.start()
    dev = Device(f"socket://127.0.0.1:{server.getsockname()[1]}", timeout=5)
    with pytest.raises(McutextError) as e:
        dev.classify("hello")
    assert "lost the connection" in str(e.value)
    assert "cable" in e.value.hint
    dev.close()
    server.close()
