"""Fuzzing the firmware's input paths on the host (docs/reliability.md, "Fuzzing").

Four libFuzzer targets (firmware/fuzz/), compiled with clang and AddressSanitizer +
UndefinedBehaviorSanitizer around the real firmware sources and a real generated model:

    protocol      the whole UART receive path: line framing, UTF-8 check, every command
    tokenizer     mt_tokenize on any bytes and spec; the Cortex-M0 division-free path
                  against the `%` path; the robust encoding on a table (the bundle's, or
                  one of FUZZ_WORDS for a hashed bundle)
    learn         the CRC-framed `learn` upload, through the label lookup, model and SGD step
    head_import   `head import` lines and the blob validation of mt_head_load

    exes = build_targets(bundle, "build/fuzz")          # build/fuzz/bin/fuzz_<target>
    seeds = write_seeds(bundle, exes, "build/fuzz")     # build/fuzz/seeds/<target>/
    run_target(exes["protocol"], seeds["protocol"], "build/fuzz", seconds=600)

The seed corpus is real traffic: sentences of the dataset the bundle was trained on, as the
host tool sends them (classify, explain, learn with its CRC), and a head blob the device
exported itself. Everything is written under build/; nothing generated is committed.

    python -m mcutext.reliability.fuzz --seconds 600        # `make fuzz`: every target, one at a time
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

from ..firmware.boards import PROJECT_ROOT
from ..common.errors import McutextError
from ..common.outputs import check_out, write_file

FIRMWARE_DIR = PROJECT_ROOT / "firmware"
KERNELS_DIR = FIRMWARE_DIR / "kernels"
FUZZ_DIR = FIRMWARE_DIR / "fuzz"
TARGETS = ("protocol", "tokenizer", "learn", "head_import")
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer"]
CFLAGS = ["-std=gnu11", "-g", "-O1", "-Wall", "-Wextra", "-Werror",
          "-Wno-unused-function", "-DMT_EMULATE_DSP", "-DMT_BOARD_NAME=\"fuzz\"",
          "-DMT_FIRMWARE_VERSION=\"fuzz\""]
# The app's core (protocol, tokenizer, personalization) around the generated model.
CORE_SOURCES = ("protocol.c", "tokenizer.c", "personalize.c", "head_blob.c", "slots.c")
# The robust table of the tokenizer target when the bundle's encoding is hashed: these words,
# in 6 clusters, all taking their typos (deletions shared by two clusters: ambiguous keys).
FUZZ_WORDS = (b"the", b"then", b"than", b"a", b"an", b"and", b"good", b"goods", b"bad",
              b"band", b"movie", b"movies", b"film", b"films", b"not", b"note", b"it's",
              b"caf\xc3\xa9", b"great", b"grate", b"x" * 24)
MAX_LEN = {"protocol": 8192, "tokenizer": 2048, "learn": 4096, "head_import": 4096}
_EXECS = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_DONE = re.compile(r"Done (\d+) runs")


def _clang() -> str:
    cc = shutil.which("clang") or shutil.which("clang-14")
    if cc is None:
        raise McutextError("clang not found",
                           hint="install clang and libclang-rt-14-dev (`make setup`)")
    return cc


def _run(cmd: list[str], what: str) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-30:])
        raise McutextError(f"{what} failed:\n{tail}")


def _fuzz_table(bundle_path: str | Path):
    """The robust table the tokenizer target runs: the bundle's own, or one of FUZZ_WORDS."""
    from ..int8.bundle import load_bundle
    from ..text.tokenizer import RobustTable
    b = load_bundle(bundle_path)
    if b.encoding_table is not None:
        return b.encoding_table
    return RobustTable.build(8, {w: 2 + i % 6 for i, w in enumerate(FUZZ_WORDS)}, FUZZ_WORDS,
                             0)


def build_targets(bundle_path: str | Path, out_dir: str | Path,
                  targets: tuple[str, ...] = TARGETS) -> dict[str, Path]:
    """Generate the bundle's model and build the fuzz targets: {target: executable}."""
    from ..codegen.driver import generate
    from ..codegen.emit import robust_table_c

    cc = _clang()
    out = Path(out_dir)
    gen_dir, obj_dir, bin_dir = out / "gen", out / "obj", out / "bin"
    for d in (gen_dir, obj_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    # The DSP layout with C equivalents of the DSP instructions: the code of the Cortex-M4
    # boards, function-pointer kernels included.
    gen = generate(bundle_path, gen_dir, dsp=True)
    includes = [f"-I{d}" for d in (gen_dir, FIRMWARE_DIR, KERNELS_DIR, FUZZ_DIR)]
    compile_flags = [cc, *CFLAGS, *SANITIZE, "-fsanitize=fuzzer-no-link", *includes]

    def obj(src: Path, name: str | None = None) -> Path:
        o = obj_dir / f"{name or src.stem}.o"
        _run([*compile_flags, "-c", str(src), "-o", str(o)], f"compiling {src}")
        return o

    model_objs = ([obj(FIRMWARE_DIR / s) for s in CORE_SOURCES]
                  + [obj(s, "k_" + s.stem) for s in sorted(KERNELS_DIR.glob("*.c"))]
                  + [obj(Path(f), "gen_" + Path(f).stem) for f in gen["files"]
                     if f.endswith(".c")]
                  + [obj(FUZZ_DIR / "board_host.c")])
    exes = {}
    for t in targets:
        if t == "tokenizer":
            table_c = gen_dir / "fuzz_table.c"
            table_c.write_text(robust_table_c(_fuzz_table(bundle_path), "mt_fuzz_table",
                                                      "the tokenizer fuzz target's table"))
            objs = [obj(FUZZ_DIR / "fuzz_tokenizer.c"), obj(FUZZ_DIR / "tokenizer_soft.c"),
                    obj_dir / "tokenizer.o", obj(table_c)]
        elif t in TARGETS:
            objs = [obj(FUZZ_DIR / f"fuzz_{t}.c"), *model_objs]
        else:
            raise McutextError(f"unknown fuzz target '{t}' (use {', '.join(TARGETS)})")
        exe = bin_dir / f"fuzz_{t}"
        _run([cc, *SANITIZE, "-fsanitize=fuzzer", *map(str, objs), "-lm", "-o", str(exe)],
             f"linking {exe.name}")
        exes[t] = exe
    return exes


# --- seeds: real traffic ------------------------------------------------------------------

def _sentences(bundle, n: int) -> list[tuple[str, str]]:
    """(label, text) pairs of the dataset the bundle was trained on (test split first)."""
    from ..text.datasets import has_split, load_split
    name = bundle.manifest.get("dataset") or bundle.manifest.get("recipe", {}).get("dataset") \
        or bundle.name
    for split in ("test", "dev", "train"):
        try:
            if has_split(name, split):
                ds = load_split(name, split)
                return list(zip(ds.labels, ds.texts))[:n]
        except McutextError:
            continue
    raise McutextError(f"no dataset '{name}' for the seed corpus",
                       hint="set MCUTEXT_DATA_DIR to the shared datasets folder")


def learn_line(label: str, text: bytes) -> bytes:
    payload = label.encode() + b"\t" + text
    return b"learn %08x " % zlib.crc32(payload) + payload


def _fit(text: str, limit: int = 700) -> bytes:
    b = text.encode("utf-8")[:limit]
    return b.decode("utf-8", errors="ignore").encode("utf-8")


def _export_blob(exe: Path, script: bytes, tmp: Path) -> bytes:
    """Runs the protocol target once on `script` (which ends with `head export`), echoing
    the device's replies, and returns the exported blob."""
    f = tmp / "record.in"
    f.write_bytes(script)
    env = dict(os.environ, MT_FUZZ_ECHO="1")
    p = subprocess.run([str(exe), str(f)], capture_output=True, env=env, timeout=120)
    if p.returncode != 0:
        raise McutextError(f"recording with {exe.name} failed:\n"
                           + p.stderr.decode(errors="replace")[-2000:])
    data = b""
    # libFuzzer runs an empty input before the file, and the target resets the device after
    # each input: the session is the last stretch between boot lines with an export.
    sessions = [s for s in p.stdout.split(b"# mcutext firmware") if b"\r\ndata 0 " in s]
    for line in (sessions[-1] if sessions else b"").split(b"\r\n"):
        if line.startswith(b"data "):
            _, off, hx = line.split(b" ")
            if int(off) != len(data):
                raise McutextError("recorded export is not in order")
            data += bytes.fromhex(hx.decode())
    if not data:
        raise McutextError("the recorded session exported no blob")
    return data


def write_seeds(bundle_path: str | Path, exes: dict[str, Path], out_dir: str | Path,
                sentences: int = 60) -> dict[str, Path]:
    """The seed corpus of every target under out_dir/seeds/<target>/."""
    from ..int8.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    labels = list(bundle.manifest["labels"])
    pairs = _sentences(bundle, sentences)
    spec = bundle.tokenizer.spec
    root = Path(out_dir) / "seeds"
    shutil.rmtree(root, ignore_errors=True)
    dirs = {t: root / t for t in TARGETS}
    for d in dirs.values():
        d.mkdir(parents=True)
    texts = [(lab if lab in labels else labels[0], _fit(t)) for lab, t in pairs]

    # A session of the host tool: teach a new label and the factory ones, then export.
    teach = [b"head config lr 0.1 momentum 0.5", b"label add greet"]
    teach += [learn_line(lab, t) for lab, t in texts[:8]]
    teach += [learn_line("greet", b"hello there, good morning"), b"head state"]
    blob = None
    if "protocol" in exes:
        blob = _export_blob(exes["protocol"], b"\n".join(teach + [b"head export"]) + b"\n",
                            root)

    def put(t: str, name: str, data: bytes) -> None:
        (dirs[t] / name).write_bytes(data)

    # protocol: command lines as the host tool sends them
    put("protocol", "info", b"info\nstats\nhelp\nping 1\n")
    for i, (lab, t) in enumerate(texts):
        cmd = (b"classify ", b"explain ")[i % 2]
        put("protocol", f"classify_{i:02d}", cmd + t + b"\r\n")
    put("protocol", "session", b"\n".join(teach + [b"classify " + texts[0][1], b"stats",
                                                   b"head export", b"head reset"]) + b"\n")
    put("protocol", "save", b"\n".join(teach + [b"head save", b"head state"]) + b"\n")
    put("protocol", "labels", b"label add greet\nlabel rename greet hi\nlabel remove hi\n"
                              b"head state\n")
    if blob is not None:
        lines = [b"head import %d %s" % (o, blob[o:o + 64].hex().encode())
                 for o in range(0, len(blob), 64)] + [b"head import end %d" % len(blob)]
        put("protocol", "import", b"\n".join(lines + [b"head state"]) + b"\n")
        # as sent, with header and CRC rewritten, with a damaged line, cut short
        for k, (opt, b1) in enumerate(((0x04, 63), (0x07, 100), (0x00, 1), (0x05, 30))):
            put("head_import", f"blob_{k}", bytes([opt, b1]) + blob)
        put("head_import", "short", bytes([0x07, 16]) + blob[:len(blob) // 2])
    put("protocol", "garbage", b"\xff\xfe\x00classify \xc3\r\r\n" + b"x" * 1100 + b"\nping\n")

    # tokenizer: the model's spec, then the sentence
    def spec_bytes(buckets: int, words: int, fpw: int, seed: int, wb: int) -> bytes:
        return (struct.pack("<I", buckets)[:3] + bytes([(words - 1) % 64, fpw - 1])
                + struct.pack("<I", seed) + bytes([wb % 70, 0, 0]))

    base = spec_bytes(spec.buckets, spec.max_words, spec.features_per_word,
                      getattr(spec, "seed", 0), spec.max_word_bytes)
    for i, (_, t) in enumerate(texts):
        put("tokenizer", f"text_{i:02d}", base + t)
    put("tokenizer", "m0_spec", spec_bytes(3, 8, 1, 7, 3) + texts[0][1])
    put("tokenizer", "wide", spec_bytes(0xFFFFFF, 64, 4, 0xFFFFFFFF, 64) + texts[1][1])
    robust = bytearray(base)
    robust[10] = 1  # the robust encoding (fuzz_tokenizer.c)
    for i, (_, t) in enumerate(texts[:10]):
        put("tokenizer", f"robust_{i:02d}", bytes(robust) + t)
    put("tokenizer", "robust_typos", bytes(robust) + b"teh thne gdoo moive flim nto " * 4)

    # learn: frames of LABEL<TAB>text with their CRC (mode 1), a new label (mode 3)
    for i in range(0, min(len(texts), 40), 4):
        frames = [b"\x01" + lab.encode() + b"\t" + t for lab, t in texts[i:i + 4]]
        put("learn", f"frames_{i:02d}", b"\n".join(frames))
    put("learn", "new_label", b"\x03greet\thello there\n\x01greet\thi\n\x01"
                              + labels[0].encode() + b"\t" + texts[0][1])
    put("learn", "raw", b"\x00" + learn_line(labels[-1], texts[2][1])[6:])
    # libFuzzer dictionaries: the protocol's words, for mutations that make new commands
    words = [b"ping", b"info", b"stats", b"help", b"classify ", b"explain ", b"label add ",
             b"label remove ", b"label rename ", b"learn ", b"eval ", b"eval reset",
             b"head state", b"head reset", b"head config ", b"lr ", b"momentum ", b"l2 ",
             b"head export", b"head import ", b"head import end ", b"head save",
             b"head train ", b"\t", b"\r\n", b"greet"] + [lab.encode() for lab in labels]
    (root / "protocol.dict").write_text("".join(
        '"' + "".join(f"\\x{c:02x}" for c in w) + '"\n' for w in words))
    put("learn", "config", b"\x05lr 0.5 momentum 0.9 l2 0.01\t" + texts[3][1] + b"\n\x01"
                           + labels[0].encode() + b"\t" + texts[4][1])
    return dirs


# --- running ------------------------------------------------------------------------------

RSS_BUDGET_MB = 1024  # what a target may use on top of what it starts with


def rss_limit_mb() -> int:
    """libFuzzer's RSS limit for a target started from this process.

    Linux keeps a process's peak RSS across fork and exec, so a target started from a process
    that had loaded TensorFlow (e.g. the test suite) starts with that peak on its meter; the
    limit is the budget on top of it."""
    import resource
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
    return RSS_BUDGET_MB + int(peak_mb)


def run_target(exe: Path, seeds: Path, out_dir: str | Path, seconds: int,
               extra_inputs: list[Path] | None = None) -> dict:
    """Runs one target for `seconds` on one core. The corpus grows in out_dir/corpus/<t>;
    a crashing input lands in out_dir/crashes/<t>/. Returns executions, corpus size,
    whether it crashed, and the log's tail."""
    out = Path(out_dir)
    name = exe.name.removeprefix("fuzz_")
    corpus = out / "corpus" / name
    crashes = out / "crashes" / name
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    log = out / f"{name}.log"
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    env.pop("MT_FUZZ_ECHO", None)
    dictionary = Path(seeds).parent / "protocol.dict"
    use_dict = name in ("protocol", "learn") and dictionary.is_file()
    cmd = [str(exe), str(corpus), str(seeds), *(str(p) for p in extra_inputs or []),
           *([f"-dict={dictionary}"] if use_dict else []),
           f"-max_total_time={seconds}", "-print_final_stats=1", "-timeout=10",
           f"-max_len={MAX_LEN.get(name, 4096)}", f"-rss_limit_mb={rss_limit_mb()}",
           f"-artifact_prefix={crashes}/"]
    t0 = time.monotonic()
    with open(log, "wb") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                           timeout=seconds + 300)
    text = log.read_text(errors="replace")
    m = _EXECS.search(text) or _DONE.search(text)
    execs = int(m.group(1)) if m else 0
    return {"target": name, "seconds": seconds, "wall_seconds": round(time.monotonic() - t0, 1),
            "executions": execs, "corpus_files": sum(1 for _ in corpus.iterdir()),
            "exit_code": p.returncode, "crashed": p.returncode != 0,
            "crash_files": sorted(str(c) for c in crashes.iterdir()),
            "log": str(log), "log_tail": "\n".join(text.strip().splitlines()[-40:])}


def write_report(results: list[dict], out_dir: Path, bundle: str) -> None:
    write_file(out_dir / "report.json", json.dumps(
        {"bundle": bundle, "results": results}, indent=2) + "\n")
    lines = ["# Fuzzing report", "", f"Bundle: `{bundle}`", "",
             "| target | seconds | executions | exec/s | corpus files | result |",
             "|---|---:|---:|---:|---:|---|"]
    for r in results:
        rate = r["executions"] / max(r["wall_seconds"], 1e-9)
        lines.append(f"| {r['target']} | {r['seconds']} | {r['executions']:,} | {rate:,.0f} | "
                     f"{r['corpus_files']} | {'CRASH' if r['crashed'] else 'no crash'} |")
    write_file(out_dir / "report.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mcutext.reliability.fuzz",
                                 description="build the fuzz targets and run each in turn")
    ap.add_argument("--bundle", default=str(PROJECT_ROOT / "build" / "sst2" / "bundle"))
    ap.add_argument("--out", default=str(PROJECT_ROOT / "build" / "fuzz"))
    ap.add_argument("--seconds", type=int, default=600, help="per target")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--force", action="store_true",
                    help="use --out even if it holds files that are not a fuzzing run's")
    a = ap.parse_args(argv)
    out = Path(a.out)
    targets = tuple(t for t in a.targets.split(",") if t)
    try:
        check_out(out, "fuzz", a.force)   # gen/, obj/ and seeds/ in it are rebuilt
        if not (Path(a.bundle) / "manifest.json").is_file():
            raise McutextError(f"{a.bundle}: no bundle to fuzz with",
                               hint="train one first (`make demo`) or pass --bundle DIR")
        exes = build_targets(a.bundle, out, tuple(dict.fromkeys(("protocol",) + targets)))
        seeds = write_seeds(a.bundle, exes, out)
    except McutextError as e:
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2
    results = []
    for t in targets:   # one at a time: one core each, the others stay free
        print(f"fuzz {t}: {a.seconds} s ...", flush=True)
        r = run_target(exes[t], seeds[t], out, a.seconds)
        results.append(r)
        print(f"fuzz {t}: {r['executions']:,} executions, corpus {r['corpus_files']} files, "
              f"{'CRASH: ' + ', '.join(r['crash_files']) if r['crashed'] else 'no crash'}",
              flush=True)
        write_report(results, out, a.bundle)
    print(f"report: {out / 'report.md'}")
    return 1 if any(r["crashed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
