"""On-device personalization over the serial protocol, in QEMU (netduinoplus2, Cortex-M4F):
the firmware's `label` / `learn` / `head` commands against the numpy reference
(mcutext.device.personalize.HeadSimulator) fed with TFLite Micro's int8 features of the same
sentences and the same updates. The C update rule itself is tested on the host in
test_personalize.py; this checks the wiring: codegen's factory head, the features the
firmware feeds it, the framing of `learn`, and which head `classify` uses.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from mcutext.device.client import Device, DeviceError

pytestmark = pytest.mark.qemu

BOARD = "netduinoplus2"
N_LEARN, N_CHECK = 20, 30


@pytest.fixture(scope="module")
def bundle(sst2_small_bundle):
    from mcutext.int8.bundle import load_bundle
    return load_bundle(sst2_small_bundle)


@pytest.fixture(scope="module")
def firmware(sst2_small_bundle, tmp_path_factory):
    from mcutext.firmware.build import build
    out = tmp_path_factory.mktemp("fw_personalize")
    return build(sst2_small_bundle, BOARD, out / BOARD)


@pytest.fixture(scope="module")
def device(firmware):
    from mcutext.device.qemu import boot
    with boot(firmware["elf"], BOARD) as url:
        log = firmware["elf"].rsplit("/", 1)[0] + "/session.log"
        with Device(url, timeout=30, log=log) as dev:
            yield dev


@pytest.fixture(scope="module")
def dev_data(bundle):
    from mcutext.text.datasets import load_split
    dev = load_split("sst2", "dev")
    texts = dev.texts[:N_LEARN + N_CHECK]
    y = [bundle.labels.index(lab) for lab in dev.labels[:N_LEARN + N_CHECK]]
    out = bundle.run_int8(bundle.tokenize(texts), "tflm")
    return texts, y, out["features"].astype(np.int8), out["logits"].astype(np.int8)


def _f32(x) -> np.float32:
    return np.float32(x)


def test_learn_matches_the_simulator(device, bundle, dev_data):
    from mcutext.device.personalize import HeadSimulator, UpdateConfig
    texts, y, feats, logits = dev_data
    device.reset_head()
    # momentum and the pull toward the factory weights take part too
    assert device.head_config(lr=0.1, momentum=0.5, l2=0.01) == {"lr": 0.1, "momentum": 0.5,
                                                                 "l2": 0.01}
    state = device.head_state()
    c0 = len(bundle.labels)
    assert state["updates"] == 0 and state["personalized"] == 0
    assert [lab["name"] for lab in state["labels"]] == bundle.labels
    assert state["feature_dim"] == feats.shape[1]
    n_new = state["rows"] - c0
    assert n_new == state["new_labels"]["budget"] >= 4
    cfg = state["config"]
    sim = HeadSimulator.from_bundle(bundle, UpdateConfig(cfg["lr"], cfg["momentum"], cfg["l2"]),
                                    max_new_labels=n_new)

    # a new label; the device and the simulator give it the same row
    new = device.add_label("meh")
    assert new == sim.add_label("meh") == c0

    # a corrupted example is refused, and nothing is learned
    payload = f"meh\t{texts[0]}".encode()
    bad = f"learn {zlib.crc32(payload) ^ 1:08x} ".encode() + payload
    with pytest.raises(DeviceError) as e:
        device.command(bad)
    assert e.value.code == 8
    assert device.head_state()["updates"] == 0

    steps = []
    for i in range(N_LEARN):
        lab = new if i % 4 == 1 else y[i]
        name = "meh" if lab == new else bundle.labels[lab]
        f = sim.dequantize(feats[i])
        # what classify gives before the step: the int8 model until the first update
        if sim.updates == 0:
            want_pred = int(np.argmax(logits[i]))
        else:
            z = sim.scores(f)
            top = np.sort(z[np.isfinite(z)])[::-1]
            want_pred = int(np.argmax(z)) if top[0] - top[1] > 1e-3 else None
        want_loss = sim.step(f, lab)
        r = device.learn(name, texts[i])
        assert r["label_index"] == lab and r["updates"] == i + 1
        assert r["loss"] == pytest.approx(want_loss, rel=1e-4, abs=1e-5), f"step {i}"
        if want_pred is not None:
            assert r["predicted_index"] == want_pred, f"step {i}"
        steps.append(r["instructions"]["step"])

    state = device.head_state()
    assert state["updates"] == N_LEARN and state["personalized"] == 1
    assert {"index": new, "name": "meh", "kind": "added"} in state["labels"]

    agree = 0
    for i in range(N_LEARN, N_LEARN + N_CHECK):
        r = device.classify(texts[i])
        z = sim.scores(sim.dequantize(feats[i]))
        got = np.array(r["head_bits"], np.float32)
        assert r["scores"] == logits[i].tolist()            # the int8 model is unchanged
        assert np.array_equal(np.isfinite(got), np.isfinite(z))
        fin = np.isfinite(z)
        np.testing.assert_allclose(got[fin], z[fin], rtol=1e-4, atol=1e-4)
        top = np.sort(z[fin])[::-1]
        if top[0] - top[1] > 1e-3:
            assert r["label_index"] == int(np.argmax(z)), f"sentence {i}"
            agree += 1
        assert r["label"] == ("meh" if r["label_index"] == new else
                              bundle.labels[r["label_index"]])
    assert agree >= N_CHECK - 2
    # the exported state is the simulator's, within rounding; and it imports back
    before = device.classify(texts[N_LEARN])["head_bits"]
    blob = device.export_head()
    twin = HeadSimulator.from_bundle(bundle, max_new_labels=n_new)
    twin.load_blob(blob)
    assert twin.updates == N_LEARN and twin.labels == sim.labels
    np.testing.assert_allclose(twin.W, sim.W, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(twin.b, sim.b, rtol=1e-4, atol=1e-5)
    device.reset_head()
    assert device.import_head(blob) == N_LEARN
    assert device.export_head() == blob
    assert device.classify(texts[N_LEARN])["head_bits"] == before
    device.head_config(lr=0.05, momentum=0, l2=0)
    print(f"\n{BOARD}: {N_LEARN} on-device updates agree with the simulator on {N_CHECK} "
          f"sentences; instructions per update step: {np.median(steps):.0f} (median)")


def test_labels_and_reset(device, bundle, dev_data):
    texts, _y, _f, logits = dev_data
    device.reset_head()
    c0 = len(bundle.labels)
    assert device.add_label("a") == c0
    assert device.add_label("b") == c0 + 1
    for bad, code in (("label add a", 4), ("label add " + "x" * 24, 4), ("label add", 4),
                      (f"label remove {bundle.labels[0]}", 4), ("label rename zz yy", 4),
                      ("head nonsense", 4), ("learn 12345678", 4),
                      ("learn 00000000 a\thello", 8)):
        with pytest.raises(DeviceError) as e:
            device.command(bad)
        assert e.value.code == code, bad
    device.remove_label("a")
    assert device.rename_label("b", "c") == c0 + 1
    assert device.add_label("d") == c0          # the freed row is reused
    with pytest.raises(DeviceError):
        device.learn("nope", texts[0])
    device.learn("d", texts[0])
    r = device.classify(texts[1])
    assert "head" in r
    device.reset_head()
    st = device.head_state()
    assert st["updates"] == 0 and [lab["name"] for lab in st["labels"]] == bundle.labels
    r = device.classify(texts[1])
    assert "head" not in r and r["scores"] == logits[1].tolist()
    assert r["label_index"] == int(np.argmax(logits[1]))


def test_personalize_session(device, bundle, dev_data):
    """What `mcutext personalize` runs (cli_personalize.personalize_on_device): new labels
    added, every example learned each epoch, held-out accuracy before and after."""
    from mcutext.cli.personalize import personalize_on_device, split_holdout
    texts, y, _f, _l = dev_data
    data_t = list(texts[:24]) + ["hello there", "hi, good morning", "hey you, hello",
                                 "good evening, hi", "hello hello", "hi there friend"]
    data_y = [bundle.labels[k] for k in y[:24]] + ["greeting"] * 6
    lines = []
    with pytest.raises(Exception, match="greeting"):
        personalize_on_device(device, data_t, data_y, reset=True)
    rep = personalize_on_device(device, data_t, data_y, epochs=2, holdout=0.2,
                                new_labels=True, reset=True, echo=lines.append)
    learn, held = split_holdout(len(data_t), 0.2)
    assert rep["added_labels"] == ["greeting"]
    assert rep["learned"] == len(learn) and rep["held_out"] == len(held) == 6
    assert rep["updates"] == 2 * len(learn) and len(rep["epochs"]) == 2
    assert all(0 <= e["online_accuracy"] <= 1 and e["loss"] > 0 for e in rep["epochs"])
    assert 0 <= rep["before"] <= 1 and 0 <= rep["after"] <= 1
    assert rep["step_cost_median"] > 0
    assert any(ln.startswith("epoch 2: loss") for ln in lines)
    device.reset_head()


def test_cli_personalize_and_head_files(firmware, dev_data, tmp_path, capsys):
    """`mcutext personalize`, `mcutext head state|export|reset|import` on a second QEMU."""
    from mcutext.cli import main
    from mcutext.device.qemu import boot
    texts, y, _f, _l = dev_data
    data = tmp_path / "mine.tsv"
    rows = ["label\ttext"] + [f"{'positive' if k else 'negative'}\t{t}"
                               for t, k in zip(texts[:16], y[:16])]
    rows += [f"greeting\t{t}" for t in ("hello there", "hi friend", "hey hello", "hi hi")]
    data.write_text("\n".join(rows) + "\n")
    blob = tmp_path / "head.bin"
    with boot(firmware["elf"], BOARD) as url:
        def run(*args):
            code = main(list(args) + ["--port", url])
            out, err = capsys.readouterr()
            assert code == 0, err
            return out
        out = run("personalize", str(data), "--epochs", "2", "--new-labels", "--lr", "0.1",
                  "--holdout", "0.25")
        assert "held-out (5 examples) before" in out and "epoch 2: loss" in out
        assert "30 updates on the device" in out
        assert "greeting  (added)" in run("head", "state")
        assert "bytes to" in run("head", "export", str(blob))
        run("head", "reset")
        assert "updates 0" in run("head", "state")
        assert "head loaded (30 updates)" in run("head", "import", str(blob))
        st = json.loads(run("head", "state", "--json"))
        assert st["updates"] == 30 and st["labels"][-1]["name"] == "greeting"
        code = main(["personalize", str(data), "--port", url])   # greeting exists now: fine
        capsys.readouterr()
        assert code == 0


def test_cli_teach_matches_the_simulator(firmware, bundle, dev_data, tmp_path, capsys):
    """`mcutext teach`: new labels from a few examples each (`keep`, `head imprint`, `head
    train`) on a fresh QEMU; the device's float head then scores sentences as the simulator
    does after the same sequence on TFLite Micro's int8 features."""
    from mcutext.cli import main
    from mcutext.device.personalize import HeadSimulator, UpdateConfig
    from mcutext.device.qemu import boot
    texts, _y, _f, _l = dev_data
    taught = [("greeting", "hello there"), ("weather", "will it rain tomorrow"),
              ("greeting", "hi friend , good morning"), ("weather", "is it sunny outside"),
              ("greeting", "hey hello")]
    data = tmp_path / "new.tsv"
    data.write_text("label\ttext\n" + "".join(f"{lab}\t{t}\n" for lab, t in taught))
    with boot(firmware["elf"], BOARD) as url:
        code = main(["teach", str(data), "--port", url, "--epochs", "2", "--lr", "0.1",
                     "--momentum", "0.5", "--l2", "0.5"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "added 2 labels: greeting, weather" in out
        assert "imprinted greeting (3), weather (2)" in out and "epoch 2: loss" in out
        assert "12 updates on the device" in out      # 2 imprints + 2 epochs of 5 steps
        with Device(url, timeout=30) as dev:
            got = [dev.classify(t) for t in texts[:10]]
    sim = HeadSimulator.from_bundle(bundle, UpdateConfig(0.1, 0.5, 0.5))
    rows = [sim.add_label("greeting"), sim.add_label("weather")]
    q = bundle.run_int8(bundle.tokenize([t for _, t in taught] + list(texts[:10])),
                        "tflm")["features"].astype(np.int8)
    F = sim.dequantize(q[:len(taught)])
    Y = np.array([rows[0] if lab == "greeting" else rows[1] for lab, _ in taught])
    sim.imprint_mean(F, Y)
    sim.train(F, Y, 2)
    for r, fq in zip(got, q[len(taught):]):
        z = sim.scores(sim.dequantize(fq))
        np.testing.assert_allclose(np.array(r["head_bits"], np.float32), z, rtol=1e-4,
                                   atol=1e-5)
        assert r["label_index"] == int(np.argmax(z))


def test_refusals_change_nothing_on_the_real_elf(device, bundle, dev_data):
    """Issue 16 on the real firmware: with an imported head of extreme values, a `learn` of a
    fresh label's first example and a `head train` are refused with `error 4` and `head
    export` stays byte-identical; an update count of 2^32 - 1 saturates and the device keeps
    using its personalized head."""
    from mcutext.device.personalize import HeadSimulator
    texts, y, _, _ = dev_data
    n_new = device.head_state()["new_labels"]["budget"]

    def extreme(big: float, updates: int = 5) -> bytes:
        sim = HeadSimulator.from_bundle(bundle, max_new_labels=n_new)
        i = sim.add_label("big")
        sim._fresh.discard(i)
        sim.W[i, 0] = np.float32(big)
        sim.add_label("new")
        sim.updates = updates
        return sim.blob()

    device.reset_head()
    device.head_config(lr=3, momentum=0.2, l2=1)
    blob = extreme(3.0e38)
    device.import_head(blob)
    with pytest.raises(DeviceError, match="overflow") as e:
        device.learn("new", texts[0])
    assert e.value.code == 4 and device.export_head() == blob
    assert {"index": len(bundle.labels) + 1, "name": "new", "kind": "fresh"} in \
        device.head_state()["labels"]
    blob = extreme(1.0e30)
    device.import_head(blob)
    for t, lab in zip(texts[:4], y[:4]):
        device.keep(bundle.labels[lab], t)
    with pytest.raises(DeviceError, match="overflow"):
        device.train_head(100)
    assert device.export_head() == blob
    device.head_config(lr=0.05, momentum=0, l2=0)
    device.import_head(extreme(0.5, updates=0xFFFFFFFF))
    assert device.learn(bundle.labels[y[0]], texts[0])["updates"] == 0xFFFFFFFF
    assert "head" in device.classify(texts[1])
    device.reset_head()
