"""Accuracy, macro-F1 and per-class figures of a bundle on a dataset split, for any runtime."""

from __future__ import annotations

import numpy as np

from .bundle import Bundle
from ..text.datasets import Dataset, load_split
from ..common.errors import McutextError


def classification_report(gold: list[str], pred: list[str], labels: list[str],
                          exclude: tuple[str, ...] = ()) -> dict:
    """Accuracy and macro-F1 over examples whose gold label is not excluded; excluded labels
    get their own recall (e.g. clinc150's out-of-scope detection rate)."""
    gold_a, pred_a = np.array(gold, dtype=object), np.array(pred, dtype=object)
    keep = np.array([g not in exclude for g in gold], dtype=bool)
    per_class = {}
    for lab in labels:
        tp = int(np.sum((gold_a == lab) & (pred_a == lab)))
        fp = int(np.sum((gold_a != lab) & (pred_a == lab)))
        fn = int(np.sum((gold_a == lab) & (pred_a != lab)))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class[lab] = {"precision": p, "recall": r, "f1": f1, "support": tp + fn}
    scored = [lab for lab in labels if lab not in exclude and per_class[lab]["support"] > 0]
    report = {
        "n": int(keep.sum()),
        "accuracy": float(np.mean(gold_a[keep] == pred_a[keep])) if keep.any() else 0.0,
        "macro_f1": float(np.mean([per_class[lab]["f1"] for lab in scored])) if scored else 0.0,
        "per_class": per_class,
    }
    if exclude:
        report["excluded"] = {
            lab: {"n": per_class[lab]["support"], "recall": per_class[lab]["recall"]}
            for lab in exclude if lab in per_class}
    return report


def check_labels(data: Dataset, labels: list[str]) -> None:
    unknown = sorted(set(data.labels) - set(labels))
    if unknown:
        raise McutextError(f"{data.source}: label(s) the model does not know: "
                           f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")


# Texts per call when a split is classified in pieces (a multiple of Keras' predict batch
# of 256, so that the float model sees the same batches as in one call).
CHUNK = 512


def predict_proba(bundle: Bundle, texts: list[str], runtime: str) -> np.ndarray:
    """bundle.predict_proba, in pieces under a progress bar when there are many texts."""
    if len(texts) <= CHUNK:
        return bundle.predict_proba(texts, runtime)
    from ..common import progress
    parts = []
    with progress.task(f"classifying ({runtime})", total=len(texts)) as update:
        for a in range(0, len(texts), CHUNK):
            parts.append(bundle.predict_proba(texts[a:a + CHUNK], runtime))
            update(advance=len(parts[-1]))
    return np.concatenate(parts)


def evaluate(bundle: Bundle, split: str = "test", runtime: str = "tflm",
             limit: int | None = None, data: Dataset | None = None,
             compare_to_float: bool = True, details: bool = False) -> dict:
    """The figures of `mcutext evaluate`. details=True adds "examples": the texts, gold
    labels and predicted label indices (and the float model's) in the split's order, for
    the confusion matrix and the sample of `mcutext report`."""
    if data is None:
        data = load_split(bundle.manifest["dataset"], split)
    dropped = set(bundle.manifest.get("eval", {}).get("dropped_labels", ()))
    if dropped:  # labels the bundle was deliberately trained without
        data = data.subset([i for i, y in enumerate(data.labels) if y not in dropped])
    if limit is not None:
        data = data.subset(range(min(limit, len(data))))
    check_labels(data, bundle.labels)
    exclude = tuple(bundle.manifest.get("eval", {}).get("exclude_labels", ()))
    proba = predict_proba(bundle, list(data.texts), runtime)
    pred_idx = proba.argmax(axis=1)
    pred = [bundle.labels[i] for i in pred_idx]
    report = classification_report(data.labels, pred, bundle.labels, exclude)
    report.update({"runtime": runtime, "split": split, "source": data.source})
    fidx = None
    if runtime != "keras" and compare_to_float:
        fidx = predict_proba(bundle, list(data.texts), "keras").argmax(axis=1)
        fpred = [bundle.labels[i] for i in fidx]
        report["agreement_with_float"] = float(np.mean(fidx == pred_idx))
        report["float_accuracy"] = classification_report(
            data.labels, fpred, bundle.labels, exclude)["accuracy"]
    if details:
        report["examples"] = {"texts": list(data.texts), "gold": list(data.labels),
                              "pred": pred_idx.tolist(),
                              "float_pred": None if fidx is None else fidx.tolist()}
    return report
