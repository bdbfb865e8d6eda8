"""Multiclass metrics (land cover, X-ray classes) and the ``evaluate_classification`` entry point.

Producer's accuracy (remote sensing) is the recall of a class: the share of reference pixels/images of the
class that the map got right (1 - omission error). User's accuracy is its precision: the share of the map's
labels of that class that are right (1 - commission error).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from resnet_apps.errors import MetricsError
from resnet_apps.metrics import binary as B
from resnet_apps.metrics.bootstrap import bootstrap
from resnet_apps.metrics.common import bootstrap_block, ece_only, headline_rows, num, reliability

MULTICLASS_HEADLINE = {
    "accuracy": "Overall accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "micro_f1": "Micro F1",
    "kappa": "Cohen's kappa",
    "brier": "Brier score (lower is better)",
    "ece": "ECE, top label (lower is better)",
}


def multiclass_stats(y: np.ndarray, prob: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """MULTICLASS_HEADLINE metrics [7] on one (re)sample. NaN where undefined.

    Balanced accuracy and macro F1 are averaged over ``labels`` (the classes present in the full test set);
    a resample that lost one of them is degenerate for those two metrics.
    """
    pred = prob.argmax(axis=1)
    complete = np.isin(labels, y).all()
    nan = float("nan")
    onehot = np.zeros_like(prob)
    onehot[np.arange(len(y)), y] = 1.0
    # kappa is undefined (0/0) when truth and prediction both hold a single, identical class
    single = np.unique(np.concatenate([y, pred])).size == 1
    return np.array(
        [
            accuracy_score(y, pred),
            balanced_accuracy_score(y, pred) if complete else nan,
            f1_score(y, pred, labels=labels, average="macro", zero_division=0) if complete else nan,
            f1_score(y, pred, labels=labels, average="micro", zero_division=0),
            nan if single else cohen_kappa_score(y, pred),
            float(np.mean(np.sum((prob - onehot) ** 2, axis=1))),  # multiclass Brier (sum over classes)
            ece_only(prob.max(axis=1), (pred == y).astype(float)),
        ]
    )


def _multiclass(
    y_true: np.ndarray, y_prob: np.ndarray, classes: list[str], groups: Any, n_boot: int, seed: int, ci: float
) -> dict[str, Any]:
    y = np.asarray(y_true).astype(int).ravel()
    prob = np.asarray(y_prob, dtype=float)
    k = len(classes)
    if prob.ndim != 2 or prob.shape != (len(y), k):
        raise MetricsError(
            f"evaluate_classification(multiclass): y_prob has shape {prob.shape}, "
            f"expected [N, K] = [{len(y)}, {k}] softmax probabilities"
        )
    if y.size and (y.min() < 0 or y.max() >= k):
        raise MetricsError(f"evaluate_classification(multiclass): y_true holds labels outside 0..{k - 1}")
    present = np.unique(y)
    result = bootstrap(
        lambda idx: multiclass_stats(y[idx], prob[idx], present),
        len(y),
        groups=groups,
        n_boot=n_boot,
        seed=seed,
        ci=ci,
    )
    pred = prob.argmax(axis=1)
    cm = confusion_matrix(y, pred, labels=np.arange(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=np.arange(k), zero_division=np.nan
    )
    per_class, roc_curves, pr_curves = [], [], []
    for j, name in enumerate(classes):
        # one-vs-rest curves per class: how separable each class is from all others
        roc, pr = B.curves((y == j).astype(float), prob[:, j], name)
        roc_curves += [roc] if roc else []
        pr_curves += [pr] if pr else []
        per_class.append(
            {
                "class": name,
                "support": int(support[j]),
                "predicted": int(cm[:, j].sum()),
                "precision": num(precision[j]),
                "recall": num(recall[j]),
                "f1": num(f1[j]),
                "producers_accuracy": num(recall[j]),
                "users_accuracy": num(precision[j]),
                "auroc_ovr": roc["auc"] if roc else None,
            }
        )
    calibration = reliability(prob.max(axis=1), (pred == y).astype(float))
    calibration.update(kind="top-label", brier=num(result.value[5]))
    return {
        "headline": headline_rows(list(MULTICLASS_HEADLINE), list(MULTICLASS_HEADLINE.values()), result),
        "per_class": per_class,
        "confusion": {"labels": list(classes), "matrix": cm.tolist(), "rows": "true", "columns": "predicted"},
        "curves": {"roc": roc_curves, "pr": pr_curves, "kind": "one-vs-rest"},
        "calibration": calibration,
        "bootstrap": bootstrap_block(result, n_boot, seed, ci),
    }


def _binary(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    classes: list[str],
    threshold: float | None,
    groups: Any,
    n_boot: int,
    seed: int,
    ci: float,
) -> dict[str, Any]:
    if len(classes) != 2:
        raise MetricsError(
            f"evaluate_classification(binary): classes must be [negative, positive], got {classes}"
        )
    y, s = B.check_binary(y_true, y_prob, "evaluate_classification(binary)")
    t = 0.5 if threshold is None else float(threshold)
    result = bootstrap(
        lambda idx: B.binary_stats(y[idx], s[idx], t), len(y), groups=groups, n_boot=n_boot, seed=seed, ci=ci
    )
    negative, positive = classes
    pred = (s >= t).astype(int)
    cm = confusion_matrix(y.astype(int), pred, labels=[0, 1])
    roc, pr = B.curves(y, s, positive)
    rows = headline_rows(list(B.BINARY_HEADLINE), list(B.BINARY_HEADLINE.values()), result)
    by_name = {r["name"]: r for r in rows}
    per_class = []
    for j, name in enumerate(classes):
        tp, predicted, support = int(cm[j, j]), int(cm[:, j].sum()), int(cm[j, :].sum())
        per_class.append(
            {
                "class": name,
                "support": support,
                "predicted": predicted,
                "precision": num(B.safe_div(tp, predicted)),
                "recall": num(B.safe_div(tp, support)),
                "f1": num(B.safe_div(2 * tp, predicted + support)),
            }
        )
    per_class[1].update(
        auroc=by_name["auroc"]["value"], average_precision=by_name["average_precision"]["value"]
    )
    calibration = reliability(s, y)
    calibration.update(kind="positive-class", brier=by_name["brier"]["value"])
    return {
        "headline": rows,
        "per_class": per_class,
        "confusion": {"labels": list(classes), "matrix": cm.tolist(), "rows": "true", "columns": "predicted"},
        "curves": {"roc": [roc] if roc else [], "pr": [pr] if pr else [], "kind": "binary"},
        "calibration": calibration,
        "operating_point": B.operating_point_block(y, s, threshold, positive, negative),
        "bootstrap": bootstrap_block(result, n_boot, seed, ci),
    }


def evaluate_classification(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    classes: Sequence[str],
    *,
    mode: str = "multiclass",
    threshold: float | Sequence[float] | None = None,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    sample_ids: Sequence[str] | None = None,
    keep_samples: bool = True,
) -> dict[str, Any]:
    """Every classification metric of one split, with bootstrap intervals; JSON-serialisable.

    Args:
        y_true: multiclass / binary [N] int labels (binary: 1 = classes[1] is the positive class);
            multilabel [N, K] float 0/1 with NaN for missing or uncertain labels (masked, never negative).
        y_prob: multiclass [N, K] softmax; binary [N] positive-class probability; multilabel [N, K] sigmoid.
        classes: class (label) names, K of them; binary: [negative, positive].
        mode: "multiclass" | "binary" | "multilabel".
        threshold: binary: a float; multilabel: a float or K floats. Chosen on validation with
            ``choose_operating_point``. None falls back to 0.5 and says so in ``operating_point.source``.
        groups: [N] hashed patient / tile id per sample: the bootstrap resamples whole groups.
        n_boot, seed, ci: bootstrap replicates, numpy seed, interval coverage.
        sample_ids: [N] hashed sample ids, kept in ``samples`` so two runs can be paired later.
        keep_samples: store ``samples`` (y_true, y_prob, ids, groups) for ``paired_difference``.

    Returns:
        The ``evaluation`` block of metrics.json, see docs/ARCHITECTURE.md section 6.
    """
    classes = [str(c) for c in classes]
    y_prob_arr = np.asarray(y_prob, dtype=float)
    n = len(y_prob_arr)
    if groups is not None and len(groups) != n:
        raise MetricsError(
            f"evaluate_classification: {len(groups)} groups for {n} samples; pass one per sample"
        )
    if mode == "multiclass":
        body = _multiclass(y_true, y_prob_arr, classes, groups, n_boot, seed, ci)
    elif mode == "binary":
        if threshold is not None and not np.isscalar(threshold):
            raise MetricsError("evaluate_classification(binary): threshold must be one number")
        body = _binary(y_true, y_prob_arr, classes, threshold, groups, n_boot, seed, ci)  # type: ignore[arg-type]
    elif mode == "multilabel":
        from resnet_apps.metrics.multilabel import evaluate_multilabel

        body = evaluate_multilabel(y_true, y_prob_arr, classes, threshold, groups, n_boot, seed, ci)
    else:
        raise MetricsError(f"evaluate_classification: mode={mode!r}; use multiclass, binary or multilabel")
    out: dict[str, Any] = {
        "kind": "classification",
        "mode": mode,
        "classes": classes,
        "n_samples": int(n),
        "n_groups": None if groups is None else int(len(set(map(str, groups)))),
    }
    out.update(body)
    if keep_samples:
        out["samples"] = samples_block(y_true, y_prob_arr, sample_ids, groups)
    return out


def samples_block(
    y_true: Any, y_prob: np.ndarray, ids: Sequence[str] | None, groups: Sequence | np.ndarray | None
) -> dict[str, Any]:
    """Per-sample truth and probabilities (rounded to 5 digits; NaN -> null) for paired comparisons."""

    def clean(a: Any) -> Any:
        arr = np.asarray(a, dtype=float)
        return [clean(row) for row in arr] if arr.ndim > 1 else [num(v, 5) for v in arr]

    n = len(y_prob)
    return {
        "ids": [str(i) for i in ids] if ids is not None else [str(i) for i in range(n)],
        "groups": None if groups is None else [str(g) for g in groups],
        "y_true": clean(y_true),
        "y_prob": clean(y_prob),
    }
