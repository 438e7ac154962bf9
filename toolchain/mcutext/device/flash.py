"""Flash a firmware ELF onto a real board with pyOCD (CMSIS-DAP, ST-LINK, J-Link probes).

    pyocd flash --target <board.toml [pyocd] target> firmware.elf

pyOCD is an optional dependency (`pip install 'mcutext[flash]'`).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from ..firmware.boards import Board, get_board, list_boards
from ..common.errors import McutextError

_NO_PROBE = ("no available debug probe", "no connected debug probe", "no probe",
             "unable to open probe", "no matching probe")


def pyocd_command() -> list[str]:
    if importlib.util.find_spec("pyocd") is not None:
        return [sys.executable, "-m", "pyocd"]
    exe = shutil.which("pyocd")
    if exe:
        return [exe]
    raise McutextError("pyOCD is not installed",
                       hint="pip install 'mcutext[flash]' (or `pip install pyocd`)")


def flash_command(elf: Path, board: Board, probe: str | None = None) -> list[str]:
    cmd = pyocd_command() + ["flash", "--target", board.pyocd_target]
    if probe:
        cmd += ["--uid", probe]
    return cmd + [str(elf)]


def flash(elf: str | Path, board: str | Board, probe: str | None = None) -> dict:
    """Programs `elf` into the board's flash and resets it."""
    elf = Path(elf)
    board = get_board(board)
    if not board.pyocd_target:
        flashable = [b.name for b in list_boards() if b.pyocd_target]
        hint = f"boards with a pyOCD target: {', '.join(flashable)}"
        if board.qemu_machine:
            hint += f"; run {board.name} in QEMU with `mcutext run --board {board.name}`"
        raise McutextError(f"board '{board.name}' has no pyOCD target in its board.toml",
                           hint=hint)
    if not elf.is_file():
        raise McutextError(f"{elf}: no such firmware file",
                           hint=f"build one with `mcutext build BUNDLE --board {board.name}`")
    from ..firmware.build import check_elf_board
    check_elf_board(elf, board)
    cmd = flash_command(elf, board, probe)
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = (p.stdout + p.stderr).strip()
    if p.returncode != 0:
        low = out.lower()
        tail = "\n".join(out.splitlines()[-8:])
        if any(s in low for s in _NO_PROBE):
            raise McutextError(f"no debug probe found to flash {board.name}",
                               hint="connect the board's USB debug port (ST-LINK / CMSIS-DAP); "
                                    "on Linux install pyOCD's udev rules; `pyocd list` shows "
                                    "the probes it sees")
        if "target type" in low or "not recognized" in low or "pack" in low:
            raise McutextError(f"pyOCD does not know target '{board.pyocd_target}':\n{tail}",
                               hint=f"pyocd pack install {board.pyocd_target}")
        raise McutextError(f"pyocd flash failed (exit {p.returncode}):\n{tail}")
    return {"board": board.name, "elf": str(elf), "target": board.pyocd_target,
            "command": cmd, "output": out}
