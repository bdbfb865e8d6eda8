"""Multi-label metrics (ChestX-ray14 style): per-label AUROC / AP with missing labels masked, and macro means.

A NaN target ("uncertain", "not read") is removed from that label's computation only; it is never counted as a
negative. The macro mean runs over the labels defined on the full test set (both classes present); a bootstrap
resample in which one of them loses all its positives is degenerate for the macro numbers and is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from resnet_apps.errors import MetricsError
from resnet_apps.metrics import binary as B
from resnet_apps.metrics.bootstrap import bootstrap
from resnet_apps.metrics.common import bootstrap_block, ece_only, headline_rows, num, reliability

MULTILABEL_HEADLINE = {
    "macro_auroc": "Macro AUROC",
    "macro_average_precision": "Macro average precision",
    "brier": "Brier score, known labels (lower is better)",
    "ece": "ECE, known labels (lower is better)",
}


def multilabel_stats(y: np.ndarray, p: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """[4 + 2K]: the headline metrics, then per-label AUROC [K], then per-label AP [K]."""
    k = y.shape[1]
    aurocs, aps = np.full(k, np.nan), np.full(k, np.nan)
    for j in range(k):
        known = ~np.isnan(y[:, j])
        aurocs[j] = B.auroc(y[known, j], p[known, j])
        aps[j] = B.average_precision(y[known, j], p[known, j])
    # mean over the labels defined on the full set; NaN (degenerate) if one of them is undefined here
    macro_auroc = float(np.mean(aurocs[defined])) if defined.any() else float("nan")
    macro_ap = float(np.mean(aps[defined])) if defined.any() else float("nan")
    known = ~np.isnan(y)
    yk, pk = y[known], p[known]
    brier = float(np.mean((pk - yk) ** 2)) if yk.size else float("nan")
    return np.concatenate([[macro_auroc, macro_ap, brier, ece_only(pk, yk)], aurocs, aps])


def _thresholds(threshold: float | Sequence[float] | None, k: int) -> list[float | None]:
    if threshold is None or np.isscalar(threshold):
        return [threshold] * k  # type: ignore[list-item]
    values: list[float | None] = [float(t) for t in threshold]  # type: ignore[union-attr]
    if len(values) != k:
        raise MetricsError(f"evaluate_classification(multilabel): {len(values)} thresholds for {k} labels")
    return values


def evaluate_multilabel(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    classes: list[str],
    threshold: float | Sequence[float] | None,
    groups: Any,
    n_boot: int,
    seed: int,
    ci: float,
) -> dict[str, Any]:
    """Body of ``evaluate_classification(mode="multilabel")``; see there for the arguments."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_prob, dtype=float)
    k = len(classes)
    if y.shape != p.shape or y.ndim != 2 or y.shape[1] != k:
        raise MetricsError(
            f"evaluate_classification(multilabel): y_true {y.shape} and y_prob {p.shape} must "
            f"both be [N, K] with K = {k} labels"
        )
    if not np.isin(y[~np.isnan(y)], (0.0, 1.0)).all():
        raise MetricsError("evaluate_classification(multilabel): y_true must hold 0, 1 or NaN (missing)")
    full = multilabel_stats(y, p, np.ones(k, dtype=bool))
    defined = np.isfinite(full[4 : 4 + k])
    result = bootstrap(
        lambda idx: multilabel_stats(y[idx], p[idx], defined),
        len(y),
        groups=groups,
        n_boot=n_boot,
        seed=seed,
        ci=ci,
    )
    rows = headline_rows(list(MULTILABEL_HEADLINE), list(MULTILABEL_HEADLINE.values()), result)
    # statistics 4.. are per label: AUROC [K] then AP [K]
    labels_auroc = headline_rows(
        [f"auroc:{c}" for c in classes], [f"AUROC {c}" for c in classes], result.part(4, 4 + k)
    )
    labels_ap = headline_rows(
        [f"ap:{c}" for c in classes], [f"AP {c}" for c in classes], result.part(4 + k, 4 + 2 * k)
    )
    per_class, roc_curves, pr_curves, points = [], [], [], []
    for j, (name, t) in enumerate(zip(classes, _thresholds(threshold, k), strict=False)):
        known = ~np.isnan(y[:, j])
        yj, pj = y[known, j], p[known, j]
        roc, pr = B.curves(yj, pj, name)
        roc_curves += [roc] if roc else []
        pr_curves += [pr] if pr else []
        point = B.operating_point_block(yj, pj, t, name, f"non-{name}")
        points.append({"label": name, **point})
        per_class.append(
            {
                "class": name,
                "support": int(yj.sum()),
                "known": int(known.sum()),
                "missing": int((~known).sum()),
                "prevalence": num(yj.mean()) if yj.size else None,
                "auroc": labels_auroc[j]["value"],
                "auroc_ci_low": labels_auroc[j]["ci_low"],
                "auroc_ci_high": labels_auroc[j]["ci_high"],
                "average_precision": labels_ap[j]["value"],
                "ap_ci_low": labels_ap[j]["ci_low"],
                "ap_ci_high": labels_ap[j]["ci_high"],
                "threshold": point["threshold"],
                "sensitivity": point["sensitivity"],
                "specificity": point["specificity"],
                "ppv": point["ppv"],
                "npv": point["npv"],
            }
        )
    known = ~np.isnan(y)
    calibration = reliability(p[known], y[known])
    calibration.update(kind="per-label, known labels pooled", brier=rows[2]["value"])
    return {
        "headline": rows,
        "per_class": per_class,
        "curves": {"roc": roc_curves, "pr": pr_curves, "kind": "per-label"},
        "calibration": calibration,
        "operating_points": points,
        "bootstrap": bootstrap_block(result, n_boot, seed, ci),
    }
