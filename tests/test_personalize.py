"""On-device personalization: firmware/personalize.c, head_blob.c and slots.c, built for the host
(gcc, ctypes), against the numpy reference (mcutext.device.personalize.HeadSimulator).

- the C head agrees with the simulator after the same updates on real int8 features of a real
  bundle (sst2, TFLite Micro), new labels included: losses, weights, predictions;
- the serialized state round-trips, and every single-byte flip and every truncation of it is
  rejected without touching the head; the C and Python blob formats are the same bytes;
- two-slot storage on a RAM flash that loses power after any number of erased/programmed
  bytes: a reboot always finds the last completed save (or factory), exhaustively over cut
  points, for several program granularities and erase orders.
"""

from __future__ import annotations

import ctypes
import struct
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcutext.int8.bundle import load_bundle
from mcutext.text.datasets import load_split
from mcutext.common.errors import McutextError
from mcutext.device.personalize import HeadSimulator, UpdateConfig, valid_label_name

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
MAX_CLASSES, MAX_NEW, MAX_FEATURES = 12, 8, 64
FLASH_MAX = 1 << 16

# status codes of personalize.h / slots.h
OK, EINVAL, ENOLABEL, EEXIST, EFULL, EFACTORY, ENAME = 0, -1, -2, -3, -4, -5, -6
EFORMAT, ECRC, EMODEL = -7, -8, -9

HARNESS = r"""
#include <string.h>
#include "personalize.h"
#include "slots.h"

static mt_head_factory_t factory;
static mt_head_t heads[2];

void tst_factory(uint16_t c0, uint16_t h, uint16_t nnew, const float *w, const float *b,
                 const float *mean, const char *const *labels)
{
    factory.num_classes = c0; factory.feature_dim = h; factory.max_new_labels = nnew;
    factory.weights = w; factory.bias = b; factory.feature_mean = mean; factory.labels = labels;
}
mt_head_t *tst_head(int i) { return &heads[i]; }
int tst_init(mt_head_t *h) { return mt_head_init(h, &factory); }

typedef struct { uint8_t *p; uint32_t cap; } mem_t;
static int mem_write(void *ctx, uint32_t off, const uint8_t *src, uint32_t n)
{
    mem_t *m = ctx;
    if (off > m->cap || n > m->cap - off) return 1;
    memcpy(m->p + off, src, n);
    return 0;
}
static int mem_read(void *ctx, uint32_t off, uint8_t *dst, uint32_t n)
{
    mem_t *m = ctx;
    if (off > m->cap || n > m->cap - off) return 1;
    memcpy(dst, m->p + off, n);
    return 0;
}
int tst_save_mem(const mt_head_t *h, uint8_t *buf, uint32_t cap)
{
    mem_t m = {buf, cap};
    return mt_head_save(h, mem_write, &m);
}
int tst_load_mem(mt_head_t *h, uint8_t *buf, uint32_t len)
{
    mem_t m = {buf, len};
    return mt_head_load(h, mem_read, &m, len);
}

/* A NOR flash in RAM that loses power after `budget` erased or programmed bytes. */
static uint8_t flash[1 << 16];
static long budget = -1, used = 0, violations = 0;
static int erase_reverse = 0;
static int spend(void) { if (budget >= 0 && used >= budget) return 0; ++used; return 1; }
static int ram_read(const mt_storage_t *st, uint32_t off, void *dst, uint32_t n)
{
    if (off > st->size || n > st->size - off) { ++violations; return 1; }
    memcpy(dst, flash + off, n);
    return 0;
}
static int ram_erase(const mt_storage_t *st, uint32_t off, uint32_t n)
{
    if (off % st->erase_size || n % st->erase_size || off > st->size || n > st->size - off) {
        ++violations; return 1;
    }
    for (uint32_t i = 0; i < n; ++i) {
        if (!spend()) return 1;
        flash[erase_reverse ? off + n - 1 - i : off + i] = 0xFF;
    }
    return 0;
}
static int ram_program(const mt_storage_t *st, uint32_t off, const void *src, uint32_t n)
{
    const uint8_t *s = src;
    if (off % st->program_size || n % st->program_size || off > st->size ||
        n > st->size - off) { ++violations; return 1; }
    for (uint32_t i = 0; i < n; ++i) {
        if (flash[off + i] != 0xFF) ++violations; /* programming a byte not erased */
        if (!spend()) return 1;
        flash[off + i] &= s[i];                    /* NOR: programming only clears bits */
    }
    return 0;
}
static mt_storage_t ram = {0, 0, 0, ram_read, ram_erase, ram_program, 0, "ram"};
static mt_slots_t slots;

void tst_storage(uint32_t size, uint32_t erase, uint32_t prog, int reverse)
{
    ram.size = size; ram.erase_size = erase; ram.program_size = prog;
    erase_reverse = reverse;
    memset(flash, 0xFF, sizeof flash);
}
uint8_t *tst_flash(void) { return flash; }
void tst_budget(long b) { budget = b; used = 0; }
long tst_used(void) { return used; }
long tst_violations(void) { return violations; }
int tst_mount(void) { return mt_slots_mount(&slots, &ram); }
uint32_t tst_capacity(void) { return mt_slots_capacity(&slots); }
/* a save through the mounted slots (its cached view is kept between saves, as on a device) */
int tst_save(const mt_head_t *h)
{
    int r = mt_slots_begin(&slots, mt_head_blob_size(h));
    if (r) return r;
    r = mt_head_save(h, mt_slots_write, &slots);
    if (r) return 100 + r;
    return mt_slots_commit(&slots);
}
/* a boot: factory, then the newest valid slot if any. 0 loaded, 1 factory, else an error */
int tst_boot(mt_head_t *h)
{
    mt_slots_t s;
    int r = mt_head_init(h, &factory);
    if (r) return r;
    r = mt_slots_mount(&s, &ram);
    if (r == MT_SLOTS_EMPTY) return 1;
    if (r) return 200 + r;
    r = mt_head_load(h, mt_slots_read, &s, s.len);
    return r ? 300 + r : 0;
}
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("no host C compiler (gcc) found")
    d = tmp_path_factory.mktemp("personalize_c")
    (d / "harness.c").write_text(HARNESS)
    so = d / "libhead.so"
    subprocess.run(
        [cc, "-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
         "-ffp-contract=off", f"-I{FIRMWARE}", f"-DMT_HEAD_MAX_CLASSES={MAX_CLASSES}",
         f"-DMT_HEAD_MAX_NEW_LABELS={MAX_NEW}", f"-DMT_HEAD_MAX_FEATURES={MAX_FEATURES}",
         str(FIRMWARE / "personalize.c"), str(FIRMWARE / "head_blob.c"),
         str(FIRMWARE / "slots.c"), str(d / "harness.c"),
         "-o", str(so), "-lm"], check=True, capture_output=True, text=True)
    L = ctypes.CDLL(str(so))
    P, F = ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)
    sig = {
        "tst_factory": (None, [ctypes.c_uint16] * 3 + [F, F, F, ctypes.POINTER(ctypes.c_char_p)]),
        "tst_head": (P, [ctypes.c_int]), "tst_init": (ctypes.c_int, [P]),
        "tst_save_mem": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_uint32]),
        "tst_load_mem": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_uint32]),
        "tst_storage": (None, [ctypes.c_uint32] * 3 + [ctypes.c_int]),
        "tst_flash": (ctypes.POINTER(ctypes.c_uint8 * FLASH_MAX), []),
        "tst_budget": (None, [ctypes.c_long]), "tst_used": (ctypes.c_long, []),
        "tst_violations": (ctypes.c_long, []), "tst_mount": (ctypes.c_int, []),
        "tst_capacity": (ctypes.c_uint32, []),
        "tst_save": (ctypes.c_int, [P]), "tst_boot": (ctypes.c_int, [P]),
        "mt_head_sizeof": (ctypes.c_size_t, []),
        "mt_head_config": (None, [P, ctypes.c_float, ctypes.c_float, ctypes.c_float]),
        "mt_head_reset": (None, [P]),
        "mt_head_add_label": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint32)]),
        "mt_head_remove_label": (ctypes.c_int, [P, ctypes.c_char_p]),
        "mt_head_rename_label": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_char_p]),
        "mt_head_find_label": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint32)]),
        "mt_head_label": (ctypes.c_char_p, [P, ctypes.c_uint32]),
        "mt_head_num_rows": (ctypes.c_uint32, [P]),
        "mt_head_scores": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_float, ctypes.c_int32, F,
                                          ctypes.POINTER(ctypes.c_uint32)]),
        "mt_head_step": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_float, ctypes.c_int32,
                                        ctypes.c_uint32, F]),
        "mt_head_blob_size": (ctypes.c_uint32, [P]),
        "mt_head_imprint_add": (ctypes.c_int, [P, F, ctypes.c_char_p, ctypes.c_float,
                                               ctypes.c_int32]),
        "mt_head_imprint_mean": (ctypes.c_int, [P, ctypes.c_uint32, F]),
        "mt_head_imprint_check": (ctypes.c_int, [P, ctypes.c_uint32, F]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(L, name)
        fn.restype, fn.argtypes = res, args
    return L


class CHead:
    """The C head behind ctypes, with the simulator's vocabulary."""

    def __init__(self, lib, slot: int, scale: float, zp: int):
        self.L, self.p = lib, lib.tst_head(slot)
        self.scale, self.zp = scale, zp
        assert lib.tst_init(self.p) == OK

    def add_label(self, name: str) -> int:
        i = ctypes.c_uint32()
        st = self.L.mt_head_add_label(self.p, name.encode("latin-1"), ctypes.byref(i))
        return i.value if st == OK else st

    def step(self, q: np.ndarray, y: int) -> float:
        loss = ctypes.c_float()
        st = self.L.mt_head_step(self.p, np.ascontiguousarray(q, np.int8).tobytes(),
                                 self.scale, self.zp, y, ctypes.byref(loss))
        assert st == OK, st
        return loss.value

    def scores(self, q: np.ndarray) -> tuple[np.ndarray, int]:
        out = (ctypes.c_float * self.L.mt_head_num_rows(self.p))()
        best = ctypes.c_uint32()
        assert self.L.mt_head_scores(self.p, np.ascontiguousarray(q, np.int8).tobytes(),
                                     self.scale, self.zp, out, ctypes.byref(best)) == OK
        return np.frombuffer(out, np.float32).copy(), best.value

    def blob(self) -> bytes:
        n = self.L.mt_head_blob_size(self.p)
        buf = ctypes.create_string_buffer(n)
        assert self.L.tst_save_mem(self.p, buf, n) == OK
        return buf.raw

    def load(self, data: bytes) -> int:
        return self.L.tst_load_mem(self.p, data, len(data))


@pytest.fixture(scope="module")
def real(sst2_small_bundle):
    """Real int8 features (TFLite Micro) of 240 sst2 dev sentences, and the factory head."""
    bundle = load_bundle(sst2_small_bundle)
    dev = load_split("sst2", "dev")
    texts, labels = dev.texts[:240], dev.labels[:240]
    q = bundle.run_int8(bundle.tokenize(texts), runtime="tflm")["features"].astype(np.int8)
    y = np.array([bundle.labels.index(lab) for lab in labels])
    return bundle, q, y


def factory_of(lib, bundle, q, max_new):
    """Registers the bundle's head as the C factory; returns the simulator twin. A non-zero
    feature mean (of these features) exercises the imprint's centering."""
    head = bundle.manifest["head"]
    qz = head["input_quantization"]
    sim = HeadSimulator.from_bundle(bundle, UpdateConfig(lr=0.05, momentum=0.9, l2=0.01),
                                    max_new_labels=max_new)
    sim.mu = sim.dequantize(q).mean(axis=0).astype(np.float32)
    keep = dict(w=np.ascontiguousarray(sim.W0[:sim.factory_classes], np.float32),
                b=np.ascontiguousarray(sim.b0[:sim.factory_classes], np.float32),
                mean=np.ascontiguousarray(sim.mu, np.float32),
                labels=(ctypes.c_char_p * sim.factory_classes)(
                    *[s.encode() for s in bundle.labels]))
    F = ctypes.POINTER(ctypes.c_float)
    lib.tst_factory(sim.factory_classes, sim.h, max_new, keep["w"].ctypes.data_as(F),
                    keep["b"].ctypes.data_as(F), keep["mean"].ctypes.data_as(F),
                    keep["labels"])
    lib._keep = keep  # the C factory points into these arrays
    return sim, float(qz["scale"]), int(qz["zero_point"])


def both_heads(lib, real, max_new=MAX_NEW):
    bundle, q, y = real
    sim, scale, zp = factory_of(lib, bundle, q, max_new)
    c = CHead(lib, 0, scale, zp)
    cfg = sim.config
    lib.mt_head_config(c.p, cfg.lr, cfg.momentum, cfg.l2)
    return sim, c


def script(sim, c, q, y):
    """The same updates on both heads: factory labels, new labels added on the way, one
    removed (its row reused), one renamed. Returns the per-step losses of both."""
    ls, lc = [], []

    def step(i, lab):
        ls.append(sim.step(sim.dequantize(q[i]), lab))
        lc.append(c.step(q[i], lab))

    def add(name):
        i = sim.add_label(name)
        assert c.add_label(name) == i
        return i

    for i in range(60):                      # corrections on the factory labels
        step(i, int(y[i]))
    new = [add("greeting"), add("weather"), add("music")]
    for i in range(60, 150):                 # new labels mixed with old ones
        step(i, new[i % 3] if i % 4 == 0 else int(y[i]))
    sim.remove_label("weather")
    assert c.L.mt_head_remove_label(c.p, b"weather") == OK
    again = add("alarm")                     # takes the freed row
    assert again == new[1]
    sim.rename_label("music", "songs")
    assert c.L.mt_head_rename_label(c.p, b"music", b"songs") == OK
    add("timer")                             # added, never taught: stays unscored
    for i in range(150, 200):
        step(i, again if i % 5 == 0 else new[2] if i % 5 == 1 else int(y[i]))
    return np.array(ls), np.array(lc)


def test_imprint_from_several_examples_agrees_with_simulator(lib, real):
    """`head imprint`: an added label's row from the mean direction of its examples, then SGD
    steps; C and simulator agree, the row is a unit direction times the mean factory norm, its
    bias follows the rule, and the wrong rows or an empty accumulator are refused."""
    bundle, q, y = real
    sim, c = both_heads(lib, real)
    F = ctypes.POINTER(ctypes.c_float)
    rows = [sim.add_label(n) for n in ("greeting", "weather")]
    assert [c.add_label(n) for n in ("greeting", "weather")] == rows
    picks = {rows[0]: q[:7], rows[1]: q[7:12]}
    for r, qs in picks.items():
        acc = np.zeros(sim.h, np.float32)
        for x in qs:
            assert c.L.mt_head_imprint_add(c.p, acc.ctypes.data_as(F), x.tobytes(), c.scale,
                                           c.zp) == OK
        assert c.L.mt_head_imprint_mean(c.p, r, acc.ctypes.data_as(F)) == OK
    Fk = np.concatenate([sim.dequantize(v) for v in picks.values()])
    Yk = np.concatenate([[r] * len(v) for r, v in picks.items()])
    assert sim.imprint_mean(Fk, Yk) == rows and sim.updates == 2
    twin = HeadSimulator.from_bundle(bundle, sim.config, max_new_labels=MAX_NEW)
    twin.mu = sim.mu
    twin.load_blob(c.blob())
    assert twin.updates == 2 and not twin._fresh
    np.testing.assert_allclose(twin.W, sim.W, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(twin.b, sim.b, rtol=1e-4, atol=2e-5)
    c0 = sim.factory_classes
    s = np.linalg.norm(sim.W0[:c0], axis=1).mean()
    np.testing.assert_allclose(np.linalg.norm(sim.W[rows], axis=1), s, rtol=1e-5)
    bm = np.mean(sim.b0[:c0] + sim.W0[:c0] @ sim.mu)
    np.testing.assert_allclose(sim.b[rows], bm - sim.W[rows] @ sim.mu, rtol=1e-5, atol=1e-6)
    d = sim.dequantize(q[:7]) - sim.mu
    u = (d / np.linalg.norm(d, axis=1, keepdims=True)).sum(0)
    np.testing.assert_allclose(sim.W[rows[0]], s * u / np.linalg.norm(u), rtol=1e-4, atol=1e-6)
    # then the same SGD steps on both
    for i in range(12, 40):
        lab = rows[i % 2] if i % 3 == 0 else int(y[i])
        np.testing.assert_allclose(c.step(q[i], lab), sim.step(sim.dequantize(q[i]), lab),
                                   rtol=1e-4, atol=1e-5)
    # refused: a factory row, a free row, a zero accumulator
    acc = np.zeros(sim.h, np.float32)
    assert c.L.mt_head_imprint_mean(c.p, 0, acc.ctypes.data_as(F)) == ENOLABEL
    assert c.L.mt_head_imprint_mean(c.p, rows[1] + 1, acc.ctypes.data_as(F)) == ENOLABEL
    assert c.L.mt_head_imprint_mean(c.p, rows[0], acc.ctypes.data_as(F)) == EINVAL


def test_c_head_agrees_with_simulator(lib, real):
    bundle, q, y = real
    sim, c = both_heads(lib, real)
    ls, lc = script(sim, c, q, y)
    np.testing.assert_allclose(lc, ls, rtol=1e-4, atol=1e-5)
    # the C state, read back through the blob format, against the simulator
    twin = HeadSimulator.from_bundle(bundle, sim.config, max_new_labels=MAX_NEW)
    twin.mu = sim.mu
    twin.load_blob(c.blob())
    assert twin.labels == sim.labels and twin.updates == sim.updates == 200
    np.testing.assert_array_equal(twin.active, sim.active)
    assert twin._fresh == sim._fresh and len(sim._fresh) == 1
    live = sim.scored()
    np.testing.assert_allclose(twin.W[live], sim.W[live], rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(twin.b[live], sim.b[live], rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(twin.W0, sim.W0, rtol=1e-5, atol=1e-6)
    # predictions on all 240 sentences (scores of unscored rows are -inf on both sides)
    zs = sim.scores(sim.dequantize(q))
    ok = 0
    for i in range(len(q)):
        zc, best = c.scores(q[i])
        np.testing.assert_array_equal(np.isinf(zc), np.isinf(zs[i]))
        np.testing.assert_allclose(zc[live], zs[i][live], rtol=1e-4, atol=1e-4)
        top2 = np.sort(zs[i][live])[-2:]
        if top2[1] - top2[0] > 1e-3:         # not a float-rounding tie
            assert best == zs[i].argmax()
            ok += 1
    assert ok >= 0.95 * len(q)
    # a new row predicted, on both sides. Whether one of the real sentences above picks a
    # new row depends on the trained model, so a new label is taught one example built to
    # be its own (probe_features)
    f, margin = probe_features(sim, "probe")
    assert margin > 1e-3, margin                       # not a float-rounding tie
    probe = sim.add_label("probe")
    assert c.add_label("probe") == probe
    np.testing.assert_allclose(c.step(f, probe), sim.step(sim.dequantize(f), probe),
                               rtol=1e-4, atol=1e-5)
    live = sim.scored()
    zs = sim.scores(sim.dequantize(f))
    zc, best = c.scores(f)
    np.testing.assert_allclose(zc[live], zs[live], rtol=1e-4, atol=1e-4)
    assert best == probe == zs.argmax() >= sim.factory_classes


def probe_features(sim, name: str) -> tuple[np.ndarray, float]:
    """int8 features that a new label `name`, taught on them alone, wins by the largest
    margin over the other scored rows (tried on a copy of the simulator), and that margin.
    The candidates go from the features' mean as far as int8 allows in random directions
    orthogonal to the scored rows, where the imprint's score grows with the distance and
    the others' stay put (up to the clipping to the int8 range)."""
    import copy
    w = sim.W[sim.scored()].astype(np.float64)
    mu = sim.mu.astype(np.float64)
    rng = np.random.default_rng(0)
    best = (None, -np.inf)
    for _ in range(20):
        v = rng.standard_normal(w.shape[1])
        v -= w.T @ np.linalg.lstsq(w.T, v, rcond=None)[0]
        for reach in (1.0, 4.0, 16.0):
            f = np.clip(np.round(sim.zp + (mu + reach * v / np.abs(v).max() * 256 * sim.scale)
                                 / sim.scale), -128, 127).astype(np.int8)
            twin = copy.deepcopy(sim)
            row = twin.add_label(name)
            twin.step(twin.dequantize(f), row)
            z = twin.scores(twin.dequantize(f)).astype(np.float64)
            zr, z[row] = z[row], -np.inf
            if zr - z.max() > best[1]:
                best = (f, zr - z.max())
    return best


def test_blob_formats_are_the_same_bytes(lib, real):
    bundle, q, y = real
    sim, c = both_heads(lib, real)
    script(sim, c, q, y)
    blob = c.blob()
    assert len(blob) == c.L.mt_head_blob_size(c.p)
    twin = HeadSimulator.from_bundle(bundle, sim.config, max_new_labels=MAX_NEW)
    twin.mu = sim.mu
    twin.load_blob(blob)
    assert twin.blob() == blob                # Python writes what C writes
    # and C loads what Python writes (after more updates on the Python side)
    twin.step(twin.dequantize(q[0]), 1)
    other = CHead(lib, 1, c.scale, c.zp)
    assert other.load(twin.blob()) == OK
    assert other.blob() == twin.blob()
    # a reset forgets everything, as on the simulator
    sim.reset()
    c.L.mt_head_reset(c.p)
    assert c.blob() == sim.blob()


def test_blob_rejects_every_flip_and_truncation(lib, real):
    bundle, q, y = real
    sim, c = both_heads(lib, real)
    script(sim, c, q, y)
    blob = c.blob()
    other = CHead(lib, 1, c.scale, c.zp)      # factory state: must stay so
    factory = other.blob()
    twin = HeadSimulator.from_bundle(bundle, sim.config, max_new_labels=MAX_NEW)
    twin.mu = sim.mu
    for i in range(len(blob)):
        for x in (0x01, 0xFF):
            bad = bytearray(blob)
            bad[i] ^= x
            assert other.load(bytes(bad)) != OK, (i, x)
            with pytest.raises(McutextError):
                twin.load_blob(bytes(bad))
    assert other.blob() == factory
    for n in range(len(blob)):
        assert other.load(blob[:n]) != OK, n
    assert other.load(blob + b"\0") == EFORMAT
    assert other.blob() == factory
    assert other.load(blob) == OK and other.blob() == blob


def test_blob_of_another_model_is_rejected(lib, real):
    bundle, q, y = real
    sim, c = both_heads(lib, real)
    blob = c.blob()
    keep = lib._keep
    w = keep["w"].copy()
    w[0, 0] += 1e-3                           # a different factory head, same dimensions
    lib.tst_factory(sim.factory_classes, sim.h, MAX_NEW,
                    w.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                    keep["b"].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                    keep["mean"].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                    keep["labels"])
    other = CHead(lib, 1, c.scale, c.zp)
    assert other.load(blob) == EMODEL
    lib.tst_factory(sim.factory_classes, sim.h, MAX_NEW - 1,   # other reserved rows
                    keep["w"].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                    keep["b"].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                    keep["mean"].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                    keep["labels"])
    other = CHead(lib, 1, c.scale, c.zp)
    assert other.load(blob) == EMODEL
    lib._keep["w2"] = w


def test_label_rules(lib, real):
    bundle, q, y = real
    sim, c = both_heads(lib, real, max_new=2)
    L, p = lib, c.p
    for name in ("", "with space", "x" * 24, "caf\xe9", "tab\t"):
        assert L.mt_head_add_label(p, name.encode("latin-1"), None) == ENAME, name
        assert not valid_label_name(name)
        with pytest.raises(McutextError):
            sim.add_label(name)
    assert valid_label_name("x" * 23) and c.add_label("x" * 23) == 2
    assert c.add_label(bundle.labels[0]) == EEXIST
    assert c.add_label("x" * 23) == EEXIST
    assert c.add_label("b") == 3 and c.add_label("c") == EFULL
    assert L.mt_head_remove_label(p, bundle.labels[0].encode()) == EFACTORY
    assert L.mt_head_rename_label(p, bundle.labels[0].encode(), b"z") == EFACTORY
    assert L.mt_head_rename_label(p, b"b", b"x" * 23) == EEXIST
    assert L.mt_head_rename_label(p, b"b", b"b") == OK
    assert L.mt_head_remove_label(p, b"nope") == ENOLABEL
    # an added label is not scored before its first example, then imprinted
    z, _ = c.scores(q[0])
    assert np.isinf(z[2:]).all() and np.isfinite(z[:2]).all()
    c.step(q[0], 3)
    z, _ = c.scores(q[0])
    assert np.isfinite(z[3]) and np.isinf(z[2])
    loss = ctypes.c_float()
    assert L.mt_head_step(p, q[0].tobytes(), c.scale, c.zp, 9, ctypes.byref(loss)) == ENOLABEL
    assert L.mt_head_remove_label(p, b"b") == OK
    assert L.mt_head_step(p, q[0].tobytes(), c.scale, c.zp, 3, ctypes.byref(loss)) == ENOLABEL
    assert L.mt_head_label(p, 3) is None and L.mt_head_label(p, 2) == b"x" * 23


@pytest.mark.parametrize("prog,erase,reverse", [(1, 256, 0), (8, 512, 1), (32, 1024, 0)])
def test_torn_save_leaves_last_completed_save(lib, real, prog, erase, reverse):
    """Power cut after every possible number of erased/programmed bytes of a save."""
    bundle, q, y = real
    sim, c = both_heads(lib, real, max_new=2)      # a small blob: exhaustive is cheap
    boot = CHead(lib, 1, c.scale, c.zp)
    lib.tst_storage(4096, erase, prog, reverse)
    flash = lib.tst_flash().contents
    violations = lib.tst_violations()
    lib.tst_budget(-1)
    assert lib.tst_mount() == -1                   # empty: factory
    assert lib.tst_boot(boot.p) == 1 and boot.blob() == c.blob()
    states = []
    for k in range(3):                             # three completed saves, both slots used
        c.step(q[k], int(y[k]))
        if k == 1:
            c.add_label("new")
            c.step(q[5], 2)
        assert lib.tst_save(c.p) == OK
        states.append(c.blob())
        assert lib.tst_boot(boot.p) == 0 and boot.blob() == states[-1]
    c.step(q[10], 2)
    nxt = c.blob()
    assert len(nxt) <= lib.tst_capacity()
    snapshot = bytes(flash)
    lib.tst_budget(-1)
    assert lib.tst_save(c.p) == OK
    total = lib.tst_used()                         # bytes erased + programmed by one save
    assert total > len(nxt)
    seen = set()
    for cut in range(total + 1):
        ctypes.memmove(flash, snapshot, len(snapshot))
        assert lib.tst_mount() == OK
        lib.tst_budget(cut)
        r = lib.tst_save(c.p)
        assert (r == OK) == (cut >= total), (cut, r)
        lib.tst_budget(-1)
        assert lib.tst_boot(boot.p) == 0, cut
        got = boot.blob()
        assert got in (states[-1], nxt), cut
        seen.add(got == nxt)
        if cut % 97 == 0:                          # the next save after a torn one works
            c.step(q[11], 0)
            assert lib.tst_save(c.p) == OK
            assert lib.tst_boot(boot.p) == 0 and boot.blob() == c.blob()
            c.L.tst_load_mem(c.p, nxt, len(nxt))   # back to the state of the torn save
    assert seen == {False, True}
    assert lib.tst_violations() == violations      # aligned, never programs unerased bytes


def test_torn_first_save_and_garbage_boot_factory(lib, real):
    sim, c = both_heads(lib, real, max_new=2)
    boot = CHead(lib, 1, c.scale, c.zp)
    factory = boot.blob()
    bundle, q, y = real
    c.step(q[0], 1)
    lib.tst_storage(2048, 256, 4, 0)
    lib.tst_budget(-1)
    assert lib.tst_mount() == -1
    assert lib.tst_save(c.p) == OK
    total = lib.tst_used()
    for cut in range(0, total, 7):
        lib.tst_storage(2048, 256, 4, 0)
        lib.tst_mount()
        lib.tst_budget(cut)
        assert lib.tst_save(c.p) != OK
        lib.tst_budget(-1)
        assert lib.tst_boot(boot.p) == 1 and boot.blob() == factory
    rng = np.random.default_rng(0)
    flash = lib.tst_flash().contents
    for _ in range(20):                            # random contents: no valid slot
        ctypes.memmove(flash, rng.integers(0, 256, 2048, np.uint8).tobytes(), 2048)
        assert lib.tst_boot(boot.p) == 1 and boot.blob() == factory


def test_simulator_refuses_a_step_that_overflows_and_keeps_the_head():
    """Like the firmware (MT_HEAD_ERANGE): a diverging step is refused and changes nothing."""
    from mcutext.common.errors import McutextError
    from mcutext.device.personalize import HeadSimulator, UpdateConfig
    rng = np.random.default_rng(0)
    sim = HeadSimulator(rng.normal(size=(8, 3)).astype(np.float32), np.zeros(3, np.float32),
                        ["a", "b", "c"], 2, 0.5, 0, UpdateConfig(lr=100.0, momentum=0.99, l2=100.0))
    f = np.full(8, 1e6, np.float32)
    refused = 0
    for i in range(20):
        before = (sim.W.copy(), sim.b.copy(), sim.V.copy(), sim.updates)
        try:
            sim.step(f * (1 if i % 2 else -1), i % 3)
        except McutextError as e:
            assert "overflow" in str(e)
            refused += 1
            np.testing.assert_array_equal(sim.W, before[0])
            np.testing.assert_array_equal(sim.b, before[1])
            np.testing.assert_array_equal(sim.V, before[2])
            assert sim.updates == before[3]
        assert np.isfinite(sim.W).all() and np.isfinite(sim.b).all()
    assert refused > 0


def test_refusals_change_nothing_in_c_and_simulator(lib, real):
    """A head of extreme values (an added row near the float32 limit) on both heads: the
    first example of a fresh label is refused by C and simulator alike and neither head
    changes (the imprint is undone); the simulator's `train` refused part way and its
    `imprint_mean` refused come back to where they started; an update count of 2^32 - 1
    saturates in both."""
    bundle, q, y = real
    sim, c = both_heads(lib, real, max_new=2)
    big = sim.add_label("big")
    sim._fresh.discard(big)
    sim.W[big, 0] = np.float32(2.0e38)
    sim.add_label("new")
    sim.updates = 0xFFFFFFFF
    sim.config = UpdateConfig(lr=3.0, momentum=0.2, l2=1.0)
    lib.mt_head_config(c.p, 3.0, 0.2, 1.0)
    blob = sim.blob()
    assert c.load(blob) == OK
    loss = ctypes.c_float()
    for lab in (int(y[0]), big, big + 1):
        st = lib.mt_head_step(c.p, q[0].tobytes(), c.scale, c.zp, lab, ctypes.byref(loss))
        assert st == -11                                  # MT_HEAD_ERANGE
        assert c.blob() == blob
        with pytest.raises(McutextError, match="overflow"):
            sim.step(sim.dequantize(q[0]), lab)
        assert sim.blob() == blob
    # part way: a moderate value that the steps double until it overflows
    sim.W[big, 0] = np.float32(1.0e30)
    blob = sim.blob()
    F = sim.dequantize(q[:5])
    with pytest.raises(McutextError, match="overflow"):
        sim.train(F, y[:5], 100)
    assert sim.blob() == blob and not sim.V.any()
    # an imprint that would overflow (the factory rows' norm is not finite): nothing changes
    sim.W[0, :] = np.float32(3.0e38)
    blob = sim.blob()
    with pytest.raises(McutextError, match="overflow"):
        sim.imprint_mean(F, np.array([big + 1] * 5))
    assert sim.blob() == blob
    assert c.load(blob) == OK
    acc = np.ones(sim.h, np.float32)
    P = ctypes.POINTER(ctypes.c_float)
    assert lib.mt_head_imprint_check(c.p, big + 1, acc.ctypes.data_as(P)) == -11
    assert lib.mt_head_imprint_mean(c.p, big + 1, acc.ctypes.data_as(P)) == -11
    assert c.blob() == blob
    # saturation: a step taken at the largest count keeps it there
    sim2, c2 = both_heads(lib, real, max_new=2)
    sim2.updates = 0xFFFFFFFF
    assert c2.load(sim2.blob()) == OK
    sim2.step(sim2.dequantize(q[1]), int(y[1]))
    c2.step(q[1], int(y[1]))
    assert sim2.updates == 0xFFFFFFFF
    assert struct.unpack_from("<I", c2.blob(), 20)[0] == 0xFFFFFFFF
