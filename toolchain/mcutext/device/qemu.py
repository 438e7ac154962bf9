"""Boot a firmware ELF in qemu-system-arm with the board's UART on a TCP socket.

    with qemu.boot(elf, "netduinoplus2") as url:     # socket://127.0.0.1:PORT (pyserial)
        dev = Device(url)

    vm = qemu.Qemu(elf, "microbit"); vm.start(); ...; vm.stop()   # or `with Qemu(...) as vm`

The listening socket is bound here (a free port on 127.0.0.1) and handed to QEMU as an open
file descriptor, so there is no window in which another process can take the port and a
client may connect as soon as `boot` returns. QEMU runs with -icount shift=N from board.toml:
each guest instruction advances virtual time by 2^N ns, which makes the firmware's timer
readings exact instruction counts (docs/boards.md). The socket has TCP_NODELAY (nodelay=on):
the UART sends a reply byte by byte, and Nagle's algorithm would hold its later lines back
until the client's delayed ACK (~40 ms per exchange). The context manager always stops QEMU.

Semihosting is always on: the firmware asks for its command line at boot, and with
`storage=PATH` that line names a host file that holds the learned head across restarts
(firmware/storage_semihost.c; docs/personalization.md). Without it the board has no storage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from ..firmware.boards import Board, get_board, list_boards
from ..common.errors import McutextError

QEMU = "qemu-system-arm"


STORAGE_CMDLINE_PREFIX = "mcutext-storage"  # firmware/storage_semihost.h


def semihosting_config(storage: Path | None) -> str:
    cfg = "enable=on,target=native"
    if storage is not None:
        # QEMU joins the arg= values with spaces into the semihosting command line; a comma
        # in an option value is written twice
        path = str(Path(storage).resolve()).replace(",", ",,")
        cfg += f",arg={STORAGE_CMDLINE_PREFIX},arg={path}"
    return cfg


def qemu_command(board: Board, elf: Path, chardev_fd: int,
                 storage: Path | None = None, pace: int | None = None) -> list[str]:
    # pace=N: -icount shift=N,align=on, the guest never runs ahead of real time at 2^N ns
    # per instruction, so a stretch of firmware lasts a known minimum of wall-clock time
    # (tests that cut a save in the middle). The firmware's instruction counts assume the
    # board's own shift: they are wrong in a paced run.
    icount = (f"shift={pace},align=on" if pace is not None
              else f"shift={board.icount_shift}")
    return [QEMU, "-M", board.qemu_machine, "-display", "none", "-monitor", "none",
            "-icount", icount,
            "-chardev", f"socket,id=uart0,fd={chardev_fd},server=on,wait=off,nodelay=on",
            "-serial", "chardev:uart0",
            "-semihosting-config", semihosting_config(storage), "-kernel", str(elf)]


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int):
    """A preexec_fn: the child gets SIGKILL when the process that started it ends, however it
    ends (SIGKILL included), so no QEMU outlives `mcutext run` or a test and holds its port.
    The parent may already be gone between fork and prctl: then the child ends itself."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(1)
    return preexec


def popen(cmd: list[str], **kw) -> subprocess.Popen:
    """subprocess.Popen for QEMU: in its own session (a Ctrl-C on the terminal reaches only
    mcutext, which stops QEMU itself) and, on Linux, killed when its parent dies.

    PR_SET_PDEATHSIG fires when the thread that forked the child exits: start QEMU from the
    main thread or from a thread that outlives it."""
    if sys.platform.startswith("linux"):
        kw["preexec_fn"] = _die_with_parent(os.getpid())
    return subprocess.Popen(cmd, start_new_session=True, **kw)


class Qemu:
    """One running QEMU. Use `boot()`; `stop()` (or leaving the `with`) ends it."""

    def __init__(self, elf: str | Path, board: str | Board, log_path: str | Path | None = None,
                 storage: str | Path | None = None, pace: int | None = None):
        self.elf = Path(elf)
        self.pace = pace
        self.storage = Path(storage) if storage is not None else None
        self.board = get_board(board)
        if not self.board.qemu_machine:
            emulated = [b.name for b in list_boards() if b.qemu_machine]
            raise McutextError(f"board '{self.board.name}' has no QEMU machine",
                               hint=f"boards that run under QEMU: {', '.join(emulated)}; "
                                    f"flash a real {self.board.name} with `mcutext flash`")
        if not self.elf.is_file():
            raise McutextError(f"{self.elf}: no such firmware file")
        from ..firmware.build import check_elf_board
        check_elf_board(self.elf, self.board)   # another board's ELF boots and never answers
        self.log_path = Path(log_path) if log_path else self.elf.with_name("qemu.log")
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> str:
        if shutil.which(QEMU) is None:
            raise McutextError(f"{QEMU} not found", hint="install qemu-system-arm (`make setup`)")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            cmd = qemu_command(self.board, self.elf, fd, self.storage, self.pace)
            if self.storage is not None:
                self.storage.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "wb") as log:
                log.write((" ".join(cmd) + "\n").encode())
                log.flush()
                self.process = popen(cmd, pass_fds=[fd], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        finally:
            listener.close()  # QEMU holds its own copy; when it exits, connects are refused
        # A bad machine name or ELF makes QEMU exit at once: report it rather than a refused
        # connection later.
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-10:]
                raise McutextError(f"QEMU exited at start (code {self.process.returncode}):\n"
                                   + "\n".join(tail))
            time.sleep(0.02)
        return self.url

    def kill(self) -> None:
        """Ends QEMU at once (SIGKILL), as a power cut would: whatever the firmware was
        writing stops where it was."""
        p = self.process
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(timeout=3)

    def stop(self) -> None:
        p = self.process
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=3)

    def wait(self) -> int:
        """Blocks until QEMU exits (Ctrl-C raises KeyboardInterrupt; stop() afterwards)."""
        assert self.process is not None
        return self.process.wait()

    def __enter__(self) -> "Qemu":
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):
        try:
            self.stop()
        except Exception:
            pass


@contextlib.contextmanager
def boot(elf: str | Path, board: str | Board, log_path: str | Path | None = None,
         storage: str | Path | None = None) -> Iterator[str]:
    """Starts QEMU on `elf` and yields the pyserial URL of the board's UART; QEMU is stopped
    when the block ends, however it ends. storage: the host file of the board's storage."""
    vm = Qemu(elf, board, log_path=log_path, storage=storage)
    try:
        yield vm.start()
    finally:
        vm.stop()


def available() -> bool:
    return shutil.which(QEMU) is not None and os.name == "posix"


def classify_over_uart(elf: str | Path, board: str, texts: list[str],
                       timeout: float = 30.0) -> list[tuple[str, list[int], int]]:
    """Boots the example firmware `elf` in QEMU (the board's machine) and sends it `texts`,
    one line each: its answers as (label, int8 scores, words)."""
    import serial

    out = []
    with Qemu(elf, board) as vm:
        port = serial.serial_for_url(vm.url, timeout=timeout)
        try:
            for text in texts:
                port.write(text.encode("utf-8") + b"\n")
                line = port.readline()
                while line.startswith(b"ready "):     # the banner, if the client was quick
                    line = port.readline()
                if not line.endswith(b"\n"):
                    raise McutextError(f"{board}: the example firmware gave no answer to "
                                       f"{text[:60]!r} ({line!r})")
                label, scores, words = line.decode("utf-8", "replace").rstrip("\n").split("\t")
                out.append((label, [int(s) for s in scores.split()], int(words)))
        finally:
            port.close()
    return out
