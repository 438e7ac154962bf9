"""The host side of the serial protocol (docs/protocol.md), over pyserial.

    with Device("socket://127.0.0.1:4321") as dev:      # or /dev/ttyACM0, a pty path
        dev.info()["model"]
        dev.classify("a gripping, funny film")["label"]

Every exchange can be logged to a file (`log=path`) so that a session on a bench can be
replayed. A vanished port or a device that does not answer in time raises McutextError with
a hint about the cable, the baud rate and the board.
"""

from __future__ import annotations

import re
import secrets
import struct
import zlib
import time
from pathlib import Path

from ..common.errors import McutextError
from ..text.tokenizer import BYTE_CLASS

PROTOCOL_VERSION = 1
BAUDRATE = 115200
_HINT = (f"check the cable and the port name, the baud rate ({BAUDRATE} 8N1), and that the "
         "board is the right one and runs mcutext firmware (`mcutext flash`); under QEMU, that "
         "`mcutext run` is still running")
# The notice the firmware prints at every boot (docs/protocol.md): seen after the first sync,
# it means the device restarted and lost what it held in RAM (a learned head, a pending line).
_BOOT_NOTICE = b"# mcutext firmware "
_POLL = 0.05  # seconds one read of the port may block
# Bounds on what the host reads of one reply (the firmware's longest line is a `head` line of
# a few KB, its longest reply a `head export` of a few hundred lines): past them the port is
# not talking the protocol, and reading on would only fill memory.
MAX_REPLY_LINE = 64 * 1024
MAX_REPLY_LINES = 1 << 16
_REPLY_HINT = ("the program on the port does not answer as mcutext firmware does: flash "
               "firmware built by this mcutext (`mcutext build`, `mcutext flash`); --log FILE "
               "keeps the exchange")
# What a line that does not parse breaks: reading it raises one of these.
_SHAPE_ERRORS = (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error)
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|\\)")


class DeviceError(McutextError):
    """The device answered `error <code> <message>`."""

    def __init__(self, code: int, message: str):
        super().__init__(f"device error {code}: {message}")
        self.code = code
        self.device_message = message


def unescape(s: bytes) -> bytes:
    """Inverse of the firmware's mt_put_escaped: `\\\\` and `\\xHH`."""
    return _ESCAPE.sub(lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]),
                       s)


def _index_and_name(rest: bytes) -> tuple[int, str]:
    """`<index> <escaped name>` of a reply line (a label): its shape checked by the caller."""
    idx, name = rest.split(b" ", 1)
    return int(idx), unescape(name).decode("utf-8", "replace")


def compact_text(data: bytes, max_words: int, max_word_bytes: int) -> bytes:
    """A short byte string that tokenizes exactly like `data`: the first max_words words,
    each cut to max_word_bytes bytes, joined by single spaces.

    A word is cut after its max_word_bytes-th byte and then extended by the UTF-8
    continuation bytes (0x80-0xBF, at most 3) that follow, so that valid UTF-8 stays valid
    (the firmware refuses invalid UTF-8); the tokenizer drops those extra bytes anyway.
    Length: at most max_words * (max_word_bytes + 4) - 1 bytes."""
    out: list[bytes] = []
    i, n = 0, len(data)
    while i < n and len(out) < max_words:
        c = BYTE_CLASS[data[i]]
        if c == 0:
            i += 1
            continue
        start = i
        i += 1
        if c == 1:
            while i < n and BYTE_CLASS[data[i]] == 1:
                i += 1
        end = min(i, start + max_word_bytes)
        extra = 0
        while end < i and extra < 3 and 0x80 <= data[end] <= 0xBF:
            end += 1
            extra += 1
        out.append(data[start:end])
    return b" ".join(out)


def _f32_from_hex(v: bytes) -> float:
    if len(v) != 8:
        raise ValueError("float32 bits are 8 hex digits")
    return struct.unpack("<f", struct.pack("<I", int(v, 16)))[0]


def _shown(line: bytes, limit: int = 60) -> str:
    text = repr(line[:limit])[2:-1]
    return f"'{text}...' ({len(line)} bytes)" if len(line) > limit else f"'{text}'"


class _Reply:
    """The data lines of one reply, read with the shapes docs/protocol.md gives them.

        with self._reply("info", lines, SHAPES) as r:
            for line in r: ...            # a line that does not parse raises from here
            r.need(cond, "'classes' and the label lines to agree")

    A line that does not parse (a missing field, a non-number: ValueError, IndexError, ...)
    or a fact that does not hold becomes one McutextError: the device sent <line> in reply to
    <request> (expected <its shape>)."""

    def __init__(self, url: str, request: str, lines: list[bytes], shapes: dict[bytes, str]):
        self.url, self.request, self.lines, self.shapes = url, request, lines, shapes
        self.line: bytes | None = None

    def __iter__(self):
        for line in self.lines:
            self.line = line
            yield line
        self.line = None

    def bad(self, expected: str | None = None, line: bytes | None = None) -> McutextError:
        line = self.line if line is None else line
        if expected is None:
            key = line.partition(b" ")[0] if line is not None else b""
            expected = self.shapes.get(key, "the lines docs/protocol.md lists")
        what = (f"{_shown(line)} in reply" if line is not None else "an incomplete reply")
        return McutextError(f"{self.url}: the device sent {what} to '{self.request}' "
                            f"(expected {expected})", hint=_REPLY_HINT)

    def need(self, cond: bool, expected: str, line: bytes | None = None) -> None:
        if not cond:
            raise self.bad(expected, line)

    def __enter__(self) -> "_Reply":
        return self

    def __exit__(self, typ, exc, tb) -> None:
        if typ is not None and issubclass(typ, _SHAPE_ERRORS):
            raise self.bad() from None


def _int_fields(f: list) -> dict:
    """`k1 v1 k2 v2 ...` with integer values (an odd count is a malformed line)."""
    if len(f) % 2:
        raise ValueError("a key without its value")
    return {(k.decode("ascii") if isinstance(k, bytes) else k): int(v)
            for k, v in zip(f[::2], f[1::2])}


def _cost(res: dict, f: list[str]) -> None:
    """`cost <unit> <part> N ...` into res["unit"] and res[unit] = {part: N}."""
    if not f or f[0] not in ("instructions", "cycles"):
        raise ValueError("the counter's unit is instructions or cycles")
    res["unit"] = f[0]
    res[f[0]] = _int_fields(f[1:])


_COST = "'cost instructions|cycles <part> <count> ...'"


class SerialLink:
    """A session with a device: the port, the exchange log, replies read up to their
    ready/ok or error line, resynchronisation after a restart, `ping` and `info`."""
    def __init__(self, url: str, *, timeout: float = 10.0, baudrate: int = BAUDRATE,
                 log: str | Path | None = None, sync: bool = True):
        import serial
        self.url = url
        self.timeout = timeout
        self._drain = url.startswith("socket://")
        self._buf = b""
        self._info: dict | None = None
        self._synced = False
        self._restarted = False
        self._pending = ""        # the request being answered, for error messages
        self.boots = 0            # boot notices seen since the first sync (device restarts)
        self._log = open(log, "a", encoding="utf-8") if log else None
        self._log_line(f"# open {url} {time.strftime('%Y-%m-%d %H:%M:%S')}")
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=_POLL,
                                               write_timeout=timeout)
        except (serial.SerialException, OSError, ValueError) as e:
            self._close_log()
            raise McutextError(f"cannot open {url}: {e}", hint=_HINT) from None
        if sync:
            try:
                self.sync()
            except BaseException:
                self.close()
                raise

    # --- plumbing -------------------------------------------------------------------------------
    def _log_line(self, line: str) -> None:
        if self._log:
            self._log.write(f"{time.monotonic():.3f} {line}\n")
            self._log.flush()

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def close(self) -> None:
        port = getattr(self, "_port", None)
        if port is not None:
            try:
                port.close()
            except Exception:
                pass
            self._port = None
        self._log_line("# close")
        self._close_log()

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, data: bytes) -> None:
        """Raw bytes to the device (tests use it to send garbage)."""
        import serial
        if self._port is None:
            raise McutextError(f"{self.url}: device is closed")
        self._log_line("> " + repr(data)[2:-1])
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as e:
            raise McutextError(f"lost the connection to {self.url} ({e})", hint=_HINT) from None

    def read_line(self, timeout: float | None = None) -> bytes:
        """One line without its terminator; McutextError on timeout or a vanished port."""
        import serial
        if self._port is None:
            raise McutextError(f"{self.url}: device is closed")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_REPLY_LINE:
                what = f"'{self._pending}'" if self._pending else "the host"
                self._buf = b""
                raise McutextError(f"{self.url}: the device sent a line of more than "
                                   f"{MAX_REPLY_LINE} bytes in reply to {what} (expected "
                                   "protocol lines, a few KB at most)", hint=_REPLY_HINT)
            if time.monotonic() > deadline:
                what = f" to '{self._pending}'" if self._pending else ""
                why = " (the device restarted meanwhile)" if self._restarted else ""
                raise McutextError(f"no answer from {self.url} within "
                                   f"{self.timeout if timeout is None else timeout:g} s"
                                   f"{what}{why}", hint=_HINT)
            try:
                chunk = self._port.read(max(1, self._port.in_waiting))
                if chunk and self._drain:
                    # socket:// reports at most 1 byte waiting: take the rest without waiting.
                    self._port.timeout = 0
                    try:
                        chunk += self._port.read(65536)
                    finally:
                        self._port.timeout = _POLL
            except (serial.SerialException, OSError) as e:
                what = f" while waiting for the answer to '{self._pending}'" \
                    if self._pending else ""
                raise McutextError(f"lost the connection to {self.url}{what} ({e})",
                                   hint=_HINT) from None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.rstrip(b"\r")
        self._log_line("< " + repr(line)[2:-1])
        return line

    def read_reply(self, timeout: float | None = None) -> list[bytes]:
        """Lines up to the final `ok` (not included); DeviceError on `error ...`. Lines that
        start with '#' are notices (e.g. the boot banner) and are skipped."""
        lines = []
        for _ in range(MAX_REPLY_LINES):
            line = self.read_line(timeout)
            if line.startswith(b"#"):
                if line.startswith(_BOOT_NOTICE) and self._synced:
                    self.boots += 1
                    self._restarted = True
                    self._log_line("# the device restarted")
                continue
            if line == b"ok":
                return lines
            if line == b"error" or line.startswith(b"error "):
                parts = line.split(b" ", 2)
                code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
                msg = parts[2].decode("ascii", "replace") if len(parts) > 2 else ""
                raise DeviceError(code, msg)
            lines.append(line)
        raise McutextError(f"{self.url}: the device sent more than {MAX_REPLY_LINES} lines in "
                           f"reply to '{self._pending}' (expected a final 'ok' or 'error' "
                           "line)", hint=_REPLY_HINT)

    def _reply(self, request: str, lines: list[bytes], shapes: dict[bytes, str]) -> _Reply:
        return _Reply(self.url, request, lines, shapes)

    def command(self, line: bytes | str, timeout: float | None = None) -> list[bytes]:
        if isinstance(line, str):   # surrogate escapes (argv) go as the bytes they stand for
            line = line.encode("utf-8", "surrogateescape")
        if b"\n" in line or b"\r" in line:
            raise McutextError("a command is one line (no CR or LF)")
        self._pending = "".join(c if c.isprintable() else " " for c in line[:40].decode(
            "utf-8", "replace")) + ("..." if len(line) > 40 else "")
        self._restarted = False
        self.write(line + b"\n")
        lines = self.read_reply(timeout)
        self._pending = ""
        return lines

    def sync(self, attempts: int = 3) -> None:
        """Ends any partial line, then pings with a fresh token and skips everything up to
        its answer (stale replies, errors caused by noise, the boot banner)."""
        last: McutextError | None = None
        self._pending = "ping"
        for _ in range(attempts):
            token = secrets.token_hex(4).encode()
            self.write(b"\n")
            self.write(b"ping " + token + b"\n")
            try:
                deadline = time.monotonic() + self.timeout
                while time.monotonic() < deadline:
                    line = self.read_line()
                    if line.startswith(_BOOT_NOTICE) and self._synced:
                        self.boots += 1
                    if line == b"pong " + token and self.read_line() == b"ok":
                        self._synced = True
                        self._pending = ""
                        return
            except McutextError as e:
                last = e
        raise last or McutextError(f"{self.url}: the device does not answer ping", hint=_HINT)

    # --- commands ------------------------------------------------------------------------------
    def ping(self) -> float:
        """Round trip in seconds."""
        t = time.monotonic()
        token = secrets.token_hex(4)
        lines = self.command(f"ping {token}")
        if lines != [f"pong {token}".encode()]:
            raise McutextError(f"{self.url}: the device sent {lines!r:.80} in reply to 'ping "
                               f"{token}' (expected 'pong {token}')", hint=_REPLY_HINT)
        return time.monotonic() - t

    def info(self) -> dict:
        info: dict = {"labels": []}
        with self._reply("info", self.command("info"), _INFO_SHAPES) as r:
            for line in r:
                key, _, rest = line.partition(b" ")
                k = key.decode("ascii", "replace").replace("-", "_")
                if key == b"label":
                    idx, name = _index_and_name(rest)
                    r.need(idx == len(info["labels"]) and bool(name),
                           f"'label {len(info['labels'])} <name>': the labels in order")
                    info["labels"].append(name)
                elif key == b"model":
                    info["model"] = unescape(rest).decode("utf-8", "replace")
                elif key == b"tokenizer":
                    info["tokenizer"] = {a.replace("-", "_"): b for a, b in
                                         _int_fields(rest.split()).items()}
                elif key in (b"flash", b"ram", b"stack"):
                    info[k] = _used_of(rest, "used", "budget")
                elif key in _INFO_INTEGERS:
                    info[k] = int(rest)
                elif rest.isdigit():
                    info[k] = int(rest)
                else:
                    info[k] = rest.decode("ascii", "replace")
            if info.get("protocol") != PROTOCOL_VERSION:
                raise McutextError(f"{self.url} speaks protocol {info.get('protocol')}; this "
                                   f"mcutext speaks protocol {PROTOCOL_VERSION}",
                                   hint="flash firmware built by this mcutext (`mcutext build`)")
            n = len(info["labels"])
            r.need(n >= 1, "a 'label <index> <name>' line per class")
            r.need(info.get("classes", n) == n,
                   f"'classes {info.get('classes')}' and {info.get('classes')} label lines, "
                   f"not {n}")
            r.need(16 <= info.get("line_max", 1024) <= 1 << 20, "'line-max <16 to 1048576>'")
        self._info = info
        return info

    def _text_line(self, verb: str, text: str | bytes) -> bytes:
        # A str from a command line may carry undecodable bytes as surrogate escapes: send
        # the original bytes (the device answers `error 7` if they are not UTF-8).
        data = (text.encode("utf-8", "surrogateescape") if isinstance(text, str)
                else bytes(text))
        # CR, LF and NUL end or break a line; all three are separators for the tokenizer,
        # so a space gives the same ids.
        data = data.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\0", b" ")
        info = self._info or self.info()
        head = verb.encode("utf-8", "surrogateescape")   # the line-max counts bytes
        room = info.get("line_max", 1024) - len(head) - 1
        if len(data) > room:
            tok = info.get("tokenizer", {})
            data = compact_text(data, tok.get("max_words", 1 << 30),
                                tok.get("max_word_bytes", 64))
            if len(data) > room:
                raise McutextError(f"text too long for the device: the words the model sees "
                                   f"take {len(data)} bytes, a line holds {max(room, 0)}",
                                   hint="shorten the text, its longest words or the label")
        return head + b" " + data


class HeadCommands(SerialLink):
    """The personalization commands: the learned head's state, labels, settings, export and
    import, training, and the owner's examples (docs/protocol.md)."""
    # --- personalization (docs/personalization.md) ----------------------------------------------
    def head_state(self) -> dict:
        """updates, personalized (0/1), rows, feature_dim, new_labels {used, budget}, config
        {lr, momentum, l2}, labels [{index, name, kind: factory|added|fresh}], storage."""
        res: dict = {"labels": []}
        with self._reply("head state", self.command("head state"), _STATE_SHAPES) as r:
            for line in r:
                key, _, rest = line.partition(b" ")
                k = key.decode("ascii", "replace").replace("-", "_")
                if key == b"label":
                    idx, name, kind = rest.split(b" ")
                    res["labels"].append({"index": int(idx),
                                          "name": unescape(name).decode("utf-8", "replace"),
                                          "kind": kind.decode("ascii", "replace")})
                elif key == b"config":
                    res["config"] = _config(rest)
                elif key in (b"new-labels", b"buffer"):
                    res[k] = _used_of(rest, "used", "budget")
                elif key in (b"updates", b"personalized", b"rows", b"feature-dim"):
                    res[k] = int(rest)
                elif b" of " in rest:
                    res[k] = _used_of(rest, "used", "budget")
                elif rest.isdigit():
                    res[k] = int(rest)
                else:
                    res[k] = rest.decode("ascii", "replace")
            r.line = None
            for key in ("updates", "personalized", "rows", "new_labels", "config"):
                r.need(key in res, "the 'updates', 'personalized', 'rows', 'new-labels' and "
                                   f"'config' lines (no '{key.replace('_', '-')}')")
        res["storage_info"] = parse_storage(res.get("storage", "none"))
        return res

    def _label_reply(self, request: str, lines: list[bytes]) -> int:
        with self._reply(request, lines, _LABEL_SHAPES) as r:
            for line in r:
                if line.startswith(b"label "):
                    return int(line.split(b" ")[1])
            raise r.bad("a 'label <index> <name>' line")

    def add_label(self, name: str) -> int:
        """A new label in a free reserved row; returns its row index."""
        return self._label_reply("label add", self.command(f"label add {name}"))

    def remove_label(self, name: str) -> None:
        self.command(f"label remove {name}")

    def rename_label(self, name: str, new_name: str) -> int:
        return self._label_reply("label rename",
                                 self.command(f"label rename {name} {new_name}"))

    def head_config(self, lr: float | None = None, momentum: float | None = None,
                    l2: float | None = None) -> dict:
        """Sets the update rule's parameters (those given); returns {lr, momentum, l2} as the
        device has them. Values go as decimals (at most 7 significant digits, 9 decimals):
        the device takes the float32 nearest to each, as numpy.float32 does."""
        import numpy as np
        parts = []
        for key, v in (("lr", lr), ("momentum", momentum), ("l2", l2)):
            if v is not None:
                parts.append(f"{key} {np.format_float_positional(np.float32(v), trim='-')}")
        lines = self.command(" ".join(["head config"] + parts))
        with self._reply("head config", lines, _STATE_SHAPES) as r:
            for line in r:
                if line.startswith(b"config "):
                    return _config(line.partition(b" ")[2])
            raise r.bad("a 'config lr <x> momentum <x> l2 <x>' line")

    def export_head(self) -> bytes:
        """The learned head as the blob of docs/personalization.md (HeadSimulator.load_blob
        reads it); the CRC-32 inside is checked here."""
        size, data = None, b""
        with self._reply("head export", self.command("head export"), _EXPORT_SHAPES) as r:
            for line in r:
                key, _, rest = line.partition(b" ")
                if key == b"blob":
                    size = int(rest)
                elif key == b"data":
                    off, hx = rest.split(b" ")
                    r.need(int(off) == len(data), f"'data {len(data)} <hex>': the pieces in "
                                                  "order")
                    data += bytes.fromhex(hx.decode("ascii"))
            r.line = None
            r.need(size is not None and len(data) == size and len(data) >= 8
                   and zlib.crc32(data[:-4]) == struct.unpack_from("<I", data, len(data) - 4)[0],
                   f"'blob <size>' and data lines of that many bytes ending in their CRC-32; "
                   f"got {len(data)} bytes for a blob of {size}")
        return data

    def import_head(self, blob: bytes, chunk: int = 64) -> int:
        """Loads a blob from export_head() (or HeadSimulator.blob()); the device validates it
        whole and changes nothing when it is damaged or made for another model. Returns the
        update count it holds."""
        room = ((self._info or self.info()).get("line_max", 1024) - 40) // 2
        chunk = max(1, min(chunk, room))
        for off in range(0, len(blob), chunk):
            self.command(f"head import {off} {blob[off:off + chunk].hex()}")
        lines = self.command(f"head import end {len(blob)}")
        with self._reply("head import end", lines, _UPDATES_SHAPES) as r:
            for line in r:
                if line.startswith(b"updates "):
                    return int(line.split(b" ", 1)[1])
            raise r.bad("an 'updates <count>' line")

    def reset_head(self) -> None:
        """Back to the factory head (added labels gone, update count 0)."""
        self.command("head reset")

    def save_head(self, timeout: float | None = None) -> dict:
        """`head save`: the head to the board's storage, atomically. Returns {seq, bytes} of
        the save (and the counts). No storage, or a failed write: DeviceError code 9 (the
        previous save stays)."""
        res: dict = {}
        with self._reply("head save", self.command("head save", timeout=timeout),
                         {b"saved": "'saved seq <n> bytes <n>'", b"cost": _COST}) as r:
            for ln in r:
                f = ln.decode("ascii", "replace").split()
                if f and f[0] == "saved":
                    res.update(_int_fields(f[1:]))
                elif f and f[0] == "cost":
                    _cost(res, f[1:])
            r.line = None
            r.need("seq" in res and "bytes" in res, "a 'saved seq <n> bytes <n>' line")
        return res

    def train_head(self, epochs: int, timeout: float | None = None) -> dict:
        """`head train EPOCHS`: SGD epochs on the device over its buffered examples (the last
        learned ones, oldest first). Returns epochs [{epoch, loss (float32), correct, of}],
        updates, and the counts."""
        res: dict = {"epochs": []}
        with self._reply("head train", self.command(f"head train {epochs}", timeout=timeout),
                         _TRAIN_SHAPES) as r:
            for ln in r:
                f = ln.decode("ascii", "replace").split()
                if f and f[0] == "epoch":
                    r.need(len(f) == 9 and (f[2], f[5], f[7]) == ("loss", "correct", "of"),
                           _TRAIN_SHAPES[b"epoch"])
                    res["epochs"].append({"epoch": int(f[1]),
                                          "loss": _f32_from_hex(f[4].encode()),
                                          "correct": int(f[6]), "of": int(f[8])})
                elif f and f[0] == "updates":
                    res["updates"] = int(f[1])
                elif f and f[0] == "cost":
                    _cost(res, f[1:])
        return res

    def evaluate(self, label: str, text: str | bytes, retries: int = 2) -> dict:
        """`eval`: classifies a labelled example without learning. Returns predicted,
        predicted_index, correct (bool), loss (float32: the float head's cross-entropy) and
        the device's running tally {used: correct, budget: total} since `eval reset`."""
        res: dict = {}
        with self._reply("eval", self._send_framed("eval", label, text, retries),
                         _EXAMPLE_SHAPES) as r:
            for ln in r:
                key, _, rest = ln.partition(b" ")
                if key == b"predicted":
                    res["predicted_index"], res["predicted"] = _index_and_name(rest)
                elif key == b"correct":
                    res["correct"] = rest == b"1"
                elif key == b"loss":
                    res["loss"] = _f32_from_hex(rest.split()[1])
                elif key == b"tally":
                    res["tally"] = _used_of(rest, "correct", "total")
            r.line = None
            r.need("correct" in res and "predicted" in res,
                   "'predicted <index> <name>' and 'correct 0|1' lines")
        return res

    def eval_reset(self) -> None:
        self.command("eval reset")

    def keep(self, label: str, text: str | bytes, retries: int = 2) -> dict:
        """`keep`: the example's features go to the device's buffer, no step (for
        `head imprint` / `head train`). Returns label_index and buffer {used, budget}."""
        res: dict = {}
        with self._reply("keep", self._send_framed("keep", label, text, retries),
                         _EXAMPLE_SHAPES) as r:
            for ln in r:
                key, _, rest = ln.partition(b" ")
                if key == b"kept":
                    res["label_index"] = int(rest.split(b" ")[0])
                elif key == b"buffer":
                    res["buffer"] = _used_of(rest, "used", "budget")
            r.line = None
            r.need("label_index" in res, "a 'kept <index> <name>' line")
        return res

    def imprint(self) -> dict:
        """`head imprint`: each added label with kept examples gets the imprint of their mean
        direction. Returns imprinted {label: examples} and updates."""
        res: dict = {"imprinted": {}}
        with self._reply("head imprint", self.command("head imprint"), _TRAIN_SHAPES) as r:
            for ln in r:
                key, _, rest = ln.partition(b" ")
                if key == b"imprinted":
                    _idx, name, word, n = rest.split(b" ")
                    r.need(word == b"examples", _TRAIN_SHAPES[b"imprinted"])
                    res["imprinted"][unescape(name).decode("utf-8", "replace")] = int(n)
                elif key == b"updates":
                    res["updates"] = int(rest)
        return res

    def _send_framed(self, verb: str, label: str, text: str | bytes, retries: int) -> list:
        """`<verb> <crc32> LABEL<TAB>text`, sent again after a CRC error (error 8)."""
        if "\t" in label or "\n" in label or "\r" in label:
            raise McutextError(f"label {label!r}: no TAB, CR or LF in a label")
        prefix = f"{verb} 00000000 " + label
        line = self._text_line(prefix, text)       # compacts long texts, checks the room
        name = label.encode("utf-8", "surrogateescape")
        payload = name + b"\t" + line[len(prefix.encode("utf-8", "surrogateescape")) + 1:]
        framed = f"{verb} {zlib.crc32(payload):08x} ".encode() + payload
        for attempt in range(retries + 1):
            try:
                return self.command(framed)
            except DeviceError as e:
                if e.code != 8 or attempt == retries:
                    raise
        raise AssertionError("unreachable")

    def learn(self, label: str, text: str | bytes, retries: int = 2) -> dict:
        """One on-device SGD step of the head on (text, label). Returns loss (float32, exact),
        predicted (the label classify gave before the step), predicted_index, updates, and
        the counts (res[unit] = {tokenizer, model, step}). The line carries a CRC-32 of its
        payload; a corrupted line is refused by the device (error 8) and sent again."""
        res: dict = {}
        with self._reply("learn", self._send_framed("learn", label, text, retries),
                         _EXAMPLE_SHAPES) as r:
            for ln in r:
                key, _, rest = ln.partition(b" ")
                if key == b"loss":
                    res["loss"] = _f32_from_hex(rest.split()[1])
                elif key == b"predicted":
                    res["predicted_index"], res["predicted"] = _index_and_name(rest)
                elif key == b"learned":
                    res["label_index"] = int(rest.split(b" ")[0])
                elif key == b"updates":
                    res["updates"] = int(rest)
                elif key == b"cost":
                    _cost(res, rest.decode("ascii", "replace").split())
            r.line = None
            r.need("loss" in res and "updates" in res and "predicted" in res,
                   "'loss <value> <bits>', 'predicted <index> <name>' and 'updates <n>' lines")
        return res


class Device(HeadCommands):
    """The host side of the serial protocol (docs/protocol.md): classify, explain and stats,
    on top of the session (SerialLink) and the personalization commands (HeadCommands)."""
    def _parse_result(self, request: str, lines: list[bytes]) -> dict:
        res: dict = {"attribution": []}
        classes = len((self._info or {}).get("labels", ())) or None
        with self._reply(request, lines, _RESULT_SHAPES) as r:
            for line in r:
                key, _, rest = line.partition(b" ")
                if key == b"label":
                    res["label_index"], res["label"] = _index_and_name(rest)
                elif key == b"scores":
                    res["scores"] = [int(v) for v in rest.split()]
                    r.need(all(-128 <= v <= 127 for v in res["scores"]),
                           "'scores' of int8 values")
                elif key == b"logits":
                    res["logits"] = [float(v) for v in rest.split()]
                elif key == b"words":
                    res["words"] = int(rest)
                elif key == b"cost":
                    # "cost <unit> tokenizer N model M": res["unit"], res[unit] = {...}
                    _cost(res, rest.decode("ascii", "replace").split())
                elif key == b"head":
                    # personalized firmware, after the first update: the float head's scores,
                    # one per row ("-" for a row that is not scored)
                    res["head"] = [None if v == b"-" else float(v) for v in rest.split()]
                elif key == b"head-bits":
                    res["head_bits"] = [_f32_from_hex(v) for v in rest.split()]
                elif key == b"ops":
                    # profiling builds: "ops <unit> N0 N1 ...", one count per kernel call
                    res["ops"] = [int(v) for v in rest.split()[1:]]
                elif key == b"word":
                    # "word <index> <int8 attention> <dequantized> <word>"
                    i, att, weight, word = rest.split(b" ", 3)
                    r.need(int(i) == len(res["attribution"]) and -128 <= int(att) <= 127,
                           f"'word {len(res['attribution'])} <int8 attention> <weight> "
                           "<word>': the words in order")
                    res["attribution"].append({"word": unescape(word).decode("utf-8",
                                                                             "replace"),
                                               "attention": int(att), "weight": float(weight)})
            r.line = None
            # explain's caller turns the logits into probabilities; classify's needs the scores
            need = ("label", "scores", "logits") if request == "explain" else ("label", "scores")
            for key in need:
                r.need(key in res, f"{', '.join(need)} lines (no '{key}')")
            n = classes or len(res["scores"])
            got = [len(res["scores"])] + ([len(res["logits"])] if "logits" in res else [])
            r.need(all(k == n for k in got), f"{n} int8 scores (and logits), one per class; "
                                             f"got {' and '.join(map(str, got))}")
            rows = len(res["head"]) if "head" in res else n
            r.need(0 <= res["label_index"] < rows,
                   f"'label <index> <name>' with an index below {rows}")
        return res

    def classify(self, text: str | bytes) -> dict:
        """label, label_index, scores (int8 logits), logits (dequantized), words, unit and the
        counts: res[unit] = {"tokenizer": n, "model": m}, unit "instructions" (QEMU) or
        "cycles" (silicon)."""
        res = self._parse_result("classify", self.command(self._text_line("classify", text)))
        res.pop("attribution")
        return res

    def explain(self, text: str | bytes) -> dict:
        """classify() plus attribution: [{word (as the model saw it), attention (int8),
        weight (dequantized)}] in the order of the words."""
        return self._parse_result("explain", self.command(self._text_line("explain", text)))

    def stats(self) -> dict:
        """Since boot: stack high-water mark {used, budget}, request lines answered
        (`requests`), of which answered with an error (`failed`), texts classified
        (`classified`)."""
        res: dict = {}
        with self._reply("stats", self.command("stats"), {}) as r:
            for line in r:
                key, _, rest = line.decode("ascii", "replace").partition(" ")
                if " of " in rest:
                    res[key] = _used_of(rest.encode(), "used", "budget")
                elif rest.isdigit():
                    res[key] = int(rest)
                else:
                    res[key] = rest
        return res


def _used_of(rest: bytes, first: str, second: str) -> dict:
    """`<a> of <b>` (a `used ... of ...` line of the protocol) -> {first: a, second: b}."""
    a, of, b = rest.partition(b" of ")
    if not of:
        raise ValueError("'<a> of <b>' expected")
    return {first: int(a), second: int(b)}


def _config(rest: bytes) -> dict:
    """`lr <x> momentum <x> l2 <x>` -> {lr, momentum, l2}."""
    f = rest.decode("ascii", "replace").split()
    cfg = {a: float(b) for a, b in zip(f[::2], f[1::2])}
    if len(f) != 6 or set(cfg) != {"lr", "momentum", "l2"}:
        raise ValueError("lr, momentum and l2 expected")
    return cfg


# The shape of each data line, by its first word, for the error naming a malformed one.
_INFO_INTEGERS = (b"protocol", b"classes", b"seq-len", b"feature-dim", b"line-max", b"arena",
                  b"weights", b"macs", b"profile")
_INFO_SHAPES = {b"label": "'label <index> <name>'", b"model": "'model <name>'",
                b"tokenizer": "'tokenizer <key> <integer> ...'",
                **{k: f"'{k.decode()} <used> of <budget>'" for k in (b"flash", b"ram", b"stack")},
                **{k: f"'{k.decode()} <integer>'" for k in _INFO_INTEGERS}}
_RESULT_SHAPES = {b"label": "'label <index> <name>'", b"scores": "'scores <int8> ...'",
                  b"logits": "'logits <number> ...'", b"words": "'words <count>'",
                  b"cost": _COST, b"head": "'head <number or -> ...'",
                  b"head-bits": "'head-bits <8 hex digits> ...'", b"ops": "'ops <unit> <n> ...'",
                  b"word": "'word <index> <int8 attention> <weight> <word>'"}
_STATE_SHAPES = {b"label": "'label <index> <name> factory|added|fresh'",
                 b"config": "'config lr <x> momentum <x> l2 <x>'",
                 **{k: f"'{k.decode()} <integer>'"
                    for k in (b"updates", b"personalized", b"rows", b"feature-dim")},
                 **{k: f"'{k.decode()} <used> of <budget>'" for k in (b"new-labels", b"buffer")}}
_LABEL_SHAPES = {b"label": "'label <index> <name>'"}
_EXPORT_SHAPES = {b"blob": "'blob <size>'", b"data": "'data <offset> <hex>'"}
_UPDATES_SHAPES = {b"updates": "'updates <count>'"}
_TRAIN_SHAPES = {b"epoch": "'epoch <k> loss <mean> <bits> correct <n> of <m>'",
                 b"imprinted": "'imprinted <index> <name> examples <n>'",
                 b"updates": "'updates <count>'", b"cost": _COST}
_EXAMPLE_SHAPES = {b"loss": "'loss <value> <8 hex digits>'",
                   b"predicted": "'predicted <index> <name>'", b"learned": "'learned <index> <name>'",
                   b"kept": "'kept <index> <name>'", b"buffer": "'buffer <used> of <budget>'",
                   b"tally": "'tally <correct> of <evaluated>'", b"updates": "'updates <count>'",
                   b"correct": "'correct 0|1'", b"cost": _COST}


def parse_storage(value: str) -> dict:
    """The `storage` line of `head state`: {"kind": "none"} or {kind, region, seq, bytes,
    boot, unsaved} (docs/protocol.md)."""
    f = value.split()
    if not f or f[0] == "none":
        return {"kind": "none"}
    res: dict = {"kind": f[0]}
    for a, b in zip(f[1::2], f[2::2]):
        res[a] = int(b) if b.isdigit() else b
    return res
