"""Every board that QEMU emulates, booted: the boards are read from their folders (a
`[qemu]` machine in board.toml), so a new board folder is booted by the suite without any
change here.

Per board, one boot of the default firmware (with personalization; conftest's
board_firmware, built once per session): `info` names the board, its core and its kernels;
real sst2 test sentences classify byte-identical to the TFLite Micro interpreter; a few
on-device learning steps give the loss of the numpy reference (mcutext.device.personalize
.HeadSimulator), in hardware or software floating point. The long checks (200 sentences,
explanations, hostile input, faults) run on fewer boards in test_firmware_qemu.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from mcutext.firmware import boards
from mcutext.device.client import Device

pytestmark = pytest.mark.qemu

EMULATED = [b.name for b in boards.list_boards() if b.qemu_machine]
N_SENTENCES = 24
N_LEARN = 4


@pytest.fixture(scope="module")
def bundle(sst2_small_bundle):
    from mcutext.int8.bundle import load_bundle
    return load_bundle(sst2_small_bundle)


@pytest.fixture(scope="module")
def sentences(bundle) -> tuple[list[str], np.ndarray]:
    from mcutext.text.datasets import load_split
    texts = load_split("sst2", "test").texts[:N_SENTENCES]
    return texts, bundle.run_int8(bundle.tokenize(texts), "tflm")["logits"]


@pytest.fixture(scope="module")
def examples(bundle) -> tuple[list[str], list[int], np.ndarray]:
    from mcutext.text.datasets import load_split
    dev = load_split("sst2", "dev")
    texts = dev.texts[:N_LEARN]
    y = [bundle.labels.index(lab) for lab in dev.labels[:N_LEARN]]
    return texts, y, bundle.run_int8(bundle.tokenize(texts), "tflm")["features"].astype(np.int8)


def test_the_suite_boots_every_emulated_board():
    """The six emulated boards of the project, one per Cortex-M core it supports."""
    assert {"microbit", "lm3s6965evb", "netduinoplus2", "mps2-an386", "mps2-an500",
            "mps2-an505"} <= set(EMULATED)
    cores = {boards.get_board(b).cpu for b in EMULATED}
    assert {"cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33"} <= cores


@pytest.mark.parametrize("board", EMULATED)
def test_board_boots_classifies_like_tflite_micro_and_learns(board, board_firmware, bundle,
                                                              sentences, examples):
    from mcutext.device.personalize import HeadSimulator, UpdateConfig
    from mcutext.device.qemu import boot
    rep = board_firmware[board]
    spec = boards.get_board(board)
    texts, want = sentences
    with boot(rep["elf"], board) as url, Device(url, timeout=30) as dev:
        info = dev.info()
        assert (info["board"], info["cpu"]) == (board, spec.cpu)
        assert info["kernels"] == ("dsp" if spec.dsp else "portable") == rep["kernels"]
        assert info["counter"] == "instructions"
        assert info["flash"]["used"] == rep["flash_bytes"]
        counts = []
        for i, text in enumerate(texts):
            r = dev.classify(text)
            assert r["scores"] == want[i].tolist(), f"{board}, sentence {i} {text!r}"
            counts.append(r["instructions"]["model"])
        assert min(counts) > 0

        # on-device learning: the device's float loss is the reference's
        state = dev.head_state()
        n_new = state["rows"] - len(bundle.labels)
        cfg = state["config"]
        sim = HeadSimulator.from_bundle(bundle, UpdateConfig(cfg["lr"], cfg["momentum"],
                                                             cfg["l2"]), max_new_labels=n_new)
        ex_texts, ex_y, feats = examples
        for i, (text, lab) in enumerate(zip(ex_texts, ex_y)):
            loss = sim.step(sim.dequantize(feats[i]), lab)
            r = dev.learn(bundle.labels[lab], text)
            assert r["updates"] == i + 1
            assert r["loss"] == pytest.approx(loss, rel=1e-4, abs=1e-5), f"{board}, step {i}"
        dev.reset_head()
        assert dev.classify(texts[0])["scores"] == want[0].tolist()
    print(f"\n{board} ({spec.cpu}, {rep['kernels']}): {len(texts)} sentences identical to "
          f"TFLite Micro, model {int(np.mean(counts))} instructions (mean); {N_LEARN} learning "
          "steps equal to the reference")
