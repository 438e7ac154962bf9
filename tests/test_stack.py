"""Worst-case stack at build time (mcutext.firmware.stack, docs/reliability.md): the real firmware of
every board gets a figure within its budget; a budget that is too small, recursion, a call
through an unknown function pointer and an unbounded frame fail the build with a message.
The small images are compiled with the real arm-none-eabi-gcc."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mcutext.firmware import build as firmware, stack
from mcutext.common.errors import McutextError

ROOT = Path(__file__).resolve().parents[1]


# --- the real firmware ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(board_firmware):
    return board_firmware.all()


@pytest.mark.slow
def test_every_board_has_a_worst_case_stack_within_budget(built):
    for name, rep in built.items():
        s = rep["stack"]
        assert 0 < rep["stack_worst_case"] == s["worst_case"] <= rep["stack_reserve"], name
        chain = s["deepest_chain"]
        assert chain[0][0] == "Reset_Handler" and "mt_app_feed" in [n for n, _, _ in chain]
        # the thread's depth is the sum of the chain's frames (tail calls add no frame, and
        # the deepest chain of the reset handler has none here)
        assert s["thread"] == sum(f for _, f, _ in chain), name
        # every handler adds its depth and an exception frame
        assert s["worst_case"] == s["thread"] + sum(h["depth"] for h in s["handlers"].values())
        assert all(h["depth"] >= s["exception_frame"] for h in s["handlers"].values())
        # every call through a function pointer was resolved to named functions
        assert s["indirect_calls"] and all(c["targets"] for c in s["indirect_calls"]), name
        saved = Path(rep["elf"]).with_name("firmware.json").read_text()
        assert f'"stack_worst_case": {s["worst_case"]}' in saved


@pytest.mark.slow
def test_a_cortex_m3_without_fpu_builds_with_personalization(board_firmware):
    """lm3s6965evb (Cortex-M3, soft float): the personalization code links libgcc's v7-M
    soft-float comparisons, which return with `ldr pc, [sp], #8`; the build's stack analysis
    follows them (it used to refuse the build)."""
    rep = board_firmware["lm3s6965evb"]
    assert rep["personalize"] and rep["cpu"] == "cortex-m3"
    symbols = firmware.read_elf(Path(rep["elf"]))[1]
    fcmp = [s for s in symbols if s.startswith("__aeabi_fcmp")]
    assert fcmp, "no soft-float comparison linked: the test no longer tests the case"
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", rep["elf"]], capture_output=True,
                         text=True, check=True).stdout
    assert re.search(r"ldr\.w\s+pc, \[sp\], #8", dis)
    assert 0 < rep["stack_worst_case"] <= rep["stack_reserve"]


@pytest.mark.slow
def test_the_head_save_callbacks_are_resolved(built):
    calls = built["netduinoplus2"]["stack"]["indirect_calls"]
    save = [c for c in calls if c["caller"] == "mt_head_save"]
    assert save and all(set(c["targets"]) <= {"export_chunk", "mt_slots_write"} for c in save)
    assert all(c["types"] == ["mt_head_write_fn"] for c in save)
    # storage calls traced to their field reach only that operation of the backend
    fields = [c for c in calls if c["types"][0].startswith("mt_storage_t ops.")]
    assert fields and all(len(c["targets"]) == 1 for c in fields)
    erase = [c for c in fields if c["types"][0].endswith(".erase")]
    assert erase and all(c["targets"][0].endswith("erase") for c in erase)


@pytest.mark.slow
def test_a_stack_budget_too_small_fails_the_build(built, sst2_small_bundle, tmp_path,
                                                  monkeypatch):
    need = built["microbit"]["stack_worst_case"]
    budget = 256
    assert need > budget
    d = tmp_path / "boards"
    shutil.copytree(ROOT / "boards", d)
    toml = d / "microbit" / "board.toml"
    text, n = re.subn(r"(?m)^stack_bytes = \d+", f"stack_bytes = {budget}", toml.read_text())
    assert n == 1
    toml.write_text(text)
    monkeypatch.setenv("MCUTEXT_BOARDS_DIR", str(d))
    with pytest.raises(McutextError) as e:
        firmware.build(sst2_small_bundle, "microbit", tmp_path / "new" / "out")
    msg = str(e.value)
    assert (f"stack on microbit: the worst case needs {need} bytes, the budget (stack_bytes) "
            f"is {budget} bytes: {need - budget} bytes too many") in msg
    assert "Reset_Handler -> main" in msg and "stack_bytes" in e.value.hint
    # the failed build left nothing: no output folder (nor its parent, new too), no staging
    # folder beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boards"]
    # over an earlier build and a file of the user's: both stay as they were
    old = tmp_path / "old"
    monkeypatch.delenv("MCUTEXT_BOARDS_DIR")
    firmware.build(sst2_small_bundle, "microbit", old)
    (old / "notes.txt").write_text("mine")
    before = {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()}
    monkeypatch.setenv("MCUTEXT_BOARDS_DIR", str(d))
    with pytest.raises(McutextError, match="stack on microbit"):
        firmware.build(sst2_small_bundle, "microbit", old)
    assert {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boards", "old"]
    # the same through the CLI: exit code 2 and the message; an earlier build in --out is
    # left as it was (the failed build happened in a staging folder beside it)
    from mcutext.cli import main
    earlier = tmp_path / "cli"
    shutil.copytree(Path(built["microbit"]["elf"]).parent, earlier)
    files = {p: p.read_bytes() for p in sorted(earlier.rglob("*")) if p.is_file()}
    assert main(["build", str(sst2_small_bundle), "--board", "microbit", "--out",
                 str(earlier)]) == 2
    assert {p: p.read_bytes() for p in sorted(earlier.rglob("*")) if p.is_file()} == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boards", "cli", "old"]  # no staging


# --- small images: what the analysis must refuse, and what it must add up ---------------------

LINK = """MEMORY { FLASH (rx) : ORIGIN = 0, LENGTH = 64K
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 8K }
ENTRY(Reset_Handler)
SECTIONS {
  .isr_vector : { KEEP(*(.isr_vector)) } > FLASH
  .text : { *(.text .text.*) *(.rodata .rodata.*) } > FLASH
  .data : { *(.data .data.*) } > RAM AT > FLASH
  .bss : { *(.bss .bss.* COMMON) } > RAM
}
"""

VECTORS = r"""
void Reset_Handler(void);
void Fault_Handler(void);
__attribute__((section(".isr_vector"), used)) void (*const vectors[4])(void) = {
    (void (*)(void))0x20002000, Reset_Handler, Fault_Handler, Fault_Handler};
void Fault_Handler(void) { for (;;) { } }
"""


def _image(tmp_path: Path, sources: dict[str, str], cpu: str = "cortex-m4") -> tuple[Path, Path]:
    cc = shutil.which("arm-none-eabi-gcc")
    if cc is None:
        pytest.fail("arm-none-eabi-gcc not found: install gcc-arm-none-eabi")
    obj = tmp_path / "obj"
    obj.mkdir()
    (tmp_path / "link.ld").write_text(LINK)
    objs = []
    for name, text in {"vectors.c": VECTORS, **sources}.items():
        src = tmp_path / name
        src.write_text(text)
        o = obj / (src.stem + ".o")
        subprocess.run([cc, f"-mcpu={cpu}", "-mthumb", "-O2", "-fstack-usage",
                        "-ffunction-sections", "-fno-inline", "-c", str(src), "-o", str(o)],
                       check=True, cwd=obj)
        objs.append(str(o))
    elf = tmp_path / "image.elf"
    subprocess.run([cc, f"-mcpu={cpu}", "-mthumb", "-nostartfiles", "-nostdlib",
                    "-Wl,--gc-sections", f"-T{tmp_path / 'link.ld'}", *objs, "-lgcc",
                    "-o", str(elf)], check=True)
    return elf, obj


def _su(obj: Path) -> dict[str, int]:
    out = {}
    for su in obj.glob("*.su"):
        for line in su.read_text().splitlines():
            loc, n, _ = line.split("\t")
            out[loc.rsplit(":", 1)[1]] = int(n)
    return out


CHAIN = r"""
volatile int sink;
__attribute__((noinline)) void leaf(volatile char *p)
{ volatile char b[40]; b[3] = p[1]; sink = b[3]; }
__attribute__((noinline)) void middle(void) { volatile char b[200]; b[7] = 1; leaf(b); }
__attribute__((noinline)) void other(void) { volatile char b[16]; b[1] = 2; leaf(b); }
void Reset_Handler(void) { middle(); other(); for (;;) { } }
"""


def test_the_worst_case_adds_the_frames_of_the_deepest_chain(tmp_path):
    elf, obj = _image(tmp_path, {"main.c": CHAIN})
    r = stack.analyze(elf, obj, fpu=False)
    su = _su(obj)
    assert [n for n, _, _ in r["deepest_chain"]] == ["Reset_Handler", "middle", "leaf"]
    assert r["thread"] == su["Reset_Handler"] + su["middle"] + su["leaf"]
    assert su["middle"] >= 200
    # the fault handler: its frame, the exception frame and the alignment word
    assert r["handlers"]["Fault_Handler"]["depth"] == su["Fault_Handler"] + 32 + 4
    assert r["worst_case"] == r["thread"] + su["Fault_Handler"] + 36


def test_recursion_is_an_error(tmp_path):
    src = CHAIN.replace("__attribute__((noinline)) void leaf",
                        "void middle(void);\n__attribute__((noinline)) void leaf")
    src = src.replace("{ volatile char b[40];", "{ if (p[0]) middle(); volatile char b[40];")
    elf, obj = _image(tmp_path, {"main.c": src})
    with pytest.raises(stack.StackError, match=r"recursion.*middle -> leaf -> middle"):
        stack.analyze(elf, obj, fpu=False)


def test_a_call_through_an_unknown_function_pointer_is_an_error(tmp_path):
    src = CHAIN.replace("void Reset_Handler(void) { middle();",
                        "void run_hook(void);\nvoid Reset_Handler(void) { run_hook();") + r"""
typedef void (*hook_t)(void);
volatile hook_t hook = other;
__attribute__((noinline)) void run_hook(void) { hook(); }
"""
    elf, obj = _image(tmp_path, {"hooks.c": src})
    with pytest.raises(stack.StackError) as e:
        stack.analyze(elf, obj, fpu=False)
    assert "run_hook (hooks.c) calls through a function pointer" in str(e.value)
    assert "CALLBACK_RULES" in e.value.hint


def test_a_rule_resolves_the_pointer_and_its_targets_count(tmp_path, monkeypatch):
    src = CHAIN.replace("void Reset_Handler(void) { middle();",
                        "void run_hook(void);\nvoid Reset_Handler(void) { run_hook();") + r"""
typedef void (*hook_t)(void);
volatile hook_t hook = middle;
__attribute__((noinline)) void run_hook(void) { hook(); }
"""
    elf, obj = _image(tmp_path, {"hooks.c": src})
    monkeypatch.setattr(stack, "CALLBACK_RULES",
                        [("hooks.c", "run_hook", "hook_t", r"hooks\.c:(middle|other)")])
    r = stack.analyze(elf, obj, fpu=False)
    assert [n for n, _, _ in r["deepest_chain"]] == ["Reset_Handler", "run_hook", "middle",
                                                      "leaf"]
    assert r["indirect_calls"][0]["targets"] == ["middle"]   # `other` is only called directly
    # a rule whose targets match no address-taken function is an error, not a zero
    monkeypatch.setattr(stack, "CALLBACK_RULES",
                        [("hooks.c", "run_hook", "hook_t", r"hooks\.c:nothing")])
    with pytest.raises(stack.StackError, match="no function whose address is taken"):
        stack.analyze(elf, obj, fpu=False)


def test_a_null_checked_pointer_with_no_target_is_never_called(tmp_path, monkeypatch):
    """A pointer type of NULL_CHECKED (the kernels' specialized loops) whose targets the
    image never takes the address of is left NULL by the generated model: its call adds no
    depth and is listed as never made; any other pointer type with no target stays an
    error."""
    src = CHAIN.replace("void Reset_Handler(void) { middle();",
                        "void run_hook(void);\nvoid Reset_Handler(void) { run_hook();") + r"""
typedef void (*hook_t)(void);
volatile hook_t hook;
__attribute__((noinline)) void run_hook(void) { if (hook) hook(); }
"""
    elf, obj = _image(tmp_path, {"hooks.c": src})
    monkeypatch.setattr(stack, "CALLBACK_RULES",
                        [("hooks.c", "run_hook", "hook_t", r"hooks\.c:(middle|other)")])
    with pytest.raises(stack.StackError, match="no function whose address is taken"):
        stack.analyze(elf, obj, fpu=False)
    monkeypatch.setattr(stack, "NULL_CHECKED", {"hook_t": "run_hook tests it"})
    r = stack.analyze(elf, obj, fpu=False)
    [call] = r["indirect_calls"]
    assert call["targets"] == [] and call["never"] == "run_hook tests it"
    assert [n for n, _, _ in r["deepest_chain"]] == ["Reset_Handler", "other", "leaf"]


@pytest.mark.slow
def test_an_embed_dim_without_the_conv_dsp_path_builds(tmp_path):
    """embed_dim 6 (no multiple of 4): the conv and the pooling keep their portable paths on
    a DSP board, the generated model stores no specialized loop, and the stack analysis
    knows their pointer calls cannot happen (this build used to fail in the stack check)."""
    import dataclasses

    from mcutext.model.recipe import load_recipe
    from mcutext.train.pipeline import train
    recipe = load_recipe("sst2")
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, embed_dim=6))
    bundle = train(recipe, out=tmp_path / "bundle", limit=300, epochs=1)
    rep = firmware.build(bundle, "netduinoplus2", tmp_path / "fw")
    never = {c["caller"] for c in rep["stack"]["indirect_calls"] if c.get("never")}
    assert "conv_dsp" in never
    assert 0 < rep["stack_worst_case"] <= rep["stack_reserve"]


def test_an_unbounded_frame_is_an_error(tmp_path):
    src = CHAIN.replace("void other(void) { volatile char b[16];",
                        "void other(void) { volatile char b[16 + sink];")
    elf, obj = _image(tmp_path, {"main.c": src})
    with pytest.raises(stack.StackError, match=r"other \(main.c\): its frame is dynamic"):
        stack.analyze(elf, obj, fpu=False)


def test_library_frames_are_bounded_from_their_code(tmp_path):
    """A Cortex-M0 dividing: libgcc's __aeabi_uidiv has no .su; its pushes are counted."""
    src = CHAIN.replace("sink = b[3];", "sink = b[3] / (unsigned)sink;")
    elf, obj = _image(tmp_path, {"main.c": src}, cpu="cortex-m0")
    r = stack.analyze(elf, obj, fpu=False)
    assert "__udivsi3" in r["frames_from_code"] or "__aeabi_uidiv" in r["frames_from_code"]
    assert [n for n, _, _ in r["deepest_chain"]][:3] == ["Reset_Handler", "middle", "leaf"]


SOFT_FLOAT = r"""
volatile float a, b;
volatile int sink;
__attribute__((noinline)) void compare(void) { sink = (a == b) + (a < b) + (a >= b); }
void Reset_Handler(void) { compare(); for (;;) { } }
"""


def test_soft_float_returns_of_libgcc_are_returns(tmp_path):
    """A Cortex-M3 (no FPU: every M3, and an M4/M33 built with fpu = "none"): libgcc's
    ARMv7-M soft-float comparisons save lr with `str lr, [sp, #-8]!` and return with
    `ldr pc, [sp], #8`; that is a return, and their frames count in the chain."""
    elf, obj = _image(tmp_path, {"main.c": SOFT_FLOAT}, cpu="cortex-m3")
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    assert re.search(r"ldr\.w\s+pc, \[sp\], #8", dis)    # the instruction is really there
    r = stack.analyze(elf, obj, fpu=False)
    chain = [n for n, _, _ in r["deepest_chain"]]
    assert chain[:2] == ["Reset_Handler", "compare"] and "__cmpsf2" in chain
    frames = {n: f for n, f, _ in r["deepest_chain"]}
    assert any(frames.get(n) == 8 for n in ("__aeabi_fcmpeq", "__aeabi_fcmplt",
                                            "__aeabi_fcmpge"))
    assert r["thread"] == sum(frames.values())


def test_a_pc_load_from_the_stack_without_a_saved_lr_is_not_a_return(tmp_path):
    """`ldr pc, [sp], #8` in code that never stored lr there jumps to whatever the stack
    holds: library code doing that is reported as a gap in the analysis, not as the user's
    missing rule."""
    src = CHAIN.replace("void Reset_Handler(void) { middle();",
                        "void odd(void);\nvoid Reset_Handler(void) { odd(); middle();") + r"""
__asm__(".text\n.thumb\n.syntax unified\n.global odd\n.type odd, %function\n"
        "odd:\n sub sp, sp, #8\n ldr.w pc, [sp], #8\n.size odd, .-odd\n");
"""
    elf, obj = _image(tmp_path, {"main.c": src}, cpu="cortex-m3")
    with pytest.raises(stack.StackError) as e:
        stack.analyze(elf, obj, fpu=False)
    assert "odd (library code" in str(e.value) and "ldr.w pc, [sp], #8" in str(e.value)
    assert "CALLBACK_RULES" not in e.value.hint and "not in your code" in e.value.hint
