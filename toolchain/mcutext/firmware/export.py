"""Export a bundle as a C library for the user's own firmware (docs/library.md).

    export(bundle, "cmake", out)    # -> out/ with CMakeLists.txt, include/mcutext.h, src/, ...

One header (`mcutext.h`: init, classify text -> label index and int8 scores, attention,
and with MCUTEXT_PERSONALIZE on-device learning of the head), the tokenizer, the kernels the
model calls (their DSP path compiled where the core has it), the generated model and its
weights, a README and a license notice. No protocol, no board layer, no Python.

Formats:
    c        include/ + src/: compile every .c of src/, add include/ to the include path
    cmake    the same + CMakeLists.txt (add_subdirectory / FetchContent), an arm-none-eabi
             toolchain file, and example/: a UART classifier firmware for the boards of
             boards.cmake (written from the board folders whose [uart] kind it drives)
    arduino  the Arduino library layout: library.properties, src/ (every file, flat),
             examples/classify/classify.ino
    zephyr   a Zephyr module: zephyr/module.yml, zephyr/CMakeLists.txt, zephyr/Kconfig,
             include/ + src/, samples/classify/

The files the library needs are found from the generated model by following its
`#include "..."` lines through firmware/ and firmware/kernels/ (a header's .c beside it comes
along), so only the kernels the model calls are shipped. The output folder is published
atomically (mcutext.common.outputs): an earlier export is replaced, anything else only with force.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from ..common.version import __version__
from .boards import PROJECT_ROOT, list_boards
from ..common.errors import McutextError
from ..common.outputs import staging

FORMATS = ("c", "cmake", "arduino", "zephyr")
FIRMWARE_DIR = PROJECT_ROOT / "firmware"
KERNELS_DIR = FIRMWARE_DIR / "kernels"
TEMPLATES = FIRMWARE_DIR / "export"
EXPORT_FILE = "mcutext-export.json"   # what an export folder is recognised by
# compiled only with MCUTEXT_PERSONALIZE (the cmake / zephyr options)
PERSONALIZE_FILES = ("personalize.c", "head_blob.c", "head.c")
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def default_out_dir(bundle_path: Path, fmt: str) -> Path:
    """Beside the bundle: <parent>/library-<format>/ for a folder named `bundle`
    (build/sst2/bundle -> build/sst2/library-cmake/), else <parent>/<bundle>-library-<format>/."""
    bundle_path = Path(bundle_path).absolute()
    prefix = "" if bundle_path.name == "bundle" else f"{bundle_path.name}-"
    return bundle_path.parent / f"{prefix}library-{fmt}"


def _find(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    return None


def library_sources(gen_dir: Path) -> dict[str, Path]:
    """{file name: path} of every file the library compiles or includes: the generated model,
    the API (mcutext.c), the tokenizer and the personalization head, and what they include,
    transitively (a header's .c of the same name comes along)."""
    dirs = [gen_dir, TEMPLATES, FIRMWARE_DIR, KERNELS_DIR]
    roots = [p for p in sorted(gen_dir.iterdir()) if p.suffix in (".c", ".h")]
    roots += [TEMPLATES / "mcutext.c", FIRMWARE_DIR / "personalize.c"]
    files: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        p = todo.pop()
        if p.name in files:
            continue
        files[p.name] = p
        for inc in _INCLUDE.findall(p.read_text(encoding="utf-8")):
            if inc == "mcutext.h":
                continue          # rendered from mcutext.h.in
            found = _find(inc, dirs)
            if found is None:
                raise McutextError(f"{p}: includes {inc!r}, which is not in "
                                   f"{', '.join(map(str, dirs))}")
            todo.append(found)
            if found.suffix == ".h" and found.parent in (FIRMWARE_DIR, KERNELS_DIR):
                c = found.with_suffix(".c")
                if c.is_file():
                    todo.append(c)
    return dict(sorted(files.items()))


def _render(text: str, values: dict[str, str]) -> str:
    out = re.sub(r"@([A-Z_]+)@", lambda m: values.get(m.group(1), m.group(0)), text)
    left = re.findall(r"@[A-Z_]+@", out)
    if left:
        raise McutextError(f"export template: no value for {', '.join(sorted(set(left)))}")
    return out


def _values(bundle, bundle_path: Path, gen: dict) -> dict[str, str]:
    from ..codegen.graph import read_graph
    spec = bundle.tokenizer.spec
    ident = re.sub(r"[^A-Za-z0-9_]", "_", bundle.name)
    return {
        "VERSION": __version__,
        "MODEL": bundle.name,
        "MODEL_ID": ident,
        "BUNDLE": str(bundle_path.name),
        "SHA": read_graph(bundle.tflite_bytes).sha256[:16],
        "NUM_CLASSES": str(len(bundle.labels)),
        "LABEL_LIST": ", ".join(bundle.labels) if len(bundle.labels) <= 8 else
                      ", ".join(bundle.labels[:8]) + ", ...",
        "FIRST_LABEL": bundle.labels[0],
        "MAX_WORDS": str(spec.max_words),
        "SEQ_LEN": str(spec.seq_len),
        "FEATURE_DIM": str(_head_size(gen, "MT_HEAD_MAX_FEATURES")),
        "MAX_NEW_LABELS": str(_head_size(gen, "MT_HEAD_MAX_NEW_LABELS")),
        "WEIGHTS_BYTES": str(gen.get("weights_bytes")),
        "ARENA_BYTES": str(gen.get("arena_bytes")),
        "MACS": str(gen.get("macs")),
    }


def _head_size(gen: dict, macro: str) -> int:
    """A size of the generated personalization head (model_head.h): the features feeding the
    last layer, the rows reserved for new labels."""
    text = Path(gen["dir"], "model_head.h").read_text()
    return int(re.search(rf"#define {macro} (\d+)", text).group(1))


def example_boards() -> list[dict]:
    """The boards the CMake example can be built for: those whose [uart] kind its UART driver
    knows, with the facts of their board.toml."""
    known = ("cmsdk", "pl011", "nrf51", "stm32-usart")
    out = []
    for b in list_boards():
        kind = b.uart.get("kind")
        if kind not in known or not isinstance(b.uart.get("base"), int):
            continue
        out.append({"name": b.name, "cpu_flags": b.cpu_flags(), "flash_origin": b.flash_origin,
                    "flash_bytes": b.flash_bytes, "ram_origin": b.ram_origin,
                    "ram_bytes": b.ram_bytes, "uart_kind": kind, "uart_base": b.uart["base"],
                    "uart_clock_hz": int(b.uart.get("clock_hz") or 0),
                    "qemu_machine": b.qemu_machine})
    return out


def _boards_cmake() -> str:
    lines = [f"# Generated by mcutext {__version__} export from the board folders "
             "(boards/<name>/board.toml).",
             "# The boards the example firmware can be built for, and their facts."]
    boards = example_boards()
    lines.append("set(MCUTEXT_EXAMPLE_BOARDS " + " ".join(b["name"] for b in boards) + ")")
    for b in boards:
        n = b["name"]
        lines += [f"set(BOARD_{n}_CPU_FLAGS {' '.join(b['cpu_flags'])})",
                  f"set(BOARD_{n}_FLASH_ORIGIN 0x{b['flash_origin']:08X})",
                  f"set(BOARD_{n}_FLASH_BYTES {b['flash_bytes']})",
                  f"set(BOARD_{n}_RAM_ORIGIN 0x{b['ram_origin']:08X})",
                  f"set(BOARD_{n}_RAM_BYTES {b['ram_bytes']})",
                  f"set(BOARD_{n}_UART_KIND {b['uart_kind']})",
                  f"set(BOARD_{n}_UART_BASE 0x{b['uart_base']:08X})",
                  f"set(BOARD_{n}_UART_CLOCK_HZ {b['uart_clock_hz']})"]
    return "\n".join(lines) + "\n"


def _cmake_lists(sources: list[str], values: dict) -> str:
    core = [s for s in sources if s.endswith(".c") and s not in PERSONALIZE_FILES]
    pers = [s for s in sources if s in PERSONALIZE_FILES]
    src = "\n".join(f"  src/{s}" for s in core)
    psrc = " ".join(f"src/{s}" for s in pers)
    return _render((TEMPLATES / "cmake" / "CMakeLists.txt.in").read_text(),
                   {**values, "SOURCES": src, "PERSONALIZE_SOURCES": psrc})


def export(bundle_path: str | Path, fmt: str = "cmake", out: str | Path | None = None,
           force: bool = False) -> dict:
    """Writes the library for `bundle_path` in format `fmt` to `out` (default: beside the
    bundle, default_out_dir). Returns a summary (also written as out/mcutext-export.json)."""
    from ..int8.bundle import load_bundle
    from ..codegen.driver import generate

    if fmt not in FORMATS:
        raise McutextError(f"unknown export format {fmt!r} (one of: {', '.join(FORMATS)})")
    bundle_path = Path(bundle_path)
    bundle = load_bundle(bundle_path)
    bundle.tflite_bytes   # a model that disagrees with its manifest: refused before out/
    out = Path(out) if out else default_out_dir(bundle_path, fmt)
    with tempfile.TemporaryDirectory(prefix="mcutext-export-") as tmp:
        gen_dir = Path(tmp) / "gen"
        gen = generate(bundle_path, gen_dir, dsp=True)
        gen["dir"] = str(gen_dir)
        sources = library_sources(gen_dir)
        values = _values(bundle, bundle_path, gen)
        with staging(out, "library", force) as work:
            summary = _write(work, fmt, sources, values, bundle)
    summary["out"] = str(out)
    return summary


def _write(work: Path, fmt: str, sources: dict[str, Path], values: dict, bundle) -> dict:
    header = _render((TEMPLATES / "mcutext.h.in").read_text(), values)
    flat = fmt == "arduino"
    src_dir = work / "src"
    inc_dir = src_dir if flat else work / "include"
    src_dir.mkdir(parents=True)
    inc_dir.mkdir(parents=True, exist_ok=True)
    (inc_dir / "mcutext.h").write_text(header)
    for name, path in sources.items():
        shutil.copyfile(path, src_dir / name)
    names = list(sources)
    (work / "README.md").write_text(_render((TEMPLATES / "README.md.in").read_text(), {
        **values, "FORMAT_NOTES": _render((TEMPLATES / f"readme-{fmt}.md.in").read_text(),
                                          values)}))
    (work / "NOTICE").write_text(_render((TEMPLATES / "NOTICE.in").read_text(), values))
    if fmt == "cmake":
        (work / "CMakeLists.txt").write_text(_cmake_lists(names, values))
        shutil.copytree(TEMPLATES / "cmake", work / "cmake",
                        ignore=shutil.ignore_patterns("*.in"))
        shutil.copytree(TEMPLATES / "example", work / "example")
        (work / "example" / "boards.cmake").write_text(_boards_cmake())
    elif fmt == "arduino":
        (work / "library.properties").write_text(
            _render((TEMPLATES / "arduino" / "library.properties.in").read_text(), values))
        ex = work / "examples" / "classify"
        ex.mkdir(parents=True)
        (ex / "classify.ino").write_text(
            _render((TEMPLATES / "arduino" / "classify.ino").read_text(), values))
    elif fmt == "zephyr":
        z = work / "zephyr"
        z.mkdir()
        core = [s for s in names if s.endswith(".c") and s not in PERSONALIZE_FILES]
        pers = [s for s in names if s in PERSONALIZE_FILES]
        for f in ("module.yml", "Kconfig"):
            (z / f).write_text(_render((TEMPLATES / "zephyr" / f).read_text(), values))
        (z / "CMakeLists.txt").write_text(_render(
            (TEMPLATES / "zephyr" / "CMakeLists.txt.in").read_text(),
            {**values, "SOURCES": "\n".join(f"  ${{MCUTEXT_DIR}}/src/{s}" for s in core),
             "PERSONALIZE_SOURCES": " ".join(f"${{MCUTEXT_DIR}}/src/{s}" for s in pers)}))
        shutil.copytree(TEMPLATES / "zephyr" / "sample", work / "samples" / "classify")
    summary = {
        "format": fmt, "mcutext": __version__, "model": bundle.name, "labels": bundle.labels,
        "files": sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file()),
        "sources": names, "weights_bytes": int(values["WEIGHTS_BYTES"]),
        "arena_bytes": int(values["ARENA_BYTES"]), "macs": int(values["MACS"]),
    }
    (work / EXPORT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --- building the example and measuring the library (tests, bench_library) -------------------

def _cmake() -> str:
    exe = shutil.which("cmake")
    if exe is None:
        raise McutextError("cmake not found", hint="install cmake (`make setup`)")
    return exe


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    import subprocess
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-25:])
        raise McutextError(f"{what} failed:\n{tail}")
    return p.stdout


def build_example(lib_dir: str | Path, board: str, build_dir: str | Path,
                  personalize: bool = False) -> Path:
    """Builds the exported CMake example for `board` the way its README says (cmake with the
    toolchain file, then cmake --build) and returns the ELF."""
    lib_dir, build_dir = Path(lib_dir).resolve(), Path(build_dir)
    cmake = _cmake()
    _run([cmake, "-S", str(lib_dir / "example"), "-B", str(build_dir),
          f"-DCMAKE_TOOLCHAIN_FILE={lib_dir / 'cmake' / 'arm-none-eabi.cmake'}",
          f"-DBOARD={board}", f"-DMCUTEXT_PERSONALIZE={'ON' if personalize else 'OFF'}"],
         f"configuring the example for {board}")
    _run([cmake, "--build", str(build_dir)], f"building the example for {board}")
    return build_dir / "classify.elf"


def library_flash(map_file: str | Path) -> dict:
    """Flash bytes of the linked library, from the example's linker map: its objects' code,
    constants and .data image, the weights (weights.c) apart, and what it pulls from libc
    and libgcc."""
    from .build import _MAP_INPUT
    text = Path(map_file).read_text(errors="replace")
    text = text[text.find("Linker script and memory map"):]
    out = {"code": 0, "rodata": 0, "data": 0, "weights": 0, "libc": 0}
    for m in _MAP_INPUT.finditer(text):
        name, addr, size, origin = m.group(1), int(m.group(2), 16), int(m.group(3), 16), m.group(4)
        if size == 0 or addr == 0 or not name.startswith((".text", ".rodata", ".data")):
            continue
        origin = origin.strip()
        if "libmcutext.a(" in origin:
            if "weights.c." in origin:
                out["weights"] += size
            else:
                out["code" if name.startswith(".text") else
                    "rodata" if name.startswith(".rodata") else "data"] += size
        elif re.search(r"lib(c|c_nano|gcc|m)\.a\(", origin):
            out["libc"] += size
    out["library"] = out["code"] + out["rodata"] + out["data"]
    return out
