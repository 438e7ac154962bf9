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
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .errors import McutextError

F32 = np.float32


@dataclasses.dataclass
class UpdateConfig:
    lr: float = 0.05
    momentum: float = 0.0
    l2: float = 0.0


class HeadSimulator:
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
        n_new = head.get("max_new_labels", 8) if max_new_labels is None else max_new_labels
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
    def _imprint(self, i: int, f: np.ndarray) -> None:
        rows = [j for j in range(self.factory_classes) if self.active[j]]
        s = F32(np.mean(np.linalg.norm(self.W[rows], axis=1))) if rows else F32(1)
        d = (f - self.mu).astype(F32)
        n = F32(np.sqrt(np.sum(d * d, dtype=F32)))
        self.W[i] = (s * d / n).astype(F32) if n > 0 else 0
        self.b[i] = F32((np.mean(self.b[rows]) if rows else F32(0))
                        - np.dot(self.W[i], self.mu).astype(F32))
        self.W0[i], self.b0[i] = self.W[i], self.b[i]
        self._fresh.discard(i)

    def step(self, f: np.ndarray, y: int) -> float:
        """One SGD step on one example; returns its loss before the step."""
        f = np.asarray(f, F32)
        if not self.active[y]:
            raise McutextError(f"label index {y} is not active")
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
        g[~live] = 0
        mu, lr, l2 = F32(cfg.momentum), F32(cfg.lr), F32(cfg.l2)
        grad = (g[:, None] * f[None, :] + l2 * (self.W - self.W0)).astype(F32)
        grad[~live] = 0
        self.V = (mu * self.V + grad).astype(F32)
        self.W = (self.W - lr * self.V).astype(F32)
        self.vb = (mu * self.vb + g).astype(F32)
        self.b = (self.b - lr * self.vb).astype(F32)
        self.updates += 1
        return loss

    def train(self, F: np.ndarray, Y: np.ndarray, epochs: int = 1) -> list[float]:
        """Epochs over the examples in the given order (as the device does)."""
        losses = []
        for _ in range(epochs):
            losses.append(float(np.mean([self.step(f, int(y)) for f, y in zip(F, Y)])))
        return losses

    def reset(self) -> None:
        self.__init__(self.W0[:self.factory_classes].T, self.b0[:self.factory_classes],
                      self.labels[:self.factory_classes], self.c_max - self.factory_classes,
                      float(self.scale), self.zp, self.config, self.mu)
