"""Firmware: bundle + board -> one ELF (arm-none-eabi-gcc), with flash and RAM against the budget.

The output folder is beside the bundle: for build/sst2/bundle (what `mcutext train` writes)
it is build/sst2/<board>/; for a bundle folder of another name, <its folder>-<board>/ next to
it (default_out_dir):

    build/sst2/<board>/gen/           the generated model (mcutext.codegen)
    build/sst2/<board>/obj/           objects and -fstack-usage reports
    build/sst2/<board>/memory.ld      MEMORY from board.toml (INCLUDEd by link.ld)
    build/sst2/<board>/firmware.elf   (+ firmware.map, firmware.json: the build report)
    build/sst2/<board>/build.stamp    what the ELF was built from (build(reuse=True))

(<board>-portable/, <board>-profile/ for the variants.) Flash = the loadable sections (vector
table, code, read-only data, the .data image); RAM = .data + .bss + the stack reserve. A model
that does not fit is refused with the overshoot in bytes, and so is one whose worst-case stack
(mcutext.firmware.stack: -fstack-usage + the call graph) exceeds the board's stack_bytes. The firmware
uses no heap: a build that links malloc (or any other allocator or stdio entry point) is
refused too. The report splits the flash by group (core, kernels, model, board, libc) from the
linker map, and gives the worst-case stack with its deepest call chain.

A build is written to a hidden staging folder beside its output folder and published by
renaming its files into place only when every check passed: a build that fails (a model that
does not fit, a stack that cannot be bounded, a compiler error, Ctrl-C) leaves the output
folder as it was. Publishing replaces the files of an older build (gen/, obj/, firmware.*,
memory.ld) and nothing else in the folder.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

from ..common.version import __version__
from . import stack
from .boards import PROJECT_ROOT, Board, get_board
from ..common.errors import McutextError
from ..common.outputs import staging

FIRMWARE_DIR = PROJECT_ROOT / "firmware"
KERNELS_DIR = FIRMWARE_DIR / "kernels"
CC = "arm-none-eabi-gcc"
WARNINGS = ["-Wall", "-Wextra", "-Werror"]
# Symbols that must never be linked: the firmware has no heap and no stdio.
FORBIDDEN_SYMBOLS = ("malloc", "_malloc_r", "calloc", "realloc", "free", "_free_r", "_sbrk",
                     "_sbrk_r", "printf", "sprintf", "snprintf", "vsnprintf", "_printf_r",
                     "_vfprintf_r", "puts", "fputs")
_OVERFLOW = re.compile(r"region `?'?(\w+)'? overflowed by (\d+) bytes")
_MEASURE_BYTES = 0x01000000  # region size for the measuring link of a model that does not fit


# --- ELF (32-bit little-endian) -----------------------------------------------------------------

SHT_PROGBITS, SHT_SYMTAB, SHT_NOBITS = 1, 2, 8
SHF_WRITE, SHF_ALLOC = 0x1, 0x2


def read_elf(path: Path) -> tuple[list[dict], dict[str, int]]:
    """(sections, global/weak symbols by name) of a 32-bit little-endian ELF."""
    data = Path(path).read_bytes()
    if len(data) < 0x34 or data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise McutextError(f"{path}: not a 32-bit little-endian ELF file")
    try:
        return _read_elf(data)
    except (struct.error, IndexError, ValueError):
        raise McutextError(f"{path}: a damaged ELF file (cut short?)") from None


def _read_elf(data: bytes) -> tuple[list[dict], dict[str, int]]:
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    raw = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]

    def cstr(off: int) -> str:
        end = data.index(b"\0", off)
        return data[off:end].decode("ascii", errors="replace")

    names_off = raw[shstrndx][4]
    sections = []
    for (name, typ, flags, addr, off, size, link, _info, _align, entsize) in raw:
        sections.append({"name": cstr(names_off + name), "type": typ, "flags": flags,
                         "addr": addr, "offset": off, "size": size, "link": link,
                         "entsize": entsize})
    symbols: dict[str, int] = {}
    for s in sections:
        if s["type"] != SHT_SYMTAB:
            continue
        strtab = sections[s["link"]]["offset"]
        for i in range(s["size"] // 16):
            name, value, _size, info, _other, shndx = struct.unpack_from(
                "<IIIBBH", data, s["offset"] + i * 16)
            if name and shndx != 0:
                symbols[cstr(strtab + name)] = value
    return sections, symbols


def memory_usage(elf: Path) -> dict:
    """Flash and RAM bytes of a linked firmware.

    With the symbols every board's linker script defines, flash is the span from the start of
    flash to the end of the .data image, and RAM the span from the start of RAM to the end of
    .bss (the stack is at the bottom of RAM), padding included: the figures the firmware's
    `info` reports. Without them, the sizes of the allocated sections are added up."""
    sections, symbols = read_elf(elf)
    flash = ram = 0
    detail = {}
    for s in sections:
        if not s["flags"] & SHF_ALLOC or s["size"] == 0:
            continue
        detail[s["name"]] = s["size"]
        if s["type"] != SHT_NOBITS:
            flash += s["size"]         # code, constants and the initial image of .data
        if s["flags"] & SHF_WRITE:
            ram += s["size"]           # .data, .bss, .stack
    if all(k in symbols for k in ("__mt_flash_start", "__mt_flash_used_end")):
        flash = symbols["__mt_flash_used_end"] - symbols["__mt_flash_start"]
        # flash the linker script keeps free inside the image (the nucleo-f401re's storage
        # sectors and the padding before them) is not flash the firmware uses
        if all(k in symbols for k in ("__mt_flash_gap_start", "__mt_flash_gap_end")):
            flash -= symbols["__mt_flash_gap_end"] - symbols["__mt_flash_gap_start"]
    if all(k in symbols for k in ("__mt_ram_start", "__mt_ram_used_end")):
        ram = symbols["__mt_ram_used_end"] - symbols["__mt_ram_start"]
    return {"flash": flash, "ram": ram, "sections": detail, "symbols": symbols}


# The board an ELF was built for, inside the ELF (a copied ELF still carries it): a section
# that is not loaded (no SHF_ALLOC), so the image, its flash and RAM figures are unchanged.
BOARD_SECTION = ".mcutext.board"


def embed_board(elf: Path, board_name: str, cc: str) -> None:
    objcopy = Path(cc).with_name(Path(cc).name.replace("gcc", "objcopy"))
    note = elf.with_name("board.name")
    note.write_bytes(board_name.encode("utf-8"))
    try:
        _run([str(objcopy), "--add-section", f"{BOARD_SECTION}={note}",
              "--set-section-flags", f"{BOARD_SECTION}=noload,readonly", str(elf)],
             f"writing the board name into {elf}")
    finally:
        note.unlink()


def elf_board(elf: str | Path) -> str | None:
    """The board `elf` was built for: its BOARD_SECTION, else (an ELF built before there was
    one) the build report beside it that names it; None when neither says."""
    elf = Path(elf)
    try:
        sections, _ = read_elf(elf)
    except McutextError:   # not an ELF: QEMU or pyOCD says so
        return None
    for s in sections:
        if s["name"] == BOARD_SECTION:
            with open(elf, "rb") as f:
                f.seek(s["offset"])
                return f.read(s["size"]).decode("utf-8", errors="replace")
    report = elf.with_name("firmware.json")
    try:
        rep = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(rep, dict) and Path(str(rep.get("elf", ""))).name == elf.name \
            and isinstance(rep.get("board"), str):
        return rep["board"]
    return None


def check_elf_board(elf: str | Path, board: Board) -> None:
    """Refuses an ELF built for another board (it would boot and never answer)."""
    built = elf_board(elf)
    if built is not None and built != board.name:
        raise McutextError(f"{elf}: built for {built}, not for {board.name}",
                           hint=f"use --board {built}, or build it for {board.name}: "
                                f"`mcutext build BUNDLE --board {board.name}`")


# --- build ---------------------------------------------------------------------------------------

def _toolchain() -> str:
    cc = shutil.which(CC)
    if cc is None:
        raise McutextError(f"{CC} not found",
                           hint="install gcc-arm-none-eabi and libnewlib-arm-none-eabi "
                                "(`make setup`)")
    return cc


def _codegen(bundle_path: Path, gen_dir: Path, dsp: bool = True) -> dict:
    from ..codegen import driver as codegen
    return codegen.generate(bundle_path, gen_dir, dsp=dsp)


def _memory_ld(board: Board, flash_bytes: int, ram_bytes: int) -> str:
    return (f"/* Generated by mcutext {__version__} from {board.path / 'board.toml'}. */\n"
            "MEMORY\n{\n"
            f"    FLASH (rx) : ORIGIN = 0x{board.flash_origin:08X}, LENGTH = {flash_bytes}\n"
            f"    RAM (rwx) : ORIGIN = 0x{board.ram_origin:08X}, LENGTH = {ram_bytes}\n"
            "}\n"
            f"__stack_size = {board.stack_bytes};\n")


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def icount_ratio(board: Board) -> tuple[int, int] | None:
    """(NUM, DEN): instructions = ticks x NUM / DEN under QEMU -icount shift=N, the reduced
    10^9 / (hz x 2^N); None for a board that QEMU does not run."""
    if not (board.qemu_machine and board.counter_hz):
        return None
    num, den = 10**9, board.counter_hz << board.icount_shift
    g = math.gcd(num, den)
    num, den = num // g, den // g
    if (den - 1) * num + den // 2 >= 1 << 32:
        raise McutextError(f"board '{board.name}': counter hz {board.counter_hz} and icount_shift "
                           f"{board.icount_shift} give a tick-to-instruction ratio {num}/{den} "
                           "too fine for 32-bit arithmetic",
                           hint="use a round counter frequency or another icount_shift")
    return num, den


def tick_warnings(board: Board) -> list[str]:
    """Why the board's instruction counts under QEMU would be coarse: a timer that ticks
    less than once per instruction at the board's icount_shift (e.g. 12.5 MHz at shift 6:
    0.8 ticks per instruction)."""
    ticks = board.ticks_per_instruction
    if ticks is None or ticks >= 1:
        return []
    shift = next(n for n in range(board.icount_shift, 64)
                 if board.counter_hz << n >= 10**9)
    return [f"board '{board.name}': its timer ({board.counter_hz} Hz) ticks {ticks:g} times per "
            f"instruction under QEMU -icount shift={board.icount_shift}, so instruction counts "
            f"are coarser than one instruction; icount_shift = {shift} in [qemu] of "
            f"{board.path / 'board.toml'} gives {board.counter_hz * (1 << shift) / 1e9:g} "
            "ticks per instruction"]


def board_defines(board: Board) -> dict[str, str]:
    """The board's facts from board.toml that its C reads: the shared start-up's [vectors]
    (boards/common/startup.c) and the UART's base, baud rate and clock."""
    defines = {}
    for k, v in board.vectors.items():
        defines[f"MT_VECTOR_{k.upper()}"] = f"{v}u" if k == "irqs" else v
    for key, macro in (("base", "MT_BOARD_UART_BASE"), ("baud", "MT_BOARD_UART_BAUD"),
                       ("clock_hz", "MT_BOARD_UART_CLOCK_HZ")):
        v = board.uart.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            defines[macro] = f"0x{v:08X}u" if key == "base" else f"{v}u"
    return defines


def compile_flags(board: Board, seq_len: int, include_dirs: list[Path],
                  portable: bool = False, profile: bool = False,
                  extra_defines: dict[str, str] | None = None) -> list[str]:
    defines = {
        "MT_BOARD_NAME": _c_string(board.name),
        "MT_BOARD_CPU": _c_string(board.cpu),
        "MT_BOARD_FLASH_BYTES": f"{board.flash_bytes}u",
        "MT_BOARD_RAM_BYTES": f"{board.ram_bytes}u",
        "MT_FIRMWARE_VERSION": _c_string(__version__),
        "MT_MAX_SEQ_LEN": f"{seq_len}u",
    }
    defines.update(board_defines(board))
    ratio = icount_ratio(board)
    if ratio:
        defines["MT_ICOUNT_NUM"], defines["MT_ICOUNT_DEN"] = (f"{v}u" for v in ratio)
    if portable:
        defines["MT_FORCE_PORTABLE"] = "1"
    if profile:
        defines["MT_PROFILE"] = "1"
    defines.update(extra_defines or {})
    return (board.cpu_flags()
            + ["-std=gnu11", board.opt, "-g", "-ffunction-sections", "-fdata-sections",
               "-fno-common", "-fstack-usage"] + WARNINGS
            + [f"-D{k}={v}" for k, v in defines.items()]
            + [f"-I{d}" for d in include_dirs]
            + (["-include", "profile.h"] if profile else [])
            + list(board.cflags))


# The code on the path of a classification (tokenizer, kernels, model) is compiled with the
# board's optimization level (-O2 by default); the rest of the core and the board layer
# (protocol, printing, start-up) for size. Loops there stay loops: without
# -fno-tree-loop-distribute-patterns gcc turns the start-up copy loops and the like into
# calls of newlib's memcpy/memset/strlen (about 0.6 KB on a Cortex-M4).
HOT_CORE_SOURCES = ("tokenizer.c",)
COLD_FLAGS = ["-Os", "-fno-tree-loop-distribute-patterns"]


def _group_flags(group: str, src: Path) -> list[str]:
    if group in ("board", "personalize") or (group == "core"
                                              and src.name not in HOT_CORE_SOURCES):
        return COLD_FLAGS
    return []


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0 and what:
        tail = (p.stderr or p.stdout).strip().splitlines()[-25:]
        raise McutextError(f"{what} failed:\n" + "\n".join(tail))
    return p


def _stack_frames(obj_dir: Path) -> list[tuple[str, int]]:
    frames = []
    for su in obj_dir.glob("*.su"):
        for line in su.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].isdigit():
                frames.append((parts[0].split(":")[-1], int(parts[1])))
    return sorted(frames, key=lambda f: -f[1])


def default_out_dir(bundle_path: Path, board_name: str, portable: bool = False,
                    profile: bool = False) -> Path:
    """Beside the bundle: <parent>/<board>/ for a folder named `bundle` (build/sst2/bundle ->
    build/sst2/<board>/), else <parent>/<bundle folder>-<board>/."""
    variant = ("-portable" if portable else "") + ("-profile" if profile else "")
    bundle_path = Path(bundle_path).absolute()
    prefix = "" if bundle_path.name == "bundle" else f"{bundle_path.name}-"
    return bundle_path.parent / (prefix + board_name + variant)


STAMP_FILE = "build.stamp"


def build_key(bundle_path: Path, board: Board, cc: str, options: dict) -> str:
    """sha256 of everything an ELF is made from: the bundle's files, the board's folder (and
    boards/common), the firmware sources, the code generator, the compiler and the build
    options. Equal keys: the same ELF would be built again."""
    h = hashlib.sha256(json.dumps({"mcutext": __version__, "options": options},
                                  sort_keys=True, default=str).encode())
    h.update(_run([cc, "--version"], "").stdout.encode())
    package = Path(__file__).resolve().parents[1]    # mcutext/
    trees = [("bundle", Path(bundle_path)), ("board", board.path),
             ("common", board.path.parent / "common"), ("firmware", FIRMWARE_DIR)]
    files = [(tag, root, f) for tag, root in trees if root.is_dir()
             for f in sorted(root.rglob("*")) if f.is_file()]
    files += [("package", package, f) for f in sorted((package / "codegen").rglob("*.py"))]
    files += [("package", package, package / "firmware" / n) for n in ("build.py", "stack.py")]
    for tag, root, f in files:
        h.update(f"{tag}:{f.relative_to(root)}:{f.stat().st_size}\n".encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _reusable(out: Path, key: str) -> dict | None:
    """The build report of the ELF in `out` if its stamp says it was built from `key`."""
    try:
        if (out / STAMP_FILE).read_text().strip() != key:
            return None
        report = json.loads((out / "firmware.json").read_text())
    except (OSError, ValueError):
        return None
    return report if Path(report.get("elf", "")).is_file() else None


# --- where the flash goes (from the linker map) -------------------------------------------------

GROUPS = ("core", "kernels", "model", "board", "libc", "personalize")
# On-device personalization (docs/personalization.md): its flash is reported on its own, not
# in the classification runtime's overhead. libm is linked for it only (expf, logf, sqrtf).
PERSONALIZE_SOURCES = ("personalize.c", "head_blob.c", "slots.c", "head.c",
                       # storage of the learned head: the backends and the boards' part
                       "storage.c", "storage_semihost.c", "semihost.c", "stm32f4_flash.c",
                       "storage_armv7m.c")
_MAP_INPUT = re.compile(r"^ (\.\S+)(?:\s+|\n\s+)0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$",
                        re.MULTILINE)


def flash_breakdown(map_file: Path) -> dict:
    """Bytes of flash per group of objects (core, kernels, model, board, libc) and kind
    (code, strings, rodata, data = the initial image of .data), read from the linker map.

    Objects are named <group>_<n>_<source>.o by build(); library members go to libc."""
    text = Path(map_file).read_text(errors="replace")
    text = text[text.find("Linker script and memory map"):]
    out = {g: {"code": 0, "strings": 0, "rodata": 0, "data": 0} for g in GROUPS}
    for m in _MAP_INPUT.finditer(text):
        name, addr, size, origin = m.group(1), int(m.group(2), 16), int(m.group(3), 16), m.group(4)
        if size == 0 or addr == 0 and not name.startswith(".isr_vector"):
            continue
        if name.startswith((".text", ".isr_vector", ".ARM.exidx")):
            kind = "code"
        elif name.startswith(".rodata") and ".str1." in name:
            kind = "strings"
        elif name.startswith(".rodata"):
            kind = "rodata"
        elif name.startswith(".data"):
            kind = "data"
        else:
            continue
        obj = Path(origin.strip()).name
        if ".a(" in origin:
            group = "personalize" if "libm.a(" in origin else "libc"
        else:
            group = obj.split("_", 1)[0]
        out[group if group in out else "libc"][kind] += size
    return out


def runtime_overhead(report: dict) -> int:
    """Flash of the classification runtime that is neither the model's weights, the robust
    encoding's table nor the protocol's text: code of every group, the model's non-weight
    constants, tables, .data.
    Personalization (its code, the factory head in float, libm) is counted apart:
    personalization_flash()."""
    b = report["flash_breakdown"]
    strings = b["core"]["strings"] + b["board"]["strings"]
    return (report["flash_bytes"] - int(report.get("weights_bytes") or 0)
            - int(report.get("encoding_bytes") or 0) - strings
            - personalization_flash(report))


def personalization_flash(report: dict) -> int:
    """Flash used by on-device personalization (all kinds, strings included)."""
    return sum(report["flash_breakdown"].get("personalize", {}).values())


class DoesNotFit(McutextError):
    """A model too large for the board, with what the measuring link found (`usage`: flash
    and RAM bytes; `ram_vars`: RAM per variable, ram_variables())."""

    def __init__(self, message: str, hint: str, usage: dict, ram_vars: dict):
        super().__init__(message, hint)
        self.usage, self.ram_vars = usage, ram_vars


def ram_variables(map_file: Path) -> dict[tuple[str, str], int]:
    """Bytes of RAM (.data and .bss) per (group, variable), read from the linker map
    (-fdata-sections gives every variable a section of its own: .bss.<name>)."""
    text = Path(map_file).read_text(errors="replace")
    text = text[text.find("Linker script and memory map"):]
    out: dict[tuple[str, str], int] = {}
    for m in _MAP_INPUT.finditer(text):
        name, addr, size, origin = m.group(1), int(m.group(2), 16), int(m.group(3), 16), m.group(4)
        if size == 0 or addr == 0 or not name.startswith((".bss", ".data")):
            continue
        obj = Path(origin.strip()).name
        group = "libc" if ".a(" in origin else obj.split("_", 1)[0]
        var = re.sub(r"\.\d+$", "", name.split(".", 2)[2]) if name.count(".") >= 2 else obj
        out[(group, var)] = out.get((group, var), 0) + size
    return out


def _without_personalization(bundle_path: Path, board: Board, out: Path, portable: bool,
                             profile: bool, defines: dict | None) -> dict | None:
    """Flash and RAM of the same build with personalization left out, and whether it fits
    (None if that build fails for another reason). Built in a scratch folder, then removed."""
    scratch = out / "no-personalize"
    try:
        rep = build(bundle_path, board, scratch, portable=portable, profile=profile,
                    personalize=False, defines=defines)
        return {"fits": True, "flash": rep["flash_bytes"], "ram": rep["ram_bytes"],
                "ram_vars": ram_variables(Path(rep["map"]))}
    except DoesNotFit as e:
        return {"fits": False, "flash": e.usage["flash"], "ram": e.usage["ram"],
                "ram_vars": e.ram_vars}
    except McutextError:
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _largest(vars_: dict[tuple[str, str], int], n: int = 3) -> str:
    top = sorted(vars_.items(), key=lambda kv: (-kv[1], kv[0]))
    names = ", ".join(f"{var} {size}" for (_, var), size in top[:n])
    return f" ({names}{', ...' if len(top) > n else ''})" if names else ""


def _fit_report(name: str, board: Board, usage: dict, ram_vars: dict, map_file: Path, gen: dict,
                worst: int | None, lean: dict | None, link_stderr: str) -> tuple[str, str]:
    """The error and the hint for a model that does not fit: what uses the RAM or flash
    that is short, and what would make it fit."""
    flash_over, ram_over = usage["flash"] > board.flash_bytes, usage["ram"] > board.ram_bytes
    over, parts, hints = [], [], []
    if flash_over:
        over.append(f"flash needs {usage['flash']} bytes of {board.flash_bytes} "
                    f"({usage['flash'] - board.flash_bytes} bytes too many)")
    if ram_over:
        over.append(f"RAM needs {usage['ram']} bytes of {board.ram_bytes} "
                    f"({usage['ram'] - board.ram_bytes} bytes too many)")
    if not over:  # alignment padding only the real link sees
        over = [m.group(0) for m in _OVERFLOW.finditer(link_stderr)]
    if flash_over:
        groups = {g: sum(k.values()) for g, k in flash_breakdown(map_file).items()}
        weights = int(gen.get("weights_bytes") or 0)
        parts.append(f"flash (bytes): int8 weights {weights}, the model's code and other "
                     f"constants {groups['model'] - weights}, kernels {groups['kernels']}, core "
                     f"{groups['core']}, board {groups['board']}, personalization "
                     f"{groups['personalize']}, libc {groups['libc']}")
        hints.append("fewer tokenizer.buckets or a smaller model.embed_dim shrink the int8 "
                     "weights (the embedding table is buckets x embed_dim bytes)")
    if ram_over:
        arena = {k: v for k, v in ram_vars.items() if k[0] == "model"}
        if lean is not None:   # what the build without personalization does not have
            pers = {k: v - lean["ram_vars"].get(k, 0) for k, v in ram_vars.items()
                    if k[0] != "model" and v > lean["ram_vars"].get(k, 0)}
            n_pers = usage["ram"] - lean["ram"]
        else:
            pers = {k: v for k, v in ram_vars.items() if k[0] == "personalize"}
            n_pers = sum(pers.values())
        rest = {k: v for k, v in ram_vars.items() if k not in arena and k not in pers}
        n_rest = usage["ram"] - board.stack_bytes - sum(arena.values()) - n_pers
        stack_part = f"stack reserve {board.stack_bytes}" + (
            f" (worst case {worst})" if worst is not None else "")
        items = sorted([(n_pers, f"personalization {n_pers}{_largest(pers)}"),
                        (sum(arena.values()), f"activation arena {sum(arena.values())}"),
                        (board.stack_bytes, stack_part),
                        (n_rest, f"the rest {n_rest}{_largest(rest)}")], key=lambda x: -x[0])
        parts.append("RAM (bytes): " + ", ".join(text for n, text in items if n > 0))
        biggest = items[0][1]
        if biggest.startswith("activation arena"):
            hints.append("fewer tokenizer.max_words or model.conv_filters shrink the activation "
                         "arena")
        elif biggest.startswith("personalization"):
            hints.append("the personalization head and its buffers grow with "
                         "model.feature_dim and model.max_new_labels")
    if lean is not None and lean["fits"]:
        hints.insert(0, f"`--no-personalize` fits (flash {lean['flash']} of "
                        f"{board.flash_bytes}, RAM {lean['ram']} of {board.ram_bytes} bytes): "
                        "classification only, no learning on the device")
    elif lean is not None:
        hints.append(f"even with `--no-personalize` it needs flash {lean['flash']} and RAM "
                     f"{lean['ram']} bytes")
    hints.append("or a board with more memory (`mcutext boards`)")
    return (f"model '{name}' does not fit on {board.name}: " + "; ".join(over)
            + (". " + "; ".join(parts) if parts else ""), "; ".join(hints))


def build(bundle_path: str | Path, board: str | Board, out_dir: str | Path | None = None, *,
          portable: bool = False, profile: bool = False, personalize: bool = True,
          defines: dict[str, str] | None = None, reuse: bool = False,
          force: bool = False) -> dict:
    """Generate the model, compile core + kernels + model + board, link, check the budget.

    portable=True compiles the kernels' portable C path even on a core with the DSP
    extension (-DMT_FORCE_PORTABLE; for measuring the optimized path against it).
    profile=True reads the counter around every kernel call of the model (firmware/profile.h;
    `classify` then reports per-operator counts); for measuring, not for shipping.
    personalize=False leaves on-device learning out (-DMT_NO_PERSONALIZE): the
    classification-only firmware.
    defines: extra -D macros for every file (tests: MT_FAULT_COMMAND=1 adds a `fault` command).
    reuse=True returns the report of the ELF already in the output folder, without building,
    when its stamp (build_key) matches: same bundle, board, sources, compiler and options
    (report["reused"] is then True).
    out_dir may be absent, empty or an earlier firmware folder (replaced whole when the build
    succeeds); anything else only with force=True (mcutext.common.outputs.check_out).
    Returns the build report (also written next to the ELF as firmware.json)."""
    from ..int8.bundle import load_bundle

    t0 = time.monotonic()
    board = get_board(board)      # an unknown board is the first thing to report
    bundle_path = Path(bundle_path)
    bundle = load_bundle(bundle_path)
    bundle.tflite_bytes  # a model that disagrees with its manifest: refused before out/ is touched
    cc = _toolchain()
    out = Path(out_dir) if out_dir else default_out_dir(bundle_path, board.name, portable,
                                                        profile)
    key = build_key(bundle_path, board, cc, {"portable": portable, "profile": profile,
                                             "personalize": personalize,
                                             "defines": defines or {}})
    if reuse and (report := _reusable(out, key)) is not None:
        return {**report, "reused": True}
    made = [p for p in out.parents if not p.exists()]   # removed again if the build fails
    # built in a staging folder beside `out` and swapped in whole: a failed or interrupted
    # build leaves `out` as it was
    try:
        with staging(out, "firmware", force) as work:
            report = _build_in(work, out, board, bundle, bundle_path, cc, portable=portable,
                               profile=profile, personalize=personalize, defines=defines,
                               t0=t0, key=key)
    except BaseException:
        for p in made:
            try:
                p.rmdir()
            except OSError:
                break
        raise
    return {**report, "reused": False}


def _build_in(work: Path, out: Path, board: Board, bundle, bundle_path: Path, cc: str, *,
              portable: bool, profile: bool, personalize: bool,
              defines: dict[str, str] | None, t0: float, key: str) -> dict:
    """build() in the staging folder `work`; the report names the files at `out`."""
    gen_dir, obj_dir = work / "gen", work / "obj"
    for d in (gen_dir, obj_dir):
        d.mkdir()

    # DSP-layout weights only where the kernels' DSP path runs (they would be dead flash
    # on a Cortex-M0 or in a portable build).
    gen = _codegen(bundle_path, gen_dir, dsp=board.dsp and not portable)
    gen_files = [Path(f) for f in gen["files"]]
    def group_of(default: str, f: Path) -> str:
        return "personalize" if f.name in PERSONALIZE_SOURCES else default

    sources = ([(group_of("core", f), f) for f in sorted(FIRMWARE_DIR.glob("*.c"))]
               + [("kernels", f) for f in sorted(KERNELS_DIR.glob("*.c"))]
               + [(group_of("model", f), f) for f in gen_files if f.suffix == ".c"]
               + [(group_of("board", f), f) for f in board.sources])
    # boards/common: code that several boards share (e.g. the STM32F4 flash driver)
    include_dirs = [gen_dir, FIRMWARE_DIR, KERNELS_DIR, board.path, board.path.parent / "common"]
    seq_len = int(bundle.manifest.get("seq_len") or bundle.tokenizer.spec.seq_len)
    if not personalize:
        defines = {**(defines or {}), "MT_NO_PERSONALIZE": "1"}
    # debug info and __FILE__ name the files where they end up, not the staging folder
    cflags = compile_flags(board, seq_len, include_dirs, portable, profile, defines) + [
        f"-ffile-prefix-map={work}={out}"]

    def compile_one(item):
        i, (group, src) = item
        obj = obj_dir / f"{group}_{i:02d}_{src.stem}.o"
        _run([cc, *cflags, *_group_flags(group, src), "-c", str(src), "-o", str(obj)],
             f"compiling {src}")
        return obj

    workers = max(1, min(len(sources), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        objects = list(pool.map(compile_one, enumerate(sources)))

    elf, map_file = work / "firmware.elf", work / "firmware.map"
    link = [cc, *board.cpu_flags(), "-nostartfiles", "--specs=nano.specs",
            "-Wl,--gc-sections", f"-Wl,-Map={map_file}", f"-L{work}",
            f"-T{board.linker_script}", *map(str, objects), "-lm", "-lgcc", "-o", str(elf)]
    (work / "memory.ld").write_text(_memory_ld(board, board.flash_bytes, board.ram_bytes))
    p = _run(link, "")
    if p.returncode != 0:
        if not _OVERFLOW.search(p.stderr):
            raise McutextError("linking failed:\n" + "\n".join(p.stderr.strip().splitlines()[-25:]))
        # Link again with roomy regions, only to measure by how much the model is too large.
        (work / "memory.ld").write_text(_memory_ld(board, _MEASURE_BYTES, _MEASURE_BYTES))
        _run(link, "linking (to measure the overshoot)")
        usage = memory_usage(elf)
        try:
            worst = stack.analyze(elf, obj_dir, fpu=board.fpu != "none")["worst_case"]
        except McutextError:
            worst = None
        elf.unlink()
        ram_vars = ram_variables(map_file)
        # what the same build without personalization would need: measured, not estimated
        lean = (_without_personalization(bundle_path, board, work, portable, profile, defines)
                if personalize else None)
        message, hint = _fit_report(bundle.name, board, usage, ram_vars, map_file, gen, worst,
                                    lean, p.stderr)
        raise DoesNotFit(message, hint, usage, ram_vars)

    usage = memory_usage(elf)
    linked = sorted(s for s in FORBIDDEN_SYMBOLS if s in usage["symbols"])
    if linked:
        raise McutextError(f"{elf}: links {', '.join(linked)}; the firmware must not use the "
                           "heap or stdio")
    frames = _stack_frames(obj_dir)
    # Worst-case stack from the .su files and the call graph, against the stack reserve (an
    # image that may overflow it is not published: the staging folder is dropped)
    stack_report = stack.analyze(elf, obj_dir, fpu=board.fpu != "none")
    stack.check_budget(stack_report, board.stack_bytes, board.name)
    embed_board(elf, board.name, cc)
    # the map names the objects where they end up, as the debug info does
    map_file.write_text(map_file.read_text(errors="replace").replace(str(work), str(out)))
    report = {
        "bundle": bundle.name,
        "bundle_path": str(bundle_path),
        "board": board.name,
        "cpu": board.cpu,
        "kernels": "dsp" if board.dsp and not portable else "portable",
        "profile": profile,
        "ops": gen.get("ops"),
        "elf": str(out / elf.name),
        "map": str(out / map_file.name),
        "flash_bytes": usage["flash"],
        "flash_budget": board.flash_bytes,
        "ram_bytes": usage["ram"],
        "ram_budget": board.ram_bytes,
        "stack_reserve": board.stack_bytes,
        "sections": usage["sections"],
        "arena_bytes": gen.get("arena_bytes"),
        "weights_bytes": gen.get("weights_bytes"),
        # the robust encoding's table in flash (tokenizer spec version 2; 0 when hashed)
        "encoding_bytes": gen.get("encoding_bytes", 0),
        "macs": gen.get("macs"),
        "flash_breakdown": flash_breakdown(map_file),
        "largest_stack_frames": frames[:5],
        "stack_worst_case": stack_report["worst_case"],
        "stack": stack_report,
        "generated": [str(out / f.relative_to(work)) for f in gen_files],
        "qemu_machine": board.qemu_machine,
        "icount_shift": board.icount_shift,
        "personalize": personalize,
        "warnings": tick_warnings(board),
        "seconds": round(time.monotonic() - t0, 2),
    }
    report["runtime_flash_bytes"] = runtime_overhead(report)
    report["personalization_flash_bytes"] = personalization_flash(report)
    (work / "firmware.json").write_text(json.dumps(report, indent=2) + "\n")
    (work / STAMP_FILE).write_text(key + "\n")
    return report
