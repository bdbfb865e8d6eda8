"""Columns of the results table beside the bootstrap interval: the trivial floor, the seed spread, convergence.

- floor: the ``baseline`` block of metrics.json (``train.baseline``) on the row's first metric: the floor's
  value with its interval and the paired difference model minus floor with its interval.
- seed spread: runs of one recipe with the same ``--set`` overrides apart from ``train.seed`` form a group;
  every row of a group with at least two seeds shows the mean, sample standard deviation, min-max and the
  number of seeds of the first metric (the spread training seeds give, which the bootstrap interval over test
  images does not show).
- convergence: ``metrics.convergence``'s verdict (from the ``convergence`` block, else from the history).
"""

from __future__ import annotations

import statistics
from typing import Any

from resnet_apps.metrics.convergence import convergence

# per-class anchors ("iou_cloud") name a class of the evaluation's per_class table: prefix -> its keys
_PER_CLASS_METRICS = {
    "iou": ("IoU", "iou", "iou_ci_low", "iou_ci_high"),
    "dice": ("Dice", "dice", None, None),
}


def per_class_metric(ev: dict[str, Any], metric: str) -> dict[str, Any] | None:
    """A headline-like row for an anchor such as ``iou_cloud`` (per-class IoU of class 'cloud')."""
    prefix, _, cls = metric.partition("_")
    keys = _PER_CLASS_METRICS.get(prefix)
    if not keys or not cls:
        return None
    for row in ev.get("per_class") or []:
        if str(row.get("class", "")).lower() == cls:
            label, value, low, high = keys
            return {
                "name": metric,
                "label": f"{label} of class '{row['class']}'",
                "value": row.get(value),
                "ci_low": row.get(low) if low else None,
                "ci_high": row.get(high) if high else None,
            }
    return None


def floor_of(doc: dict[str, Any], metric_name: str | None) -> dict[str, Any] | None:
    """``{"value", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high", "beats"}`` of the floor on
    ``metric_name`` (a headline name); None when the run has no floor (or none for that metric)."""
    base = doc.get("baseline") or {}
    rows = {r.get("name"): r for r in (base.get("evaluation") or {}).get("headline") or []}
    diffs = {d.get("metric"): d for d in base.get("difference") or []}
    row = rows.get(metric_name) or (
        # a per-class anchor (iou_cloud) is not among the floor's headline rows: its per_class table has it
        per_class_metric(base.get("evaluation") or {}, metric_name) if metric_name else None
    )
    if row is None:
        return None
    diff = diffs.get(metric_name) or {}
    beats = None
    if diff.get("ci_low") is not None and diff.get("ci_high") is not None:
        beats = bool(diff["ci_low"] > 0)
    return {
        "value": row.get("value"),
        "ci_low": row.get("ci_low"),
        "ci_high": row.get("ci_high"),
        "diff": diff.get("diff"),
        "diff_ci_low": diff.get("ci_low"),
        "diff_ci_high": diff.get("ci_high"),
        "beats": beats,
    }


def converged_of(doc: dict[str, Any]) -> bool | None:
    """True / False from the convergence rule; None when it cannot be told (no history, no metric)."""
    block = doc.get("convergence") or convergence(doc.get("history") or [])
    return None if block is None else block.get("converged")


def seed_key(doc: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """(recipe, task, overrides without train.seed): runs equal in this key differ only in their seed."""
    run = doc.get("run") or {}
    overrides = tuple(
        sorted(str(o) for o in run.get("overrides") or [] if not str(o).startswith("train.seed="))
    )
    return str(run.get("recipe")), str(run.get("task")), overrides


def seed_spread(values_by_seed: dict[Any, float]) -> dict[str, Any] | None:
    """``{"n", "mean", "sd", "min", "max"}`` over distinct seeds (sd: sample, n - 1); None below 2 seeds."""
    values = [float(v) for v in values_by_seed.values() if v is not None]
    if len(values) < 2:
        return None
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values),
        "min": min(values),
        "max": max(values),
    }


def add_seed_spreads(rows: list[dict[str, Any]]) -> None:
    """Set ``row["seeds"]`` (``seed_spread`` of its group's first metric, or None) on every row, in place.

    Rows need ``seed_key`` and ``seed`` (from :func:`result_row`); two runs with the same seed in one group
    count once (the later folder name wins), so a copied run does not shrink the spread.
    """
    groups: dict[Any, dict[Any, float]] = {}
    for row in rows:
        first = row["metrics"][0]["value"] if row["metrics"] else None
        if first is not None:
            groups.setdefault(row["seed_key"], {})[row["seed"]] = first
    for row in rows:
        row["seeds"] = seed_spread(groups.get(row["seed_key"], {}))
