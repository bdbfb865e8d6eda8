"""Paired bootstrap of the difference between two runs on the same test set (e.g. ImageNet vs scratch).

Both runs are scored on the SAME resample in every replicate, so the variance the runs share (which cases are
hard) cancels and the interval of the difference is honest and narrow. The difference is always B minus A.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from resnet_apps.errors import MetricsError
from resnet_apps.metrics import binary as B
from resnet_apps.metrics.bootstrap import Resampler, bootstrap, summarize
from resnet_apps.metrics.classification import MULTICLASS_HEADLINE, multiclass_stats
from resnet_apps.metrics.common import num
from resnet_apps.metrics.multilabel import MULTILABEL_HEADLINE, multilabel_stats
from resnet_apps.metrics.segmentation import SEGMENTATION_HEADLINE, segmentation_stats

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def infer_mode(y_true: np.ndarray, prob: np.ndarray) -> str:
    """binary for [N] scores, multilabel for [N, K] targets, multiclass for [N] labels with [N, K] probs."""
    if np.ndim(prob) == 1:
        return "binary"
    return "multilabel" if np.ndim(y_true) == 2 else "multiclass"


def metric_names(mode: str) -> list[str]:
    """The metric names ``paired_difference`` accepts for a mode (its headline metrics)."""
    table = {
        "binary": B.BINARY_HEADLINE,
        "multiclass": MULTICLASS_HEADLINE,
        "multilabel": MULTILABEL_HEADLINE,
        "segmentation": SEGMENTATION_HEADLINE,
    }
    if mode not in table:
        raise MetricsError(f"paired_difference: unknown mode {mode!r}; use {sorted(table)}")
    return list(table[mode])


def _named(metric: str, mode: str, y: np.ndarray, threshold: float | None) -> Callable[..., float]:
    """A function (idx, prob) -> metric value for one of the headline metric names of ``mode``."""
    names = metric_names(mode)
    if metric not in names:
        raise MetricsError(f"paired_difference: metric {metric!r} is not one of {names} for mode {mode!r}")
    m = names.index(metric)
    if mode == "binary":
        t = 0.5 if threshold is None else float(threshold)
        fn = B.BINARY_METRICS[metric]  # only the metric asked for: twice per replicate
        return lambda idx, p: fn(y[idx], p[idx], t)
    if mode == "multiclass":
        present = np.unique(y)
        return lambda idx, p: multiclass_stats(y[idx], p[idx], present)[m]
    # labels defined on the full set: both classes among the known (non-NaN) targets
    defined = (np.nansum(y == 1, axis=0) > 0) & (np.nansum(y == 0, axis=0) > 0)
    return lambda idx, p: multilabel_stats(y[idx], p[idx], defined)[m]


def paired_difference(
    metric: str | MetricFn,
    y_true: np.ndarray,
    prob_a: np.ndarray,
    prob_b: np.ndarray,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    *,
    mode: str | None = None,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
) -> dict[str, Any]:
    """Difference of one metric between run B and run A with a paired bootstrap interval.

    Args:
        metric: a headline metric name of the mode (e.g. "auroc", "accuracy", "macro_auroc") or a function
            ``f(y_true, prob) -> float`` (NaN when undefined).
        y_true: the shared targets (layout as in ``evaluate_classification``).
        prob_a / prob_b: the two runs' probabilities for the same samples in the same order.
        groups: [N] patient / tile group per sample; resampled whole when given.
        n_boot, seed, ci: bootstrap replicates, numpy seed, interval coverage.
        mode: binary / multiclass / multilabel; inferred from the shapes when None.
        threshold_a / threshold_b: each run's own operating threshold (binary threshold metrics).

    Returns:
        {"metric", "a", "b", "diff" (= b - a), "ci_low", "ci_high", "n_valid", "n_skipped", "unit",
        "n_units"}.
        A CI that excludes 0 means the runs differ at that confidence.
    """
    y, pa, pb, mode = _prepare(y_true, prob_a, prob_b, mode)
    if callable(metric):
        name = getattr(metric, "__name__", "custom")
        fa = fb = lambda idx, p: float(metric(y[idx], p[idx]))  # noqa: E731
    else:
        name = metric
        fa, fb = _named(metric, mode, y, threshold_a), _named(metric, mode, y, threshold_b)

    def stat(idx: np.ndarray) -> np.ndarray:
        a, b = fa(idx, pa), fb(idx, pb)
        return np.array([a, b, b - a])

    result = bootstrap(stat, len(y), groups=groups, n_boot=n_boot, seed=seed, ci=ci)
    return _pack(name, result)


def paired_difference_segmentation(
    confusions_a: np.ndarray,
    confusions_b: np.ndarray,
    metric: str = "miou",
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """``paired_difference`` for segmentation runs from their per-image [N, K, K] confusion matrices."""
    names = metric_names("segmentation")
    if metric not in names:
        raise MetricsError(f"paired_difference_segmentation: metric {metric!r} is not one of {names}")
    return paired_headline_segmentation(confusions_a, confusions_b, groups, n_boot, seed, ci)[
        names.index(metric)
    ]


def paired_headline_segmentation(
    confusions_a: np.ndarray,
    confusions_b: np.ndarray,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> list[dict[str, Any]]:
    """Paired differences of all segmentation headline metrics (mIoU, mean Dice, pixel accuracy), one pass."""
    ca, cb = np.asarray(confusions_a, dtype=np.int64), np.asarray(confusions_b, dtype=np.int64)
    if ca.shape != cb.shape or ca.ndim != 3:
        raise MetricsError(
            f"paired_difference_segmentation: confusions {ca.shape} and {cb.shape} must both be "
            "[N, K, K] over the same images"
        )
    names = metric_names("segmentation")
    n, k, _ = ca.shape
    defined = {}
    for tag, c in (("a", ca), ("b", cb)):
        total = c.sum(axis=0)
        defined[tag] = (np.diag(total) + total.sum(0) + total.sum(1)) > 0  # in reference or prediction
    resampler = Resampler(n, groups, seed)

    def units(c: np.ndarray) -> np.ndarray:
        flat = c.reshape(n, k * k)
        if resampler.members is None:
            return flat
        return np.stack([flat[g].sum(axis=0) for g in resampler.members])

    ua, ub = units(ca), units(cb)

    def stat(counts: np.ndarray) -> np.ndarray:
        a = segmentation_stats((counts @ ua).reshape(k, k), defined["a"])[: len(names)]
        b = segmentation_stats((counts @ ub).reshape(k, k), defined["b"])[: len(names)]
        return np.concatenate([a, b, b - a])

    value = stat(np.ones(resampler.n_units, dtype=np.int64))
    reps = np.array([stat(resampler.draw_counts()) for _ in range(max(n_boot, 0))]).reshape(-1, value.size)
    result = summarize(value, reps, ci, resampler)
    return [_pack(name, result, m, len(names)) for m, name in enumerate(names)]


def paired_headline(
    y_true: np.ndarray,
    prob_a: np.ndarray,
    prob_b: np.ndarray,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    *,
    mode: str | None = None,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
) -> list[dict[str, Any]]:
    """Paired differences of every headline metric of the mode in ONE bootstrap pass (what compare uses).

    Same arguments and per-metric dicts as ``paired_difference``; the list follows ``metric_names(mode)``.
    """
    y, pa, pb, mode = _prepare(y_true, prob_a, prob_b, mode)
    names = metric_names(mode)
    fa, fb = _all_stats(mode, y, threshold_a), _all_stats(mode, y, threshold_b)

    def stat(idx: np.ndarray) -> np.ndarray:
        a, b = fa(idx, pa), fb(idx, pb)
        return np.concatenate([a, b, b - a])

    result = bootstrap(stat, len(y), groups=groups, n_boot=n_boot, seed=seed, ci=ci)
    return [_pack(name, result, m, len(names)) for m, name in enumerate(names)]


def _all_stats(
    mode: str, y: np.ndarray, threshold: float | None
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(idx, prob) -> all headline metrics of ``mode`` [M] on that resample."""
    if mode == "binary":
        t = 0.5 if threshold is None else float(threshold)
        return lambda idx, p: B.binary_stats(y[idx], p[idx], t)
    if mode == "multiclass":
        present = np.unique(y)
        return lambda idx, p: multiclass_stats(y[idx], p[idx], present)
    defined = (np.nansum(y == 1, axis=0) > 0) & (np.nansum(y == 0, axis=0) > 0)
    return lambda idx, p: multilabel_stats(y[idx], p[idx], defined)[:4]


def _prepare(
    y_true: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, mode: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    y = np.asarray(y_true, dtype=float)
    pa, pb = np.asarray(prob_a, dtype=float), np.asarray(prob_b, dtype=float)
    if pa.shape != pb.shape or len(pa) != len(y):
        raise MetricsError(
            f"paired_difference: prob_a {pa.shape}, prob_b {pb.shape} and y_true {y.shape} must "
            "cover the same samples in the same order"
        )
    mode = mode or infer_mode(y, pa)
    metric_names(mode)  # rejects an unknown mode
    return (y.astype(int) if mode == "multiclass" else y), pa, pb, mode


def _pack(name: str, result: Any, m: int = 0, n_metrics: int = 1) -> dict[str, Any]:
    """Metric m of a result laid out as [a (M), b (M), b - a (M)]."""
    d = 2 * n_metrics + m
    return {
        "metric": name,
        "a": num(result.value[m]),
        "b": num(result.value[n_metrics + m]),
        "diff": num(result.value[d]),
        "ci_low": num(result.ci_low[d]),
        "ci_high": num(result.ci_high[d]),
        # each run's own interval from the same resamples (what its evaluation would report with this seed)
        "a_ci_low": num(result.ci_low[m]),
        "a_ci_high": num(result.ci_high[m]),
        "b_ci_low": num(result.ci_low[n_metrics + m]),
        "b_ci_high": num(result.ci_high[n_metrics + m]),
        "n_valid": int(result.n_valid[d]),
        "n_skipped": int(result.n_skipped[d]),
        "direction": "B - A",
        "unit": result.unit,
        "n_units": int(result.n_units),
    }
