"""`mcutext train`: recipe -> bundle (float Keras model + verified int8 TFLite model)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ..common.determinism import (  # noqa: E402
    configure_tensorflow, pin_environment, tensorflow_threads)

# deterministic training: set before TensorFlow starts (the whole process then trains the same
# way), and again by configure_tensorflow for a TensorFlow already started
pin_environment()

import numpy as np  # noqa: E402

from ..common.version import __version__  # noqa: E402
from ..common import progress  # noqa: E402
from ..int8.bundle import (  # noqa: E402
    FORMAT_VERSION, KERAS_FILE, TFLITE_FILE, load_bundle, write_encoding, write_manifest)
from ..int8.convert import (  # noqa: E402
    check_ops, output_order, read_model, tensor_quant, tflm_interpreter, to_int8, weights_bytes)
from ..text.datasets import Dataset, load_split  # noqa: E402
from ..common.errors import McutextError  # noqa: E402
from .splits import drop_labels, split_train_dev  # noqa: E402
from ..int8.evaluate import check_labels, evaluate  # noqa: E402
from ..model.student import build_student, count_params  # noqa: E402
from ..common.outputs import check_out, staging as staging_folder  # noqa: E402
from ..model.recipe import Recipe, project_root  # noqa: E402


def default_out(recipe: Recipe) -> Path:
    return project_root() / "build" / recipe.name / "bundle"


def fit(recipe: Recipe, train: Dataset, dev: Dataset, labels: list[str],
        epochs: int | None = None, teacher=None, use_teacher: bool = True):
    """Train the float student under the recipe's objective; returns the model (outputs:
    logits, attention, features) at the epoch with the best dev accuracy, and the history.

    With `use_teacher` and an objective that uses one, the recipe's teacher is loaded (trained
    first if missing) and the student trains on the teacher-labelled transfer set
    (mcutext.train.distill). Without, the teacher terms of the objective are switched off.
    """
    from .distill import TrainingSet, transfer_set
    from .objective import Trainer
    tok = load_tokenizer(recipe)
    index = {lab: i for i, lab in enumerate(labels)}
    y_tr = np.array([index[y] for y in train.labels], np.int32)
    x_dv, y_dv = tok.encode_batch(dev.texts), np.array([index[y] for y in dev.labels])
    if not use_teacher:
        recipe = without_teacher(recipe)
    batch_size, n_epochs = recipe.train.batch_size, epochs or recipe.train.epochs
    if recipe.objective.uses_teacher:
        if teacher is None:
            teacher = get_teacher(recipe, labels)
        data = transfer_set(recipe, train.texts, y_tr, teacher)
        if recipe.distill.copies > 0:
            batch_size = recipe.distill.batch_size
            n_epochs = epochs or recipe.distill.epochs or recipe.train.epochs
    else:
        data = TrainingSet.plain(train.texts, y_tr, len(labels), recipe.tokenizer.max_words)
    if recipe.objective.uses_sentence:
        data = with_sentence_targets(recipe, data)
    model = build_student(recipe, len(labels), seed=recipe.train.seed, training_graph=True)
    trainer = Trainer(recipe, model, len(labels), teacher)
    history = trainer.fit(data, x_dv, y_dv, tok, n_epochs, batch_size)
    history["examples"] = len(data)
    model = plain_copy(recipe, model, len(labels))
    if recipe.model.head == "prototype":
        model, center = prototype_head(recipe, model, tok.encode_batch(train.texts), y_tr,
                                       len(labels))
        history["feature_center"] = center
    return model, history


def with_sentence_targets(recipe: Recipe, data):
    """The training set plus objective.embed_texts as unlabelled examples (no cross-entropy),
    every text with its sentence embedding (mcutext.train.sentence)."""
    import dataclasses
    from .sentence import embed, extra_texts
    if recipe.objective.uses_teacher:
        raise McutextError(f"recipe {recipe.name}: objective.embed_weight cannot be combined "
                           "with a teacher's terms (kd_weight, map_weight) yet")
    extra = extra_texts(recipe.objective.embed_texts)
    n, m = len(data), len(extra)
    data = dataclasses.replace(
        data, texts=list(data.texts) + extra,
        y=np.concatenate([data.y, np.zeros(m, np.int32)]),
        ce_weight=np.concatenate([data.ce_weight, np.zeros(m, np.float32)]),
        t_logits=np.concatenate([data.t_logits, np.zeros((m,) + data.t_logits.shape[1:],
                                                         np.float32)]),
        t_attr=np.concatenate([data.t_attr, np.zeros((m,) + data.t_attr.shape[1:],
                                                     np.float32)]))
    progress.log(f"sentence mapping: {n} training texts + {m} unlabelled texts")
    return dataclasses.replace(data, t_sent=embed(data.texts))


def prototype_head(recipe: Recipe, model, x_train: np.ndarray, y_train: np.ndarray,
                   n_classes: int):
    """model.head = "prototype": the trained cosine head replaced by a Dense head whose row c
    is head_scale * the unit mean of the unit vectors (f - center) of class c's training
    features, and whose bias is -row . center. Returns the model and the center (the manifest
    head's feature_mean: the device imprints new labels around it the same way)."""
    feats = model.predict(x_train, batch_size=1024, verbose=0)[2].astype(np.float64)
    center = model.get_layer("head").center.numpy().astype(np.float64)
    u = feats - center
    u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-12
    w = np.zeros((feats.shape[1], n_classes))
    for c in range(n_classes):
        if np.any(y_train == c):
            m = u[y_train == c].mean(axis=0)
            w[:, c] = recipe.model.head_scale * m / (np.linalg.norm(m) + 1e-12)
    out = build_student(recipe, n_classes, dense_head=True)
    for layer in out.layers:
        if layer.weights and layer.name != "head":
            layer.set_weights(model.get_layer(layer.name).get_weights())
    out.get_layer("head").set_weights([w.astype(np.float32),
                                       (-(center @ w)).astype(np.float32)])
    return out, [float(v) for v in center.astype(np.float32)]


def without_teacher(recipe: Recipe) -> Recipe:
    """The recipe with the teacher's terms of the objective switched off (CE + adversarial)."""
    import dataclasses
    obj = dataclasses.replace(recipe.objective, kd_weight=0.0, map_weight=0.0)
    return dataclasses.replace(recipe, objective=obj)


def teacher_path(recipe: Recipe) -> Path:
    """The recipe's teacher folder: objective.teacher, or build/teachers/<recipe>."""
    from .teacher.trained import default_out
    if recipe.objective.teacher:
        p = Path(recipe.objective.teacher)
        return p if p.is_absolute() else project_root() / p
    return default_out(recipe)


def teacher_is_current(recipe: Recipe, path: Path) -> str:
    """'' if the teacher folder was trained with the recipe's dataset and [teacher] settings,
    else the reason it is not."""
    import json
    try:
        meta = json.loads((path / "teacher.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "missing or unreadable"
    if meta.get("dataset") != recipe.dataset:
        return f"trained on '{meta.get('dataset')}'"
    try:
        # fields added since the teacher was written take their defaults
        config = type(recipe.teacher)(**meta.get("config", {})).to_dict()
    except (TypeError, McutextError):
        return "its settings are unreadable"
    if config != recipe.teacher.to_dict():
        return "the recipe's [teacher] settings changed"
    if meta.get("training", {}).get("limit") is not None:
        return "trained on a subset (--limit)"
    return ""


def get_teacher(recipe: Recipe, labels: list[str]):
    """The recipe's cached teacher, trained first if it is missing or stale."""
    from .teacher.trained import load_teacher
    from .teacher.fit import train_teacher
    path = teacher_path(recipe)
    why = teacher_is_current(recipe, path) if path.exists() else "missing"
    if why and not recipe.objective.teacher:
        progress.log(f"teacher for {recipe.name} at {path}: {why}; training it first "
                     f"(several minutes on 2 cores; cached for later runs)")
        train_teacher(recipe, out=path)
    teacher = load_teacher(path)
    if list(teacher.labels) != list(labels):
        raise McutextError(f"{path}: the teacher's labels differ from the student's",
                           hint=f"retrain it: mcutext teacher train {recipe.name}")
    return teacher


def resolve_encoding(recipe: Recipe, train_ds: Dataset, labels: list[str]):
    """A robust tokenizer's table, built from the training split (mcutext.text.encoding) and
    registered, unless the spec already names a registered table (a table made elsewhere,
    as the QEMU tests' and bench_encoder's); returns the recipe with the resolved spec (codes, table sha256) and
    (table, summary), or the recipe unchanged and None for the hashed encoding."""
    if not recipe.tokenizer.robust:
        return recipe, None
    import dataclasses
    from ..text.encoding import build_table
    from ..text.tokenizer import make_tokenizer, register_table
    if recipe.tokenizer.table:   # the spec names its table already (registered): keep it
        table = make_tokenizer(recipe.tokenizer).table
        return recipe, (table, {"codes": table.codes, "keys": int(len(table.keys)),
                                "table_bytes": len(table.to_bytes()), "given": True})
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([index[v] for v in train_ds.labels], np.int32)
    table, summary = build_table(train_ds.texts, y, len(labels), recipe.tokenizer,
                                 recipe.encoding)
    spec = dataclasses.replace(recipe.tokenizer, buckets=table.codes, table=register_table(table))
    progress.log(f"robust encoding: {summary['codes']} codes for {summary['vocabulary']} words, "
                 f"{summary['keys']} table keys ({summary['table_bytes']} bytes)")
    return dataclasses.replace(recipe, tokenizer=spec), (table, summary)


def load_tokenizer(recipe: Recipe):
    from ..text.tokenizer import make_tokenizer
    return make_tokenizer(recipe.tokenizer)


def batch1_copy(recipe: Recipe, model, n_classes: int):
    """The same weights in a batch-1 graph: what the converter and the device see."""
    return plain_copy(recipe, model, n_classes, batch_size=1)


def plain_copy(recipe: Recipe, model, n_classes: int, batch_size: int | None = None):
    """The same weights in the inference graph (no training-only layers)."""
    import keras
    dense = recipe.model.arch == "cnn" and isinstance(model.get_layer("head"),
                                                      keras.layers.Dense)
    m = build_student(recipe, n_classes, batch_size=batch_size, dense_head=dense)
    m.set_weights(model.get_weights())
    return m


def convert_model(recipe: Recipe, model, labels: list[str], calib_texts: list[str]) -> tuple[bytes, dict]:  # noqa: E501
    """int8-convert, check the ops, load in TFLite Micro; returns the flatbuffer and the
    manifest's `int8` section."""
    tok = load_tokenizer(recipe)
    calib = tok.encode_batch(calib_texts)
    allowed, feed = None, None
    if recipe.model.arch == "cnn":
        m1 = batch1_copy(recipe, model, len(labels))
        if recipe.model.pooling == "mean":
            from ..int8.convert import SUPPORTED_OPS
            from ..model.student import MEAN_POOL_OPS
            allowed = SUPPORTED_OPS + MEAN_POOL_OPS
    else:  # a baseline: its own conversion graph, input and op list
        from ..model import baselines
        from ..int8.convert import SUPPORTED_OPS
        m1, to_input = baselines.int8_graph(recipe, model, len(labels))
        calib = to_input(calib)
        allowed = SUPPORTED_OPS + baselines.EXTRA_OPS[recipe.model.arch]
    t0 = time.time()
    tflite = to_int8(m1, calib)
    fb = read_model(tflite)
    ops = check_ops(fb, allowed) if allowed else check_ops(fb)
    tflm_interpreter(tflite)  # raises a clear error if TFLite Micro refuses the model
    order = output_order(fb)
    sg = fb.subgraphs[0]
    outputs = {}
    for name, pos in order.items():
        scale, zp = tensor_quant(fb, sg.outputs[pos])
        outputs[name] = {"scale": scale, "zero_point": zp}
    if recipe.model.arch == "prado":  # the int8 input is the quantized projection
        feed = baselines.input_section(recipe, *tensor_quant(fb, sg.inputs[0]))
    return tflite, {
        **({"input": feed} if feed else {}),
        "ops": ops,
        "output_order": order,
        "outputs": outputs,
        "weights_bytes": weights_bytes(fb),
        "file_bytes": len(tflite),
        "convert_seconds": round(time.time() - t0, 2),
    }


def head_section(model, int8: dict, feature_mean=None) -> dict:
    """The final layer, separable: float weights plus the int8 quantization of its input
    (and, for a prototype head, the center its rows are measured around)."""
    head = model.get_layer("head")
    w, b = head.get_weights()
    extra = {"feature_mean": [round(float(v), 7) for v in feature_mean]} if feature_mean else {}
    return {
        **extra,
        "layer": "head",
        "in_features": int(w.shape[0]),
        "classes": int(w.shape[1]),
        "weights": np.round(w, 7).tolist(),
        "bias": np.round(b, 7).tolist(),
        "input_quantization": int8["outputs"]["features"],
        "output_quantization": int8["outputs"]["logits"],
    }


def tool_versions() -> dict:
    import keras
    import tensorflow as tf
    try:
        from importlib.metadata import version
        tflm = version("tflite-micro")
    except Exception:
        tflm = "unknown"
    return {"mcutext": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "tflite_micro": tflm, "numpy": np.__version__, "python": platform.python_version()}


def fingerprint(recipe: Recipe, tools: dict, teacher=None) -> dict:
    """What a bundle was made from, so that two bundles can be compared: the recipe's content,
    the sha256 of each data file, the teacher's weights (when distilled), TensorFlow's thread
    counts and the package versions (`tools`, in the manifest beside it); `sha256` sums them
    up. The same sha256 on the same machine gives the same bundle, byte for byte. The CPU is
    recorded, not summed: another CPU may round differently (docs/model.md)."""
    from ..text.datasets import SPLITS, has_split, split_file
    from .teacher.trained import WEIGHTS_FILE
    from .teacher.encoder import file_sha256
    rec = recipe.to_dict()
    rec.pop("path")  # where the recipe file was, not what it says
    inputs = {
        "recipe_sha256": _json_sha256(rec),
        "data": {split: {"file": split_file(recipe.dataset, split).name,
                         "sha256": file_sha256(split_file(recipe.dataset, split))}
                 for split in SPLITS if has_split(recipe.dataset, split)},
        "teacher_sha256": _npz_sha256(teacher.path / WEIGHTS_FILE) if teacher else None,
        "threads": tensorflow_threads(),
    }
    return {"sha256": _json_sha256({**inputs, "tools": tools}), **inputs, "cpu": cpu_name()}


def _json_sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _npz_sha256(path: Path) -> str:
    """The sha256 of the arrays in an .npz (names, dtypes, shapes, values): the file itself
    holds the time it was written."""
    h = hashlib.sha256()
    with np.load(path) as z:
        for k in sorted(z.files):
            a = np.ascontiguousarray(z[k])
            h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train(recipe: Recipe, out: Path | None = None, epochs: int | None = None,
          limit: int | None = None, test_limit: int | None = None,
          teacher: bool | None = None, force: bool = False) -> Path:
    """Train, convert and verify; writes the bundle atomically and returns its path.

    `teacher`: distil from the recipe's teacher (when its objective uses one). The default,
    None, means yes for full runs and no for quick runs on a subset (`limit`), which must not
    wait minutes for a teacher to be trained.
    `out` may be absent, empty or an earlier bundle; anything else only with `force`
    (mcutext.common.outputs.check_out, checked before training)."""
    out = Path(out) if out else default_out(recipe)
    check_out(out, "bundle", force)
    configure_tensorflow()
    t0 = time.time()
    train_ds, dev_ds = split_train_dev(recipe, limit)
    labels = sorted(set(train_ds.labels))
    if len(labels) < 2:
        raise McutextError(f"{train_ds.source}: need at least 2 labels, found {len(labels)}")
    check_labels(dev_ds, labels)
    use_teacher = (limit is None) if teacher is None else teacher
    if not use_teacher:
        recipe = without_teacher(recipe)
    recipe, encoding = resolve_encoding(recipe, train_ds, labels)
    t_teacher = 0.0
    teacher_info = None
    teacher_obj = None
    if recipe.objective.uses_teacher:
        # the teacher step: train or load the teacher, label the transfer set; both cached,
        # timed apart from the student
        from .distill import prepare
        teacher_obj = get_teacher(recipe, labels)
        prepare(recipe, train_ds.texts, teacher_obj)
        t_teacher = time.time() - t0
        teacher_info = {"path": str(teacher_obj.path),
                        "test_accuracy": teacher_obj.meta["metrics"]["test"]["accuracy"],
                        "params": teacher_obj.meta["params"]["total"]}
    t1 = time.time()
    model, history = fit(recipe, train_ds, dev_ds, labels, epochs, teacher=teacher_obj)
    train_seconds = time.time() - t1
    rng = np.random.default_rng(recipe.train.seed + 1)
    calib_idx = rng.permutation(len(train_ds))[:recipe.train.calibration_examples]
    tflite, int8 = convert_model(recipe, model, labels, [train_ds.texts[i] for i in calib_idx])

    tools = tool_versions()
    with staging_folder(out, "bundle", force) as staging:
        model.save(staging / KERAS_FILE)
        (staging / TFLITE_FILE).write_bytes(tflite)
        write_encoding(staging, load_tokenizer(recipe))
        manifest = {
            "format": FORMAT_VERSION,
            "name": recipe.name,
            "version": 1,
            "dataset": recipe.dataset,
            "labels": labels,
            "tokenizer": recipe.tokenizer.to_dict(),
            "max_words": recipe.tokenizer.max_words,
            "seq_len": recipe.tokenizer.seq_len,
            **({"encoding": encoding[1]} if encoding is not None else {}),
            "recipe": recipe.to_dict(),
            "eval": {"exclude_labels": list(recipe.eval.exclude_labels),
                     "dropped_labels": list(recipe.train.drop_labels)},
            "sizes": {"params": count_params(model), "int8_weights_bytes": int8["weights_bytes"],
                      "int8_file_bytes": int8["file_bytes"]},
            "int8": int8,
            "head": {**head_section(model, int8, history.get("feature_center")),
                     "max_new_labels": recipe.model.max_new_labels},
            "training": {"examples": len(train_ds), "dev_examples": len(dev_ds),
                         "limit": limit,    # the --limit subset (convert calibrates on it)
                         "transfer_examples": history["examples"],
                         "epochs": len(history["loss"]), "seconds": round(train_seconds, 1),
                         "best_dev_accuracy": float(max(history["val_accuracy"])),
                         "dev_accuracy_per_epoch": [round(float(v), 4)
                                                    for v in history["val_accuracy"]],
                         "teacher": teacher_info,
                         "teacher_seconds": round(t_teacher, 1)},
            "metrics": {},
            "tools": tools,
            "fingerprint": fingerprint(recipe, tools, teacher_obj),
        }
        write_manifest(staging, manifest)
        b = load_bundle(staging, staging=True)
        metrics = {}
        for runtime in ("keras", "tflm"):
            rep = evaluate(b, "test", runtime, limit=test_limit, compare_to_float=False)
            metrics[runtime] = {k: rep[k] for k in ("n", "accuracy", "macro_f1")}
            if "excluded" in rep:
                metrics[runtime]["excluded"] = rep["excluded"]
        test_texts = drop_labels(load_split(recipe.dataset, "test"),
                                 recipe.train.drop_labels).texts[:test_limit]
        f = b.predict_proba(test_texts, "keras")
        i = b.predict_proba(test_texts, "tflm")
        metrics["int8_float_agreement"] = float(np.mean(f.argmax(1) == i.argmax(1)))
        manifest["metrics"] = {"test": metrics}
        # the student's own cost: without the teacher step (cached, measured on its own)
        manifest["total_seconds"] = round(time.time() - t1, 1)
        write_manifest(staging, manifest)
    return out


def reconvert(bundle_path: Path) -> dict:
    """`mcutext convert`: re-quantize the bundle's Keras model and re-verify it in TFLite Micro."""
    from ..model.recipe import recipe_from_dict
    configure_tensorflow()
    b = load_bundle(bundle_path)
    r = b.manifest.get("recipe")
    if not r:
        raise McutextError(f"{bundle_path}/manifest.json: missing 'recipe'")
    recipe = recipe_from_dict(r)
    # the calibration examples of the training run: the same subset when it had a --limit, so
    # that converting again gives the model the training run wrote
    train_ds, _ = split_train_dev(recipe, b.manifest.get("training", {}).get("limit"))
    rng = np.random.default_rng(recipe.train.seed + 1)
    calib_idx = rng.permutation(len(train_ds))[:recipe.train.calibration_examples]
    tflite, int8 = convert_model(recipe, b.keras_model(), b.labels,
                                 [train_ds.texts[i] for i in calib_idx])
    old = b.manifest.get("head", {})
    head = head_section(b.keras_model(), int8, old.get("feature_mean"))
    if "max_new_labels" in old:
        head["max_new_labels"] = old["max_new_labels"]
    manifest = dict(b.manifest, int8=int8, head=head)
    manifest["sizes"]["int8_weights_bytes"] = int8["weights_bytes"]
    manifest["sizes"]["int8_file_bytes"] = int8["file_bytes"]
    # a copy of the bundle with the new model and manifest, swapped in whole: the model and
    # the manifest that records its SHA-256 never disagree, whenever the run is stopped
    with staging_folder(b.path, "bundle") as staging:
        shutil.copytree(b.path, staging, dirs_exist_ok=True)
        (staging / TFLITE_FILE).write_bytes(tflite)
        write_manifest(staging, manifest)
    return int8
