"""The host probe (mcutext.reliability.hostprobe), short and derandomized: hostile device replies from a
fake device on a local socket, hostile manifests of a real bundle, hostile dataset rows,
recipes and command-line arguments, each through the real CLI. Every run must end with exit
code 0 or 2, at most one `error:` line, no traceback, and nothing written outside its output
folder. `make fuzz-host` runs the same families for FUZZ_SECONDS with fresh random draws."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcutext.reliability.fakedevice import FakeDevice, well_formed_replies
from mcutext.reliability.hostprobe import FAMILIES, Probe, problems, run_subprocess, snapshot

# examples per family: a few hundred in all, about two minutes on a loaded machine
EXAMPLES = {"replies": 100, "manifests": 30, "data": 80, "recipes": 8, "argv": 60}


@pytest.fixture(scope="module")
def probe(sst2_small_bundle, tmp_path_factory):
    return Probe(sst2_small_bundle, tmp_path_factory.mktemp("hostprobe"))


@pytest.mark.parametrize("family", FAMILIES)
def test_host_probe(family, probe):
    @settings(max_examples=EXAMPLES[family], derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        probe.example(family, data.draw)

    run()
    assert probe.counts[family] >= EXAMPLES[family]


def test_the_rules_catch_what_they_should():
    """The checks can fail: a traceback, a second error line, a stray exit code and a file
    written beside the output folder are each reported."""
    same = {"in/x": "1"}
    assert problems(0, "", same, same) == []
    assert problems(1, "Traceback (most recent call last):\n  ...", same, same) == [
        "exit code 1", "a traceback on stderr"]
    assert problems(2, "error: a\nerror: b\n", same, same) == ["2 error lines"]
    assert problems(2, "", same, same) == ["exit code 2 without an error line"]
    assert problems(0, "", same, {**same, "stray.tmp": "2"}) == [
        "wrote outside its output folder: stray.tmp"]


@pytest.mark.parametrize("args", [
    ["classify", "caf\udce9 \udcff"], ["classify", "--json", "caf\udce9 \udcff"],
    ["explain", "caf\udce9 \udcff"], ["info", "\udcff"], ["head", "\udcff"]])
def test_argv_that_is_not_utf8_in_a_real_process(args, tmp_path):
    """Real processes with argument bytes that are not UTF-8 (as a shell passes them), against
    a fake device: exit 0 or 2, one error line at most, no traceback, nothing written."""
    (tmp_path / "out").mkdir()
    labels = ["negative", "positive"]
    tok = {"buckets": 10240, "max_words": 32, "typo_features": True, "seed": 0,
           "max_word_bytes": 24}
    with FakeDevice(well_formed_replies(labels, tok)) as fake:
        argv = args[:1] + ["--port", fake.url] + args[1:] if args[0] != "info" else \
            ["info", args[1]]
        before = snapshot(tmp_path)
        code, out, err = run_subprocess(argv, tmp_path)
        assert problems(code, err, before, snapshot(tmp_path)) == [], (argv, code, err)
    if args[0] == "classify":
        assert code == 0 and ("positive" in out), (out, err)
