"""Binary (and per-label) metrics: AUROC, AP, the operating point and what it means, calibration.

Convention everywhere: a case is *flagged* (predicted positive) when ``score >= threshold``, as in
``sklearn.metrics.roc_curve``. The threshold is chosen on the validation split with
``choose_operating_point`` and then applied unchanged to the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from resnet_apps.errors import MetricsError
from resnet_apps.metrics.common import ece_only, num, thin

# headline metrics of a binary evaluation, in table order: name -> label shown in reports
BINARY_HEADLINE = {
    "auroc": "AUROC",
    "average_precision": "Average precision",
    "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity",
    "ppv": "PPV (precision)",
    "npv": "NPV",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "brier": "Brier score (lower is better)",
    "ece": "ECE (lower is better)",
}


def check_binary(y_true: np.ndarray, y_score: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Flatten 0/1 labels and finite scores to float arrays [N]; MetricsError naming ``where`` otherwise."""
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    if y_true.shape != y_score.shape:
        raise MetricsError(f"{where}: y_true has {y_true.size} values but y_score has {y_score.size}")
    if not np.isin(y_true, (0.0, 1.0)).all():
        raise MetricsError(f"{where}: y_true must hold 0/1 labels (mask NaN / uncertain labels first)")
    if not np.isfinite(y_score).all():
        raise MetricsError(f"{where}: y_score holds NaN or inf; check the model's outputs")
    return y_true, y_score


def choose_operating_point(y_true: np.ndarray, y_score: np.ndarray, method: str = "youden") -> Any:
    """Pick the decision threshold on the VALIDATION split.

    Args:
        y_true: [N] 0/1 labels, or [N, K] multi-label targets with NaN for missing (each label separately).
        y_score: [N] positive-class scores, or [N, K] sigmoid outputs.
        method: "youden" (max sensitivity + specificity - 1), "sensitivity:0.95" (the highest threshold
            whose sensitivity is at least 0.95, i.e. the best specificity meeting the target), or
            "specificity:0.9" (the lowest threshold whose specificity is at least 0.9).

    Returns:
        The threshold (float) for [N] inputs; a list of K thresholds for [N, K] inputs.

    Raises:
        MetricsError: unknown method, or a split holding only one class (no threshold can be chosen).
    """
    y_true_arr = np.asarray(y_true, dtype=float)
    if y_true_arr.ndim == 2:
        scores = np.asarray(y_score, dtype=float)
        out = []
        for k in range(y_true_arr.shape[1]):
            known = ~np.isnan(y_true_arr[:, k])
            out.append(choose_operating_point(y_true_arr[known, k], scores[known, k], method))
        return out
    y, s = check_binary(y_true_arr, y_score, "choose_operating_point")
    if y.min() == y.max():
        raise MetricsError(
            "choose_operating_point: the validation labels hold one class only; a threshold needs both "
            "positives and negatives (enlarge the validation split or use a stratified split)"
        )
    fpr, tpr, thresholds = roc_curve(y, s)
    kind, _, target_text = method.partition(":")
    if kind == "youden" and not target_text:
        i = int(np.argmax(tpr - fpr))
    elif kind in ("sensitivity", "specificity") and target_text:
        try:
            target = float(target_text)
        except ValueError as error:
            raise MetricsError(f"choose_operating_point: {method!r}: target must be a number") from error
        if not 0.0 < target <= 1.0:
            raise MetricsError(f"choose_operating_point: {method!r}: target must lie in (0, 1]")
        # thresholds decrease along the curve, so tpr and fpr increase with the index
        if kind == "sensitivity":
            i = int(np.argmax(tpr >= target - 1e-12))
        else:
            i = int(np.nonzero(1.0 - fpr >= target - 1e-12)[0][-1])
    else:
        raise MetricsError(
            f"choose_operating_point: unknown method {method!r}; use 'youden', 'sensitivity:0.95' or "
            "'specificity:0.9'"
        )
    threshold = float(thresholds[i])
    # roc_curve's first threshold is +inf ("flag nothing"); keep it a finite, JSON-safe number
    return threshold if np.isfinite(threshold) else float(np.nextafter(s.max(), np.inf))


def safe_div(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is 0 (an undefined rate is reported as NaN, never as 0)."""
    return a / b if b else float("nan")


def confusion_at(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> dict[str, int]:
    """TP / FP / TN / FN when cases with ``score >= threshold`` are flagged."""
    flagged = y_score >= threshold
    positive = y_true == 1
    return {
        "tp": int(np.sum(flagged & positive)),
        "fp": int(np.sum(flagged & ~positive)),
        "tn": int(np.sum(~flagged & ~positive)),
        "fn": int(np.sum(~flagged & positive)),
    }


def rates(c: dict[str, int]) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV, accuracy, balanced accuracy from counts (NaN when undefined)."""
    sens = safe_div(c["tp"], c["tp"] + c["fn"])
    spec = safe_div(c["tn"], c["tn"] + c["fp"])
    return {
        "sensitivity": sens,
        "specificity": spec,
        "ppv": safe_div(c["tp"], c["tp"] + c["fp"]),
        "npv": safe_div(c["tn"], c["tn"] + c["fn"]),
        "accuracy": safe_div(c["tp"] + c["tn"], sum(c.values())),
        "balanced_accuracy": (sens + spec) / 2,
    }


def auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """sklearn AUROC, NaN when only one class is present (undefined rather than an exception)."""
    if y_true.size == 0 or y_true.min() == y_true.max():
        return float("nan")
    return float(roc_auc_score(y_true, y_score))


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """sklearn average precision, NaN when there is no positive case."""
    if y_true.size == 0 or not np.any(y_true == 1):
        return float("nan")
    return float(average_precision_score(y_true, y_score))


def _brier(y_true: np.ndarray, y_score: np.ndarray) -> float:
    return float(brier_score_loss(y_true, y_score)) if y_true.size else float("nan")


def _rate(name: str) -> Callable[[np.ndarray, np.ndarray, float], float]:
    return lambda y, s, t: rates(confusion_at(y, s, t))[name]


# name -> f(y_true, y_score, threshold); the order is BINARY_HEADLINE's
BINARY_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, float], float]] = {
    "auroc": lambda y, s, t: auroc(y, s),
    "average_precision": lambda y, s, t: average_precision(y, s),
    **{
        name: _rate(name)
        for name in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy")
    },
    "brier": lambda y, s, t: _brier(y, s),
    "ece": lambda y, s, t: ece_only(s, y),
}


def binary_stats(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> np.ndarray:
    """The BINARY_HEADLINE metrics, in order, [10]; NaN where undefined on these samples."""
    return np.array([fn(y_true, y_score, threshold) for fn in BINARY_METRICS.values()])


def _percent(x: float) -> str:
    return f"{100 * x:.0f} %"


def explain_operating_point(c: dict[str, int], threshold: float, positive: str, negative: str) -> str:
    """One plain-language sentence: what the threshold does to positive and negative cases.

    Example: "At threshold 0.42, 95 % of PNEUMONIA cases are flagged (370 of 390) and 20 are missed;
    1 in 4 flags is false (125 of 495 flagged cases are NORMAL); 53 % of NORMAL cases are cleared."
    """
    n_pos, n_neg, flagged = c["tp"] + c["fn"], c["tn"] + c["fp"], c["tp"] + c["fp"]
    parts = [f"At threshold {threshold:.3g}"]
    if n_pos:
        parts.append(
            f", {_percent(c['tp'] / n_pos)} of {positive} cases are flagged ({c['tp']} of {n_pos}) "
            f"and {c['fn']} {'is' if c['fn'] == 1 else 'are'} missed"
        )
    else:
        parts.append(f", no {positive} case is in this set, so sensitivity is undefined")
    if flagged == 0:
        parts.append("; nothing is flagged")
    elif c["fp"] == 0:
        parts.append(f"; none of the {flagged} flags is false")
    else:
        fdr = c["fp"] / flagged
        share = (
            f"1 in {round(1 / fdr)} flags is false" if fdr <= 0.5 else f"{_percent(fdr)} of flags are false"
        )
        parts.append(f"; {share} ({c['fp']} of {flagged} flagged cases are {negative})")
    if n_neg:
        parts.append(f"; {_percent(c['tn'] / n_neg)} of {negative} cases are cleared ({c['tn']} of {n_neg})")
    return "".join(parts) + "."


def operating_point_block(
    y_true: np.ndarray, y_score: np.ndarray, threshold: float | None, positive: str, negative: str
) -> dict[str, Any]:
    """The ``operating_point`` entry: threshold, its origin, counts, rates and the sentence."""
    source = "validation" if threshold is not None else "default 0.5 (not chosen on validation)"
    t = 0.5 if threshold is None else float(threshold)
    c = confusion_at(y_true, y_score, t)
    return {
        "threshold": num(t),
        "source": source,
        "positive_class": positive,
        "negative_class": negative,
        **c,
        **{k: num(v) for k, v in rates(c).items()},
        "sentence": explain_operating_point(c, t, positive, negative),
    }


def curves(y_true: np.ndarray, y_score: np.ndarray, label: str) -> tuple[dict | None, dict | None]:
    """Thinned ROC and PR curves for one label; None when a class is absent (curve undefined)."""
    roc = pr = None
    if y_true.size and y_true.min() != y_true.max():
        fpr, tpr, _ = roc_curve(y_true, y_score)
        fx, ty = thin(fpr, tpr)
        roc = {"label": label, "fpr": fx, "tpr": ty, "auc": num(auroc(y_true, y_score))}
    if y_true.size and np.any(y_true == 1):
        precision, recall, _ = precision_recall_curve(y_true, y_score)
        rx, py = thin(recall, precision)
        pr = {
            "label": label,
            "recall": rx,
            "precision": py,
            "ap": num(average_precision(y_true, y_score)),
            "prevalence": num(float(np.mean(y_true))),
        }
    return roc, pr
