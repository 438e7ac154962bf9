"""The hardware watchdog, in qemu-system-arm: mps2-an386's CMSDK APB watchdog (the one
watchdog QEMU emulates among our boards; docs/reliability.md).

A test build adds a `hang` command (-DMT_TEST_HANG: an #if'd branch of the dispatcher that
spins forever) and the `fault` command of test_firmware_qemu.py. The firmware arms the
watchdog at boot and kicks it from its main loop; a stuck command stops the kicks, the
watchdog's first timeout raises the NMI (the handler notes the cause in RAM that start-up
does not clear), its second timeout resets the chip, and the firmware boots again, serves,
and reports `reset watchdog` in `stats`. A busy device that keeps returning to its loop is
never reset, even when its commands add up to more than the timeout: the kicks work.
"""

from __future__ import annotations

import time

import pytest

from mcutext.device.client import Device

pytestmark = pytest.mark.qemu

BOARD = "mps2-an386"
TIMEOUT_S = 2.0          # WDOG_TIMEOUT_TICKS / 25 MHz in boards/common/cmsdk_watchdog.c: to the NMI
TEXT = "a gripping , funny and moving film that never lets go of you until the very end"


@pytest.fixture(scope="module")
def firmware(sst2_small_bundle, tmp_path_factory) -> dict:
    from mcutext.firmware.build import build
    out = tmp_path_factory.mktemp("fw_watchdog")
    return build(sst2_small_bundle, BOARD, out / BOARD,
                 defines={"MT_TEST_HANG": "1", "MT_FAULT_COMMAND": "1"})


@pytest.fixture()
def device(firmware):
    from mcutext.device.qemu import boot
    log = firmware["elf"].rsplit("/", 1)[0] + "/session.log"
    with boot(firmware["elf"], BOARD) as url, Device(url, timeout=60, log=log) as dev:
        yield dev


def wait_for_boot(dev: Device, timeout: float) -> bytes:
    """Reads lines until the boot banner; McutextError if none comes in time."""
    deadline = time.monotonic() + timeout
    while True:
        line = dev.read_line(timeout=max(0.1, deadline - time.monotonic()))
        if line.startswith(b"# mcutext firmware "):
            return line


def test_stuck_command_is_ended_by_a_watchdog_reset(device):
    s = device.stats()
    assert s["reset"] == "unknown"        # a fresh QEMU: no mark in RAM
    before = device.classify(TEXT)
    for _ in range(2):                    # twice: the mark is cleared and set again
        device.write(b"hang\n")
        t0 = time.monotonic()
        banner = wait_for_boot(device, timeout=120)
        seconds = time.monotonic() - t0
        assert banner.endswith(b" ready")
        s = device.stats()
        assert s["requests"] == 1          # the counters restarted: a real reset
        assert s["reset"] == "watchdog"
        after = device.classify(TEXT)
        assert {k: after[k] for k in ("label", "scores", "words")} == \
               {k: before[k] for k in ("label", "scores", "words")}
        print(f"\n{BOARD}: `hang` -> watchdog reset -> serving again after {seconds:.2f} s "
              f"(wall clock; {2 * TIMEOUT_S:g} s of emulated time at most)")


def test_a_reset_by_other_means_is_not_reported_as_the_watchdog(device):
    device.write(b"hang\n")
    wait_for_boot(device, timeout=120)
    assert device.stats()["reset"] == "watchdog"
    device.write(b"fault\n")              # undefined instruction -> fault handler -> SYSRESETREQ
    wait_for_boot(device, timeout=60)
    s = device.stats()
    assert s["requests"] == 1 and s["reset"] == "unknown"


def test_a_busy_device_is_kicked_and_not_reset(device):
    """Classifications back to back, more instructions in all (counted by the firmware under
    -icount shift=N: 2^N ns of emulated time each) than the watchdog's timeout: no reset,
    because the loop kicks."""
    from mcutext.firmware.boards import get_board
    per_second = 1e9 / 2 ** get_board(BOARD).icount_shift
    need = 1.25 * TIMEOUT_S * per_second
    done, n = 0, 0
    while done < need:
        r = device.classify(TEXT)
        done += r["instructions"]["tokenizer"] + r["instructions"]["model"]
        n += 1
    s = device.stats()
    assert s["requests"] >= n + 2 and s["reset"] == "unknown"   # a reset restarts the count
    print(f"\n{BOARD}: {n} classifications, {done / per_second:.2f} s of emulated time in "
          f"the tokenizer and the model alone, no watchdog reset")
