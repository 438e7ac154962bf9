"""`mcutext export`: the model as a C library in the user's own firmware (docs/library.md),
checked the way a user would use each format.

- cmake: the exported example (its own main, start-up and UART driver, nothing of mcutext's
  firmware) built with plain cmake + the exported arm-none-eabi toolchain file for every
  emulated board (read from the board folders), booted in QEMU, and its outputs compared
  with TFLite Micro on real sst2 test sentences (200 on one board, a few dozen on the others).
- host: the same CMakeLists.txt with the host's gcc as a shared library, loaded with ctypes:
  classification, attention and on-device learning against the references.
- arduino: every file of src/ compiled as the Arduino build compiles a library (.c as C with
  src/ on the include path), the sketch as C++ against a stand-in Arduino.h declaring only
  what the sketch uses, and the whole linked (so the header's C linkage is right).
- zephyr: zephyr/module.yml validated against Zephyr's module schema (pykwalify), Kconfig
  parsed by kconfiglib, zephyr/CMakeLists.txt run by cmake with stand-ins of Zephyr's CMake
  functions. No Zephyr tree comes from the package registries, so the module is not built
  with Zephyr itself.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcutext.firmware import boards, export
from mcutext.device import qemu
from mcutext.common.errors import McutextError

EMULATED = [b.name for b in boards.list_boards() if b.qemu_machine]
N_SENTENCES = 24        # per board; 200 on ACCEPTANCE_BOARD
ACCEPTANCE_BOARD = "mps2-an386"


@pytest.fixture(scope="module")
def bundle(sst2_small_bundle):
    from mcutext.int8.bundle import load_bundle
    return load_bundle(sst2_small_bundle)


@pytest.fixture(scope="module")
def test_texts(bundle) -> tuple[list[str], dict]:
    from mcutext.text.datasets import load_split
    texts = load_split("sst2", "test").texts[:200]
    return texts, bundle.run_int8(bundle.tokenize(texts), "tflm")


@pytest.fixture(scope="module")
def cmake_lib(sst2_small_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "library-cmake"
    export.export(sst2_small_bundle, "cmake", out)
    return out


def _need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.fail(f"{tool} not found: `make setup` installs it")
    return exe


# --- the export itself ------------------------------------------------------------------------

def test_the_export_is_self_contained(cmake_lib, bundle):
    summary = json.loads((cmake_lib / export.EXPORT_FILE).read_text())
    assert summary["format"] == "cmake" and summary["model"] == bundle.name
    for f in ("CMakeLists.txt", "README.md", "NOTICE", "include/mcutext.h", "src/mcutext.c",
              "src/model.c", "src/weights.c", "src/tokenizer.c", "cmake/arm-none-eabi.cmake",
              "example/main.c", "example/boards.cmake"):
        assert (cmake_lib / f).is_file(), f
    src = {p.name for p in (cmake_lib / "src").iterdir()}
    # the kernels this model calls, and no others; nothing of the protocol or the boards
    assert {"conv.c", "fully_connected.c", "gather.c", "softmax.c", "mul.c"} <= src
    assert not {"add.c", "reduce.c", "quantize.c", "app.c", "protocol.c", "main.c",
                "board.h", "mem.c"} & src
    header = (cmake_lib / "include" / "mcutext.h").read_text()
    assert f"#define MCUTEXT_NUM_CLASSES {len(bundle.labels)}" in header
    assert 'extern "C"' in header and "@" not in header.replace("@param", "")
    # every board of boards.cmake comes from a board folder with a [uart] kind it drives
    cm = (cmake_lib / "example" / "boards.cmake").read_text()
    for b in EMULATED:
        assert f"BOARD_{b}_UART_KIND" in cm, b


def test_export_replaces_an_earlier_export_and_refuses_other_folders(sst2_small_bundle,
                                                                      tmp_path):
    out = tmp_path / "lib"
    export.export(sst2_small_bundle, "c", out)
    assert (out / "include" / "mcutext.h").is_file() and not (out / "CMakeLists.txt").exists()
    export.export(sst2_small_bundle, "cmake", out)          # an earlier export: replaced
    assert (out / "CMakeLists.txt").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(McutextError, match="not empty and is not an exported library"):
        export.export(sst2_small_bundle, "c", mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    from mcutext.cli import main
    assert main(["export", str(sst2_small_bundle), "--format", "c", "--out", str(mine)]) == 2
    assert main(["export", str(sst2_small_bundle), "--format", "c", "--out", str(mine),
                 "--force"]) == 0
    assert (mine / "src" / "model.c").is_file() and not (mine / "notes.txt").exists()


# --- cmake: the example firmware on every emulated board, under QEMU ---------------------------

@pytest.mark.qemu
@pytest.mark.parametrize("board", EMULATED)
def test_cmake_example_classifies_like_tflite_micro_in_qemu(board, cmake_lib, bundle,
                                                            test_texts, tmp_path):
    _need("cmake")
    texts, ref = test_texts
    n = len(texts) if board == ACCEPTANCE_BOARD else N_SENTENCES
    elf = export.build_example(cmake_lib, board, tmp_path / "build")
    got = qemu.classify_over_uart(elf, board, texts[:n])
    for i, (label, scores, words) in enumerate(got):
        want = ref["logits"][i]
        assert scores == want.tolist(), f"{board}, sentence {i} {texts[i]!r}"
        assert label == bundle.labels[int(np.argmax(want))]
        assert words == bundle.tokenizer.num_words(texts[i])
    size = export.library_flash(elf.with_name("classify.map"))
    assert 0 < size["library"] < size["weights"]
    print(f"\n{board}: the exported example gave TFLite Micro's bytes for {n} sentences; "
          f"library {size['library']} B of flash without the weights ({size['weights']} B)")


# --- host: a shared library through ctypes -----------------------------------------------------

@pytest.fixture(scope="module")
def host_lib(cmake_lib, bundle, tmp_path_factory):
    _need("cmake")
    _need("gcc")
    build = tmp_path_factory.mktemp("host")
    cmake = shutil.which("cmake")
    subprocess.run([cmake, "-S", str(cmake_lib), "-B", str(build), "-DBUILD_SHARED_LIBS=ON",
                    "-DMCUTEXT_PERSONALIZE=ON", "-DCMAKE_C_COMPILER=gcc"], check=True,
                   capture_output=True)
    subprocess.run([cmake, "--build", str(build)], check=True, capture_output=True)
    lib = ctypes.CDLL(str(build / "libmcutext.so"))
    c = len(bundle.labels)

    class Result(ctypes.Structure):
        _fields_ = [("label", ctypes.c_int), ("scores", ctypes.c_int8 * c),
                    ("words", ctypes.c_uint16)]
    lib.mcutext_classify.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(Result)]
    lib.mcutext_label.restype = ctypes.c_char_p
    lib.mcutext_score.restype = ctypes.c_float
    lib.mcutext_score.argtypes = [ctypes.POINTER(Result), ctypes.c_int]
    lib.mcutext_attention.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_int]
    lib.mcutext_learn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
                                  ctypes.POINTER(ctypes.c_float)]
    lib.mcutext_add_label.argtypes = [ctypes.c_char_p]
    lib.mcutext_updates.restype = ctypes.c_uint32
    lib.mcutext_state_size.restype = ctypes.c_uint32
    lib.Result = Result
    header = (cmake_lib / "include" / "mcutext.h").read_text()
    lib.max_new_labels = int(re.search(r"#define MCUTEXT_MAX_NEW_LABELS (\d+)", header).group(1))
    assert lib.mcutext_init() == 0
    return lib


def test_host_build_classifies_like_tflite_micro(host_lib, bundle, test_texts):
    texts, ref = test_texts
    q = bundle.manifest["int8"]["outputs"]
    words_max = bundle.tokenizer.spec.max_words
    att = (ctypes.c_float * words_max)()
    r = host_lib.Result()
    for i, text in enumerate(texts[:50]):
        raw = text.encode()
        label = host_lib.mcutext_classify(raw, len(raw), ctypes.byref(r))
        assert list(r.scores) == ref["logits"][i].tolist(), f"sentence {i}"
        assert label == r.label == int(np.argmax(ref["logits"][i]))
        assert host_lib.mcutext_label(label).decode() == bundle.labels[label]
        lq = q["logits"]
        assert host_lib.mcutext_score(ctypes.byref(r), label) == pytest.approx(
            (int(r.scores[label]) - lq["zero_point"]) * lq["scale"], rel=1e-6)
        n = host_lib.mcutext_attention(att, words_max)
        assert n == r.words == bundle.tokenizer.num_words(text)
        aq = q["attention"]
        want = (ref["attention"][i][:n].astype(np.float64) - aq["zero_point"]) * aq["scale"]
        np.testing.assert_allclose(np.array(att[:n]), want, rtol=1e-6, atol=1e-7)
    # any bytes: empty text, invalid UTF-8, a NUL
    for raw in (b"", b"\xff\xfe caf\xe9", b"a\x00b"):
        assert host_lib.mcutext_classify(raw, len(raw), ctypes.byref(r)) >= 0
    assert host_lib.mcutext_classify(None, 3, ctypes.byref(r)) == -1       # MCUTEXT_EINVAL


def test_host_build_learns_like_the_reference(host_lib, bundle):
    from mcutext.text.datasets import load_split
    from mcutext.device.personalize import HeadSimulator
    dev = load_split("sst2", "dev")
    texts, labels = dev.texts[:6], [bundle.labels.index(lab) for lab in dev.labels[:6]]
    feats = bundle.run_int8(bundle.tokenize(texts), "tflm")["features"].astype(np.int8)
    host_lib.mcutext_forget()
    sim = HeadSimulator.from_bundle(bundle, max_new_labels=host_lib.max_new_labels)
    loss = ctypes.c_float()
    for i, (text, y) in enumerate(zip(texts, labels)):
        want = sim.step(sim.dequantize(feats[i]), y)
        raw = text.encode()
        assert host_lib.mcutext_learn(raw, len(raw), y, ctypes.byref(loss)) == 0
        assert loss.value == pytest.approx(want, rel=1e-4, abs=1e-5), f"step {i}"
    assert host_lib.mcutext_updates() == len(texts)
    new = host_lib.mcutext_add_label(b"meh")
    assert new == len(bundle.labels) and host_lib.mcutext_label(new) == b"meh"
    assert host_lib.mcutext_add_label(b"meh") == -5                       # MCUTEXT_EEXIST
    assert host_lib.mcutext_state_size() > 0
    host_lib.mcutext_forget()
    assert host_lib.mcutext_updates() == 0 and host_lib.mcutext_label(new) is None


# --- arduino: the library layout, compiled as the Arduino build compiles it ---------------------

ARDUINO_STAND_IN = r"""// A stand-in for the Arduino core's Arduino.h: only what
// examples/classify/classify.ino uses (Serial), so that the sketch compiles as C++ the way the Arduino build compiles it.
#pragma once
#include <stddef.h>
#include <stdint.h>
class StandInSerial {
public:
    void begin(unsigned long baud);
    int available();
    int read();
    size_t print(const char *s);
    size_t print(char c);
    size_t print(double v, int digits);
    size_t println(const char *s);
    size_t println(unsigned int v);
    explicit operator bool() const { return true; }
};
extern StandInSerial Serial;
"""

ARDUINO_STAND_IN_CPP = r"""#include "Arduino.h"
StandInSerial Serial;
void StandInSerial::begin(unsigned long) {}
int StandInSerial::available() { return 0; }
int StandInSerial::read() { return -1; }
size_t StandInSerial::print(const char *) { return 0; }
size_t StandInSerial::print(char) { return 0; }
size_t StandInSerial::print(double, int) { return 0; }
size_t StandInSerial::println(const char *) { return 0; }
size_t StandInSerial::println(unsigned int) { return 0; }
void setup();
void loop();
extern "C" void Reset_Handler(void) { setup(); for (;;) loop(); }
"""


def test_arduino_library_compiles_like_the_arduino_build(sst2_small_bundle, tmp_path):
    gcc, gxx = _need("arm-none-eabi-gcc"), _need("arm-none-eabi-g++")
    lib = tmp_path / "libraries" / "mcutext_sst2"
    export.export(sst2_small_bundle, "arduino", lib)
    props = dict(line.split("=", 1) for line in
                 (lib / "library.properties").read_text().splitlines() if "=" in line)
    assert {"name", "version", "author", "maintainer", "sentence", "paragraph", "category",
            "url", "architectures"} <= set(props)
    assert props["includes"] == "mcutext.h"
    sketch = lib / "examples" / "classify" / "classify.ino"
    assert sketch.is_file() and not (lib / "include").exists()
    src = lib / "src"
    assert not any("Arduino.h" in p.read_text() for p in src.iterdir())   # plain C, no core
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os",
             "-ffunction-sections", "-fdata-sections", "-Wall", "-Werror"]
    objs = tmp_path / "obj"
    objs.mkdir()
    for c in sorted(src.glob("*.c")):         # Arduino: every .c of src/ as C, src/ included
        subprocess.run([gcc, *flags, "-std=gnu11", f"-I{src}", "-c", str(c), "-o",
                        str(objs / (c.name + ".o"))], check=True)
    # the sketch: Arduino prepends #include <Arduino.h> and compiles it as C++
    core = tmp_path / "core"
    core.mkdir()
    (core / "Arduino.h").write_text(ARDUINO_STAND_IN)
    (core / "stand_in.cpp").write_text(ARDUINO_STAND_IN_CPP)
    cpp = tmp_path / "classify.ino.cpp"
    cpp.write_text('#include <Arduino.h>\n#line 1 "classify.ino"\n' + sketch.read_text())
    for s, o in ((cpp, "sketch.o"), (core / "stand_in.cpp", "core.o")):
        subprocess.run([gxx, *flags, "-std=gnu++17", "-fno-exceptions", "-fno-rtti",
                        f"-I{core}", f"-I{src}", "-c", str(s), "-o", str(objs / o)],
                       check=True)
    # linked: the C library's symbols resolve from C++ (extern "C" in mcutext.h)
    ld = tmp_path / "link.ld"
    ld.write_text("MEMORY { FLASH (rx) : ORIGIN = 0, LENGTH = 1M\n"
                  "RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 128K }\nENTRY(Reset_Handler)\n"
                  "SECTIONS { .text : { *(.text*) *(.rodata*) } > FLASH\n"
                  ".data : { *(.data*) } > RAM AT > FLASH\n.bss : { *(.bss* COMMON) } > RAM }\n")
    # (linked by gcc: Debian's arm-none-eabi has no libstdc++, which this sketch does not use)
    subprocess.run([gcc, *flags, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                    "-Wl,--gc-sections", f"-T{ld}", *map(str, sorted(objs.glob("*.o"))),
                    "-lm", "-o", str(tmp_path / "sketch.elf")], check=True)


# --- zephyr: the module's files against Zephyr's rules -----------------------------------------

# Zephyr's schema of zephyr/module.yml (scripts/zephyr_module.py, METADATA_SCHEMA, pykwalify),
# written out here: the keys and types it allows.
def _zephyr_module_schema() -> dict:
    def s(t="str", **kw):
        return {"required": False, "type": t, **kw}
    seq_str = s("seq", sequence=[{"type": "str"}])
    roots = {k: s() for k in ("board_root", "dts_root", "soc_root", "arch_root",
                              "module_ext_root", "sca_root")}
    build = {"cmake": s(), "kconfig": s(), "cmake-ext": s("bool"), "kconfig-ext": s("bool"),
             "sysbuild-cmake": s(), "sysbuild-kconfig": s(), "sysbuild-cmake-ext": s("bool"),
             "sysbuild-kconfig-ext": s("bool"), "depends": seq_str,
             "settings": s("map", mapping=roots)}
    blob = {k: {"required": True, "type": "str"} for k in
            ("path", "sha256", "version", "license-path", "url", "description")}
    blob["type"] = {"required": True, "type": "str", "enum": ["img", "lib"]}
    blob["doc-url"] = s()
    return {"type": "map", "mapping": {
        "name": s(), "build": s("map", mapping=build), "tests": seq_str, "samples": seq_str,
        "boards": seq_str, "blobs": s("seq", sequence=[{"type": "map", "mapping": blob}])}}


ZEPHYR_STAND_INS = r"""# Zephyr's CMake functions the module uses, as recorders (the real ones come with
# Zephyr).
set(CONFIG_MCUTEXT y)
set(CONFIG_MCUTEXT_PERSONALIZE y)
function(zephyr_library_named name)
  set_property(GLOBAL APPEND PROPERTY RECORDED "library=${name}")
endfunction()
foreach(f zephyr_include_directories zephyr_library_include_directories
          zephyr_library_sources zephyr_compile_definitions)
  cmake_language(EVAL CODE "
    function(${f})
      foreach(a \${ARGN})
        set_property(GLOBAL APPEND PROPERTY RECORDED \"${f}=\${a}\")
      endforeach()
    endfunction()")
endforeach()
set(CMAKE_CURRENT_LIST_DIR ${MODULE}/zephyr)
include(${MODULE}/zephyr/CMakeLists.txt)
get_property(recorded GLOBAL PROPERTY RECORDED)
foreach(r ${recorded})
  message(STATUS "${r}")
endforeach()
"""


def test_zephyr_module_is_valid(sst2_small_bundle, tmp_path):
    import kconfiglib
    import yaml
    from pykwalify.core import Core
    mod = tmp_path / "mcutext"
    export.export(sst2_small_bundle, "zephyr", mod)
    meta = yaml.safe_load((mod / "zephyr" / "module.yml").read_text())
    Core(source_data=meta, schema_data=_zephyr_module_schema()).validate(raise_exception=True)
    from pykwalify.errors import SchemaError
    for bad in ({**meta, "build": {"cmake": ["zephyr"]}}, {**meta, "sample": ["x"]}):
        with pytest.raises(SchemaError):      # the schema does refuse a malformed file
            Core(source_data=bad, schema_data=_zephyr_module_schema()).validate(
                raise_exception=True)
    # what Zephyr's module tool then checks: the cmake folder holds a CMakeLists.txt, the
    # kconfig file exists; and the sample folders are there
    assert (mod / meta["build"]["cmake"] / "CMakeLists.txt").is_file()
    assert (mod / meta["build"]["kconfig"]).is_file()
    for sample in meta["samples"]:
        assert (mod / sample / "CMakeLists.txt").is_file() and (mod / sample / "prj.conf").is_file()
    conf = (mod / "samples" / "classify" / "prj.conf").read_text()
    assert "CONFIG_MCUTEXT=y" in conf
    # Kconfig: parsed by kconfiglib (what Zephyr's menuconfig uses)
    kconf = kconfiglib.Kconfig(str(mod / "zephyr" / "Kconfig"), warn=False)
    assert {"MCUTEXT", "MCUTEXT_PERSONALIZE"} <= set(kconf.syms)
    assert kconf.syms["MCUTEXT_PERSONALIZE"].direct_dep.name == "MCUTEXT"
    # CMakeLists.txt: run with stand-ins of Zephyr's functions; every source it names exists
    script = tmp_path / "zephyr_stand_in.cmake"
    script.write_text(ZEPHYR_STAND_INS)
    p = subprocess.run([_need("cmake"), f"-DMODULE={mod}", "-P", str(script)],
                       capture_output=True, text=True, check=True)
    recorded = [ln.split("-- ", 1)[1] for ln in p.stdout.splitlines() if "-- " in ln]
    srcs = [Path(r.split("=", 1)[1]) for r in recorded if r.startswith("zephyr_library_sources=")]
    assert "library=mcutext" in recorded
    assert {s.name for s in srcs} == {p.name for p in (mod / "src").glob("*.c")}
    assert all(s.is_file() for s in srcs)
    assert "zephyr_compile_definitions=MCUTEXT_PERSONALIZE=1" in recorded
