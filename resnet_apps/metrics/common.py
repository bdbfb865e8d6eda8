"""Helpers shared by the metric modules: JSON-safe numbers, curve thinning, headline rows, calibration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from resnet_apps.metrics.bootstrap import BootstrapResult

# points kept per ROC / PR curve in metrics.json: enough for a smooth plot, small enough for the file
MAX_CURVE_POINTS = 200


def num(value: Any, digits: int = 6) -> float | None:
    """A JSON-safe float rounded to ``digits``; NaN and inf become None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits)


def thin(*arrays: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> list[list[float | None]]:
    """Keep at most ``max_points`` evenly spaced points (first and last always kept) of parallel arrays."""
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int)) if n else np.arange(0)
    return [[num(a[i], 5) for i in keep] for a in arrays]


def headline_rows(names: list[str], labels: list[str], result: BootstrapResult) -> list[dict[str, Any]]:
    """Rows ``{name, label, value, ci_low, ci_high, n_valid, n_skipped}`` from a bootstrap result."""
    return [
        {
            "name": name,
            "label": label,
            "value": num(result.value[m]),
            "ci_low": num(result.ci_low[m]),
            "ci_high": num(result.ci_high[m]),
            "n_valid": int(result.n_valid[m]),
            "n_skipped": int(result.n_skipped[m]),
        }
        for m, (name, label) in enumerate(zip(names, labels, strict=False))
    ]


def bootstrap_block(result: BootstrapResult, n_boot: int, seed: int, ci: float) -> dict[str, Any]:
    """The ``bootstrap`` block of an evaluation: how the intervals were made."""
    return {
        "method": "percentile",
        "n_boot": int(n_boot),
        "seed": int(seed),
        "ci": float(ci),
        "unit": result.unit,
        "n_units": int(result.n_units),
    }


def reliability(confidence: np.ndarray, outcome: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Equal-width reliability bins, expected calibration error and Brier score.

    Args:
        confidence: [N] predicted probability of ``outcome`` being 1 (binary / multi-label: P(positive);
            multiclass: the top-label probability).
        outcome: [N] 1.0 where the event happened (positive label; multiclass: top label correct), else 0.0.
        n_bins: bins of width 1 / n_bins on [0, 1]; the last bin includes 1.0.

    Returns:
        {"ece", "n_bins", "bins": [{lo, hi, count, mean_confidence, observed_frequency}]}, where
        ECE = sum_b (n_b / N) * |observed_b - confidence_b| over non-empty bins.
    """
    confidence = np.asarray(confidence, dtype=float)
    outcome = np.asarray(outcome, dtype=float)
    which = np.clip((confidence * n_bins).astype(int), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        member = which == b
        count = int(member.sum())
        conf = float(confidence[member].mean()) if count else float("nan")
        freq = float(outcome[member].mean()) if count else float("nan")
        if count:
            ece += count / len(confidence) * abs(freq - conf)
        bins.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "count": count,
                "mean_confidence": num(conf),
                "observed_frequency": num(freq),
            }
        )
    return {"ece": num(ece if len(confidence) else float("nan")), "n_bins": n_bins, "bins": bins}


def ece_only(confidence: np.ndarray, outcome: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error alone, vectorised for bootstrap replicates (bins as ``reliability``)."""
    if len(confidence) == 0:
        return float("nan")
    which = np.clip((confidence * n_bins).astype(int), 0, n_bins - 1)
    np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    out_sum = np.bincount(which, weights=outcome, minlength=n_bins)
    return float(np.abs(out_sum - conf_sum).sum() / len(confidence))
