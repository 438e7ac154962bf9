"""A hostile stand-in for a board: speaks the line protocol on 127.0.0.1 (`socket://` URL)
and answers each request with whatever bytes it is given, so that the host's handling of
malformed replies can be tested (the real firmware never sends them: docs/protocol.md).

    with FakeDevice(replies) as fake:          # replies: {command words: bytes or callable}
        Device(fake.url).info()

`ping <token>` is answered correctly unless `replies` has a "ping" entry, so that the host
can synchronize and then meet the hostile reply. A reply value is the raw bytes to send
(CR LF, `ok`, a missing terminator, anything), or a callable (request line) -> bytes. A
reply ending with `CLOSE` has the connection closed after the bytes before it are sent.
`well_formed_replies()` gives the replies of docs/protocol.md for a bundle's labels and
tokenizer: the starting point the probe (mcutext.reliability.hostprobe) mutates.
"""

from __future__ import annotations

import socket
import struct
import threading
import zlib

CLOSE = b"\0<close>"

# The request's command words, longest first: a request is answered by the first that it
# starts with.
COMMANDS = ("head import end", "head import", "head state", "head export", "head config",
            "head save", "head train", "head imprint", "head reset", "label add",
            "label remove", "label rename", "eval reset", "info", "classify", "explain",
            "stats", "learn", "keep", "eval", "ping", "help")


def command_of(line: bytes) -> str | None:
    for c in COMMANDS:
        if line == c.encode() or line.startswith(c.encode() + b" "):
            return c
    return None


class FakeDevice:
    def __init__(self, replies: dict, *, default: bytes = b"error 1 unknown command\r\n"):
        self.replies = dict(replies)
        self.default = default
        self.requests: list[bytes] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self) -> "FakeDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop = True
        try:
            self._listener.close()
        except OSError:
            pass
        self._thread.join(timeout=5)

    def _answer(self, line: bytes) -> bytes:
        cmd = command_of(line)
        if cmd == "ping" and "ping" not in self.replies:
            return b"pong" + line[4:] + b"\r\nok\r\n"
        reply = self.replies.get(cmd, self.default) if cmd else self.default
        return reply(line) if callable(reply) else reply

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return          # closed
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buf = b""
        while not self._stop:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.rstrip(b"\r")
                if not line:
                    continue
                self.requests.append(line)
                out = self._answer(line)
                close = out.endswith(CLOSE)
                try:
                    conn.sendall(out[:-len(CLOSE)] if close else out)
                except OSError:
                    return
                if close:
                    return


def _lines(*lines: str | bytes) -> bytes:
    return b"".join((ln.encode() if isinstance(ln, str) else ln) + b"\r\n" for ln in lines)


def head_blob(classes: int, features: int = 4, rows: int | None = None) -> bytes:
    """A well-formed version-1 head blob (docs/personalization.md) for `head export`."""
    from ..device.personalize import ACTIVE, BLOB_HEADER, BLOB_MAGIC, BLOB_VERSION, NAME_BYTES
    rows = classes if rows is None else rows
    nn = rows - classes
    flags = bytes([ACTIVE] * classes + [0] * nn).ljust((rows + 3) & ~3, b"\0")
    floats = b"\0" * 4 * (rows * features + rows + nn * features)
    names = b"\0" * nn * NAME_BYTES
    total = BLOB_HEADER.size + len(flags) + len(floats) + len(names) + 4
    header = BLOB_HEADER.pack(BLOB_MAGIC, BLOB_VERSION, BLOB_HEADER.size, features, classes,
                              rows, NAME_BYTES, 0, 0, total, 0)
    body = header + flags + floats + names
    return body + struct.pack("<I", zlib.crc32(body))


def well_formed_replies(labels: list[str], tokenizer: dict, *, features: int = 4,
                        new_labels: int = 2) -> dict:
    """The replies of docs/protocol.md from firmware for these labels and tokenizer spec
    (a personalizable head with `new_labels` reserved rows, never updated)."""
    n = len(labels)
    tok = tokenizer
    fpw = 4 if tok.get("typo_features", True) else 1
    info = _lines("firmware 0.1.0", "protocol 1", "board fake", "cpu cortex-m4", "kernels dsp",
                  "profile 0", "model fake", f"classes {n}",
                  *[f"label {i} {lab}" for i, lab in enumerate(labels)],
                  f"tokenizer version 1 buckets {tok['buckets']} max-words {tok['max_words']} "
                  f"features-per-word {fpw} seed {tok['seed']} "
                  f"max-word-bytes {tok['max_word_bytes']}",
                  f"seq-len {tok['max_words'] * fpw}", f"feature-dim {features}",
                  "arena 2848", "weights 95828", "macs 55360", "flash 110472 of 1048576",
                  "ram 12616 of 131072", "stack 344 of 8192", "line-max 1024",
                  "counter instructions", "ok")
    scores = " ".join(str(10 * i - 5) for i in range(n))
    logits = " ".join(f"{0.1 * i:.3f}" for i in range(n))
    classify = _lines(f"label {n - 1} {labels[-1]}", f"scores {scores}", f"logits {logits}",
                      "words 2", "cost instructions tokenizer 2710 model 121361")
    rows = n + new_labels
    blob = head_blob(n, features, rows)
    export = _lines(f"blob {len(blob)}", *[f"data {o} {blob[o:o + 64].hex()}"
                                           for o in range(0, len(blob), 64)], "ok")
    state = _lines("updates 0", "personalized 0", f"rows {rows}", f"feature-dim {features}",
                   f"new-labels 0 of {new_labels}", "config lr 0.050 momentum 0.000 l2 0.000",
                   *[f"label {i} {lab} factory" for i, lab in enumerate(labels)],
                   "buffer 0 of 64", "storage none", "ok")
    updates = {"n": 0}

    def learn(line: bytes) -> bytes:
        updates["n"] += 1
        label = line.split(b" ", 2)[2].split(b"\t", 1)[0]
        return _lines("loss 0.693 3f317218", f"predicted 0 {labels[0]}",
                      b"learned 0 " + label, f"updates {updates['n']}",
                      "cost instructions tokenizer 3388 model 942349 step 118380", "ok")

    def import_piece(line: bytes) -> bytes:
        f = line.split(b" ")
        return _lines(f"received {int(f[2]) + len(f[3]) // 2}", "ok")

    return {
        "info": info,
        "classify": classify + b"ok\r\n",
        "explain": classify + _lines("word 0 122 0.977 a", "word 1 16 0.563 film", "ok"),
        "stats": _lines("stack 612 of 8192", "requests 230", "failed 4", "classified 201",
                        "ok"),
        "head state": state,
        "head export": export,
        "head import": import_piece,
        "head import end": _lines("updates 0", "ok"),
        "head config": _lines("config lr 0.050 momentum 0.000 l2 0.000", "ok"),
        "head save": _lines("saved seq 3 bytes 1444", "cost instructions save 77819", "ok"),
        "head train": _lines("epoch 1 loss 0.412 3ed2f1a9 correct 40 of 64", "updates 292",
                             "cost instructions train 398211", "ok"),
        "head imprint": _lines(f"imprinted {n} new examples 10", "updates 2", "ok"),
        "head reset": _lines("ok"),
        "label add": lambda line: _lines(f"label {n} " + line[10:].decode("ascii", "replace"),
                                         "ok"),
        "learn": learn,
        "keep": _lines("kept 0 x", "buffer 1 of 64", "ok"),
        "eval": _lines(f"predicted 0 {labels[0]}", "correct 1", "loss 0.213 3e5a1b2c",
                       "tally 1 of 1", "ok"),
        "eval reset": _lines("ok"),
    }
