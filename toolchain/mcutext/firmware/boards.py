"""Boards: every folder boards/<name>/ with a board.toml is a board.

board.toml is the single source of a board's facts (cpu, fpu, memory, UART, counter, QEMU
machine, pyOCD target, build flags); nothing here knows any board by name. The folder also
holds the linker script, the startup code and board.c (see docs/boards.md).

MCUTEXT_BOARDS_DIR points at another folder of boards (tests use it for made-up boards).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path

from ..common.errors import McutextError

BOARD_FILE = "board.toml"
PROJECT_ROOT = Path(__file__).resolve().parents[3]
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_FPUS = {"none", "fpv4-sp-d16", "fpv5-sp-d16", "fpv5-d16", "auto"}
# Cores whose -mcpu includes the DSP extension (SMLAD & co.) in gcc; board.toml's `dsp` key
# overrides (e.g. a Cortex-M33 built without it).
_DSP_CPUS = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85")


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    path: Path
    description: str
    cpu: str
    fpu: str
    float_abi: str
    dsp: bool
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    stack_bytes: int
    uart: dict
    counter: dict
    qemu_machine: str | None
    icount_shift: int | None
    pyocd_target: str | None
    linker_script: Path
    sources: tuple[Path, ...]
    cflags: tuple[str, ...]
    opt: str
    vectors: dict = dataclasses.field(default_factory=dict)

    @property
    def ticks_per_instruction(self) -> float | None:
        """Timer ticks per guest instruction under QEMU -icount shift=N (hz x 2^N / 10^9);
        None for a board QEMU does not run."""
        if not (self.qemu_machine and self.counter_hz):
            return None
        return self.counter_hz * (1 << self.icount_shift) / 1e9

    @property
    def counter_hz(self) -> int | None:
        hz = self.counter.get("hz")
        return int(hz) if hz is not None else None

    def cpu_flags(self) -> list[str]:
        """The -mcpu/-mfpu/-mfloat-abi flags for compiling and linking."""
        flags = [f"-mcpu={self.cpu}", "-mthumb"]
        if self.fpu == "none":
            flags.append("-mfloat-abi=soft")
        else:
            flags += [f"-mfpu={self.fpu}", f"-mfloat-abi={self.float_abi}"]
        return flags

    def summary(self) -> dict:
        return {
            "name": self.name, "description": self.description, "cpu": self.cpu,
            "fpu": self.fpu, "dsp": self.dsp, "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "stack_bytes": self.stack_bytes, "qemu_machine": self.qemu_machine,
            "icount_shift": self.icount_shift, "pyocd_target": self.pyocd_target,
            "uart": self.uart.get("peripheral"), "path": str(self.path),
        }


def boards_dir() -> Path:
    env = os.environ.get("MCUTEXT_BOARDS_DIR")
    return Path(env) if env else PROJECT_ROOT / "boards"


def _int(d: dict, key: str, where: str, minimum: int = 0) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise McutextError(f"{where}: '{key}' must be an integer >= {minimum}, got {v!r}")
    return v


def _str(d: dict, key: str, where: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str) or not v:
        raise McutextError(f"{where}: '{key}' must be a non-empty string, got {v!r}")
    return v


def load_board(path: Path) -> Board:
    """Reads and checks boards/<name>/board.toml."""
    path = Path(path)
    toml_path = path / BOARD_FILE
    where = str(toml_path)
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise McutextError(f"{path}: not a board (no {BOARD_FILE})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise McutextError(f"{where}: not valid TOML ({e})") from None

    name = path.name
    if not _NAME.match(name):
        raise McutextError(f"{path}: board folder names use a-z, 0-9, '.', '_', '-'")
    cpu = _str(data, "cpu", where)
    fpu = _str(data, "fpu", where, "none")
    if fpu not in _FPUS:
        raise McutextError(f"{where}: fpu must be one of {', '.join(sorted(_FPUS))}, got {fpu!r}")
    float_abi = _str(data, "float_abi", where, "soft" if fpu == "none" else "hard")
    dsp = data.get("dsp", cpu in _DSP_CPUS and "+nodsp" not in cpu)
    if not isinstance(dsp, bool):
        raise McutextError(f"{where}: 'dsp' must be true or false, got {dsp!r}")
    mem = data.get("memory")
    if not isinstance(mem, dict):
        raise McutextError(f"{where}: missing [memory] table")
    mwhere = f"{where} [memory]"
    flash_bytes = _int(mem, "flash_bytes", mwhere, 1)
    ram_bytes = _int(mem, "ram_bytes", mwhere, 1)
    stack_bytes = _int(mem, "stack_bytes", mwhere, 256)
    if stack_bytes % 8:
        raise McutextError(f"{mwhere}: stack_bytes must be a multiple of 8")

    qemu = data.get("qemu") or {}
    machine = qemu.get("machine")
    shift = None
    if machine is not None:
        machine = _str(qemu, "machine", f"{where} [qemu]")
        shift = qemu.get("icount_shift", 6)
        if not isinstance(shift, int) or not 0 <= shift <= 10:
            raise McutextError(f"{where} [qemu]: icount_shift must be an integer in [0, 10]")
    pyocd = data.get("pyocd") or {}
    build = data.get("build") or {}
    linker = path / _str(build, "linker_script", f"{where} [build]", "link.ld")
    if not linker.is_file():
        raise McutextError(f"{where}: linker script {linker.name} not found in {path}")
    src_names = build.get("sources")
    if src_names is None:
        sources = tuple(sorted(path.glob("*.c")))
    else:
        if not isinstance(src_names, list) or not all(isinstance(s, str) for s in src_names):
            raise McutextError(f"{where} [build]: sources must be a list of file names")
        sources = tuple(path / s for s in src_names)
    for s in sources:
        if not s.is_file():
            raise McutextError(f"{where} [build]: source {s.name} not found in {path}")
    cflags = build.get("cflags", [])
    if not isinstance(cflags, list) or not all(isinstance(f, str) for f in cflags):
        raise McutextError(f"{where} [build]: cflags must be a list of strings")
    counter = data.get("counter") or {}
    if "hz" in counter:
        _int(counter, "hz", f"{where} [counter]", 1)
    vectors = _vectors(data.get("vectors"), f"{where} [vectors]")
    return Board(
        name=name, path=path, description=str(data.get("description", name)), cpu=cpu,
        fpu=fpu, float_abi=float_abi, dsp=dsp,
        flash_origin=_int(mem, "flash_origin", mwhere), flash_bytes=flash_bytes,
        ram_origin=_int(mem, "ram_origin", mwhere), ram_bytes=ram_bytes,
        stack_bytes=stack_bytes, uart=dict(data.get("uart") or {}), counter=dict(counter),
        qemu_machine=machine, icount_shift=shift,
        pyocd_target=pyocd.get("target"), linker_script=linker, sources=sources,
        cflags=tuple(cflags), opt=str(build.get("opt", "-O2")), vectors=vectors,
    )


# [vectors]: what the shared start-up (boards/common/startup.c) needs to know of a board
_VECTOR_HANDLERS = ("nmi", "hardfault", "debugmon", "systick")
_C_IDENT = re.compile(r"^[A-Za-z_]\w*$")


def _vectors(table, where: str) -> dict:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise McutextError(f"{where}: must be a table")
    unknown = sorted(set(table) - {"irqs", *_VECTOR_HANDLERS})
    if unknown:
        raise McutextError(f"{where}: unknown key(s) {', '.join(unknown)} (known: irqs, "
                           f"{', '.join(_VECTOR_HANDLERS)})")
    out = {"irqs": _int(table, "irqs", where, 0)}
    if out["irqs"] > 480:
        raise McutextError(f"{where}: irqs must be at most 480 (the NVIC's limit), got "
                           f"{out['irqs']}")
    for k in _VECTOR_HANDLERS:
        if k in table:
            v = table[k]
            if not isinstance(v, str) or not _C_IDENT.match(v):
                raise McutextError(f"{where}: '{k}' must name a C function, got {v!r}")
            out[k] = v
    return out


def board_names() -> list[str]:
    d = boards_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / BOARD_FILE).is_file())


def list_boards() -> list[Board]:
    return [load_board(boards_dir() / n) for n in board_names()]


def get_board(name: str | Board | None) -> Board:
    """The board called `name`; an unknown name raises McutextError listing the known ones."""
    if isinstance(name, Board):
        return name
    known = board_names()
    if not name:
        raise McutextError("no board given",
                           hint=f"pass --board or set MCUTEXT_BOARD (one of: {', '.join(known)})")
    if name not in known:
        raise McutextError(f"unknown board '{name}' (known boards: {', '.join(known) or 'none'})",
                           hint=f"boards are the folders of {boards_dir()} holding a {BOARD_FILE}")
    return load_board(boards_dir() / name)
