"""Predict a split and turn the predictions into the ``evaluation`` block of metrics.json.

Used by train.py (validation every epoch, the final val/test evaluation) and ``resnet-apps evaluate``.
Under DDP each rank predicts its shard; predictions are gathered with ``all_gather_object`` and the
duplicates that DistributedSampler pads with are dropped by sample index.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from resnet_apps.recipe import Precision, TaskMode
from resnet_apps.train.distributed import all_reduce_mean, gather
from resnet_apps.train.setup import autocast_context

# recipe eval.metric -> headline row name of the metrics layer, per mode
_HEADLINE = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "kappa": "kappa",
    "f1_macro": "macro_f1",
    "auroc": "auroc",
    "miou": "miou",
    "dice": "mean_dice",
}


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    mode: TaskMode,
    num_classes: int,
    device: torch.device,
    precision: Precision = "fp32",
    channels_last: bool = False,
    criterion: nn.Module | None = None,
) -> dict[str, Any]:
    """Run the model over a loader (all ranks), return per-sample outputs ordered by dataset index.

    Returns:
        ``{"index": [N], "y_true": [N] | [N, K], "y_prob": [N] | [N, K]}`` for classification;
        ``{"index": [N], "confusions": [N, K, K]}`` for segmentation; with ``criterion`` also ``"loss"``
        (mean over this rank's batches, averaged over ranks).
    """
    from resnet_apps.metrics.segmentation import segmentation_confusion

    model.eval()
    rows: list[tuple[int, Any, Any]] = []
    loss_sum, loss_n = 0.0, 0
    for batch in loader:
        images = batch["image"].to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(precision, device):
            logits = model(images).float()
        if criterion is not None:
            target = batch["mask" if mode == "segmentation" else "label"].to(device)
            loss_sum += float(criterion(logits, target).item()) * len(images)
            loss_n += len(images)
        if mode == "segmentation":
            pred = logits.argmax(1).cpu().numpy()
            masks, valid = batch["mask"].numpy(), batch["valid"].numpy()
            for i, idx in enumerate(batch["index"].tolist()):
                h, w = batch["size"][i].tolist()
                cm = segmentation_confusion(
                    pred[i, :h, :w], masks[i, :h, :w], num_classes, valid=valid[i, :h, :w]
                )
                rows.append((idx, cm, None))
            continue
        if mode == "multiclass":
            prob = torch.softmax(logits, 1).cpu().numpy()
        else:
            prob = torch.sigmoid(logits).cpu().numpy()
            prob = prob[:, 0] if mode == "binary" else prob
        labels = batch["label"].numpy()
        rows += [(idx, labels[i], prob[i]) for i, idx in enumerate(batch["index"].tolist())]
    merged = {idx: (a, b) for idx, a, b in gather(rows)}  # DistributedSampler padding repeats an index
    order = sorted(merged)
    extra = {"loss": all_reduce_mean(loss_sum / max(loss_n, 1))} if criterion is not None else {}
    if mode == "segmentation":
        k = num_classes
        cms = np.stack([merged[i][0] for i in order]) if order else np.zeros((0, k, k), dtype=np.int64)
        return {"index": np.array(order), "confusions": cms, **extra}
    return {
        **extra,
        "index": np.array(order),
        "y_true": np.stack([merged[i][0] for i in order]),
        "y_prob": np.stack([merged[i][1] for i in order]),
    }


def evaluate_block(
    out: dict[str, Any],
    mode: TaskMode,
    classes: list[str],
    *,
    threshold: Any = None,
    groups: list[str | None] | None = None,
    ids: list[str] | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """metrics.evaluate_classification / evaluate_segmentation on ``predict``'s output.

    Warnings raised while scoring (scikit-learn's UndefinedMetricWarning once per bootstrap resample when a
    class is absent: a thousand lines) are collected and printed once per kind with their count.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        block = _evaluate_block(out, mode, classes, threshold, groups, ids, n_boot, seed)
    for key, line in summarise_warnings(caught):
        if key not in _SHOWN:  # per-epoch validation repeats the same kinds: say each once per process
            _SHOWN.add(key)
            print(f"note: {line}")
    return block


_SHOWN: set[tuple[str, str]] = set()


def summarise_warnings(caught: list[warnings.WarningMessage]) -> list[tuple[tuple[str, str], str]]:
    """``((category, message), line)`` per kind of warning, with how often it was raised, most frequent first."""
    counts = Counter(
        (w.category.__name__, str(w.message).splitlines()[0] if str(w.message) else "") for w in caught
    )
    return [
        ((cat, msg), f"{n:,} x {cat}: {msg}" if n > 1 else f"{cat}: {msg}")
        for (cat, msg), n in counts.most_common()
    ]


def _evaluate_block(
    out: dict[str, Any],
    mode: str,
    classes: list[str],
    threshold: Any,
    groups: list[str | None] | None,
    ids: list[str] | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    from resnet_apps.metrics.classification import evaluate_classification
    from resnet_apps.metrics.segmentation import evaluate_segmentation

    use_groups = groups if groups and all(g is not None for g in groups) else None
    if mode == "segmentation":
        return evaluate_segmentation(
            out["confusions"],
            classes,
            groups=use_groups,
            n_boot=n_boot,
            seed=seed,
            sample_ids=ids,
            keep_samples=n_boot > 0,
        )
    return evaluate_classification(
        out["y_true"],
        out["y_prob"],
        classes,
        mode=mode,
        threshold=threshold,
        groups=use_groups,
        n_boot=n_boot,
        seed=seed,
        sample_ids=ids,
        keep_samples=n_boot > 0,
    )


def headline_value(block: dict[str, Any], metric: str, mode: TaskMode) -> float:
    """The recipe's domain metric from an evaluation block (NaN when undefined, e.g. one class present)."""
    name = headline_name(metric, mode)
    for row in block.get("headline", []):
        if row["name"] == name:
            return float("nan") if row["value"] is None else float(row["value"])
    raise KeyError(f"eval.metric {metric!r} is not reported for {mode} tasks")


def headline_name(metric: str, mode: TaskMode) -> str:
    """The headline row name of the recipe's ``eval.metric`` (``auroc`` of a multi-label run: ``macro_auroc``)."""
    name = _HEADLINE.get(metric, metric)
    return "macro_auroc" if mode == "multilabel" and name == "auroc" else name


def operating_threshold(out: dict[str, Any], mode: TaskMode, method: str) -> Any:
    """Threshold chosen on validation predictions (binary: float, multilabel: list); None otherwise."""
    if mode not in ("binary", "multilabel"):
        return None
    if method.startswith("fixed:"):
        return float(method.split(":", 1)[1])
    from resnet_apps.errors import MetricsError
    from resnet_apps.metrics.binary import choose_operating_point

    try:
        return choose_operating_point(out["y_true"], out["y_prob"], method)
    except MetricsError as error:
        print(f"note: operating point not chosen on validation ({error}); using 0.5")
        return 0.5 if mode == "binary" else None
