"""Soak test: the real firmware ELF in qemu-system-arm takes a bounded stream of hostile bytes
over its UART, interleaved with valid commands whose answers are checked, and ends in exactly
the state it started in.

The stream (fixed seed; per board SOAK_BYTES, 512 KiB by default, or what SOAK_SECONDS allow):
bursts of random bytes (any value, CR and LF included, lines left unterminated), overlong
lines, lines with NUL bytes, invalid UTF-8, truncated and corrupted `learn` frames, truncated,
corrupted and out-of-order `head import` uploads. A hostile line sent at the start of a line
has one right answer (the error code; for invalid UTF-8 also the offset): it is checked.
After a burst of random bytes the client resynchronizes (LF, `ping <fresh token>`), and every
line the device sent meanwhile must be a protocol line: printable ASCII, no fault report, no
boot banner (a reset in the middle of the soak fails the test). Between the hostile parts:
`classify` and `explain` of known sentences (every line but `cost` as at the start, where the
scores are TFLite Micro's), `ping` with a token, a `learn` frame with a valid CRC for an
unknown label (error 4), a full `head import` of the factory blob, `stats` (the request
counter only grows: no reset).

Afterwards `info` is what it was (the stack high-water mark aside), the known sentences
classify identically, and the head exports the same blob. The stack high-water mark over the
whole soak is printed (docs/reliability.md). A failure names the board, the seed and the
round; the session log of every exchange is kept next to the firmware (session.log).

Throughput of the emulated UART is what bounds the size: 1.5 to 25 KB/s depending on the
board and the host's load (docs/reliability.md), so past MIN_BYTES (64 KiB, always sent,
however long they take: the test does not depend on the host's speed) the soak also stops
after SOAK_SECONDS (15 s in the suite) per board; the bytes actually sent are printed.

    MCUTEXT_SOAK_BYTES=200000 pytest -m qemu tests/test_soak_qemu.py   # a shorter soak
    MCUTEXT_SOAK_SECONDS=600 pytest -m qemu tests/test_soak_qemu.py    # let all 512 KiB through
    python tests/test_soak_qemu.py build/.../firmware.elf microbit [BYTES [SEED [SECONDS]]]
"""

from __future__ import annotations

import os
import random
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from mcutext.device.client import Device
from mcutext.common.errors import McutextError

pytestmark = pytest.mark.qemu

BOARDS = ["netduinoplus2", "microbit"]
SEED = 20261123
# Per board: the stream stops at SOAK_BYTES or after SOAK_SECONDS, whichever comes first (the
# first bytes of the same seeded stream), but never before MIN_BYTES.
SOAK_BYTES = int(os.environ.get("MCUTEXT_SOAK_BYTES", str(512 * 1024)))
SOAK_SECONDS = float(os.environ.get("MCUTEXT_SOAK_SECONDS", "15"))
MIN_BYTES = min(SOAK_BYTES, 64 * 1024)
KNOWN = ["a gripping , funny and moving film", "the plot is a mess and the acting is worse",
         "it 's not bad , just forgettable", "café naïve — 😀 !!!"]
RANDOM_BURST_MAX = 8192   # bytes of one random burst (the replies stay far below the socket
                          # buffers, so writing a burst without reading cannot block)
# Ill-formed UTF-8 (RFC 3629): a lone continuation byte, overlong forms, surrogates, beyond
# U+10FFFF, bytes that never occur, sequences cut short.
BAD_UTF8 = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80",
            b"\xed\xbf\xbf", b"\xf0\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
            b"\xfe", b"\xff", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3"]
WORDS = "the a film movie great bad not funny boring plot acting , . ! ? ça über 日本 😀".split()


class SoakFailure(AssertionError):
    pass


def learn_frame(label: bytes, text: bytes) -> bytes:
    payload = label + b"\t" + text
    return b"learn %08x " % zlib.crc32(payload) + payload


def framing_error(line: bytes, line_max: int) -> tuple[int, int | None] | None:
    """(code, offset) the firmware must answer for a line because of its framing alone
    (docs/protocol.md: too long, NUL, invalid UTF-8), or None."""
    if len(line) > line_max:
        return 2, None
    if b"\0" in line:
        return 3, None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        return 7, e.start
    return None


def learn_error(line: bytes, labels: list[str], line_max: int) -> int:
    """The error code of a `learn` line that must not be learned."""
    fe = framing_error(line, line_max)
    if fe:
        return fe[0]
    arg = line[len(b"learn "):]
    hexdigits = b"0123456789abcdefABCDEF"
    if len(arg) < 9 or arg[8:9] != b" " or any(c not in hexdigits for c in arg[:8]):
        return 4
    if zlib.crc32(arg[9:]) != int(arg[:8], 16):
        return 8
    label = arg[9:].split(b"\t", 1)[0]
    assert label.decode() not in labels, "the soak must never teach the head"
    return 4


class Soak:
    def __init__(self, dev: Device, board: str, seed: int, known: dict, blob: bytes):
        self.dev, self.board, self.seed = dev, board, seed
        self.rng = random.Random(seed)
        self.known = known            # text -> verb -> the reply lines at the start
        self.blob = blob              # the factory head, as `head export` sends it
        info = dev.info()
        self.line_max = info["line_max"]
        self.labels = info["labels"]
        self.sent = 0
        self.round = 0
        self.counts: dict[str, int] = {}
        self.last_requests = 0

    # --- plumbing ------------------------------------------------------------------------------
    def fail(self, msg: str):
        raise SoakFailure(f"{self.board}, seed {self.seed}, round {self.round}, "
                          f"{self.sent} bytes sent: {msg}")

    def write(self, data: bytes, kind: str) -> None:
        self.dev.write(data)
        self.sent += len(data)
        self.counts[kind] = self.counts.get(kind, 0) + len(data)

    def check_line(self, line: bytes) -> None:
        if any(b < 0x20 or b > 0x7E for b in line):
            self.fail(f"a reply line with bytes outside printable ASCII: {line[:80]!r}")
        if line.startswith(b"# mcutext firmware") or line.startswith(b"error 6"):
            self.fail(f"the device reset in the middle of the soak: {line!r}")

    def reply(self) -> tuple[list[bytes], tuple[int, str] | None]:
        """The data lines and the final line of one reply: (lines, None) after `ok`,
        (lines, (code, message)) after `error`."""
        lines = []
        while True:
            line = self.dev.read_line()
            self.check_line(line)
            if line == b"ok":
                return lines, None
            if line.startswith(b"error "):
                code, _, msg = line[6:].partition(b" ")
                return lines, (int(code), msg.decode("ascii"))
            lines.append(line)

    def expect_error(self, line: bytes, code: int, offset: int | None = None,
                     kind: str = "") -> None:
        self.write(line + b"\n", kind)
        lines, err = self.reply()
        if err is None or err[0] != code or lines:
            self.fail(f"{kind}: {line[:60]!r}... answered {lines} {err}, want error {code}")
        if offset is not None and err[1] != f"invalid UTF-8 at byte {offset}":
            self.fail(f"{kind}: {err[1]!r}, want the offset {offset}")

    def sync(self) -> int:
        """Ends whatever partial line the device holds, pings with a fresh token and checks
        every line sent meanwhile. Returns how many lines were skipped."""
        token = self.rng.randbytes(4).hex().encode()   # fresh, and part of the seeded stream
        self.write(b"\nping " + token + b"\n", "sync")
        skipped = 0
        while True:
            line = self.dev.read_line()
            self.check_line(line)
            if line == b"pong " + token:
                break
            if not (line == b"ok" or line.startswith((b"error ", b"#", b"pong "))):
                self.fail(f"unexpected line while resynchronizing: {line[:80]!r}")
            skipped += 1
        if self.dev.read_line() != b"ok":
            self.fail("pong without ok")
        return skipped

    # --- hostile parts -------------------------------------------------------------------------
    def text(self, max_bytes: int) -> bytes:
        out = b""
        while True:
            w = self.rng.choice(WORDS).encode()
            if len(out) + len(w) + 1 > max_bytes:
                return out
            out += (b" " if out else b"") + w

    def random_burst(self) -> None:
        n = self.rng.randint(1, RANDOM_BURST_MAX)
        self.write(self.rng.randbytes(n), "random bytes")
        self.sync()

    def overlong(self) -> None:
        n = self.rng.randint(self.line_max + 1, 4 * self.line_max)
        body = bytes(b for b in self.rng.randbytes(n) if b not in b"\r\n")
        line = (b"classify " + body).ljust(self.line_max + 1, b"x")
        self.expect_error(line, 2, kind="overlong lines")

    def nul(self) -> None:
        t = bytearray(b"classify " + self.text(self.rng.randint(1, 200)))
        for _ in range(self.rng.randint(1, 4)):
            t.insert(self.rng.randint(0, len(t)), 0)
        self.expect_error(bytes(t), 3, kind="NUL lines")

    def invalid_utf8(self) -> None:
        t = b"classify " + self.text(self.rng.randint(1, 300))
        at = self.rng.randint(0, len(t))
        t = t[:at] + self.rng.choice(BAD_UTF8) + t[at:]
        code, offset = framing_error(t, self.line_max)
        self.expect_error(t, code, offset, kind="invalid UTF-8")

    def learn_corrupted(self) -> None:
        frame = bytearray(learn_frame(self.rng.choice(self.labels).encode(), self.text(300)))
        i = self.rng.randrange(len(b"learn "), len(frame))
        frame[i] = self.rng.choice([b for b in range(1, 256) if b not in (10, 13, frame[i])])
        line = bytes(frame)
        fe = framing_error(line, self.line_max)
        self.expect_error(line, learn_error(line, self.labels, self.line_max),
                          fe and fe[1], kind="corrupted learn")

    def learn_truncated(self) -> None:
        frame = learn_frame(self.rng.choice(self.labels).encode(), self.text(300))
        line = frame[:self.rng.randrange(len(b"learn "), len(frame))]
        if self.rng.random() < 0.5:
            fe = framing_error(line, self.line_max)
            self.expect_error(line, learn_error(line, self.labels, self.line_max),
                              fe and fe[1], kind="truncated learn")
        else:  # cut off, and the rest of the stream runs into it
            self.write(line, "truncated learn")
            self.random_burst()

    def import_pieces(self, blob: bytes) -> list[bytes]:
        size = self.rng.choice([16, 32, 64, 200])
        return [b"head import %d %s" % (o, blob[o:o + size].hex().encode())
                for o in range(0, len(blob), size)]

    def import_corrupted(self) -> None:
        """All pieces in order, one byte past the header changed: refused by the CRC."""
        bad = bytearray(self.blob)
        i = self.rng.randrange(32, len(bad))
        bad[i] ^= self.rng.randrange(1, 256)
        for piece in self.import_pieces(bytes(bad)):
            self.write(piece + b"\n", "corrupted head import")
            lines, err = self.reply()
            if err or not lines or not lines[0].startswith(b"received "):
                self.fail(f"head import piece {piece[:30]!r}: {lines} {err}")
        self.expect_error(b"head import end %d" % len(bad), 8, kind="corrupted head import")

    def import_truncated(self) -> None:
        """Some pieces, one cut short or out of order or not hex, then `end`: refused."""
        pieces = self.import_pieces(self.blob)
        k = self.rng.randrange(len(pieces))
        how = self.rng.choice(["cut", "skip", "nothex", "stop"])
        for j, piece in enumerate(pieces[:k + 1]):
            if j == k:
                if how == "cut":
                    piece = piece[:self.rng.randrange(len(b"head import "), len(piece))]
                elif how == "skip" and j + 1 < len(pieces):
                    piece = pieces[j + 1]
                elif how == "nothex":
                    at = self.rng.randrange(piece.rindex(b" ") + 1, len(piece))
                    piece = piece[:at] + b"g" + piece[at + 1:]
                else:
                    break
            self.write(piece + b"\n", "truncated head import")
            lines, err = self.reply()
            refused = err is not None and err[0] == 4
            if not refused and not (err is None and lines[:1]
                                    and lines[0].startswith(b"received ")):
                self.fail(f"head import piece {piece[:30]!r}: {lines} {err}")
        self.expect_error(b"head import end %d" % len(self.blob), 4,
                          kind="truncated head import")

    # --- valid, checked ------------------------------------------------------------------------
    def classify_known(self) -> None:
        """`classify` or `explain` of a known sentence: every line as at the start (but the
        `cost` line, whose counts may differ by a few instructions)."""
        text = self.rng.choice(list(self.known))
        verb = self.rng.choice([b"classify", b"explain"])
        self.write(verb + b" " + text.encode() + b"\n", "valid commands")
        lines, err = self.reply()
        got = [ln for ln in lines if not ln.startswith(b"cost ")]
        want = self.known[text][verb]
        if err or got != want:
            self.fail(f"{verb.decode()} {text!r}: {got} {err}, at the start {want}")

    def ping(self) -> None:
        token = self.rng.randbytes(self.rng.randint(1, 16)).hex().encode()
        self.write(b"ping " + token + b"\n", "valid commands")
        lines, err = self.reply()
        if err or lines != [b"pong " + token]:
            self.fail(f"ping {token!r}: {lines} {err}")

    def learn_unknown_label(self) -> None:
        line = learn_frame(b"no-such-label-%d" % self.round, self.text(200))
        self.write(line + b"\n", "valid commands")
        lines, err = self.reply()
        if err != (4, "no such label"):
            self.fail(f"learn with a valid CRC for an unknown label: {lines} {err}")

    def import_factory(self) -> None:
        for piece in self.import_pieces(self.blob):
            self.write(piece + b"\n", "valid commands")
            lines, err = self.reply()
            if err:
                self.fail(f"head import piece {piece[:30]!r}: {err}")
        self.write(b"head import end %d\n" % len(self.blob), "valid commands")
        lines, err = self.reply()
        if err or lines != [b"updates 0"]:
            self.fail(f"head import of the factory blob: {lines} {err}")

    def stats(self) -> dict:
        self.write(b"stats\n", "valid commands")
        lines, err = self.reply()
        if err:
            self.fail(f"stats: {err}")
        res = {}
        for line in lines:
            k, _, v = line.decode().partition(" ")
            res[k] = v
        requests = int(res["requests"])
        if requests <= self.last_requests:
            self.fail(f"the request counter went from {self.last_requests} to {requests}: "
                      "the device reset")
        self.last_requests = requests
        return res

    # --- the stream ----------------------------------------------------------------------------
    def run(self, total: int, seconds: float, at_least: int = MIN_BYTES) -> None:
        hostile = [(self.random_burst, 6), (self.overlong, 3), (self.nul, 2),
                   (self.invalid_utf8, 3), (self.learn_corrupted, 2), (self.learn_truncated, 2),
                   (self.import_corrupted, 1), (self.import_truncated, 1)]
        valid = [(self.classify_known, 4), (self.ping, 2), (self.learn_unknown_label, 1),
                 (self.stats, 1), (self.import_factory, 0.2)]
        h_fns, h_w = zip(*hostile)
        v_fns, v_w = zip(*valid)
        deadline = time.monotonic() + seconds
        try:
            self.sync()
            while self.sent < total and (self.sent < at_least or time.monotonic() < deadline):
                self.round += 1
                for fn in self.rng.choices(h_fns, h_w, k=self.rng.randint(1, 3)):
                    fn()
                for fn in self.rng.choices(v_fns, v_w, k=self.rng.randint(1, 2)):
                    fn()
        except McutextError as e:   # no answer in time, or the port vanished (QEMU died)
            self.fail(f"{e} ({e.hint})")


def classify_fields(dev: Device, text: str) -> dict:
    r = dev.classify(text)
    return {k: r[k] for k in ("label", "label_index", "scores", "logits", "words")}


def run_soak(elf: str | Path, board: str, total: int, seed: int, log: Path,
             reference: dict | None = None, seconds: float = SOAK_SECONDS) -> dict:
    """Boots `elf` in QEMU and soaks it with `total` bytes (or what `seconds` allow); returns
    the figures. reference: text -> TFLite Micro's int8 logits, checked against the device's
    answers at the start."""
    from mcutext.device.qemu import boot
    with boot(elf, board, log_path=Path(log).with_name("qemu.log")) as url, \
            Device(url, timeout=60, log=log) as dev:
        info0 = dev.info()
        fields0 = {t: classify_fields(dev, t) for t in KNOWN}
        if reference:
            for t, want in reference.items():
                assert fields0[t]["scores"] == list(want), (board, t, fields0[t], want)
        known = {t: {verb: [ln for ln in dev.command(verb + b" " + t.encode())
                            if not ln.startswith(b"cost ")] for verb in (b"classify", b"explain")}
                 for t in KNOWN}
        blob0 = dev.export_head()
        state0 = dev.head_state()
        soak = Soak(dev, board, seed, known, blob0)
        t0 = time.monotonic()
        soak.run(total, seconds)
        seconds = time.monotonic() - t0
        soak.sync()
        info1 = dev.info()
        stats = dev.stats()
        stack0, stack1 = info0.pop("stack"), info1.pop("stack")
        assert info1 == info0, f"{board} seed {seed}: info changed: {info0} -> {info1}"
        assert stack1["budget"] == stack0["budget"]
        for t in KNOWN:
            assert classify_fields(dev, t) == fields0[t], f"{board} seed {seed}: {t!r}"
        assert dev.export_head() == blob0, f"{board} seed {seed}: the head changed"
        assert dev.head_state() == state0
        return {"board": board, "seed": seed, "bytes": soak.sent, "rounds": soak.round,
                "seconds": seconds, "kinds": soak.counts, "requests": stats["requests"],
                "failed": stats["failed"], "classified": stats["classified"],
                "stack": stats["stack"], "log": str(log)}


@pytest.fixture(scope="module")
def bundle(sst2_small_bundle):
    from mcutext.int8.bundle import load_bundle
    return load_bundle(sst2_small_bundle)


@pytest.fixture(scope="module")
def builds(sst2_small_bundle, tmp_path_factory) -> dict:
    """The normal firmware (personalization included), no test-only commands."""
    from mcutext.firmware.build import build
    out = tmp_path_factory.mktemp("fw_soak")
    return {b: build(sst2_small_bundle, b, out / b) for b in BOARDS}


@pytest.mark.parametrize("board", BOARDS)
def test_soak(board, builds, bundle):
    elf = Path(builds[board]["elf"])
    want = bundle.run_int8(bundle.tokenize(KNOWN), "tflm")["logits"]
    res = run_soak(elf, board, SOAK_BYTES, SEED, elf.with_name("session.log"),
                   reference={t: np.asarray(w, dtype=np.int8).tolist()
                              for t, w in zip(KNOWN, want)})
    assert res["bytes"] >= MIN_BYTES, f"{board}: only {res['bytes']} bytes in {SOAK_SECONDS} s"
    assert res["failed"] > res["rounds"]          # the hostile lines were answered as errors
    assert 0 < res["stack"]["used"] < res["stack"]["budget"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(res["kinds"].items()))
    print(f"\n{board}: soak of {res['bytes']} bytes (seed {SEED}) in {res['seconds']:.1f} s, "
          f"{res['rounds']} rounds, {res['requests']} requests of which {res['failed']} "
          f"errors; stack high-water {res['stack']['used']} of {res['stack']['budget']} B "
          f"({kinds})")


if __name__ == "__main__":  # a soak of an ELF already built: see the module's docstring
    import sys
    elf_, board_ = sys.argv[1], sys.argv[2]
    total_ = int(sys.argv[3]) if len(sys.argv) > 3 else SOAK_BYTES
    seed_ = int(sys.argv[4]) if len(sys.argv) > 4 else SEED
    print(run_soak(elf_, board_, total_, seed_, Path(elf_).with_name("session.log"),
                   seconds=float(sys.argv[5]) if len(sys.argv) > 5 else SOAK_SECONDS))
