"""Explanations on the device: the firmware's `explain` (the real ELF under qemu-system-arm)
gives exactly the host's int8 attributions (TFLite Micro), and `mcutext explain --port` shows
them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcutext.explain import attribution as ex
from mcutext.device.client import Device

pytestmark = pytest.mark.qemu

BOARD = "netduinoplus2"   # Cortex-M4F: the DSP kernels, the ones most likely to differ
N_SENTENCES = 40


@pytest.fixture(scope="module")
def bundle(sst2_small_bundle):
    from mcutext.int8.bundle import load_bundle
    return load_bundle(sst2_small_bundle)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    from mcutext.text.datasets import load_split
    texts = load_split("sst2", "test").texts
    # a spread of lengths, including sentences longer than the model's 32 words
    return texts[:N_SENTENCES - 2] + [max(texts, key=len), "Not bad at ALL !!"]


@pytest.fixture(scope="module")
def url(sst2_small_bundle, tmp_path_factory):
    from mcutext.firmware.build import build
    from mcutext.device.qemu import boot
    res = build(sst2_small_bundle, BOARD, tmp_path_factory.mktemp("fw_explain") / BOARD)
    with boot(res["elf"], BOARD) as u:
        yield u


def test_device_and_host_int8_attributions_agree_exactly(url, bundle, sentences):
    host = ex.explain(bundle, sentences, "tflm")
    assert any(len(h.words) == bundle.tokenizer.spec.max_words for h in host)
    with Device(url, timeout=30) as dev:
        for text, h in zip(sentences, host):
            d = ex.explain_on_device(dev, text)
            assert d.words == h.words, text
            assert d.attention_int8.tolist() == h.attention_int8.tolist(), text
            # the device prints the weight with three decimals
            assert np.abs(d.attention - h.attention).max() <= 0.0005 + 1e-9
            assert d.label == h.label and d.labels == h.labels
            assert d.probabilities == pytest.approx(h.probabilities, abs=2e-3)
            # so the rankings the metrics use are the same too
            rng = lambda: np.random.default_rng(0)  # noqa: E731
            assert ex.ranking(d.attention_int8, rng()).tolist() == \
                ex.ranking(h.attention_int8, rng()).tolist()


def test_cli_explain_port(url, bundle, sentences, capsys):
    from mcutext.cli import main
    texts = sentences[:3]
    assert main(["explain", "--port", url, "--json", *texts]) == 0
    dev = json.loads(capsys.readouterr().out)
    assert main(["explain", str(bundle.path), "--runtime", "tflm", "--json", *texts]) == 0
    host = json.loads(capsys.readouterr().out)
    assert len(dev) == len(host) == 3
    for d, h in zip(dev, host):
        assert d["runtime"] == "device" and d["label"] == h["label"]
        assert [(w["word"], w["attention_int8"]) for w in d["words"]] == \
            [(w["word"], w["attention_int8"]) for w in h["words"]]
        assert [w["share"] for w in d["words"]] == pytest.approx(
            [w["share"] for w in h["words"]], abs=0.01)
    assert main(["explain", "--port", url, texts[0]]) == 0
    shown = capsys.readouterr().out
    assert "int8 on the device" in shown and host[0]["label"] in shown
    assert " ".join(bundle.tokenizer.display_words(texts[0])) in shown
