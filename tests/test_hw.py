"""A real board over USB serial: set MCUTEXT_HW_PORT (e.g. /dev/ttyACM0) to a board running
mcutext firmware (`mcutext build BUNDLE --board nucleo-f401re` + `mcutext flash ...`), and
optionally MCUTEXT_HW_BUNDLE to the bundle it was built from (then the scores are compared
with TFLite Micro). Skipped otherwise."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mcutext.device.client import Device, DeviceError

PORT = os.environ.get("MCUTEXT_HW_PORT")
pytestmark = [pytest.mark.hw,
              pytest.mark.skipif(not PORT, reason="set MCUTEXT_HW_PORT to a board's port")]


@pytest.fixture(scope="module")
def dev():
    with Device(PORT, timeout=30) as d:
        yield d


def test_board_answers(dev):
    info = dev.info()
    assert info["protocol"] == 1 and info["labels"]
    assert info["counter"] in ("cycles", "instructions")
    assert dev.ping() >= 0


def test_classify_matches_tflite_micro(dev):
    bundle = os.environ.get("MCUTEXT_HW_BUNDLE")
    if not bundle:
        pytest.skip("set MCUTEXT_HW_BUNDLE to compare with TFLite Micro")
    from mcutext.int8.bundle import load_bundle
    from mcutext.text.datasets import load_split
    b = load_bundle(bundle)
    texts = load_split(b.manifest["dataset"], "test").texts[:50]
    want = b.run_int8(b.tokenize(texts), "tflm")["logits"]
    for t, w in zip(texts, want):
        assert np.array_equal(np.array(dev.classify(t)["scores"], dtype=np.int8), w), t


def test_hostile_input_then_still_serving(dev):
    for line, code in ((b"nope", 1), (b"x" * 5000, 2), (b"a\x00b", 3), (b"\xff", 7)):
        dev.write(line + b"\n")
        with pytest.raises(DeviceError) as e:
            dev.read_reply()
        assert e.value.code == code
    assert dev.ping() >= 0
