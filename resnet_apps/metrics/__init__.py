"""Domain metrics with bootstrap confidence intervals: numpy arrays in, JSON-ready dicts out (no torch).

The trainer calls, per split::

    t = choose_operating_point(y_val, p_val, "youden")            # binary / multi-label, on validation
    evaluation = evaluate_classification(y_test, p_test, classes, mode="binary", threshold=t, groups=patients)
    # confusions [N, K, K] from segmentation_confusion, one per test image
    evaluation = evaluate_segmentation(confusions, classes, groups=scenes)

and ``paired_difference`` compares two runs on the same test set. The dict layouts are documented in
docs/ARCHITECTURE.md section 6.
"""

from __future__ import annotations

from resnet_apps.metrics.binary import choose_operating_point
from resnet_apps.metrics.bootstrap import BootstrapResult, Resampler, bootstrap
from resnet_apps.metrics.classification import evaluate_classification
from resnet_apps.metrics.paired import (
    metric_names,
    paired_difference,
    paired_difference_segmentation,
    paired_headline,
    paired_headline_segmentation,
)
from resnet_apps.metrics.segmentation import evaluate_segmentation, segmentation_confusion

__all__ = [
    "BootstrapResult",
    "Resampler",
    "bootstrap",
    "choose_operating_point",
    "evaluate_classification",
    "evaluate_segmentation",
    "metric_names",
    "paired_difference",
    "paired_difference_segmentation",
    "paired_headline",
    "paired_headline_segmentation",
    "segmentation_confusion",
]
