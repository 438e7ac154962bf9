"""Boards: discovery from board.toml, clear errors, and firmware builds against the budget."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mcutext.firmware import boards, build as firmware
from mcutext.common.errors import McutextError

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"netduinoplus2", "microbit", "mps2-an386", "nucleo-f401re", "lm3s6965evb",
            "mps2-an500", "mps2-an505"}


def _fake_board(tmp_path: Path, monkeypatch, name: str, like: str, **memory) -> Path:
    """A made-up board in its own boards folder (MCUTEXT_BOARDS_DIR): a copy of `like` with
    other [memory] values (and the shared code its board.toml names, boards/common).
    Adding it touches neither firmware/ nor the Python package."""
    d = tmp_path / "boards"
    shutil.copytree(ROOT / "boards" / like, d / name)
    if not (d / "common").exists():
        shutil.copytree(ROOT / "boards" / "common", d / "common")
    toml = d / name / "board.toml"
    text = toml.read_text()
    for key, value in memory.items():
        text, n = re.subn(rf"(?m)^{key} = \S+", f"{key} = {value}", text)
        assert n == 1, key
    toml.write_text(text)
    monkeypatch.setenv("MCUTEXT_BOARDS_DIR", str(d))
    return d / name


# --- discovery ------------------------------------------------------------------------------------

def test_discovers_the_project_boards():
    names = boards.board_names()
    assert REQUIRED <= set(names)
    for b in boards.list_boards():
        assert b.flash_bytes > 0 and b.ram_bytes > b.stack_bytes
        assert b.linker_script.is_file() and all(s.is_file() for s in b.sources)
        assert b.cpu.startswith("cortex-m")


def test_board_facts_come_from_board_toml():
    mb = boards.get_board("microbit")
    assert (mb.cpu, mb.fpu, mb.ram_bytes, mb.flash_bytes) == ("cortex-m0", "none", 16384, 262144)
    assert mb.qemu_machine == "microbit" and mb.pyocd_target
    assert "-mfloat-abi=soft" in mb.cpu_flags()
    nd = boards.get_board("netduinoplus2")
    assert nd.qemu_machine == "netduinoplus2" and nd.uart["base"] == 0x40011000
    assert {"-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"} <= set(nd.cpu_flags())
    assert boards.get_board("mps2-an386").uart["base"] == 0x40004000
    nucleo = boards.get_board("nucleo-f401re")
    assert nucleo.qemu_machine is None and nucleo.pyocd_target


def test_emulated_boards_have_an_icount_conversion():
    for b in boards.list_boards():
        if b.qemu_machine:
            assert b.icount_shift is not None and b.counter_hz, b.name


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(McutextError) as e:
        boards.get_board("no-such-board")
    for name in REQUIRED:
        assert name in str(e.value)


def test_no_board_given():
    with pytest.raises(McutextError, match="no board given"):
        boards.get_board(None)


def test_a_new_board_is_just_a_folder(tmp_path, monkeypatch):
    _fake_board(tmp_path, monkeypatch, "my-board", "mps2-an386", flash_bytes=65536)
    assert boards.board_names() == ["my-board"]
    assert boards.get_board("my-board").flash_bytes == 65536
    with pytest.raises(McutextError, match="known boards: my-board"):
        boards.get_board("microbit")


def test_broken_board_toml_names_the_file(tmp_path, monkeypatch):
    d = _fake_board(tmp_path, monkeypatch, "broken", "microbit")
    (d / "board.toml").write_text("cpu = 'cortex-m0'\n[memory\n")
    with pytest.raises(McutextError, match=r"broken[/\\]board.toml: not valid TOML"):
        boards.get_board("broken")
    (d / "board.toml").write_text("cpu = 'cortex-m0'\n")
    with pytest.raises(McutextError, match=r"missing \[memory\]"):
        boards.get_board("broken")
    (d / "board.toml").write_text(
        "cpu = 'cortex-m0'\n[memory]\nflash_origin = 0\nflash_bytes = 1024\n"
        "ram_origin = 0x20000000\nram_bytes = 'lots'\nstack_bytes = 512\n")
    with pytest.raises(McutextError, match="ram_bytes"):
        boards.get_board("broken")


def test_qemu_refuses_a_board_without_machine(tmp_path):
    from mcutext.device.qemu import Qemu
    elf = tmp_path / "x.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(McutextError, match="no QEMU machine") as e:
        Qemu(elf, "nucleo-f401re")
    assert "netduinoplus2" in e.value.hint


def test_flash_refuses_a_board_without_pyocd_target(tmp_path):
    from mcutext.device.flash import flash
    with pytest.raises(McutextError, match="no pyOCD target"):
        flash(tmp_path / "x.elf", "mps2-an386")


def test_memory_ld_comes_from_board_toml():
    b = boards.get_board("netduinoplus2")
    text = firmware._memory_ld(b, b.flash_bytes, b.ram_bytes)
    assert "ORIGIN = 0x08000000, LENGTH = 1048576" in text
    assert "ORIGIN = 0x20000000, LENGTH = 131072" in text
    assert f"__stack_size = {b.stack_bytes};" in text


# --- builds (real codegen, real arm-none-eabi-gcc) ---------------------------------------------

@pytest.fixture(scope="module")
def built(board_firmware):
    """The small sst2 bundle built for every project board (conftest: once per session)."""
    return board_firmware.all()


@pytest.mark.slow
def test_every_board_builds_within_budget(built):
    for name, res in built.items():
        assert Path(res["elf"]).is_file(), name
        assert 0 < res["flash_bytes"] <= res["flash_budget"], name
        assert 0 < res["ram_bytes"] <= res["ram_budget"], name
        assert res["ram_bytes"] >= res["stack_reserve"], name
        assert res["weights_bytes"] and res["flash_bytes"] > res["weights_bytes"], name
        symbols = firmware.read_elf(Path(res["elf"]))[1]
        assert "Reset_Handler" in symbols and "main" in symbols
        assert not set(firmware.FORBIDDEN_SYMBOLS) & set(symbols), name


@pytest.mark.slow
def test_model_that_does_not_fit_in_flash(built, sst2_small_bundle, tmp_path, monkeypatch):
    need = built["mps2-an386"]["flash_bytes"]
    budget = 4096
    # Same name as the real board: the name is compiled in, and another name could change
    # the flash by a few bytes (the linker merges string tails).
    _fake_board(tmp_path, monkeypatch, "mps2-an386", "mps2-an386", flash_bytes=budget)
    with pytest.raises(McutextError) as e:
        firmware.build(sst2_small_bundle, "mps2-an386", tmp_path / "out")
    msg = str(e.value)
    assert "does not fit on mps2-an386" in msg
    assert f"flash needs {need} bytes of {budget} ({need - budget} bytes too many)" in msg
    assert "RAM" not in msg


@pytest.mark.slow
def test_model_that_does_not_fit_in_ram(built, sst2_small_bundle, tmp_path, monkeypatch):
    need = built["mps2-an386"]["ram_bytes"]
    budget = need - 100
    _fake_board(tmp_path, monkeypatch, "mps2-an386", "mps2-an386", ram_bytes=budget)
    with pytest.raises(McutextError) as e:
        firmware.build(sst2_small_bundle, "mps2-an386", tmp_path / "out")
    assert f"RAM needs {need} bytes of {budget} (100 bytes too many)" in str(e.value)


def test_icount_ratio_from_board_toml():
    """instructions = ticks x NUM / DEN = ticks x 10^9 / (hz x 2^shift), reduced."""
    assert firmware.icount_ratio(boards.get_board("netduinoplus2")) == (125, 1344)
    assert firmware.icount_ratio(boards.get_board("mps2-an386")) == (5, 8)
    assert firmware.icount_ratio(boards.get_board("microbit")) == (125, 128)
    assert firmware.icount_ratio(boards.get_board("nucleo-f401re")) is None


def test_flash_breakdown_reads_the_linker_map(tmp_path):
    m = tmp_path / "firmware.map"
    m.write_text(
        "Discarded input sections\n .text.unused   0x00000000       0x40 obj/core_00_app.o\n"
        "Linker script and memory map\n\n"
        ".isr_vector     0x08000000      0x188\n"
        " .isr_vector    0x08000000      0x188 /b/obj/board_11_startup.o\n"
        ".text           0x08000188     0x2000\n"
        " .text.cmd_classify\n                0x08000188      0x3f0 /b/obj/core_00_app.o\n"
        " .text.mt_conv_s8\n                0x08000578      0x244 /b/obj/kernels_06_conv.o\n"
        " .text          0x080007bc      0x114 /usr/lib/libgcc.a(_udivsi3.o)\n"
        " .rodata.cmd_classify.str1.4\n                0x080008d0       0x86 /b/obj/core_00_app.o\n"
        " .rodata.embedding\n                0x08000958     0x5000 /b/obj/model_09_model.o\n"
        " .text.mt_head_step\n                0x08005958      0x300 /b/obj/personalize_03_personalize.o\n"
        " .text          0x08005c58       0x80 /usr/lib/thumb/libm.a(lib_a-sf_exp.o)\n"
        " .data.counter  0x20000000        0x4 /b/obj/board_10_board.o\n")
    b = firmware.flash_breakdown(m)
    assert b["core"] == {"code": 0x3f0, "strings": 0x86, "rodata": 0, "data": 0}
    assert b["kernels"]["code"] == 0x244 and b["libc"]["code"] == 0x114
    assert b["model"]["rodata"] == 0x5000
    assert b["board"] == {"code": 0x188, "strings": 0, "rodata": 0, "data": 4}
    assert b["personalize"]["code"] == 0x300 + 0x80
    rep = {"flash_bytes": 0x6000, "weights_bytes": 0x4F00, "flash_breakdown": b}
    assert firmware.personalization_flash(rep) == 0x380
    assert firmware.runtime_overhead(rep) == 0x6000 - 0x4F00 - 0x86 - 0x380


@pytest.mark.slow
def test_microbit_fits_the_sst2_model(built):
    """The full sst2 recipe's model (the small bundle has the same architecture) on the
    16 KB micro:bit."""
    res = built["microbit"]
    assert res["ram_budget"] == 16384 and res["flash_budget"] == 262144
    assert res["ram_bytes"] <= 16384 and res["flash_bytes"] <= 262144


@pytest.mark.slow
def test_portable_build_of_a_dsp_board(sst2_small_bundle, built, tmp_path):
    res = firmware.build(sst2_small_bundle, "netduinoplus2", tmp_path / "p", portable=True)
    assert res["kernels"] == "portable" and built["netduinoplus2"]["kernels"] == "dsp"
    # no DSP-layout copy of the weights in a portable build, nor on the Cortex-M0
    assert res["weights_bytes"] == built["microbit"]["weights_bytes"]
    assert res["weights_bytes"] < built["netduinoplus2"]["weights_bytes"]


@pytest.fixture(scope="module")
def big_bundle(tmp_path_factory) -> Path:
    """The sst2 recipe with 4x the hash buckets: 40,960 x 8 int8 embedding bytes alone,
    more than the micro:bit's 256 KB of flash. Trained briefly (size is what matters)."""
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    d = tmp_path_factory.mktemp("big")
    text = (ROOT / "models" / "sst2.toml").read_text()
    text, n = re.subn(r"(?m)^buckets = \d+", "buckets = 40960", text)
    assert n == 1
    (d / "sst2big.toml").write_text(text.replace('name = "sst2"', 'name = "sst2big"'))
    return train(load_recipe(d / "sst2big.toml"), out=d / "bundle", limit=300, epochs=1,
                 test_limit=50)


@pytest.mark.slow
def test_big_model_is_refused_with_the_overshoot(big_bundle, tmp_path, capsys):
    with pytest.raises(McutextError) as e:
        firmware.build(big_bundle, "microbit", tmp_path / "mb")
    msg = str(e.value)
    m = re.search(r"does not fit on microbit: flash needs (\d+) bytes of 262144 "
                  r"\((\d+) bytes too many\)", msg)
    assert m, msg
    need, over = int(m.group(1)), int(m.group(2))
    assert over == need - 262144 and need > 40960 * 8
    assert "RAM" not in msg.split(";")[0] and e.value.hint
    # the same through the CLI: exit code 2 and the message
    from mcutext.cli import main
    assert main(["build", str(big_bundle), "--board", "microbit", "--out",
                 str(tmp_path / "cli")]) == 2
    assert f"({over} bytes too many)" in capsys.readouterr().err
    # a board with room builds it
    assert firmware.build(big_bundle, "netduinoplus2", tmp_path / "nd")["flash_bytes"] > 40960 * 8


@pytest.fixture(scope="module")
def roomy_head_bundle(tmp_path_factory) -> Path:
    """The sst2 recipe reserving head rows for 16 labels learned on the device: its
    personalization state (head, example buffers) alone is more than the micro:bit's 16 KB of
    RAM, while the classification-only firmware fits."""
    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    d = tmp_path_factory.mktemp("roomy")
    (d / "roomy.toml").write_text('name = "roomy"\nbase = "sst2"\n[model]\n'
                                  'max_new_labels = 16\n')
    return train(load_recipe(d / "roomy.toml"), out=d / "bundle", limit=300, epochs=1,
                 test_limit=50)


@pytest.mark.slow
def test_ram_overflow_names_what_uses_it_and_suggests_no_personalize(roomy_head_bundle,
                                                                     tmp_path, capsys):
    """The error splits the RAM (personalization, arena, stack, the rest: they add up to the
    total) and the hint gives the --no-personalize figures, which a real build confirms."""
    with pytest.raises(firmware.DoesNotFit) as e:
        firmware.build(roomy_head_bundle, "microbit", tmp_path / "mb")
    msg, hint = str(e.value), e.value.hint
    m = re.search(r"RAM needs (\d+) bytes of 16384 \((\d+) bytes too many\)\. RAM \(bytes\): "
                  r"personalization (\d+) \((.*?)\), activation arena (\d+), stack reserve "
                  r"2048 \(worst case \d+\), the rest (\d+) \(", msg)
    assert m, msg
    need, pers, arena, rest = (int(m.group(i)) for i in (1, 3, 5, 6))
    assert need - 16384 == int(m.group(2)) and pers + arena + 2048 + rest == need
    assert "head " in m.group(4) and pers > 16384 - arena - 2048 - rest
    h = re.match(r"`--no-personalize` fits \(flash (\d+) of 262144, RAM (\d+) of 16384 "
                 r"bytes\)", hint)
    assert h, hint
    lean = firmware.build(roomy_head_bundle, "microbit", tmp_path / "lean", personalize=False)
    assert (lean["flash_bytes"], lean["ram_bytes"]) == (int(h.group(1)), int(h.group(2)))
    assert need - lean["ram_bytes"] == pers
    assert not (tmp_path / "mb" / "no-personalize").exists()   # the measuring build is gone
    from mcutext.cli import main
    assert main(["build", str(roomy_head_bundle), "--board", "microbit", "--out",
                 str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: model 'roomy' does not fit on microbit: RAM needs")
    assert err[1].startswith("hint: `--no-personalize` fits")


@pytest.mark.slow
def test_build_goes_beside_the_bundle_and_reuses_an_up_to_date_elf(sst2_small_bundle, tmp_path):
    """Without --out the firmware goes beside the bundle (x/bundle -> x/microbit/; another
    folder name -> <name>-microbit/). reuse=True (what `mcutext run` does) keeps an ELF whose
    stamp matches; a changed bundle or other options rebuild it."""
    import json
    import shutil
    bundle = tmp_path / "x" / "bundle"
    shutil.copytree(sst2_small_bundle, bundle)
    first = firmware.build(bundle, "microbit", reuse=True)
    elf, stamp = tmp_path / "x" / "microbit" / "firmware.elf", tmp_path / "x" / "microbit" / \
        firmware.STAMP_FILE
    assert first["elf"] == str(elf) and not first["reused"] and stamp.is_file()
    before = (elf.stat().st_mtime_ns, stamp.read_text())
    again = firmware.build(bundle, "microbit", reuse=True)
    assert again["reused"] and again["elf"] == str(elf)
    assert (elf.stat().st_mtime_ns, stamp.read_text()) == before
    assert {k: v for k, v in again.items() if k != "reused"} == json.loads(
        (elf.parent / "firmware.json").read_text())
    # other build options: a different ELF, built again
    other = firmware.build(bundle, "microbit", elf.parent, personalize=False, reuse=True)
    assert not other["reused"] and stamp.read_text() != before[1]
    firmware.build(bundle, "microbit", reuse=True)          # back to the defaults: rebuilt
    before = (elf.stat().st_mtime_ns, stamp.read_text())
    # a changed bundle (here: its manifest's version) is rebuilt
    m = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**m, "version": m["version"] + 1}))
    changed = firmware.build(bundle, "microbit", reuse=True)
    assert not changed["reused"] and stamp.read_text() != before[1]
    assert elf.stat().st_mtime_ns != before[0]
    # without reuse (`mcutext build`) it always builds
    assert not firmware.build(bundle, "microbit")["reused"]
    # a bundle folder of another name: <name>-<board>/ beside it
    mine = tmp_path / "y" / "mine"
    shutil.copytree(sst2_small_bundle, mine)
    assert firmware.default_out_dir(mine, "microbit") == tmp_path / "y" / "mine-microbit"
    assert firmware.default_out_dir(bundle, "microbit", portable=True) == \
        tmp_path / "x" / "microbit-portable"


@pytest.mark.qemu
def test_run_builds_a_bundle_once_then_boots_the_same_elf(sst2_small_bundle, tmp_path):
    """`mcutext run BUNDLE` twice: the first builds beside the bundle, the second finds the
    stamp up to date and boots the same ELF (file and stamp untouched)."""
    import shutil
    import signal
    import subprocess
    import sys
    bundle = tmp_path / "x" / "bundle"
    shutil.copytree(sst2_small_bundle, bundle)
    elf = tmp_path / "x" / "microbit" / "firmware.elf"
    seen = []
    for _ in range(2):
        p = subprocess.Popen([sys.executable, "-m", "mcutext.cli", "run", "--board", "microbit",
                              str(bundle)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            lines = []
            while not (lines and lines[-1].startswith("serial: ")):
                line = p.stdout.readline()
                assert line, f"run ended early: {lines} {p.stderr.read()}"
                lines.append(line.rstrip("\n"))
            seen.append((lines[0], elf.stat().st_mtime_ns,
                         (elf.parent / firmware.STAMP_FILE).read_text()))
            p.send_signal(signal.SIGINT)
            assert p.wait(timeout=30) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert seen[0][0] == f"firmware: {elf}"
    assert seen[1][0] == (f"firmware: {elf} (up to date: same bundle, board, sources and "
                          "options; not rebuilt)")
    assert seen[0][1:] == seen[1][1:]


# --- the shared start-up and the timer's resolution ------------------------------------------

def test_vectors_of_board_toml_reach_the_shared_startup():
    """boards/common/startup.c is every board's: what differs (the number of device
    interrupts, which handler takes the NMI, HardFault, DebugMonitor, SysTick) comes from
    board.toml's [vectors] as macros."""
    an386 = boards.get_board("mps2-an386")
    d = firmware.board_defines(an386)
    assert d["MT_VECTOR_IRQS"] == "32u" and d["MT_VECTOR_NMI"] == "NMI_Handler"
    assert d["MT_VECTOR_SYSTICK"] == "SysTick_Handler"
    assert d["MT_BOARD_UART_BASE"] == "0x40004000u" and d["MT_BOARD_UART_CLOCK_HZ"] == "25000000u"
    assert "MT_VECTOR_SYSTICK" not in firmware.board_defines(boards.get_board("microbit"))
    startup = ROOT / "boards" / "common" / "startup.c"
    for b in boards.list_boards():
        assert startup in [s.resolve() for s in b.sources] and b.vectors["irqs"] > 0, b.name


def test_broken_vectors_are_refused(tmp_path, monkeypatch):
    d = _fake_board(tmp_path, monkeypatch, "odd", "mps2-an386")
    toml = d / "board.toml"
    text = toml.read_text()
    toml.write_text(text.replace('nmi = "NMI_Handler"', 'nmi = "NMI Handler()"'))
    with pytest.raises(McutextError, match=r"\[vectors\]: 'nmi' must name a C function"):
        boards.get_board("odd")
    toml.write_text(text.replace("irqs = 32", "irqs = 32\nirq = 3"))
    with pytest.raises(McutextError, match=r"unknown key\(s\) irq"):
        boards.get_board("odd")


def test_a_timer_slower_than_one_tick_per_instruction_is_warned(tmp_path, monkeypatch):
    """12.5 MHz at -icount shift=6 is 0.8 ticks per instruction: counts coarser than one
    instruction. The project's boards all tick at least once per instruction."""
    for b in boards.list_boards():
        assert firmware.tick_warnings(b) == [], b.name
        if b.qemu_machine:
            assert b.ticks_per_instruction >= 1, b.name
    _fake_board(tmp_path, monkeypatch, "slow", "lm3s6965evb", icount_shift=6)
    slow = boards.get_board("slow")
    assert slow.ticks_per_instruction == pytest.approx(0.8)
    [w] = firmware.tick_warnings(slow)
    assert "ticks 0.8 times per instruction" in w and "icount_shift = 7" in w


@pytest.mark.slow
def test_build_prints_the_timer_warning(sst2_small_bundle, tmp_path, monkeypatch, capsys):
    _fake_board(tmp_path, monkeypatch, "slow", "lm3s6965evb", icount_shift=6)
    from mcutext.cli import main
    assert main(["build", str(sst2_small_bundle), "--board", "slow", "--out",
                 str(tmp_path / "fw"), "--no-personalize"]) == 0
    err = capsys.readouterr().err
    assert "warning: board 'slow': its timer (12500000 Hz) ticks 0.8 times per instruction" in err
    assert json.loads((tmp_path / "fw" / "firmware.json").read_text())["warnings"]
