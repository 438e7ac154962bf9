"""The bundle: one self-describing folder per trained model.

    manifest.json       name, labels, tokenizer spec, sizes, metrics, head, tool versions
    model.keras         the float Keras model (outputs: logits, attention, features)
    model_int8.tflite   the full-integer model (int32 ids in; int8 logits, attention, features)
    encoding.bin        the robust encoding's table (tokenizer spec version 2 only)

`load_bundle(path)` gives a Bundle whose `predict_proba(texts, runtime=...)` runs any of the
three runtimes on plain strings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..common.errors import McutextError
from ..text.tokenizer import RobustTable, TokenizerSpec, make_tokenizer, register_table

MANIFEST = "manifest.json"
ENCODING_FILE = "encoding.bin"
KERAS_FILE = "model.keras"
TFLITE_FILE = "model_int8.tflite"
FORMAT_VERSION = 1
RUNTIMES = ("keras", "litert", "tflm")


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Bundle:
    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.labels: list[str] = manifest["labels"]
        spec = TokenizerSpec.from_dict(manifest["tokenizer"])
        self.encoding_table = read_encoding_table(path, spec) if spec.robust else None
        self.tokenizer = make_tokenizer(spec, self.encoding_table)
        self._keras = None
        self._litert = None
        self._tflm = None
        self._tflite: bytes | None = None

    @property
    def name(self) -> str:
        return self.manifest["name"]

    # --- inputs -----------------------------------------------------------------------------
    def tokenize(self, texts) -> np.ndarray:
        if isinstance(texts, (str, bytes)):
            texts = [texts]
        return self.tokenizer.encode_batch(texts)

    # --- runtimes -------------------------------------------------------------------------
    @property
    def tflite_bytes(self) -> bytes:
        if self._tflite is None:
            p = self.path / TFLITE_FILE
            if not p.is_file():
                raise McutextError(f"{p}: missing (run `mcutext convert {self.path}`)")
            data = p.read_bytes()
            self._check_tflite(p, data)
            self._tflite = data
        return self._tflite

    def _check_tflite(self, p: Path, data: bytes) -> None:
        """The flatbuffer must parse and agree with the manifest (input length, outputs)."""
        from .convert import read_model
        try:
            fb = read_model(data)
        except McutextError as e:
            raise McutextError(f"{p}: {e}") from None
        sg = fb.subgraphs[0]
        want_in = [1, int(self.manifest["seq_len"])]
        feed = self.manifest["int8"].get("input")
        if feed:  # the int8 model takes features computed from the ids (mcutext.model.baselines)
            want_in = [1, int(feed["max_words"]), 1, int(feed["feature_size"]) + 1]
        got_in = list(sg.tensors[sg.inputs[0]].shape)
        if got_in != want_in:
            raise McutextError(f"{p}: input shape {got_in} disagrees with the manifest "
                               f"(seq_len {want_in[1]})")
        head = self.manifest.get("head") or {}
        want = {"logits": len(self.labels), "attention": int(self.manifest["max_words"]),
                "features": head.get("in_features")}
        order = self.manifest["int8"]["output_order"]
        for name, dim in want.items():
            pos = order.get(name)
            if pos is None or pos >= len(sg.outputs):
                raise McutextError(f"{p}: has no output '{name}' at the manifest's position")
            t = sg.tensors[sg.outputs[pos]]
            shape = list(t.shape)
            if dim is not None and shape[-1] != dim:
                raise McutextError(f"{p}: output '{name}' has {shape[-1]} values, the "
                                   f"manifest says {dim}")
            # the manifest's quantization is what the host dequantizes with and the firmware
            # is built with: it must be the model's own
            q = self.manifest["int8"]["outputs"][name]
            tq = t.quantization
            got = ([float(v) for v in tq.scale], [int(v) for v in tq.zeroPoint]) \
                if tq is not None and tq.scale is not None and tq.zeroPoint is not None \
                else ([], [])
            if not (len(got[0]) == 1 and np.float32(got[0][0]) == np.float32(q["scale"])
                    and got[1] == [q["zero_point"]]):
                raise McutextError(f"{p}: output '{name}' is quantized with scale "
                                   f"{got[0]}, zero point {got[1]}; manifest.json's "
                                   f"int8.outputs.{name} says {q}", hint=_RESTORE)

    def keras_model(self):
        if self._keras is None:
            import keras

            from ..model import baselines as _baselines  # noqa: F401  (and the baselines')
            from ..model import student as _model  # noqa: F401  (registers the custom layers)
            p = self.path / KERAS_FILE
            if not p.is_file():
                raise McutextError(f"{p}: missing")
            model = keras.models.load_model(p, compile=False)
            got = (model.inputs[0].shape[-1], model.outputs[0].shape[-1])
            want = (int(self.manifest["seq_len"]), len(self.labels))
            if got != want:
                raise McutextError(f"{p}: takes {got[0]} ids and gives {got[1]} logits; the "
                                   f"manifest says seq_len {want[0]} and {want[1]} labels",
                                   hint=_RESTORE)
            self._keras = model
        return self._keras

    def _quant(self, name: str) -> tuple[float, int]:
        q = self.manifest["int8"]["outputs"][name]
        return q["scale"], q["zero_point"]

    def run_int8(self, ids: np.ndarray, runtime: str = "tflm") -> dict[str, np.ndarray]:
        """Raw int8 outputs (logits, attention, features) for a batch of id rows."""
        order = self.manifest["int8"]["output_order"]
        outs = {k: [] for k in order}
        feed = self.manifest["int8"].get("input")
        if feed:  # PRADO: the projection is computed outside the int8 graph
            from ..model.baselines import int8_input
            ids = int8_input(feed, ids)
        in_type = np.int8 if feed else np.int32
        if runtime == "tflm":
            if self._tflm is None:
                from .convert import tflm_interpreter
                self._tflm = tflm_interpreter(self.tflite_bytes)
            it = self._tflm
            for row in ids:
                it.set_input(row[None].astype(in_type), 0)
                it.invoke()
                for k, pos in order.items():
                    outs[k].append(np.array(it.get_output(pos))[0])
        elif runtime == "litert":
            if self._litert is None:
                from ai_edge_litert.interpreter import Interpreter
                self._litert = Interpreter(model_content=self.tflite_bytes, num_threads=1)
                self._litert.allocate_tensors()
            it = self._litert
            inp = it.get_input_details()[0]["index"]
            details = it.get_output_details()
            for row in ids:
                it.set_tensor(inp, row[None].astype(in_type))
                it.invoke()
                for k, pos in order.items():
                    outs[k].append(it.get_tensor(details[pos]["index"])[0])
        else:
            raise McutextError(f"unknown int8 runtime '{runtime}' (use tflm or litert)")
        return {k: np.array(v, dtype=np.int8).reshape(len(ids), -1) for k, v in outs.items()}

    def run(self, texts, runtime: str = "keras") -> dict[str, np.ndarray]:
        """Float outputs (dequantized for int8 runtimes): logits, attention, features."""
        if runtime not in RUNTIMES:
            raise McutextError(f"unknown runtime '{runtime}' (use one of: {', '.join(RUNTIMES)})")
        ids = self.tokenize(texts)
        if runtime == "keras":
            m = self.keras_model()
            out = m.predict(ids, batch_size=256, verbose=0) if len(ids) else [
                np.zeros((0, d)) for d in (len(self.labels), ids.shape[1], 1)]
            return {"logits": np.asarray(out[0]), "attention": np.asarray(out[1]),
                    "features": np.asarray(out[2])}
        raw = self.run_int8(ids, runtime)
        res = {}
        for k, v in raw.items():
            scale, zp = self._quant(k)
            res[k] = (v.astype(np.float32) - zp) * scale
        return res

    def predict_proba(self, texts, runtime: str = "keras") -> np.ndarray:
        return softmax(self.run(texts, runtime)["logits"])

    def predict(self, texts, runtime: str = "keras") -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts, runtime).argmax(axis=1)]

    def word_attributions(self, text: str, runtime: str = "keras") -> list[tuple[str, float]]:
        """(word, attention weight) for the words the model saw."""
        words = self.tokenizer.display_words(text)
        att = self.run([text], runtime)["attention"][0]
        return list(zip(words, [float(a) for a in att[:len(words)]]))


def read_encoding_table(path: Path, spec: TokenizerSpec) -> RobustTable:
    """The robust encoding's table of a bundle, checked against the spec's sha256 and
    registered (so that the bundle's recipe finds it too)."""
    p = path / ENCODING_FILE
    if not p.is_file():
        raise McutextError(f"{p}: missing (the tokenizer spec uses the robust encoding)")
    table = RobustTable.from_bytes(p.read_bytes(), where=str(p))
    if table.sha256 != spec.table:
        raise McutextError(f"{p}: sha256 {table.sha256[:12]}... is not the tokenizer spec's "
                           f"{spec.table[:12]}...", hint="the bundle was edited or damaged")
    if table.codes != spec.buckets:
        raise McutextError(f"{p}: {table.codes} codes, the tokenizer spec says {spec.buckets}")
    register_table(table)
    return table


def write_encoding(path: Path, tokenizer) -> None:
    """Writes the robust encoding's table (encoding.bin) into a bundle being built, when the
    tokenizer uses one; nothing for the hashed encoding."""
    table = getattr(tokenizer, "table", None)
    if tokenizer.spec.robust and table is not None:
        (path / ENCODING_FILE).write_bytes(table.to_bytes())


def load_bundle(path: str | Path, *, staging: bool = False) -> Bundle:
    """Reads and checks a bundle: the manifest's own consistency (labels, tokenizer, lengths,
    head) and that model_int8.tflite is the file the manifest describes (size, SHA-256).
    Whether the flatbuffer itself agrees (input shape, outputs) is checked when it is first
    used (`Bundle.tflite_bytes`). Every problem is a McutextError naming the file.

    A staging folder (a bundle being written, or left by an interrupted run: see
    mcutext.common.outputs) is refused; `staging=True` is for the trainer's own checks of it."""
    from ..common.outputs import is_staging
    path = Path(path)
    if is_staging(path) and not staging:
        raise McutextError(f"{path}: an unfinished bundle (a staging folder left by an "
                           "interrupted run), not a bundle",
                           hint="train again; the next `mcutext train` beside it removes it")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise McutextError(f"{path}: not a bundle (no {MANIFEST})",
                           hint="train one with `mcutext train RECIPE`")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise McutextError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise McutextError(f"{mpath}: not a bundle manifest (a JSON object is expected)")
    for key in ("name", "labels", "tokenizer", "int8"):
        if key not in manifest:
            raise McutextError(f"{mpath}: missing key '{key}'")
    if manifest.get("format") != FORMAT_VERSION:
        raise McutextError(f"{mpath}: bundle format {manifest.get('format')} is not supported "
                           f"(this mcutext reads format {FORMAT_VERSION})")
    check_manifest(mpath, manifest)
    check_tflite_file(path, manifest)
    try:
        return Bundle(path, manifest)
    except McutextError as e:
        raise McutextError(f"{mpath}: {e}", hint=e.hint) from None


def check_manifest(mpath: Path, m: dict) -> None:
    """The manifest must agree with itself: labels, tokenizer spec (and the recipe's copy of
    it), max_words / seq_len, the head's shape and values."""
    def bad(what: str) -> McutextError:
        return McutextError(f"{mpath}: {what}",
                            hint="the manifest was edited or damaged; retrain or restore it")
    labels = m["labels"]
    if (not isinstance(labels, list) or len(labels) < 2
            or not all(isinstance(x, str) and x for x in labels)):
        raise bad("'labels' must be a list of at least 2 non-empty strings")
    if len(set(labels)) != len(labels):
        raise bad("'labels' has repeated names")
    _check_fields(m, bad)
    if not isinstance(m["tokenizer"], dict):
        raise bad("'tokenizer' must be an object")
    try:
        spec = TokenizerSpec.from_dict(m["tokenizer"])
    except TypeError as e:
        raise bad(f"bad tokenizer spec ({e})") from None
    except McutextError as e:
        raise bad(str(e)) from None
    recipe_tok = (m.get("recipe") or {}).get("tokenizer")
    if isinstance(recipe_tok, dict):
        diff = sorted(k for k in set(recipe_tok) | set(m["tokenizer"])
                      if recipe_tok.get(k) != m["tokenizer"].get(k))
        if diff:
            tok = m["tokenizer"]
            what = ", ".join(f"{k} {tok.get(k)}, trained with {recipe_tok.get(k)}" for k in diff)
            raise bad(f"tokenizer spec disagrees with the recipe the model was trained with "
                      f"({what})")
    if "max_words" in m and m["max_words"] != spec.max_words:
        raise bad(f"max_words {m['max_words']} disagrees with tokenizer.max_words "
                  f"{spec.max_words}")
    feed = m["int8"].get("input") if isinstance(m["int8"], dict) else None
    if not isinstance(m["int8"], dict) or not isinstance(m["int8"].get("output_order"), dict):
        raise bad("'int8' must be an object with 'output_order'")
    if "seq_len" in m and not feed and m["seq_len"] != spec.seq_len:
        raise bad(f"seq_len {m['seq_len']} disagrees with the tokenizer spec "
                  f"({spec.max_words} words x {spec.features_per_word} features = "
                  f"{spec.seq_len})")
    head = m.get("head")
    if isinstance(head, dict) and "weights" in head:
        try:
            w = np.asarray(head["weights"], dtype=np.float64)
            b = np.asarray(head["bias"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise bad("'head' weights or bias are not numbers") from None
        if w.ndim != 2 or b.ndim != 1:
            raise bad("'head' weights must be [features, classes], bias [classes]")
        if w.shape[1] != len(labels) or b.shape[0] != len(labels):
            raise bad(f"{len(labels)} labels, but the head has {w.shape[1]} outputs "
                      f"(bias {b.shape[0]})")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise bad("'head' has weights that are not finite")
        if head.get("in_features", w.shape[0]) != w.shape[0]:
            raise bad(f"head.in_features {head['in_features']} disagrees with the head's "
                      f"{w.shape[0]} weight rows")
        mean = head.get("feature_mean")
        if mean is not None and not (isinstance(mean, list) and len(mean) == w.shape[0]
                                     and all(_is_number(v) for v in mean)):
            raise bad(f"head.feature_mean must be {w.shape[0]} finite numbers (one per feature)")
    if isinstance(head, dict) and head.get("classes", len(labels)) != len(labels):
        raise bad(f"head.classes {head['classes']} disagrees with the {len(labels)} labels")
    for name, twin in (("input_quantization", "features"), ("output_quantization", "logits")):
        q, out = head.get(name) if isinstance(head, dict) else None, m["int8"]["outputs"][twin]
        if q is not None and (q["scale"], q["zero_point"]) != (out["scale"], out["zero_point"]):
            raise bad(f"head.{name} {q} disagrees with int8.outputs.{twin} "
                      f"{m['int8']['outputs'][twin]}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _is_quant(v) -> bool:
    return (isinstance(v, dict) and _is_number(v.get("scale")) and v["scale"] > 0
            and _is_int(v.get("zero_point")) and -128 <= v["zero_point"] <= 127)


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


_ABSENT = object()
# Every field a command reads, with the type it must have: (path, test, what, required).
# A hand edit can put anything anywhere; what the test refuses is one error naming the field.
_FIELDS = (
    ("name", lambda v: isinstance(v, str) and v != "", "a non-empty string", True),
    ("dataset", lambda v: isinstance(v, str) and v != "", "a non-empty string", True),
    ("max_words", lambda v: _is_int(v) and v >= 1, "a positive integer", True),
    ("seq_len", lambda v: _is_int(v) and v >= 1, "a positive integer", True),
    ("int8.output_order", lambda v: isinstance(v, dict) and all(
        _is_int(v.get(k)) and v[k] >= 0 for k in ("logits", "attention", "features")),
     "an object giving logits, attention and features a position (0, 1, 2, ...)", True),
    ("int8.outputs", lambda v: isinstance(v, dict) and all(
        _is_quant(v.get(k)) for k in ("logits", "attention", "features")),
     "an object of {scale > 0, zero_point -128..127} for logits, attention and features",
     True),
    ("int8.input", lambda v: v is None or isinstance(v, dict) and all(
        _is_int(v.get(k)) and v[k] >= 1 for k in ("max_words", "features_per_word",
                                                  "feature_size")) and _is_int(v.get("seed"))
     and isinstance(v.get("lut"), list), "an object of the projection's sizes and lut", False),
    ("int8.ops", _str_list, "a list of op names", True),
    ("int8.file_bytes", _is_int, "an integer", False),
    ("sizes", lambda v: isinstance(v, dict) and all(_is_int(v.get(k)) for k in (
        "params", "int8_weights_bytes")), "an object with integer params and "
                                          "int8_weights_bytes", True),
    ("metrics", lambda v: isinstance(v, dict) and all(isinstance(r, dict) and all(
        not isinstance(x, dict) or _is_number(x.get("accuracy")) and _is_int(x.get("n"))
        for x in r.values()) for r in v.values()),
     "an object of splits, each of runtimes with accuracy and n", False),
    ("eval", lambda v: isinstance(v, dict) and all(
        _str_list(v.get(k, [])) for k in ("exclude_labels", "dropped_labels")),
     "an object with lists of label names", False),
    ("recipe", lambda v: isinstance(v, dict) and all(
        isinstance(v.get(k, {}), dict) for k in ("model", "tokenizer", "train")),
     "an object (the recipe the model was trained with)", False),
    ("training.limit", lambda v: v is None or _is_int(v) and v >= 1,
     "a positive integer or null (the --limit subset)", False),
    ("head", lambda v: isinstance(v, dict), "an object", False),
    ("head.in_features", lambda v: _is_int(v) and v >= 1, "a positive integer", False),
    ("head.classes", _is_int, "an integer", False),
    ("head.max_new_labels", lambda v: _is_int(v) and 0 <= v <= 255, "an integer 0..255",
     False),
    ("head.input_quantization", _is_quant, "{scale > 0, zero_point -128..127}", False),
    ("head.output_quantization", _is_quant, "{scale > 0, zero_point -128..127}", False),
)


def _check_fields(m: dict, bad) -> None:
    for path, ok, what, required in _FIELDS:
        v = m
        for key in path.split("."):
            v = v.get(key, _ABSENT) if isinstance(v, dict) else _ABSENT
        if v is _ABSENT:
            if required:
                raise bad(f"missing '{path}'")
            continue
        if not ok(v):
            raise bad(f"'{path}' must be {what}, got {json.dumps(v)[:60]}")


def check_tflite_file(path: Path, m: dict) -> None:
    """model_int8.tflite must be the file the manifest was written for: its size and, when
    the manifest records it, its SHA-256 (a truncated or edited model is refused here)."""
    p = path / TFLITE_FILE
    if not p.is_file():
        return   # reported when the model is needed (a bundle can be used without it)
    want = m["int8"].get("file_bytes")
    size = p.stat().st_size
    if isinstance(want, int) and size != want:
        raise McutextError(f"{p}: {size} bytes, the manifest says {want} (truncated or "
                           "replaced)", hint=_RESTORE)
    sha = m["int8"].get("sha256")
    if sha and _sha256(p) != sha:
        raise McutextError(f"{p}: the file was changed after the bundle was written (SHA-256 "
                           "differs from the manifest's)",
                           hint=_RESTORE)


_RESTORE = "restore the bundle from a copy, or train it again (`mcutext train RECIPE`)"


def _sha256(p: Path) -> str:
    import hashlib
    return hashlib.sha256(p.read_bytes()).hexdigest()


def write_manifest(path: Path, manifest: dict) -> None:
    """Writes manifest.json atomically; records the SHA-256 of model_int8.tflite (if the
    folder has it) so that a later edit of the model is detected (`load_bundle`)."""
    if (path / TFLITE_FILE).is_file() and isinstance(manifest.get("int8"), dict):
        manifest["int8"]["sha256"] = _sha256(path / TFLITE_FILE)
    from ..common.outputs import write_file
    write_file(path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
