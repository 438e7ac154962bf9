"""Worst-case stack of a linked firmware, from gcc's -fstack-usage and the call graph of the ELF
(docs/reliability.md, "Stack and memory bounds").

    report = analyze(elf, obj_dir, fpu=True)     # raises StackError if it cannot bound it
    report["worst_case"], report["deepest_chain"]

The call graph is read from the linked code (arm-none-eabi-objdump -d), so it holds exactly
what the image runs, library code and compiler-made calls included:

- `bl` / `blx <address>` are calls; a branch into another function is a tail call (the
  caller's frame is gone by then, so only the callee's depth counts).
- Frames come from the objects' .su files (every function compiled from our C); a function
  without one (libgcc, libm, libc) is bounded from its code: every instruction that lowers
  the stack pointer is summed (push, vpush, stmdb sp!, sub sp, str ..., [sp, #-n]!). Any
  other write to sp, and gcc's "dynamic" (unbounded) frames, are errors.
- Indirect calls (`blx rN`, `bx rN` other than `bx lr`) are resolved by CALLBACK_RULES: the
  source file of the calling function names the function-pointer types it calls through,
  and each type the functions that may be stored in it. The candidates are the functions
  whose address the objects take (a relocation that is not a call); an indirect call in a
  file without a rule, an address-taken function that no rule and no vector table covers,
  or a rule that resolves to nothing are errors, never a guess, except for the pointer types
  of NULL_CHECKED: their callers test the pointer first and the code generator leaves it NULL
  for a model that does not use them, so with no candidate the call never happens. A
  struct field's pointer (FIELD_OFFSETS) narrows to what the initializers put in that
  field; a register loaded from a literal just before (`ldr r3, =f; bx r3`) is a direct
  call to f; a computed branch (`mov pc, rX`) must be a jump table whose entries all lie in
  the same function.
- Recursion (a cycle in the graph) is an error: its depth has no bound.
- Roots: the reset handler (thread mode) and every other handler of the vector table. Each
  distinct handler is assumed to be active at most once at a time (they nest, so their
  depths add up), each with its exception frame: 8 words, 26 with the FPU's lazily stacked
  registers, plus 4 bytes of alignment.
"""

from __future__ import annotations

import bisect
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import McutextError

OBJDUMP = "arm-none-eabi-objdump"

# (calling file, calling functions, pointer type, the functions that may be stored in it).
# The calling file is the basename of the source that defines the calling function; the
# callers and targets are regular expressions, targets written "file:function".
CALLBACK_RULES: list[tuple[str, str, str, str]] = [
    # head_blob.c: mt_head_save writes through its byte sink, mt_head_load reads through
    # its byte source (and the helpers they are split into)
    ("head_blob.c", r"mt_head_save|w_\w+|crc_f32", "mt_head_write_fn",
     r"head_storage\.c:export_chunk|slots\.c:mt_slots_write"),
    ("head_blob.c", r"mt_head_load|r_\w+|name_at_equals", "mt_head_read_fn",
     r"head_storage\.c:import_read|slots\.c:mt_slots_read"),
    # slots.c: the storage backend's read / erase / program (storage.h)
    ("slots.c", r".*", "mt_storage_t ops", r"(storage\w*|\w*_flash)\.c:\w+"),
    # semihost.c: the HardFault / DebugMonitor vector of the emulated boards jumps on to the
    # board's Fault_Handler (outside the semihosting probe)
    ("semihost.c", r"mt_semihost_fault", "the board's fault handler", r"startup\.c:Fault_Handler"),
    # the kernels' specialized DSP loops, chosen by the code generator (gen/model.c)
    ("avg_pool.c", r".*", "mt_avg_pool_fn", r"model\.c:mt_gen_avg_pool\w*|avg_pool\.c:\w+"),
    ("conv.c", r".*", "mt_conv_quads_fn", r"model\.c:mt_gen_conv_quads\w*|conv\.c:\w+"),
    ("mul.c", r".*", "mt_mul_sum_fn", r"model\.c:mt_gen_mul_sum\w*|mul\.c:\w+"),
]

# Pointer types whose every call site is guarded by a test against NULL, stored only by the
# generated model (the kernels' specialized loops): an image that takes the address of none of
# their targets (e.g. an embed_dim that is no multiple of 4 leaves the conv's DSP path out)
# never calls through them.
NULL_CHECKED: dict[str, str] = {
    "mt_conv_quads_fn": "conv.c: conv_dsp_ok() requires dsp_quads unless out_ch < 4, when "
                        "conv_dsp() does not call it",
    "mt_avg_pool_fn": "avg_pool.c: called only when dsp_1d is not NULL",
    "mt_mul_sum_fn": "mul.c: mul_sum_dsp_ok() requires dsp_fn",
}

# Pointer types that are fields of a struct: the field's offset -> its name. A call site that
# loads its pointer from one of these offsets (`ldr rX, [rY, #off]` before `blx rX`) can only
# reach the functions stored at that offset of a data object (the relocations of the
# objects' initializers); a function whose address is taken by code instead stays a
# candidate of every field.
FIELD_OFFSETS: dict[str, dict[int, str]] = {
    "mt_storage_t ops": {12: "read", 16: "erase", 20: "program"},   # storage.h
}

# Functions whose address the code takes without calling through it: "file:function" patterns
# and why.
ADDRESS_ONLY: list[tuple[str, str]] = [
    (r"(board|\w+_watchdog)\.c:board_reset_cause",
     "an optional (weak) board hook: diagnostics.c compares its address with NULL, then "
     "calls it directly"),
]

_CALL_RELOCS = ("R_ARM_THM_CALL", "R_ARM_THM_JUMP24", "R_ARM_THM_JUMP19", "R_ARM_THM_JUMP11",
                "R_ARM_THM_JUMP8", "R_ARM_THM_JUMP6", "R_ARM_CALL", "R_ARM_JUMP24",
                "R_ARM_PC24", "R_ARM_V4BX", "R_ARM_NONE")
_FUNC_HDR = re.compile(r"^([0-9a-f]+) <(.+)>:$")
_INSN = re.compile(r"^\s*([0-9a-f]+):\s+([a-z][\w.]*)\s*(.*)$")
_TARGET = re.compile(r"^([0-9a-f]+) <([^>+]+)(?:\+0x([0-9a-f]+))?>")
_BRANCH = re.compile(r"^(b|bl|blx|b(?:eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al))"
                     r"(\.w|\.n)?$")
# Exception entry: R0-R3, R12, LR, PC, xPSR; with the FPU also S0-S15, FPSCR and a reserved
# word; up to 4 bytes to align the frame to 8.
EXC_FRAME, EXC_FRAME_FP, EXC_ALIGN = 32, 104, 4


class StackError(McutextError):
    pass


@dataclass
class Function:
    name: str
    addr: int
    size: int
    file: str = ""                 # basename of the source (from .su), "" for library code
    frame: int | None = None
    frame_from: str = ""           # "su" or "code"
    calls: set[str] = field(default_factory=set)
    tails: set[str] = field(default_factory=set)
    # (address, "blx r3", offset of the `ldr r3, [rN, #offset]` that loaded it, or None)
    indirect: list[tuple[int, str, int | None]] = field(default_factory=list)
    sp_unknown: list[str] = field(default_factory=list)
    code_frame: int = 0
    saves_lr: bool = False         # an instruction seen so far stores lr on the stack


def _base_name(name: str) -> str:
    """gcc's clone names carry a number in the symbol table only: the .su file says
    `f.constprop` where the ELF says `f.constprop.0`."""
    return re.sub(r"\.\d+$", "", name.split(":")[-1])


def _objdump() -> str:
    exe = shutil.which(OBJDUMP)
    if exe is None:
        raise McutextError(f"{OBJDUMP} not found", hint="install binutils-arm-none-eabi "
                                                        "(comes with gcc-arm-none-eabi)")
    return exe


def _symbols(elf: Path) -> list[tuple[str, int, int, str]]:
    """Functions as (name, address, size, file of a local symbol) from the ELF's symbol
    table."""
    data = elf.read_bytes()
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, _ = struct.unpack_from("<HHH", data, 0x2E)
    secs = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    funcs = []
    for s in secs:
        if s[1] != 2:   # SHT_SYMTAB
            continue
        strtab = secs[s[6]][4]
        current_file = ""
        for i in range(s[5] // 16):
            name_off, value, size, info, _other, shndx = struct.unpack_from(
                "<IIIBBH", data, s[4] + i * 16)
            name = data[strtab + name_off:data.index(b"\0", strtab + name_off)].decode()
            typ, bind = info & 15, info >> 4
            if typ == 4:    # STT_FILE
                current_file = Path(name).name
                continue
            if typ == 2 and shndx and name:   # STT_FUNC
                funcs.append((name, value & ~1, size, current_file if bind == 0 else ""))
    return funcs


def _read_su(obj_dir: Path) -> tuple[dict[tuple[str, str], tuple[int, str]], dict[str, str]]:
    """{(file, function): (bytes, qualifier)} and {function: file} from the .su files."""
    frames, files = {}, {}
    for su in sorted(Path(obj_dir).glob("*.su")):
        for line in su.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 3 or not parts[1].isdigit():
                continue
            loc = parts[0].rsplit(":", 3)
            fname, func = Path(loc[0]).name, loc[-1]
            old = frames.get((fname, func), (0, ""))
            frames[(fname, func)] = (max(old[0], int(parts[1])), parts[2].strip())
            files.setdefault(func, fname)
    return frames, files


def _address_taken(obj_dir: Path, objdump: str
                   ) -> tuple[dict[str, set[str]], set[str], dict[str, set[int]]]:
    """Functions whose address the objects take: {name: {referencing sections}}; the
    functions the vector tables (.isr_vector) name; and {name: {offsets in data objects}}
    for the addresses stored by initializers."""
    taken: dict[str, set[str]] = {}
    vectors: set[str] = set()
    data_offsets: dict[str, set[int]] = {}
    for obj in sorted(Path(obj_dir).glob("*.o")):
        out = subprocess.run([objdump, "-r", str(obj)], capture_output=True, text=True,
                             check=True).stdout
        section = ""
        for line in out.splitlines():
            if line.startswith("RELOCATION RECORDS FOR ["):
                section = line[len("RELOCATION RECORDS FOR ["):-2]
                continue
            parts = line.split()
            if len(parts) < 3 or not parts[1].startswith("R_ARM_"):
                continue
            if parts[1] in _CALL_RELOCS or section.startswith((".debug", ".ARM.")):
                continue
            sym = parts[2].split("+")[0]
            if sym.startswith(".text."):
                sym = sym[len(".text."):]
            if section == ".isr_vector":
                vectors.add(sym)
            else:
                taken.setdefault(sym, set()).add(section)
                if section.startswith((".data", ".rodata")):
                    data_offsets.setdefault(sym, set()).add(int(parts[0], 16))
    return taken, vectors, data_offsets


def _register_count(regs: str) -> int:
    """Registers in a push list such as "r4-r7, lr" or "d8-d9"."""
    n = 0
    for r in regs.split(","):
        r = r.strip()
        if "-" in r:
            a, b = r.split("-")
            n += int(b[1:]) - int(a[1:]) + 1
        elif r:
            n += 1
    return n


def _sp_decrement(mnemonic: str, ops: str) -> int | None:
    """Bytes an instruction lowers sp by; 0 if it does not write sp; None if it writes sp
    in a way that cannot be bounded."""
    m = mnemonic.split(".")[0]
    if m == "push" or (m == "stmdb" and ops.startswith("sp!")):
        return 4 * _register_count(ops[ops.index("{") + 1:ops.index("}")])
    if m == "vpush" or (m == "vstmdb" and ops.startswith("sp!")):
        regs = ops[ops.index("{") + 1:ops.index("}")]
        return (8 if regs.strip().startswith("d") else 4) * _register_count(regs)
    if m in ("sub", "subw", "subs") and re.match(r"^sp,\s*(sp,\s*)?#", ops):
        return int(ops.rsplit("#", 1)[1].split()[0], 0)
    if m in ("add", "addw", "adds") and re.match(r"^sp,\s*(sp,\s*)?#", ops):
        return 0 if int(ops.rsplit("#", 1)[1].split()[0], 0) >= 0 else None
    if re.match(r"^str\w*$", m) and re.search(r"\[sp,\s*#-(\d+)\]!", ops):
        return int(re.search(r"\[sp,\s*#-(\d+)\]!", ops).group(1))
    if m in ("pop", "vpop", "ldmia", "ldm", "vldmia") and ("sp!" in ops or m in ("pop", "vpop")):
        return 0
    if re.match(r"^ldr\w*$", m) and re.search(r"\[sp\],\s*#\d+", ops):
        return 0    # post-increment load from the stack
    dest = ops.split(",")[0].strip()
    if dest == "sp" and m not in ("cmp", "cmn", "tst", "teq", "str", "strd"):
        return None
    return 0


def _saves_lr(base: str, ops: str) -> bool:
    """True if the instruction stores lr on the stack: push {.., lr}, stmdb sp!, {.., lr},
    str lr, [sp, #-n]!."""
    if base == "push" or (base == "stmdb" and ops.startswith("sp!")):
        return re.search(r"\blr\b", ops) is not None
    return base == "str" and re.match(r"^lr,\s*\[sp,\s*#-\d+\]!$", ops) is not None


def _disassemble(elf: Path, funcs: dict[str, Function], objdump: str) -> None:
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    insns = []
    for line in out.splitlines():
        m = _INSN.match(line)
        if m:
            ops = m.group(3).split(";")[0].split("@")[0].strip()
            insns.append((int(m.group(1), 16), m.group(2), ops, m.group(3)))
    image = _Image(elf)
    # Code outside every function symbol (a hand-written library routine's local labels)
    # becomes a function of its own, named after its address.
    ranges = sorted((f.addr, f.addr + max(f.size, 1)) for f in funcs.values())
    orphan: Function | None = None
    starts_only = [a for a, _ in ranges]
    for addr, _, _, _ in insns:
        i = bisect.bisect_right(starts_only, addr) - 1
        inside = i >= 0 and addr < ranges[i][1]
        if inside:
            orphan = None
        elif orphan is None or addr != orphan.addr + orphan.size + _gap(orphan, addr):
            orphan = Function(f"code_{addr:08x}", addr, 2)
            funcs[orphan.name] = orphan
        else:
            orphan.size = addr - orphan.addr + 2
    by_addr = sorted(funcs.values(), key=lambda f: f.addr)
    keys = [f.addr for f in by_addr]

    def containing(addr: int) -> Function | None:
        i = bisect.bisect_right(keys, addr) - 1
        while i >= 0:
            f = by_addr[i]
            if addr < f.addr + max(f.size, 2):
                return f
            if f.addr < addr - 0x10000:
                break
            i -= 1
        return None

    # Branch targets (join points) and the functions with table branches, whose targets are
    # not listed: a register's value is traced back only on straight code.
    joins, switchy = set(), set()
    for addr, mnem, ops, _ in insns:
        t = _TARGET.match(ops)
        if _BRANCH.match(mnem) and t or mnem.startswith(("cbz", "cbnz")):
            m = t or re.search(r"([0-9a-f]+) <", ops)
            if m:
                joins.add(int(m.group(1), 16))
        if mnem.startswith(("tbb", "tbh")) or ops.startswith("pc,"):
            f = containing(addr)
            if f is not None:
                switchy.add(f.name)
    for k, (addr, mnem, ops, _) in enumerate(insns):
        current = containing(addr)
        if current is None:
            continue
        dec = _sp_decrement(mnem, ops)
        if dec is None:
            current.sp_unknown.append(f"{addr:08x}: {mnem} {ops}")
        else:
            current.code_frame += dec
        base = mnem.split(".")[0]
        if base in ("blx", "bx") and re.match(r"^(r\d+|ip|sl|fp|lr)$", ops):
            if ops == "lr":
                continue
            # `ldr rX, =function` just before: a constant target, a direct call after all
            const = _literal_target(insns, k, ops, image)
            callee = containing(const) if const is not None else None
            if callee is not None and callee.addr == const:
                (current.calls if base == "blx" else current.tails).add(callee.name)
            else:
                off = (None if current.name in switchy else
                       _field_offset(insns, k, ops, current.addr, joins))
                current.indirect.append((addr, f"{mnem} {ops}", off))
            continue
        if _saves_lr(base, ops):
            current.saves_lr = True
        if base.startswith("ldr") and re.match(r"^pc,\s*\[sp\],\s*#\d+$", ops) \
                and current.saves_lr:
            # a return: pc from the slot where the function saved lr, sp moved past it.
            # `#4` is gcc's pop {pc}; libgcc's ARMv7-M soft-float routines (__aeabi_fcmpeq
            # & co., linked on every core without an FPU) save lr with `str lr, [sp, #-8]!`
            # (8 keeps the stack 8-byte aligned) and return with `ldr pc, [sp], #8`
            continue
        if (base.startswith("ldr") or base in ("mov", "add")) and ops.startswith("pc,"):
            if not _jump_table(insns, k, current, image):
                current.indirect.append((addr, f"{mnem} {ops}", None))
            continue
        if re.match(r"^ldm\w*$", base) and "pc" in ops and not ops.startswith("sp!"):
            current.indirect.append((addr, f"{mnem} {ops}", None))
            continue
        b = _BRANCH.match(mnem)
        t = _TARGET.match(ops)
        if not b or not t:
            continue
        target = int(t.group(1), 16)
        callee = containing(target)
        if callee is None:
            raise StackError(f"{elf.name}: {mnem} at 0x{addr:08x} to 0x{target:08x}, which is "
                             "in no code")
        if b.group(1) in ("bl", "blx"):
            if callee is not current:
                current.calls.add(callee.name)
        elif callee is not current:
            current.tails.add(callee.name)


class _Image:
    """The loadable bytes of an ELF, by address."""

    def __init__(self, elf: Path):
        data = elf.read_bytes()
        shoff, = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum, _ = struct.unpack_from("<HHH", data, 0x2E)
        self.parts = []
        for i in range(shnum):
            s = struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize)
            if s[1] == 1 and s[2] & 2 and s[5]:     # PROGBITS, ALLOC
                self.parts.append((s[3], data[s[4]:s[4] + s[5]]))

    def word(self, addr: int) -> int | None:
        for base, b in self.parts:
            if base <= addr and addr + 4 <= base + len(b):
                return struct.unpack_from("<I", b, addr - base)[0]
        return None


def _literal_target(insns: list, k: int, reg: str, image: _Image) -> int | None:
    """The address a register holds at insns[k] if one of the 4 instructions before loads it
    from a literal pool (`ldr rX, [pc, #n]`) and none after that writes it."""
    for j in range(k - 1, max(-1, k - 5), -1):
        _, mnem, ops, raw = insns[j]
        dest = ops.split(",")[0].strip()
        if dest != reg:
            continue
        lit = re.search(r"@ \(([0-9a-f]+)", raw)
        if mnem.split(".")[0] == "ldr" and re.match(rf"^{reg},\s*\[pc,", ops) and lit:
            w = image.word(int(lit.group(1), 16))
            return None if w is None else w & ~1
        return None
    return None


def _field_offset(insns: list, k: int, reg: str, start: int, joins: set[int]) -> int | None:
    """The offset of the `ldr reg, [rN, #offset]` that last wrote the register before
    insns[k], found by walking back within the function (from address `start`) on straight
    code: None if another write comes first, or a branch target (`joins`, where another
    path could bring another value) lies in between."""
    for j in range(k - 1, max(-1, k - 64), -1):
        addr, mnem, ops, _ = insns[j]
        if addr < start:
            return None
        if ops.split(",")[0].strip() == reg or (mnem.startswith(("pop", "ldm"))
                                                 and reg in ops):
            m = re.match(rf"^{reg},\s*\[(r\d+|ip|lr|fp|sl),\s*#(\d+)\]$", ops)
            return int(m.group(2)) if mnem.split(".")[0] == "ldr" and m else None
        if addr in joins:
            return None
    return None


def _jump_table(insns: list, k: int, f: Function, image: _Image) -> bool:
    """True if the computed branch insns[k] (`mov pc, rX`) is a switch's jump table whose
    every entry lies in the same function: `cmp rI, #N` + branch around, `ldr rT, [pc, ...]`
    (the table's address), `lsls rO, rI, #2`, `ldr rX, [rT, rO]`. Checked against the
    table's words in the image."""
    m = re.match(r"^pc,\s*(r\d+)$", insns[k][2])
    if not m or insns[k][1] != "mov":
        return False
    reg = m.group(1)
    window = insns[max(0, k - 6):k]
    load = next((w for w in reversed(window)
                 if w[1] == "ldr" and re.match(rf"^{reg},\s*\[(r\d+),\s*(r\d+)\]$", w[2])),
                None)
    if load is None:
        return False
    table_reg, off_reg = re.match(rf"^{reg},\s*\[(r\d+),\s*(r\d+)\]$", load[2]).groups()
    lit = next((w for w in reversed(window) if w[1] == "ldr"
                and re.match(rf"^{table_reg},\s*\[pc,", w[2])), None)
    shift = next((w for w in reversed(window)
                  if re.match(rf"^{off_reg},\s*(r\d+),\s*#2$", w[2]) and w[1] == "lsls"),
                 None)
    if lit is None or shift is None:
        return False
    index_reg = re.match(rf"^{off_reg},\s*(r\d+),\s*#2$", shift[2]).group(1)
    back = insns[max(0, k - 10):k]
    cmp = next((w for w in reversed(back) if w[1] == "cmp"
                and re.match(rf"^{index_reg},\s*#(\d+)$", w[2])), None)
    lit_addr = re.search(r"@ \(([0-9a-f]+)", lit[3])
    if cmp is None or lit_addr is None:
        return False
    table = image.word(int(lit_addr.group(1), 16))
    if table is None:
        return False
    for i in range(int(re.search(r"#(\d+)", cmp[2]).group(1)) + 1):
        entry = image.word(table + 4 * i)
        if entry is None or not f.addr <= (entry & ~1) < f.addr + f.size:
            return False
    return True


def _gap(f: Function, addr: int) -> int:
    """Instructions are 2 or 4 bytes: the next one of an orphan block follows within 4."""
    return addr - (f.addr + f.size) if 0 <= addr - (f.addr + f.size) <= 2 else -1


def analyze(elf: str | Path, obj_dir: str | Path, fpu: bool) -> dict:
    """The worst-case stack of the firmware `elf` whose objects (and .su files) are in
    obj_dir. Raises StackError when it cannot be bounded (recursion, an unresolved indirect
    call, an unbounded frame)."""
    elf, obj_dir = Path(elf), Path(obj_dir)
    objdump = _objdump()
    symbols = _symbols(elf)
    su, su_files = _read_su(obj_dir)
    funcs: dict[str, Function] = {}
    for name, addr, size, local_file in symbols:
        if name in funcs and funcs[name].addr != addr:
            # the same static name in two files: keep both apart by file
            name = f"{local_file}:{name}"
        base = _base_name(name)
        f = Function(name, addr, size, local_file or su_files.get(name, "")
                     or su_files.get(base, ""))
        key = (f.file, name.split(":")[-1])
        if key not in su:
            key = (f.file, base)
        if key in su:
            f.frame, qual = su[key]
            f.frame_from = "su"
            if "dynamic" in qual and "bounded" not in qual:
                raise StackError(f"{name} ({f.file}): its frame is dynamic (a variable-length "
                                 "array or alloca), so the stack has no bound")
        funcs[name] = f
    _disassemble(elf, funcs, objdump)
    for f in funcs.values():
        if f.frame is None:
            if f.sp_unknown:
                raise StackError(f"{f.name}: cannot bound its frame (writes sp: "
                                 f"{f.sp_unknown[0]})")
            f.frame, f.frame_from = f.code_frame, "code"

    # indirect calls
    taken, vectors, data_offsets = _address_taken(obj_dir, objdump)
    taken = {n: s for n, s in taken.items() if n in funcs}
    qualified = {n: f"{funcs[n].file}:{n}" for n in taken}
    covered: set[str] = set()
    resolved: list[dict] = []
    for f in sorted(funcs.values(), key=lambda f: f.name):
        if not f.indirect:
            continue
        rules = [r for r in CALLBACK_RULES
                 if r[0] == f.file and re.fullmatch(r[1], _base_name(f.name))]
        if not rules:
            sites = ", ".join(f"0x{a:08x} {i}" for a, i, _ in f.indirect)
            if not f.file:
                # libgcc / newlib / libm: no rule of ours can name its pointer types; a branch
                # the analysis does not understand there is a gap in mcutext, not in the
                # user's code
                raise StackError(f"{f.name} (library code, linked from libgcc, libm or libc) "
                                 f"branches in a way the stack analysis does not understand "
                                 f"({sites})",
                                 hint="a gap in mcutext.firmware.stack, not in your code or board: "
                                      "please report it with this message, the board's "
                                      "cpu/fpu and `arm-none-eabi-gcc --version`; "
                                      "`mcutext build --no-personalize` may avoid the routine")
            raise StackError(f"{f.name} ({f.file}) calls through a function "
                             f"pointer ({sites}) that no rule resolves",
                             hint="add the pointer type and its possible targets to "
                                  "mcutext.firmware.stack.CALLBACK_RULES")
        targets = sorted({n for n, q in qualified.items()
                          for _, _, _, pat in rules if re.fullmatch(pat, q)})
        if not targets and all(r[2] in NULL_CHECKED for r in rules):
            resolved += [{"caller": f.name, "at": f"0x{addr:08x}", "insn": insn,
                          "types": [r[2] for r in rules], "targets": [],
                          "never": "; ".join(NULL_CHECKED[r[2]] for r in rules)}
                         for addr, insn, _ in f.indirect]
            continue
        if not targets:
            raise StackError(f"{f.name} ({f.file}) calls through "
                             f"{' / '.join(r[2] for r in rules)}, but no function whose "
                             "address is taken matches its targets",
                             hint="check mcutext.firmware.stack.CALLBACK_RULES against the code")
        covered.update(targets)
        for addr, insn, offset in f.indirect:
            site = targets
            fields = [FIELD_OFFSETS[r[2]][offset] for r in rules
                      if offset in FIELD_OFFSETS.get(r[2], {})]
            if fields:
                narrowed = [t for t in targets
                            if t not in data_offsets or offset in data_offsets[t]]
                site = narrowed or targets
            tail = insn.startswith("bx")
            (f.tails if tail else f.calls).update(site)
            resolved.append({"caller": f.name, "at": f"0x{addr:08x}", "insn": insn,
                             "types": [r[2] + (f".{fields[0]}" if fields else "")
                                       for r in rules],
                             "targets": site})
    for n in sorted(taken):
        if n in vectors or n in covered:
            continue
        if any(re.fullmatch(pat, qualified[n]) for pat, _ in ADDRESS_ONLY):
            continue
        # an address taken only to be called through a pointer the image never calls
        # (e.g. a kernel loop of a path this model does not use) cannot run
        pointer_users = [r for r in CALLBACK_RULES if re.fullmatch(r[3], qualified[n])]
        if pointer_users:
            continue
        raise StackError(f"the address of {n} ({funcs[n].file or 'library'}) is taken (in "
                         f"{', '.join(sorted(taken[n]))}) but no rule says who calls it",
                         hint="add it to mcutext.firmware.stack.CALLBACK_RULES, or to the vector table")

    # depth, with recursion detected
    depth: dict[str, tuple[int, list[str]]] = {}
    onpath: list[str] = []

    def walk(name: str) -> tuple[int, list[str]]:
        if name in depth:
            return depth[name]
        if name in onpath:
            cycle = onpath[onpath.index(name):] + [name]
            raise StackError("recursion, the stack has no bound: " + " -> ".join(cycle))
        onpath.append(name)
        f = funcs[name]
        best, chain = 0, []
        for c in sorted(f.calls):
            d, ch = walk(c)
            if d > best or not chain:
                best, chain = d, ch
        total, path = f.frame + best, [name] + chain
        for t in sorted(f.tails):
            d, ch = walk(t)
            if d > total:
                total, path = d, [name] + ch
        onpath.pop()
        depth[name] = (total, path)
        return depth[name]

    vec_order = _vector_table(elf, funcs)
    if not vec_order:
        raise StackError(f"{elf.name}: no vector table (.isr_vector)")
    reset = vec_order[0]
    thread, thread_chain = walk(reset)
    frame = EXC_FRAME_FP if fpu else EXC_FRAME
    handlers = {}
    for h in dict.fromkeys(vec_order[1:]):
        if h == reset:
            continue
        d, ch = walk(h)
        handlers[h] = {"depth": d + frame + EXC_ALIGN, "chain": ch}
    worst = thread + sum(h["depth"] for h in handlers.values())

    def frames(chain: list[str]) -> list[list]:
        return [[n, funcs[n].frame, funcs[n].frame_from] for n in chain]

    return {
        "worst_case": worst,
        "thread": thread,
        "deepest_chain": frames(thread_chain),
        "handlers": {h: {"depth": v["depth"], "chain": frames(v["chain"])}
                     for h, v in handlers.items()},
        "exception_frame": frame + EXC_ALIGN,
        "indirect_calls": resolved,
        "functions": len(funcs),
        "frames_from_code": sorted(n for n, f in funcs.items() if f.frame_from == "code"
                                   and n in depth),
    }


def _vector_table(elf: Path, funcs: dict[str, Function]) -> list[str]:
    """Handlers of the vector table, in order from the reset vector (entry 1); empty slots
    are skipped."""
    data = elf.read_bytes()
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    secs = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    names_off = secs[shstrndx][4]
    by_addr = {f.addr: f.name for f in funcs.values()}
    for s in secs:
        name = data[names_off + s[0]:data.index(b"\0", names_off + s[0])].decode()
        if name != ".isr_vector":
            continue
        words = struct.unpack_from(f"<{s[5] // 4}I", data, s[4])
        out = []
        for w in words[1:]:
            if w and (w & ~1) in by_addr:
                out.append(by_addr[w & ~1])
        return out
    return []


def check_budget(report: dict, budget: int, board: str) -> None:
    """Raises StackError if the worst case exceeds the board's stack reserve."""
    worst = report["worst_case"]
    if worst > budget:
        chain = " -> ".join(n for n, _, _ in report["deepest_chain"])
        raise StackError(
            f"stack on {board}: the worst case needs {worst} bytes, the budget (stack_bytes) "
            f"is {budget} bytes: {worst - budget} bytes too many (deepest: {chain})",
            hint=f"raise stack_bytes in boards/{board}/board.toml, or make the deepest "
                 "frames smaller")
