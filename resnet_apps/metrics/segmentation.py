"""Segmentation metrics from per-image confusion matrices: IoU, mIoU, Dice, pixel accuracy, with CIs.

The trainer keeps one [K, K] confusion matrix per test image (or tile), so the bootstrap can resample images,
or whole scenes via ``groups``, by summing matrices, without keeping any pixels.
Rows are the reference (target) class, columns the predicted class. Ignore / nodata pixels never enter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.errors import MetricsError
from resnet_apps.metrics.bootstrap import Resampler, summarize
from resnet_apps.metrics.common import headline_rows, num

SEGMENTATION_HEADLINE = {"miou": "Mean IoU", "mean_dice": "Mean Dice", "pixel_accuracy": "Pixel accuracy"}


def segmentation_confusion(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Pixel confusion matrix of one image.

    Args:
        pred: [H, W] predicted class indices in 0..K-1.
        target: [H, W] reference class indices; ``ignore_index`` marks pixels to leave out.
        num_classes: K.
        ignore_index: target value excluded from every count.
        valid: [H, W] bool, False for nodata / padding pixels (excluded), or None.

    Returns:
        [K, K] int64, rows = target class, columns = predicted class.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise MetricsError(
            f"segmentation_confusion: pred {pred.shape} and target {target.shape} differ in size"
        )
    keep = target != ignore_index
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != target.shape:
            raise MetricsError(
                f"segmentation_confusion: valid {valid.shape} differs from target {target.shape}"
            )
        keep &= valid
    t = target[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise MetricsError(
            f"segmentation_confusion: target holds classes outside 0..{num_classes - 1} that are "
            f"not ignore_index={ignore_index}; fix the mask mapping (data.source.mask_values)"
        )
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise MetricsError(f"segmentation_confusion: pred holds classes outside 0..{num_classes - 1}")
    # bincount of (target, pred) pairs is the confusion matrix, and is fast on millions of pixels
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def _per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and Dice per class [K] from a [K, K] matrix; NaN for a class in neither target nor prediction."""
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
    return iou, dice


def segmentation_stats(cm: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """[3 + K]: mIoU, mean Dice, pixel accuracy, per-class IoU. Means over ``defined`` classes only."""
    iou, dice = _per_class(cm)
    total = cm.sum()
    if not total or np.isnan(iou[defined]).any():
        miou = mdice = float("nan")  # a resample lost a class: degenerate for the means
    else:
        miou, mdice = float(iou[defined].mean()), float(dice[defined].mean())
    acc = float(np.trace(cm) / total) if total else float("nan")
    return np.concatenate([[miou, mdice, acc], iou])


def evaluate_segmentation(
    confusions: np.ndarray,
    classes: Sequence[str],
    *,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    sample_ids: Sequence[str] | None = None,
    keep_samples: bool = True,
) -> dict[str, Any]:
    """Segmentation metrics of one split with bootstrap intervals over images (or groups of images).

    Args:
        confusions: [N_images, K, K] int64 per-image matrices from ``segmentation_confusion``.
        classes: K class names.
        groups: [N_images] scene / tile group per image; resampled whole when given.
        n_boot, seed, ci: bootstrap replicates, numpy seed, interval coverage.
        sample_ids: [N_images] image ids, kept in ``samples`` for paired comparisons.
        keep_samples: store the per-image matrices in ``samples`` (needed by ``resnet-apps report A B``).

    Returns:
        The ``evaluation`` block of metrics.json (kind "segmentation"): headline mIoU / mean Dice / pixel
        accuracy, per-class IoU (with CI), Dice, producer's / user's accuracy, pixel confusion matrix.
        mIoU and mean Dice average the classes present in the reference or prediction of the test set.
    """
    cms = np.asarray(confusions, dtype=np.int64)
    k = len(classes)
    if cms.ndim != 3 or cms.shape[1:] != (k, k):
        raise MetricsError(
            f"evaluate_segmentation: confusions have shape {cms.shape}, expected [N, {k}, {k}]"
        )
    n = cms.shape[0]
    flat = cms.reshape(n, k * k)
    total = cms.sum(axis=0)
    iou, dice = _per_class(total)
    defined = np.isfinite(iou)
    value = segmentation_stats(total, defined)
    resampler = Resampler(n, groups, seed)
    unit_flat = (
        flat if resampler.members is None else np.stack([flat[m].sum(axis=0) for m in resampler.members])
    )
    reps = np.full((max(n_boot, 0), value.size), np.nan)
    for b in range(max(n_boot, 0)):
        # a resample = multiplicity per image (or group); its matrix is the weighted sum
        reps[b] = segmentation_stats((resampler.draw_counts() @ unit_flat).reshape(k, k), defined)
    result = summarize(value, reps, ci, resampler)
    rows = headline_rows(list(SEGMENTATION_HEADLINE), list(SEGMENTATION_HEADLINE.values()), result)
    class_rows = headline_rows([f"iou:{c}" for c in classes], [f"IoU {c}" for c in classes], result.part(3))
    tp = np.diag(total)
    per_class = []
    for j, name in enumerate(classes):
        ref, mapped = int(total[j].sum()), int(total[:, j].sum())
        per_class.append(
            {
                "class": name,
                "pixels": ref,
                "predicted_pixels": mapped,
                "iou": class_rows[j]["value"],
                "iou_ci_low": class_rows[j]["ci_low"],
                "iou_ci_high": class_rows[j]["ci_high"],
                "dice": num(dice[j]),
                "producers_accuracy": num(tp[j] / ref) if ref else None,
                "users_accuracy": num(tp[j] / mapped) if mapped else None,
            }
        )
    out: dict[str, Any] = {
        "kind": "segmentation",
        "mode": "segmentation",
        "classes": list(classes),
        "n_samples": int(n),
        "n_groups": None if groups is None else int(resampler.n_units),
        "n_pixels": int(total.sum()),
        "headline": rows,
        "per_class": per_class,
        "confusion": {
            "labels": list(classes),
            "matrix": total.tolist(),
            "rows": "true",
            "columns": "predicted",
            "unit": "pixels",
        },
        "bootstrap": {
            "method": "percentile",
            "n_boot": int(n_boot),
            "seed": int(seed),
            "ci": float(ci),
            "unit": "group" if groups is not None else "image",
            "n_units": int(resampler.n_units),
        },
    }
    if keep_samples:
        out["samples"] = {
            "ids": [str(i) for i in sample_ids] if sample_ids is not None else [str(i) for i in range(n)],
            "groups": None if groups is None else [str(g) for g in groups],
            "confusions": cms.tolist(),
        }
    return out
