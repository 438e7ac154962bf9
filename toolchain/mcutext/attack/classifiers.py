"""What an attack queries: the bundle on a runtime (keras, litert, tflm) or a device over
serial, as probabilities per text; the oracle counts the queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..common.errors import McutextError
from ..int8.bundle import Bundle, softmax
from .catalog import check_runtime


# --- runtimes -------------------------------------------------------------------------------
class Classifier:
    """What an attack sees of a model: class probabilities for a batch of texts."""

    runtime = ""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.labels = bundle.labels
        self.calls = 0   # proba() calls
        self.rows = 0    # texts classified
        self.last_int8: np.ndarray | None = None  # int8 scores of the last call (int8 runtimes)

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        self.calls += 1
        self.rows += len(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        return self._proba(texts)

    def _proba(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _compiled_logits(bundle: Bundle):
    """The float model's logits as one traced graph for any batch size: most attack batches
    are small, where predict() and eager calls cost ~10 ms each in overhead alone. Traced
    once per bundle object and kept on it (every classifier of the bundle shares it)."""
    fn = getattr(bundle, "_attack_logits", None)
    if fn is None:
        import tensorflow as tf
        model = bundle.keras_model()
        spec = tf.TensorSpec([None, bundle.tokenizer.spec.seq_len], tf.int32)
        fn = tf.function(lambda ids: model(ids, training=False)[0], input_signature=[spec])
        bundle._attack_logits = fn
    return fn


class KerasClassifier(Classifier):
    """The float model."""

    runtime = "keras"
    CHUNK = 1024

    def __init__(self, bundle: Bundle):
        super().__init__(bundle)
        self._logits = _compiled_logits(bundle)

    def logits_ids(self, ids: np.ndarray) -> np.ndarray:
        out = [np.asarray(self._logits(ids[i:i + self.CHUNK]))
               for i in range(0, len(ids), self.CHUNK)]
        return np.concatenate(out).astype(np.float64)

    def _proba(self, texts):
        return softmax(self.logits_ids(self.bundle.tokenize(texts)))


def int8_logits_to_proba(bundle: Bundle, q: np.ndarray) -> np.ndarray:
    """Dequantize int8 class scores with the bundle's output scale and zero point; softmax."""
    quant = bundle.manifest["int8"]["outputs"]["logits"]
    z = (np.asarray(q, np.float64) - quant["zero_point"]) * quant["scale"]
    return softmax(z)


class Int8Classifier(Classifier):
    """The int8 model in TFLite Micro (`tflm`, the device's reference) or LiteRT."""

    def __init__(self, bundle: Bundle, runtime: str):
        super().__init__(bundle)
        if runtime not in ("tflm", "litert"):
            raise McutextError(f"unknown int8 runtime '{runtime}'")
        self.runtime = runtime

    def _proba(self, texts):
        raw = self.bundle.run_int8(self.bundle.tokenize(texts), self.runtime)["logits"]
        self.last_int8 = raw
        return int8_logits_to_proba(self.bundle, raw)


class DeviceClassifier(Classifier):
    """A board running this bundle's firmware, over serial: `Device(url).classify(text)`
    returns at least {"label": str, "scores": [int8 per class, in the bundle's label order]}.
    One exchange per text, never pipelined: a real UART without flow control would drop the
    bytes of a second line sent while the board is busy. The scores are dequantized like the
    host's int8 outputs, so the attack sees exactly what it sees on `tflm`."""

    runtime = "device"

    def __init__(self, bundle: Bundle, port: str | None, check: bool = True,
                 log: str | Path | None = None):
        super().__init__(bundle)
        if not port:
            raise McutextError("the device runtime needs --port URL (or MCUTEXT_PORT)",
                               hint="e.g. --port socket://127.0.0.1:4444 for a QEMU board")
        try:
            from ..device.client import Device
        except ImportError as e:
            raise McutextError(f"the device runtime is not available ({e})") from None
        self.port = port
        self.device = Device(port, log=log) if log else Device(port)
        if check:
            try:
                self._check_model()
            except BaseException:
                self.close()
                raise

    def _check_model(self) -> None:
        """The board must run this bundle: same model name, labels and tokenizer. (Two
        trainings of one recipe pass this check; the bench and the tests build the firmware
        from the very bundle they attack.)"""
        info_fn = getattr(self.device, "info", None)
        if not callable(info_fn):
            return
        info = info_fn()
        spec = self.bundle.tokenizer.spec
        want = {"buckets": spec.buckets, "max_words": spec.max_words, "seed": spec.seed,
                "max_word_bytes": spec.max_word_bytes,
                "features_per_word": spec.features_per_word}
        got = info.get("tokenizer", {})
        diff = [f"{k} {got.get(k)} (bundle {v})" for k, v in want.items()
                if k in got and got[k] != v]
        if "model" in info and info["model"] != self.bundle.name:
            diff.append(f"model {info['model']} (bundle {self.bundle.name})")
        if "labels" in info and list(info["labels"]) != list(self.labels):
            diff.append(f"labels {info['labels']} (bundle {self.labels})")
        if diff:
            raise McutextError(
                f"device at {self.port} does not run this bundle: " + "; ".join(diff),
                hint=f"build and flash firmware from {self.bundle.path}")

    def _proba(self, texts):
        rows = []
        for t in texts:
            r = self.device.classify(t)
            scores = r.get("scores") if isinstance(r, dict) else None
            if scores is None or len(scores) != len(self.labels):
                raise McutextError(
                    f"device at {self.port}: expected {len(self.labels)} class scores, got "
                    f"{None if scores is None else len(scores)}",
                    hint="is the board running firmware built from this bundle?")
            scores = np.asarray(scores, np.int64)
            label = r.get("label")
            top = np.flatnonzero(scores == scores.max())
            if label is not None and label not in [self.labels[i] for i in top]:
                raise McutextError(
                    f"device at {self.port}: label '{label}' is not the top score's label",
                    hint="is the board running firmware built from this bundle?")
            rows.append(scores)
        self.last_int8 = np.stack(rows).astype(np.int8)
        return int8_logits_to_proba(self.bundle, self.last_int8)

    def close(self):
        close = getattr(self.device, "close", None)
        if callable(close):
            close()


def make_classifier(bundle: Bundle, runtime: str, port: str | None = None,
                    log: str | Path | None = None) -> Classifier:
    """The runtime's classifier; `log` records every serial exchange of the device runtime."""
    check_runtime(runtime)
    if runtime == "keras":
        return KerasClassifier(bundle)
    if runtime in ("tflm", "litert"):
        return Int8Classifier(bundle, runtime)
    return DeviceClassifier(bundle, port, log=log)


class Oracle:
    """One example's view of a classifier: remembers every answer (a text is never asked
    twice) and counts the texts it had to ask about (the attack's queries)."""

    def __init__(self, clf: Classifier):
        self.clf = clf
        self.queries = 0
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if new:
            for t, p in zip(new, self.clf.proba(new)):
                self.cache[t] = p
            self.queries += len(new)
        if not texts:
            return np.zeros((0, len(self.clf.labels)))
        return np.stack([self.cache[t] for t in texts])
