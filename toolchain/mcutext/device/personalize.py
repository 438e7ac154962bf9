"""On-device personalization: the update rule, and its host simulator.

The device fine-tunes only the head (features -> classes). This module is the reference of
the rule; `firmware/personalize.c` implements the same float32 arithmetic, and a test checks
that both give the same predictions after the same updates.

State (float32): W [C_max, H], b [C_max], the factory copy W0, b0, an `active` flag per row.
C_max = the bundle's classes + `max_new_labels` reserved rows (inactive, zero, until the owner
adds a label).

Features: f = (q - zero_point) * scale, the int8 model's penultimate output, dequantized.

Scores: z_c = b_c + sum_h W[c, h] f_h over active rows; p = softmax(z) over active rows.

One SGD step on (f, y), learning rate lr, momentum mu, pull toward factory l2:
    g_c     = p_c - [c == y]                         (for active c)
    V[c]    = mu * V[c] + g_c * f + l2 * (W[c] - W0[c]);   W[c] -= lr * V[c]
    vb_c    = mu * vb_c + g_c;                            b_c  -= lr * vb_c
A new label's row is imprinted from its first example (weight imprinting): W[c] = s * f/|f|
with s the mean norm of the active factory rows, b_c = mean of the active biases; its
factory copy is set to the same values, so L2 pulls it toward its imprint, not toward zero.
Rows not scored (inactive, or added and not imprinted yet) take no part in a step: their
W, b and momentum stay as they are.

A refusal changes nothing, as on the device: a step (or imprint) that would leave a value not
finite is not taken, `train` and `imprint_mean` refused part way bring the head back to where
they started, and the update count saturates at 2^32 - 1 (`MAX_UPDATES`).

Added labels' names follow the device's rule (`valid_label_name`); only added labels can be
removed or renamed. `blob()` / `load_blob()` read and write the device's serialized state
(format in docs/personalization.md; `firmware/head_blob.c` writes the same layout).
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np

from ..common.errors import McutextError
from ..codegen.head import DEFAULT_MAX_NEW_LABELS
from ..common.outputs import register_kind

F32 = np.float32
NAME_BYTES = 24            # MT_HEAD_NAME_BYTES: a name is 1..23 printable ASCII characters
BLOB_MAGIC = b"MTHD"
BLOB_VERSION = 1
BLOB_HEADER = struct.Struct("<4sHHHHHHIIII")   # 32 bytes
ACTIVE, FRESH = 1, 2
MAX_UPDATES = 0xFFFFFFFF   # the blob's uint32 update count saturates there


def _is_head_blob(p: Path) -> bool:
    """An earlier `mcutext head export`."""
    try:
        with open(p, "rb") as f:
            return f.read(len(BLOB_MAGIC)) == BLOB_MAGIC
    except OSError:
        return False


register_kind("head", False, "a head blob", _is_head_blob)


def valid_label_name(name: str) -> bool:
    """The device's rule for added labels: 1..23 characters in 0x21..0x7E (no space)."""
    return (isinstance(name, str) and 0 < len(name) < NAME_BYTES
            and all(0x21 <= ord(ch) <= 0x7E for ch in name))


@dataclasses.dataclass
class UpdateConfig:
    lr: float = 0.05
    momentum: float = 0.0
    l2: float = 0.0


class HeadBlob:
    """The head's serialized state, as the device writes it (`blob`) and reads it
    (`load_blob`): format in docs/personalization.md, firmware/personalize.c."""

    # --- the device's serialized state -------------------------------------------------------
    def factory_crc(self) -> int:
        """CRC-32 binding a blob to its factory head (dims, weights [C0][H], bias, mean)."""
        c0 = self.factory_classes
        data = (struct.pack("<HH", c0, self.h) + self.W0[:c0].astype("<f4").tobytes()
                + self.b0[:c0].astype("<f4").tobytes() + self.mu.astype("<f4").tobytes())
        return zlib.crc32(data)

    def _flags(self) -> np.ndarray:
        fl = np.where(self.active, ACTIVE, 0).astype(np.uint8)
        for i in self._fresh:
            fl[i] |= FRESH
        return fl

    def blob(self) -> bytes:
        """The learned state in the device's format (momentum buffers are not part of it)."""
        c0, rows, h = self.factory_classes, self.c_max, self.h
        nn = rows - c0
        fl = self._flags().tobytes()
        fl += b"\0" * (-len(fl) % 4)
        names = b"".join((self.labels[i] or "").encode("ascii").ljust(NAME_BYTES, b"\0")
                         if self.active[i] else b"\0" * NAME_BYTES for i in range(c0, rows))
        body = (fl + self.W.astype("<f4").tobytes() + self.b.astype("<f4").tobytes()
                + self.W0[c0:].astype("<f4").tobytes() + names)
        total = BLOB_HEADER.size + len(body) + 4
        head = BLOB_HEADER.pack(BLOB_MAGIC, BLOB_VERSION, BLOB_HEADER.size, h, c0, rows,
                                NAME_BYTES, self.factory_crc(), self.updates, total, 0)
        assert nn >= 0
        data = head + body
        return data + struct.pack("<I", zlib.crc32(data))

    def load_blob(self, data: bytes) -> None:
        """Loads a blob written by the device (or by `blob`); raises McutextError if it is
        damaged or made for another model. Momentum buffers restart at zero."""
        data = bytes(data)
        if len(data) < BLOB_HEADER.size + 4:
            raise McutextError("head blob: truncated")
        (magic, version, hbytes, h, c0, rows, name_bytes, fcrc, updates, total,
         reserved) = BLOB_HEADER.unpack_from(data)
        if magic != BLOB_MAGIC or version != BLOB_VERSION or hbytes != BLOB_HEADER.size:
            raise McutextError("head blob: not a version-1 head blob")
        if total != len(data):
            raise McutextError(f"head blob: {len(data)} bytes, its header says {total}")
        if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
            raise McutextError("head blob: CRC mismatch (damaged)")
        if ((h, c0, rows, name_bytes) != (self.h, self.factory_classes, self.c_max, NAME_BYTES)
                or fcrc != self.factory_crc()):
            raise McutextError("head blob: made for another model or firmware build")
        nn = rows - c0
        pos = BLOB_HEADER.size
        fl = np.frombuffer(data, np.uint8, rows, pos)
        pos += rows + (-rows % 4)
        def floats(n):
            nonlocal pos
            x = np.frombuffer(data, "<f4", n, pos).astype(F32)
            pos += 4 * n
            return x
        W, b, W0n = floats(rows * h).reshape(rows, h), floats(rows), floats(nn * h)
        names = [data[pos + j * NAME_BYTES: pos + (j + 1) * NAME_BYTES] for j in range(nn)]
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))
                and np.all(np.isfinite(W0n)) and np.all(fl[:c0] == ACTIVE)
                and np.all(np.isin(fl[c0:], (0, ACTIVE, ACTIVE | FRESH)))):
            raise McutextError("head blob: invalid field values")
        labels = list(self.labels[:c0])
        for j, raw in enumerate(names):
            name = raw.rstrip(b"\0").decode("ascii", "replace")
            if fl[c0 + j] & ACTIVE:
                if not valid_label_name(name) or name in labels or b"\0" in raw.rstrip(b"\0"):
                    raise McutextError(f"head blob: invalid label name {raw!r}")
                labels.append(name)
            else:
                labels.append(None)
        self.W, self.b = W.copy(), b.copy()
        self.W0[c0:] = W0n.reshape(nn, h)
        self.b0[c0:] = 0
        self.active = (fl & ACTIVE).astype(bool)
        self._fresh = {int(i) for i in np.nonzero(fl & FRESH)[0]}
        self.labels = labels
        self.updates = int(updates)
        self.V = np.zeros_like(self.W)
        self.vb = np.zeros_like(self.b)


class HeadSimulator(HeadBlob):
    def __init__(self, weights: np.ndarray, bias: np.ndarray, labels: list[str],
                 max_new_labels: int, feature_scale: float, feature_zero_point: int,
                 config: UpdateConfig | None = None, feature_mean=None):
        w = np.asarray(weights, dtype=F32)          # manifest stores [H, C]
        c0, h = w.shape[1], w.shape[0]
        self.factory_classes = c0
        self.c_max = c0 + max_new_labels
        self.h = h
        self.W = np.zeros((self.c_max, h), F32)
        self.W[:c0] = w.T
        self.b = np.zeros(self.c_max, F32)
        self.b[:c0] = np.asarray(bias, F32)
        self.W0, self.b0 = self.W.copy(), self.b.copy()
        self.V = np.zeros_like(self.W)
        self.vb = np.zeros_like(self.b)
        self.active = np.zeros(self.c_max, bool)
        self.active[:c0] = True
        self.labels: list[str | None] = list(labels) + [None] * max_new_labels
        self.scale, self.zp = F32(feature_scale), int(feature_zero_point)
        self.config = config or UpdateConfig()
        self.mu = (np.zeros(h, F32) if feature_mean is None
                   else np.asarray(feature_mean, F32).reshape(h))
        self.updates = 0
        self._fresh: set[int] = set()  # added rows not yet imprinted

    @classmethod
    def from_bundle(cls, bundle, config: UpdateConfig | None = None,
                    max_new_labels: int | None = None) -> "HeadSimulator":
        head = bundle.manifest["head"]
        q = head["input_quantization"]
        n_new = (head.get("max_new_labels", DEFAULT_MAX_NEW_LABELS)
                 if max_new_labels is None else max_new_labels)
        return cls(np.array(head["weights"]), np.array(head["bias"]), bundle.labels, n_new,
                   q["scale"], q["zero_point"], config, head.get("feature_mean"))

    # --- features ----------------------------------------------------------------------------
    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, np.int32) - self.zp).astype(F32) * self.scale).astype(F32)

    # --- labels ------------------------------------------------------------------------------
    def index(self, name: str) -> int:
        for i, lab in enumerate(self.labels):
            if lab == name and self.active[i]:
                return i
        raise McutextError(f"unknown label '{name}'")

    def add_label(self, name: str) -> int:
        if not valid_label_name(name):
            raise McutextError(f"label name {name!r}: use 1 to {NAME_BYTES - 1} printable "
                               "ASCII characters without spaces")
        if any(lab == name and self.active[i] for i, lab in enumerate(self.labels)):
            raise McutextError(f"label '{name}' exists already")
        free = [i for i in range(self.factory_classes, self.c_max) if not self.active[i]]
        if not free:
            raise McutextError(f"no free label slot (the firmware reserves "
                               f"{self.c_max - self.factory_classes})")
        i = free[0]
        self.labels[i] = name
        self.active[i] = True
        self.W[i] = 0
        self.b[i] = 0
        self.W0[i] = 0
        self.b0[i] = 0
        self.V[i] = 0
        self.vb[i] = 0
        self._fresh.add(i)
        return i

    def remove_label(self, name: str) -> None:
        i = self.index(name)
        if i < self.factory_classes:
            raise McutextError(f"'{name}' is a factory label; only labels added on the device "
                               "can be removed")
        self.active[i] = False
        self.labels[i] = None
        self._fresh.discard(i)
        # a removed row is all zero (as on the device), so equal states serialize equally
        self.W[i] = self.W0[i] = self.V[i] = 0
        self.b[i] = self.b0[i] = self.vb[i] = 0

    def rename_label(self, name: str, new_name: str) -> None:
        i = self.index(name)
        if i < self.factory_classes:
            raise McutextError(f"'{name}' is a factory label; only labels added on the device "
                               "can be renamed")
        if not valid_label_name(new_name):
            raise McutextError(f"label name {new_name!r}: use 1 to {NAME_BYTES - 1} printable "
                               "ASCII characters without spaces")
        if new_name != name and any(lab == new_name and self.active[j]
                                    for j, lab in enumerate(self.labels)):
            raise McutextError(f"label '{new_name}' exists already")
        self.labels[i] = new_name

    # --- inference ---------------------------------------------------------------------------
    def scores(self, f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, F32)
        z = (f @ self.W.T + self.b).astype(F32)
        return np.where(self.scored(), z, F32(-np.inf)).astype(F32)

    def scored(self) -> np.ndarray:
        """Rows that take part in scoring: active, and (new rows) imprinted."""
        s = self.active.copy()
        s[list(self._fresh)] = False
        return s

    def predict(self, f: np.ndarray) -> np.ndarray:
        return self.scores(f).argmax(axis=-1)

    # --- learning ----------------------------------------------------------------------------
    def _state(self) -> tuple:
        """Everything a step or an imprint changes (the device's mt_head_snapshot_t)."""
        return (self.W.copy(), self.b.copy(), self.V.copy(), self.vb.copy(), self.W0.copy(),
                self.b0.copy(), set(self._fresh), self.updates)

    def _restore(self, state: tuple) -> None:
        (self.W, self.b, self.V, self.vb, self.W0, self.b0, self._fresh, self.updates) = state

    def _count_update(self) -> None:
        self.updates = min(self.updates + 1, MAX_UPDATES)

    def _imprint(self, i: int, v: np.ndarray, sub_mean: bool = True) -> None:
        """Row i = s d / |d|, d = v - mean (sub_mean) or v; s = the mean norm of the factory
        rows; bias = mean over the factory rows of (b_r + W_r . mean) - W[i] . mean."""
        rows = [j for j in range(self.factory_classes) if self.active[j]]
        s = F32(np.mean(np.linalg.norm(self.W[rows], axis=1))) if rows else F32(1)
        bm = (F32(np.mean(self.b[rows] + self.W[rows] @ self.mu)) if rows else F32(0))
        d = (v - self.mu).astype(F32) if sub_mean else np.asarray(v, F32)
        n = F32(np.sqrt(np.sum(d * d, dtype=F32)))
        self.W[i] = (s * d / n).astype(F32) if n > 0 else 0
        self.b[i] = F32(bm - np.dot(self.W[i], self.mu).astype(F32))
        self.W0[i], self.b0[i] = self.W[i], self.b[i]
        self._fresh.discard(i)

    def imprint_mean(self, F: np.ndarray, Y: np.ndarray) -> list[int]:
        """`head imprint`: every added label with examples in (F, Y) gets the imprint of the
        sum of its examples' unit vectors (f - mean) / |f - mean| (an example at the mean adds
        nothing); its momentum restarts at zero; each imprint counts one update. Returns the
        rows imprinted. An imprint that would overflow refuses them all (nothing changed)."""
        F, Y = np.asarray(F, F32), np.asarray(Y)
        before = self._state()
        done = []
        for i in range(self.factory_classes, self.c_max):
            if not self.active[i] or not np.any(Y == i):
                continue
            d = (F[Y == i] - self.mu).astype(F32)
            n = np.sqrt(np.sum(d * d, axis=1, dtype=F32)).astype(F32)
            keep = n > 0
            acc = (d[keep] / n[keep, None]).sum(axis=0, dtype=F32).astype(F32)
            if not np.any(acc != 0):
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                self._imprint(i, acc, sub_mean=False)
            if not (np.isfinite(self.W).all() and np.isfinite(self.b).all()):
                self._restore(before)
                raise McutextError("the imprint would make the head overflow: not imprinted")
            self.V[i] = 0
            self.vb[i] = 0
            self._count_update()
            done.append(i)
        return done

    def step(self, f: np.ndarray, y: int) -> float:
        """One SGD step on one example; returns its loss before the step.

        A step (or a new label's imprint) that would leave a non-finite value in the head is
        refused and changes nothing, as on the device (`error 4 ... overflow`)."""
        f = np.asarray(f, F32)
        if not self.active[y]:
            raise McutextError(f"label index {y} is not active")
        saved = self._state()
        with np.errstate(over="ignore", invalid="ignore"):
            loss = self._step(f, y)
        if not (np.isfinite(self.W).all() and np.isfinite(self.b).all()
                and np.isfinite(self.V).all() and np.isfinite(self.vb).all()):
            self._restore(saved)
            raise McutextError("the step would make the head overflow (lower lr or l2): "
                               "not learned")
        self._count_update()
        return loss

    def _step(self, f: np.ndarray, y: int) -> float:
        if y in self._fresh:
            self._imprint(y, f)
        cfg = self.config
        z = self.scores(f)
        live = self.scored()
        m = z[live].max()
        e = np.where(live, np.exp(z - m), F32(0)).astype(F32)
        p = (e / e.sum(dtype=F32)).astype(F32)
        loss = float(-np.log(max(p[y], 1e-12)))
        g = p.copy()
        g[y] -= F32(1)
        mu, lr, l2 = F32(cfg.momentum), F32(cfg.lr), F32(cfg.l2)
        L = live
        grad = (g[L, None] * f[None, :] + l2 * (self.W[L] - self.W0[L])).astype(F32)
        self.V[L] = (mu * self.V[L] + grad).astype(F32)
        self.W[L] = (self.W[L] - lr * self.V[L]).astype(F32)
        self.vb[L] = (mu * self.vb[L] + g[L]).astype(F32)
        self.b[L] = (self.b[L] - lr * self.vb[L]).astype(F32)
        return loss

    def train(self, F: np.ndarray, Y: np.ndarray, epochs: int = 1) -> list[float]:
        """Epochs over the examples in the given order (as the device does). A step refused part
        way brings the head back to where it was before the first epoch, as `head train`
        does, and raises."""
        before = self._state()
        losses = []
        try:
            for _ in range(epochs):
                losses.append(float(np.mean([self.step(f, int(y)) for f, y in zip(F, Y)])))
        except McutextError:
            self._restore(before)
            raise
        return losses

    def reset(self) -> None:
        self.__init__(self.W0[:self.factory_classes].T, self.b0[:self.factory_classes],
                      self.labels[:self.factory_classes], self.c_max - self.factory_classes,
                      float(self.scale), self.zp, self.config, self.mu)
