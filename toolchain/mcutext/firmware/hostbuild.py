"""Host builds of the generated model and the int8 kernels (gcc, shared library + ctypes).

The tests use these to run exactly the C that goes on the device, on the host, and compare
its bytes with the TFLite Micro interpreter:

    lib = build_model(bundle, out_dir, variant="dsp")     # or "portable"
    outs = lib.run(ids)            # {"logits": int8[n, C], "attention": ..., "features": ...}

Variants: "portable" compiles the kernels' portable C; "dsp" compiles the ARMv7E-M DSP
paths with C equivalents of the DSP instructions (-DMT_EMULATE_DSP), so that their data
layouts and arithmetic run on the host.

    exe = build_runner(bundle, out_dir, variant, sanitize=True)   # ASan + UBSan executable
    outs = run_runner(exe, ids)

    elf = build_semihosted(bundle, ids, out_dir, cpu="cortex-m4")  # bare-metal, real DSP asm
    outs = run_semihosted(elf, "mps2-an386")                       # under qemu-system-arm

    count_instructions(bundle, ids_row, out_dir, cpu="cortex-m4")  # per inference and per op

The semihosted image is a test fixture, not firmware: a vector table, a reset handler and a
loop over the given token ids that prints every output as hex through ARM semihosting.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .boards import PROJECT_ROOT
from ..common.errors import McutextError

FIRMWARE_DIR = PROJECT_ROOT / "firmware"
KERNELS_DIR = FIRMWARE_DIR / "kernels"
VARIANTS = {"portable": [], "dsp": ["-DMT_EMULATE_DSP"]}
CFLAGS = ["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
          "-fno-strict-aliasing", "-Wl,-Bsymbolic"]

_HARNESS = r"""/* Host harness of the generated model (written by mcutext.firmware.hostbuild). */
#include <stdint.h>
#include <string.h>

#include "model_api.h"

const mt_model_info_t *mt_host_info(void);
int mt_host_run_batch(const int32_t *ids, uint32_t n, int8_t *logits, int8_t *attention,
                      int8_t *features, int32_t *status);

const mt_model_info_t *mt_host_info(void)
{
    return &mt_model_info;
}

int mt_host_run_batch(const int32_t *ids, uint32_t n, int8_t *logits, int8_t *attention,
                      int8_t *features, int32_t *status)
{
    const mt_model_info_t *m = &mt_model_info;
    int bad = 0;
    for (uint32_t i = 0; i < n; ++i) {
        status[i] = mt_model_run(ids + (uint64_t)i * m->seq_len);
        if (status[i] != 0) {
            bad = 1;
            continue;
        }
        memcpy(logits + (uint64_t)i * m->num_classes, mt_model_logits(), m->num_classes);
        memcpy(attention + (uint64_t)i * m->tokenizer.max_words, mt_model_attention(),
               m->tokenizer.max_words);
        memcpy(features + (uint64_t)i * m->feature_dim, mt_model_features(), m->feature_dim);
    }
    return bad;
}
"""


def _gcc() -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise McutextError("no host C compiler (gcc) found", hint="install gcc")
    return cc


def compile_shared(sources: list[Path], out: Path, include_dirs: list[Path],
                   variant: str = "portable", extra_flags: list[str] | None = None) -> Path:
    """Compile sources into one shared library with the firmware's warning flags."""
    if variant not in VARIANTS:
        raise McutextError(f"unknown host build variant '{variant}' "
                           f"(use {', '.join(VARIANTS)})")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ([_gcc()] + CFLAGS + VARIANTS[variant] + list(extra_flags or [])
           + [f"-I{d}" for d in include_dirs] + [str(s) for s in sources] + ["-o", str(out)])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-30:])
        raise McutextError(f"host build of {out.name} failed:\n{tail}")
    return out


def kernel_sources() -> list[Path]:
    """The kernels, and the PRADO projection a generated model may call (it needs only
    mt_common.h; the firmware build compiles it with the core)."""
    return sorted(KERNELS_DIR.glob("*.c")) + [FIRMWARE_DIR / "projection.c"]


class HostModel:
    """A generated model compiled for the host, loaded with ctypes."""

    def __init__(self, lib_path: Path):
        self.path = Path(lib_path)
        self.lib = ctypes.CDLL(str(self.path))
        self.lib.mt_host_info.restype = ctypes.c_void_p
        self.lib.mt_host_run_batch.restype = ctypes.c_int
        p = ctypes.c_void_p
        self.lib.mt_host_run_batch.argtypes = [p, ctypes.c_uint32, p, p, p, p]
        info = ctypes.cast(self.lib.mt_host_info(), ctypes.POINTER(_Info)).contents
        self.num_classes = info.num_classes
        self.max_words = info.tokenizer.max_words
        self.seq_len = info.seq_len
        self.feature_dim = info.feature_dim
        self.arena_bytes = info.arena_bytes
        self.weights_bytes = info.weights_bytes
        self.macs = info.macs
        self.name = info.name.decode()

    def run(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """int8 outputs for rows of token ids; a row the model refuses (an id outside
        [0, buckets)) raises McutextError."""
        ids = np.ascontiguousarray(ids, dtype=np.int32).reshape(-1, self.seq_len)
        n = len(ids)
        logits = np.zeros((n, self.num_classes), dtype=np.int8)
        att = np.zeros((n, self.max_words), dtype=np.int8)
        feats = np.zeros((n, self.feature_dim), dtype=np.int8)
        status = np.zeros(n, dtype=np.int32)
        bad = self.lib.mt_host_run_batch(ids.ctypes.data, n, logits.ctypes.data,
                                         att.ctypes.data, feats.ctypes.data,
                                         status.ctypes.data)
        if bad:
            rows = np.nonzero(status)[0]
            raise McutextError(f"the model refused {len(rows)} row(s) (first: row {rows[0]}, "
                               f"status {status[rows[0]]})")
        return {"logits": logits, "attention": att, "features": feats}

    def status(self, ids: np.ndarray) -> np.ndarray:
        """mt_model_run's return value per row (0 = ok)."""
        ids = np.ascontiguousarray(ids, dtype=np.int32).reshape(-1, self.seq_len)
        n = len(ids)
        status = np.zeros(n, dtype=np.int32)
        buf = [np.zeros((n, k), dtype=np.int8)
               for k in (self.num_classes, self.max_words, self.feature_dim)]
        self.lib.mt_host_run_batch(ids.ctypes.data, n, *(b.ctypes.data for b in buf),
                                   status.ctypes.data)
        return status


class _Spec(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in
                ("buckets", "max_words", "features_per_word", "seed", "max_word_bytes")] + [
        ("robust", ctypes.c_void_p)]


class _Quant(ctypes.Structure):
    _fields_ = [("scale", ctypes.c_float), ("zero_point", ctypes.c_int32)]


class _Info(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("num_classes", ctypes.c_uint32),
                ("labels", ctypes.c_void_p), ("tokenizer", _Spec), ("seq_len", ctypes.c_uint32),
                ("feature_dim", ctypes.c_uint32), ("logits_q", _Quant),
                ("attention_q", _Quant), ("features_q", _Quant),
                ("arena_bytes", ctypes.c_uint32), ("weights_bytes", ctypes.c_uint32),
                ("macs", ctypes.c_uint32)]


def build_model(bundle_path: str | Path, out_dir: str | Path, variant: str = "portable",
                dsp: bool = True, specialize: bool = True) -> HostModel:
    """Generate the bundle's model into out_dir/gen and compile it with the kernels and a
    small harness into out_dir/model_<variant>.so."""
    from ..codegen import driver as codegen

    out_dir = Path(out_dir)
    gen_dir = out_dir / "gen"
    gen = codegen.generate(bundle_path, gen_dir, dsp=dsp, specialize=specialize)
    harness = out_dir / "harness.c"
    harness.write_text(_HARNESS)
    sources = kernel_sources() + [Path(f) for f in gen["files"] if f.endswith(".c")] + [harness]
    lib = compile_shared(sources, out_dir / f"model_{variant}.so",
                         [gen_dir, FIRMWARE_DIR, KERNELS_DIR], variant)
    return HostModel(lib)


class HostGraphs:
    """Several generated graphs (codegen.generate_graph, one prefix each) in one library."""

    def __init__(self, lib_path: Path, graphs: dict[str, dict]):
        self.lib = ctypes.CDLL(str(lib_path))
        self.graphs = graphs
        for prefix in graphs:
            run = getattr(self.lib, f"{prefix}_run")
            run.restype = ctypes.c_int
            run.argtypes = [ctypes.c_void_p]
            out = getattr(self.lib, f"{prefix}_output")
            out.restype = ctypes.c_void_p
            out.argtypes = [ctypes.c_uint32]

    def run(self, prefix: str, inputs: list[np.ndarray], output_shapes: list[tuple],
            output_dtypes: list | None = None) -> tuple[int, list[np.ndarray]]:
        arrays = [np.ascontiguousarray(a) for a in inputs]
        ptrs = (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))
        status = getattr(self.lib, f"{prefix}_run")(ptrs)
        outs = []
        for k, shape in enumerate(output_shapes):
            dtype = np.dtype(output_dtypes[k] if output_dtypes else np.int8)
            n = int(np.prod(shape)) * dtype.itemsize
            addr = getattr(self.lib, f"{prefix}_output")(k)
            outs.append(np.frombuffer(ctypes.string_at(addr, n), dtype=dtype).reshape(shape)
                        .copy())
        return status, outs


def build_graphs(models: dict[str, bytes], out_dir: str | Path, variant: str = "portable",
                 dsp: bool = True, specialize: bool = True) -> HostGraphs:
    """Generate each tflite graph with its own prefix and compile all into one library."""
    from ..codegen import driver as codegen

    out_dir = Path(out_dir)
    gen_dir = out_dir / "gen"
    infos, sources = {}, []
    for prefix, tflite in models.items():
        info = codegen.generate_graph(tflite, gen_dir, prefix=prefix, dsp=dsp,
                                      specialize=specialize)
        infos[prefix] = info
        sources += [Path(f) for f in info["files"] if f.endswith(".c")]
    lib = compile_shared(kernel_sources() + sources, out_dir / f"graphs_{variant}.so",
                         [gen_dir, KERNELS_DIR], variant)
    return HostGraphs(lib, infos)


# --- executable runner (sanitizer builds) ------------------------------------------------------

_RUNNER = r"""/* Host runner of the generated model (written by mcutext.firmware.hostbuild): reads rows of
 * int32 token ids from argv[1], writes each row's status byte and int8 outputs to argv[2]. */
#include <stdint.h>
#include <stdio.h>

#include "model_api.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        return 2;
    }
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    if (in == 0 || out == 0) {
        return 2;
    }
    const mt_model_info_t *m = &mt_model_info;
    static int32_t ids[1u << 16];
    if (m->seq_len > sizeof ids / sizeof ids[0]) {
        return 2;
    }
    while (fread(ids, sizeof(int32_t), m->seq_len, in) == m->seq_len) {
        const uint8_t status = (uint8_t)mt_model_run(ids);
        fwrite(&status, 1, 1, out);
        fwrite(mt_model_logits(), 1, m->num_classes, out);
        fwrite(mt_model_attention(), 1, m->tokenizer.max_words, out);
        fwrite(mt_model_features(), 1, m->feature_dim, out);
    }
    fclose(in);
    return fclose(out) != 0;
}
"""


def build_runner(bundle_path: str | Path, out_dir: str | Path, variant: str = "portable",
                 sanitize: bool = False, dsp: bool = True) -> Path:
    """The generated model as a host executable (optionally with ASan and UBSan, which abort
    on the first out-of-bounds access or undefined operation)."""
    from ..codegen import driver as codegen

    out_dir = Path(out_dir)
    gen_dir = out_dir / "gen"
    gen = codegen.generate(bundle_path, gen_dir, dsp=dsp)
    runner = out_dir / "runner.c"
    runner.write_text(_RUNNER)
    exe = out_dir / f"runner_{variant}{'_san' if sanitize else ''}"
    flags = [f for f in CFLAGS if f not in ("-fPIC", "-shared", "-Wl,-Bsymbolic")]
    if sanitize:
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-O1"]
    cmd = ([_gcc()] + flags + VARIANTS[variant]
           + [f"-I{d}" for d in (gen_dir, FIRMWARE_DIR, KERNELS_DIR)]
           + [str(f) for f in kernel_sources()]
           + [f for f in gen["files"] if f.endswith(".c")] + [str(runner), "-o", str(exe)])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-30:])
        raise McutextError(f"host build of {exe.name} failed:\n{tail}")
    return exe


def _split_outputs(raw: bytes, n: int, sizes: tuple[int, int, int]) -> dict[str, np.ndarray]:
    row = 1 + sum(sizes)
    if len(raw) != n * row:
        raise McutextError(f"runner wrote {len(raw)} bytes for {n} rows of {row}")
    a = np.frombuffer(raw, dtype=np.int8).reshape(n, row)
    c, w, f = sizes
    return {"status": a[:, 0].astype(np.uint8), "logits": a[:, 1:1 + c],
            "attention": a[:, 1 + c:1 + c + w], "features": a[:, 1 + c + w:]}


def run_runner(exe: str | Path, ids: np.ndarray, num_classes: int, max_words: int,
               feature_dim: int) -> dict[str, np.ndarray]:
    """Run a build_runner executable on rows of ids; a sanitizer report is an error."""
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = Path(tmp) / "ids.bin", Path(tmp) / "out.bin"
        fin.write_bytes(ids.tobytes())
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        p = subprocess.run([str(exe), str(fin), str(fout)], capture_output=True, text=True,
                           env=env, timeout=600)
        if p.returncode != 0:
            raise McutextError(f"{Path(exe).name} failed (exit {p.returncode}):\n"
                               + "\n".join(p.stderr.strip().splitlines()[:30]))
        return _split_outputs(fout.read_bytes(), len(ids), (num_classes, max_words, feature_dim))


# --- bare-metal image under QEMU (semihosting) -------------------------------------------------

_SEMI_STARTUP = r"""#include <stdint.h>
extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern uint32_t __stack_top[];
int main(void);
void mt_reset(void);
void mt_hang(void);
void mt_reset(void)
{
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    const uint32_t *src = __data_load;
    for (uint32_t *d = __data_start; d < __data_end;) {
        *d++ = *src++;
    }
    for (uint32_t *d = __bss_start; d < __bss_end;) {
        *d++ = 0;
    }
    main();
    for (;;) {
    }
}
void mt_hang(void)
{
    for (;;) {
    }
}
__attribute__((section(".isr_vector"), used)) void (*const mt_vectors[16])(void) = {
    (void (*)(void))__stack_top, mt_reset, mt_hang, mt_hang, mt_hang, mt_hang, mt_hang, 0, 0,
    0, 0, mt_hang, mt_hang, 0, mt_hang, mt_hang};
"""

_SEMI_MAIN = r"""#include <stdint.h>
#include "model_api.h"
#include "semi_ids.h"
static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
static char line[8192];
static char *hex(char *p, const int8_t *v, uint32_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (uint32_t i = 0; i < n; ++i) {
        const uint8_t b = (uint8_t)v[i];
        *p++ = digits[b >> 4];
        *p++ = digits[b & 15u];
    }
    return p;
}
int main(void)
{
    const mt_model_info_t *m = &mt_model_info;
    for (uint32_t s = 0; s < MT_SEMI_ROWS; ++s) {
        const int st = mt_model_run(mt_semi_ids + s * m->seq_len);
        char *p = line;
        *p++ = st ? 'E' : 'R';
        *p++ = ' ';
        p = hex(p, mt_model_logits(), m->num_classes);
        *p++ = ' ';
        p = hex(p, mt_model_attention(), m->tokenizer.max_words);
        *p++ = ' ';
        p = hex(p, mt_model_features(), m->feature_dim);
        *p++ = '\n';
        *p = 0;
        semihost(0x04, line);
    }
    semihost(0x18, (const void *)0x20026); /* SYS_EXIT, ADP_Stopped_ApplicationExit */
    return 0;
}
"""

_SEMI_LD = """MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 4M }
ENTRY(mt_reset)
SECTIONS {
  .isr_vector : { KEEP(*(.isr_vector)) } > FLASH
  .text : { *(.text .text.*) *(.rodata .rodata.*) . = ALIGN(4); } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  .stack (NOLOAD) : { . = ALIGN(8); . += 16384; __stack_top = .; } > RAM
  .data : { . = ALIGN(4); __data_start = .; *(.data .data.*) . = ALIGN(4); __data_end = .; }
          > RAM AT > FLASH
  .bss (NOLOAD) : { . = ALIGN(4); __bss_start = .; *(.bss .bss.* COMMON) . = ALIGN(4);
                    __bss_end = .; } > RAM
  __data_load = LOADADDR(.data);
}
"""

CPU_FLAGS = {
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"],
    "cortex-m0": ["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"],
}


def build_semihosted(bundle_path: str | Path, ids: np.ndarray, out_dir: str | Path,
                     cpu: str = "cortex-m4", dsp: bool = True,
                     extra_flags: list[str] | None = None, main_source: str = "") -> Path:
    """A bare-metal image for the mps2 QEMU machines running the generated model on `ids`
    (compiled with arm-none-eabi-gcc, -O2 -Wall -Wextra -Werror, as the firmware is)."""
    from ..codegen import driver as codegen

    cc = shutil.which("arm-none-eabi-gcc")
    if cc is None:
        raise McutextError("arm-none-eabi-gcc not found", hint="install gcc-arm-none-eabi")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen_dir = out_dir / "gen"
    gen = codegen.generate(bundle_path, gen_dir, dsp=dsp)
    ids = np.ascontiguousarray(ids, dtype=np.int32).reshape(len(ids), -1)
    (out_dir / "semi_ids.h").write_text(
        f"#define MT_SEMI_ROWS {len(ids)}u\n"
        f"static const int32_t mt_semi_ids[{max(ids.size, 1)}] = {{"
        + ",".join(str(int(v)) for v in ids.reshape(-1)) + "};\n")
    (out_dir / "semi_startup.c").write_text(_SEMI_STARTUP)
    (out_dir / "semi_main.c").write_text(main_source or _SEMI_MAIN)
    (out_dir / "count_hook.h").write_text("#include <stdint.h>\nvoid mt_count_hook(uint32_t k);\n")
    (out_dir / "semi.ld").write_text(_SEMI_LD)
    elf = out_dir / f"model_{cpu}.elf"
    cmd = ([cc] + CPU_FLAGS[cpu] + ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                                    "-ffunction-sections", "-fdata-sections", "-nostartfiles",
                                    "--specs=nano.specs", "-Wl,--gc-sections"]
           + list(extra_flags or [])
           + [f"-I{d}" for d in (gen_dir, FIRMWARE_DIR, KERNELS_DIR, out_dir)]
           + [f"-T{out_dir / 'semi.ld'}", str(out_dir / "semi_startup.c"),
              str(out_dir / "semi_main.c")]
           + [str(f) for f in kernel_sources()]
           + [f for f in gen["files"] if f.endswith(".c")] + ["-o", str(elf)])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-30:])
        raise McutextError(f"cross build of {elf.name} failed:\n{tail}")
    return elf


def run_semihosted(elf: str | Path, machine: str, num_classes: int, max_words: int,
                   feature_dim: int, timeout: float = 600) -> dict[str, np.ndarray]:
    """Run a build_semihosted image in qemu-system-arm and parse its outputs."""
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise McutextError("qemu-system-arm not found", hint="install qemu-system-arm")
    p = subprocess.run([qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial",
                        "none", "-semihosting-config", "enable=on,target=native", "-kernel",
                        str(elf)], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    text = p.stdout + p.stderr   # semihosting console output goes to one of them
    rows = [line.split(" ") for line in text.splitlines() if line[:2] in ("R ", "E ")]
    out = {"status": [], "logits": [], "attention": [], "features": []}
    for flag, lg, at, fe in rows:
        out["status"].append(0 if flag == "R" else 1)
        for k, v, n in (("logits", lg, num_classes), ("attention", at, max_words),
                        ("features", fe, feature_dim)):
            b = np.frombuffer(bytes.fromhex(v), dtype=np.int8)
            if len(b) != n:
                raise McutextError(f"QEMU output row has {len(b)} {k} values, {n} expected")
            out[k].append(b)
    return {k: np.array(v, dtype=np.uint8 if k == "status" else np.int8) for k, v in out.items()}


# --- instruction counts under QEMU ---------------------------------------------------------------

_COUNT_MAIN = r"""#include <stdint.h>
#include "model_api.h"
#include "semi_ids.h"
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
static void put(const char *s)
{
    semihost(0x04, s);
}
static void put_u(uint32_t v)
{
    char b[12];
    int i = 11;
    b[i] = 0;
    do {
        b[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    put(b + i);
}
static uint32_t ticks[64], last;
void mt_count_hook(uint32_t k);
void mt_count_hook(uint32_t k)
{
    const uint32_t now = SYST_CVR;
    if (k > 0u && k <= 64u) {
        ticks[k - 1u] += (last - now) & 0xFFFFFFu;
    }
    last = SYST_CVR;
}
int main(void)
{
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 5u; /* processor clock, no interrupt */
    const uint32_t t0 = SYST_CVR;
    const int st = mt_model_run(mt_semi_ids);
    const uint32_t t1 = SYST_CVR;
    put("status ");
    put_u((uint32_t)st);
    put("\nticks ");
    put_u((t0 - t1) & 0xFFFFFFu);
    put("\n");
    for (uint32_t k = 0; k < 64u; ++k) {
        if (ticks[k]) {
            put("op ");
            put_u(k);
            put(" ");
            put_u(ticks[k]);
            put("\n");
        }
    }
    semihost(0x18, (const void *)0x20026);
    return 0;
}
"""

ICOUNT_SHIFT = 6          # each instruction advances QEMU's virtual clock by 2^6 ns
SYSTICK_HZ = 25_000_000   # the mps2 machines' CPU clock, which SysTick counts


def count_instructions(bundle_path: str | Path, ids: np.ndarray, out_dir: str | Path,
                       cpu: str = "cortex-m4", dsp: bool = True) -> dict:
    """Instructions of one mt_model_run on `ids` (one row), counted by QEMU (-icount) on an
    mps2 machine (Cortex-M4 code on the an386, Cortex-M0 code on the an385's M3): the total
    of a plain build, and per call of the generated code from a build with MT_GEN_PROFILE
    (each op's count includes ~20 instructions of the hook). Instructions, not cycles."""
    import re

    out_dir = Path(out_dir)
    machine = {"cortex-m4": "mps2-an386", "cortex-m0": "mps2-an385"}[cpu]
    per_tick = 1e9 / SYSTICK_HZ / (1 << ICOUNT_SHIFT)   # instructions per SysTick tick
    result = {"cpu": cpu, "machine": machine, "dsp": dsp}
    for profile in (False, True):
        d = out_dir / ("profile" if profile else "total")
        elf = build_semihosted(bundle_path, np.asarray(ids).reshape(1, -1), d, cpu, dsp,
                               ["-DMT_GEN_PROFILE(k)=mt_count_hook((uint32_t)(k))",
                                "-include", str(d / "count_hook.h")] if profile else [],
                               main_source=_COUNT_MAIN)
        qemu = shutil.which("qemu-system-arm")
        if qemu is None:
            raise McutextError("qemu-system-arm not found", hint="install qemu-system-arm")
        p = subprocess.run([qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial",
                            "none", "-icount", f"shift={ICOUNT_SHIFT}", "-semihosting-config",
                            "enable=on,target=native", "-kernel", str(elf)],
                           capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        text = p.stdout + p.stderr
        m = re.search(r"status (\d+)\nticks (\d+)", text)
        if m is None or m.group(1) != "0":
            raise McutextError(f"instruction count run failed:\n{text[-2000:]}")
        if profile:
            result["per_op"] = [round(int(t) * per_tick) for _, t in
                                re.findall(r"op (\d+) (\d+)", text)]
        else:
            result["instructions"] = round(int(m.group(2)) * per_tick)
    return result
