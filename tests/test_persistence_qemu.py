"""The learned head survives a restart, and a save cut at any moment loses at most that save:
the real firmware in QEMU (netduinoplus2) with its semihosted storage file
(firmware/storage_semihost.c), QEMU killed (SIGKILL, a power cut) at random moments of 50
saves. After every reboot the device must answer `info` and hold exactly the head of the
last save that completed (its commit unit written), which the storage file itself tells.
Also: `head save` without storage, `eval` and `head train` on the device; `mcutext
personalize --save` / `mcutext head save` across restarts; the microbit and the mps2-an386
with the same storage, and booting without semihosting.
"""

from __future__ import annotations

import json
import os
import random
import struct
import time
import zlib

import pytest

from mcutext.device.client import Device, DeviceError

pytestmark = pytest.mark.qemu

BOARD = "netduinoplus2"
# cut rounds: 20 random cut moments in the suite; MCUTEXT_CUT_ROUNDS=200 for a longer run
ROUNDS = int(os.environ.get("MCUTEXT_CUT_ROUNDS", "20"))
SEED = 4
PACE = 10
# the slot layout of firmware/slots.c with the semihosted geometry (program unit 4 bytes)
HEADER, COMMIT = 20, 4


@pytest.fixture(scope="module")
def firmware(sst2_small_bundle, tmp_path_factory):
    from mcutext.firmware.build import build
    out = tmp_path_factory.mktemp("fw_persist")
    return build(sst2_small_bundle, BOARD, out / BOARD)


@pytest.fixture(scope="module")
def sentences():
    from mcutext.text.datasets import load_split
    dev = load_split("sst2", "dev")
    return list(zip(dev.labels[:ROUNDS + 10], dev.texts[:ROUNDS + 10]))


def _boot(firmware, storage, log):
    from mcutext.device.qemu import Qemu
    # paced to real time at 1 us per instruction (-icount shift=10,align=on): a save, about
    # 80,000 instructions with the file writes spread over them, lasts 80 ms or more of wall
    # clock, so that the kills below land inside it despite the host's scheduling delays
    vm = Qemu(firmware["elf"], BOARD, storage=storage, log_path=log, pace=PACE)
    vm.start()
    return vm, Device(vm.url, timeout=30)


def slot_image(seq: int, blob: bytes) -> bytes:
    """What a completed save writes at the start of its slot: header, commit unit, payload."""
    h = struct.pack("<4sIII", b"MTSL", seq, len(blob), zlib.crc32(blob))
    h += struct.pack("<I", zlib.crc32(h))
    return h + b"MTOK" + blob


def save_progress(before: bytes, after: bytes, image: bytes) -> str:
    """How far a save went, from the target slot's bytes before and after it."""
    if after == before:
        return "not started"
    if after[:len(image)] == image:
        return "committed"
    body = after[HEADER + COMMIT:]
    if after[:HEADER + COMMIT] != b"\xff" * (HEADER + COMMIT):
        return "header written"
    if body[:len(image) - HEADER - COMMIT] != b"\xff" * (len(image) - HEADER - COMMIT):
        return "payload"
    if after == b"\xff" * len(after):
        return "erased"
    return "erasing"


def test_head_survives_restart_and_cut_saves(firmware, sentences, tmp_path):
    storage = tmp_path / "storage.bin"
    log = tmp_path / "qemu.log"
    vm, dev = _boot(firmware, storage, log)
    try:
        st = dev.head_state()["storage_info"]
        assert st["kind"] == "semihost" and st["boot"] == "factory" and st["seq"] == 0
        region = st["region"]
        assert storage.stat().st_size == region
        assert storage.read_bytes() == b"\xff" * region      # a blank chip
        factory = dev.export_head()
        dev.head_config(lr=0.1)
        for label, text in sentences[:5]:
            dev.learn(label, text)
        dev.add_label("meh")
        dev.learn("meh", sentences[5][1])
        # the save's duration over the serial line, and how long it writes the file, for
        # the kill delays below
        durations, io = [], []
        for _ in range(3):
            t0 = time.monotonic()
            m0 = storage.stat().st_mtime_ns
            dev.write(b"head save\n")
            t1 = _first_write(storage, m0)
            reply = dev.read_reply()
            f = [ln.split() for ln in reply if ln.startswith(b"saved ")][0]
            saved = {"seq": int(f[2]), "bytes": int(f[4])}
            durations.append(time.monotonic() - t0)
            io.append(time.monotonic() - t1)
        assert saved["seq"] == 3 and saved["bytes"] == len(factory)
        last = dev.export_head()
        assert last != factory
        state = dev.head_state()
        assert state["storage_info"]["unsaved"] == 0 and state["storage_info"]["seq"] == 3
    finally:
        dev.close()
        vm.stop()
    t_save, t_io = sorted(durations)[1], sorted(io)[1]
    slot = region // 2
    seq = 3
    rng = random.Random(SEED)
    window = KillWindow(1.5 * t_save)
    outcomes: dict[str, int] = {}
    for r in range(ROUNDS):
        vm, dev = _boot(firmware, storage, log)
        try:
            info = dev.info()
            assert info["board"] == BOARD
            st = dev.head_state()
            assert st["storage_info"]["boot"] == "loaded", (r, st)
            assert st["storage_info"]["seq"] == seq and st["storage_info"]["unsaved"] == 0
            assert st["updates"] == struct.unpack_from("<I", last, 20)[0]
            assert dev.export_head() == last, f"round {r}: not the last completed save"
            # a change, then a save cut at a random moment of its duration
            label, text = sentences[6 + r]
            dev.learn(label, text)
            candidate = dev.export_head()
            image = before = storage.read_bytes()
            target = 1 - _newest_slot(before, slot)
            before_slot = before[target * slot:(target + 1) * slot]
            image = slot_image(seq + 1, candidate)
            # half of the cuts at a random moment after the command is sent (they land
            # before, during or after the save), half at a random moment of the save's
            # writes, timed from its first write to the file
            from_io = rng.random() < 0.5
            delay = rng.uniform(0.0, t_io) if from_io else rng.uniform(*window.draw_range())
            m0 = storage.stat().st_mtime_ns
            dev.write(b"head save\n")
            if from_io:
                _first_write(storage, m0)
            time.sleep(delay)
            vm.kill()
        finally:
            dev.close()
            vm.stop()
        after = storage.read_bytes()
        assert len(after) == region
        # the other slot, holding the last completed save, is never touched
        assert after[(1 - target) * slot:(2 - target) * slot] == \
            before[(1 - target) * slot:(2 - target) * slot]
        progress = save_progress(before_slot, after[target * slot:(target + 1) * slot], image)
        outcomes[progress] = outcomes.get(progress, 0) + 1
        if not from_io:
            window.record(delay, progress)
        if progress == "committed":
            seq, last = seq + 1, candidate
    # after the last cut: one more boot, then a save that completes
    vm, dev = _boot(firmware, storage, log)
    try:
        assert dev.export_head() == last
        assert dev.head_state()["storage_info"]["seq"] == seq
        assert dev.save_head()["seq"] == seq + 1
    finally:
        dev.close()
        vm.stop()
    print(f"save {t_save * 1000:.1f} ms over serial, {t_io * 1000:.1f} ms from its first "
          f"write; outcomes of {ROUNDS} cut saves: {outcomes}")
    # the cuts landed before, inside and after saves (the property was exercised)
    assert outcomes.get("committed", 0) >= 1
    assert ROUNDS - outcomes.get("committed", 0) - outcomes.get("not started", 0) >= ROUNDS // 5, \
        outcomes


def _first_write(path, mtime_ns: int, timeout: float = 10.0) -> float:
    """Waits (polling) until the file's modification time changes; returns when."""
    deadline = time.monotonic() + timeout
    while os.stat(path).st_mtime_ns == mtime_ns:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: not written within {timeout} s")
    return time.monotonic()


class KillWindow:
    """Where in time, after `head save` is sent, the device writes the storage file: most of
    a save's wall-clock time is the serial exchange, so the kill delays are drawn uniformly
    over the span between the cuts seen to land before the save (not started) and after it
    (committed), estimated from the outcomes so far (medians), the whole span at first."""

    def __init__(self, span: float):
        self.span = span
        self.before: list[float] = []
        self.after: list[float] = []

    def record(self, delay: float, progress: str) -> None:
        if progress == "not started":
            self.before.append(delay)
        elif progress == "committed":
            self.after.append(delay)

    def draw_range(self) -> tuple[float, float]:
        lo = sorted(self.before)[len(self.before) // 2] if self.before else 0.0
        hi = sorted(self.after)[len(self.after) // 2] if self.after else self.span
        return (lo, hi) if hi > lo else (0.0, self.span)


def _newest_slot(data: bytes, slot: int) -> int:
    """Index of the slot holding the newest valid save (firmware/slots.c's rule)."""
    best, best_seq = -1, None
    for i in range(2):
        s = data[i * slot:(i + 1) * slot]
        magic, seq, n, crc, hcrc = struct.unpack_from("<4sIIII", s)
        if magic != b"MTSL" or zlib.crc32(s[:16]) != hcrc or s[HEADER:HEADER + COMMIT] != b"MTOK":
            continue
        if n > slot - HEADER - COMMIT or zlib.crc32(s[HEADER + COMMIT:HEADER + COMMIT + n]) != crc:
            continue
        if best_seq is None or ((seq - best_seq) & 0xFFFFFFFF) < 0x80000000:
            best, best_seq = i, seq
    assert best >= 0
    return best


def test_save_without_storage_and_eval_train(firmware, sentences):
    """No storage file: `head save` is refused (error 9) and `head state` says so; `eval`
    classifies without learning; `head train` runs epochs over the buffered examples."""
    from mcutext.device.qemu import boot
    with boot(firmware["elf"], BOARD) as url, Device(url, timeout=30) as dev:
        assert dev.head_state()["storage_info"] == {"kind": "none"}
        with pytest.raises(DeviceError) as e:
            dev.save_head()
        assert e.value.code == 9
        label, text = sentences[0]
        r = dev.evaluate(label, text)
        assert r["tally"] == {"correct": int(r["correct"]), "total": 1}
        assert dev.head_state()["updates"] == 0
        with pytest.raises(DeviceError) as e:
            dev.train_head(1)
        assert e.value.code == 4
        for label, text in sentences[:4]:
            dev.learn(label, text)
        t = dev.train_head(2)
        assert [ep["of"] for ep in t["epochs"]] == [4, 4] and t["updates"] == 12
        assert dev.head_state()["buffer"] == {"used": 4, "budget": 64}


def test_cli_save_survives_restart(firmware, sentences, tmp_path, capsys):
    """`mcutext personalize --save` and `mcutext head save`: the head a restart brings back."""
    from mcutext.cli import main
    from mcutext.device.qemu import boot
    data = tmp_path / "mine.tsv"
    data.write_text("label\ttext\n" + "".join(f"{lab}\t{t}\n" for lab, t in sentences[:12])
                    + "greeting\thello there\ngreeting\thi friend\n")
    storage = tmp_path / "storage.bin"

    def run(url, *args):
        code = main(list(args) + ["--port", url])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    with boot(firmware["elf"], BOARD, storage=storage) as url:
        out = run(url, "personalize", str(data), "--new-labels", "--holdout", "0.2", "--save",
                  "--journal", str(tmp_path / "j.jsonl"))
        assert "saved to its storage (save 1," in out
        first = json.loads(run(url, "head", "state", "--json"))
        with Device(url, timeout=30) as dev:
            dev.learn("greeting", "hey hello")
            assert dev.head_state()["storage_info"]["unsaved"] == 1
        assert "saved (save 2," in run(url, "head", "save")
        with Device(url, timeout=30) as dev:
            saved = dev.export_head()
            dev.learn("greeting", "hello again")      # not saved: lost at the restart
    with boot(firmware["elf"], BOARD, storage=storage) as url:
        st = json.loads(run(url, "head", "state", "--json"))
        assert st["storage_info"]["boot"] == "loaded" and st["storage_info"]["seq"] == 2
        assert st["updates"] == first["updates"] + 1
        assert [lab["name"] for lab in st["labels"]][-1] == "greeting"
        with Device(url, timeout=30) as dev:
            assert dev.export_head() == saved
            dev.reset_head()                           # factory in RAM, the save stays
    with boot(firmware["elf"], BOARD, storage=storage) as url, Device(url, timeout=30) as dev:
        assert dev.export_head() == saved


@pytest.mark.parametrize("board", ["microbit", "mps2-an386"])
def test_other_emulated_boards_keep_their_save(board, sst2_small_bundle, sentences, tmp_path):
    """The same storage on the Cortex-M0 (soft float, its own emulation check) and the MPS2:
    a save comes back after a restart; by hand without semihosting the board boots (its
    probe fails) and has no storage."""
    import subprocess
    from mcutext.firmware.build import build
    from mcutext.device.qemu import QEMU, Qemu, boot, popen
    fw = build(sst2_small_bundle, board, tmp_path / board)
    storage = tmp_path / "storage.bin"
    with boot(fw["elf"], board, storage=storage) as url, Device(url, timeout=30) as dev:
        for label, text in sentences[:3]:
            dev.learn(label, text)
        assert dev.save_head()["seq"] == 1
        saved = dev.export_head()
    with boot(fw["elf"], board, storage=storage) as url, Device(url, timeout=30) as dev:
        st = dev.head_state()
        assert st["storage_info"]["boot"] == "loaded" and st["updates"] == 3
        assert dev.export_head() == saved
    # QEMU started by hand, without semihosting
    machine = Qemu(fw["elf"], board).board.qemu_machine
    proc = popen([QEMU, "-M", machine, "-display", "none", "-monitor", "none",
                  "-serial", "stdio", "-kernel", fw["elf"]],
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        proc.stdin.write(b"head state\n")
        proc.stdin.flush()
        time.sleep(3)
    finally:
        proc.kill()
    out = proc.communicate()[0]
    assert b"ready" in out and b"storage none" in out and b"error 6" not in out, out[-400:]
