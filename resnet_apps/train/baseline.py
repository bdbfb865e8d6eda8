"""The ``baseline`` block of metrics.json: the trivial floor (``train.floor``) scored beside the model.

Used by ``finish`` (end of training) and ``evaluate_run`` (``resnet-apps evaluate RUN``). The floor is fitted
on the run's train split, its C chosen on val, and scored on the split the model was evaluated on, with the
same bootstrap (groups, replicates, seed). The paired bootstrap difference model minus floor
(``metrics.paired``) says whether the model beats it: ``beats_floor`` is True when the 95 % interval of the
difference in the recipe's metric lies above 0, False when it does not, None when it is undefined.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from resnet_apps.data.records import Record
from resnet_apps.recipe import Recipe, TaskMode
from resnet_apps.train import floor as F
from resnet_apps.train.datasets import recipe_dataset
from resnet_apps.train.evaluate import evaluate_block, headline_name, operating_threshold


def baseline_block(
    recipe: Recipe,
    splits: dict[str, list[Record]],
    classes: list[str],
    norm: tuple[list[float], list[float]] | None,
    mode: TaskMode,
    eval_name: str,
    model_out: dict[str, Any],
    model_threshold: Any,
    log: Any = print,
) -> dict[str, Any]:
    """Fit the floor on ``splits["train"]`` (C on ``splits["val"]``), score it on ``splits[eval_name]``.

    Args:
        recipe: the run's recipe (preprocessing, split seed, bootstrap, operating point, metric).
        splits: ``{"train", "val", eval_name}`` records; ``model_out["index"]`` indexes ``splits[eval_name]``.
        classes: the task's classes.
        norm: the run's (mean, std) per band.
        mode: binary | multiclass | multilabel | segmentation.
        eval_name: the evaluated split.
        model_out: ``evaluate.predict``'s output for the model on that split.
        model_threshold: the model's operating threshold (binary) as applied to its evaluation.
        log: console printer.

    Returns:
        ``{"method", "features", "c", ..., "evaluation", "difference", "metric", "beats_floor"}``, or
        ``{"error": reason}`` when the floor could not be computed (the run's own metrics are kept).
    """
    start = time.perf_counter()
    try:
        block = _baseline(recipe, splits, classes, norm, mode, eval_name, model_out, model_threshold)
    except Exception as error:  # the floor informs; its failure must not lose a finished run's metrics
        log(f"note: baseline floor not computed ({type(error).__name__}: {error})")
        return {"error": f"{type(error).__name__}: {error}"}
    block["seconds"] = round(time.perf_counter() - start, 1)
    verdict = {True: "beats", False: "does NOT beat", None: "cannot be compared with"}[block["beats_floor"]]
    row = next((r for r in block["difference"] if r["metric"] == block["metric"]), None)
    if row is not None:
        log(
            f"baseline floor ({block['seconds']:.0f} s): {block['metric']} {_f(row['a'])}; model {_f(row['b'])}, "
            f"difference {_f(row['diff'])} [{_f(row['ci_low'])}, {_f(row['ci_high'])}]: the model {verdict} "
            "its floor"
        )
    return block


def intervals_from_paired(evaluation: dict[str, Any], difference: list[dict[str, Any]], n_boot: int) -> None:
    """Fill the floor's headline intervals (and its bootstrap description) from the paired rows' ``a``."""
    paired = {row["metric"]: row for row in difference}
    for row in evaluation.get("headline", []):
        match = paired.get(row["name"])
        if match is not None:
            row["ci_low"], row["ci_high"] = match["a_ci_low"], match["a_ci_high"]
            row["n_valid"], row["n_skipped"] = match["n_valid"], match["n_skipped"]
    if difference:
        evaluation["bootstrap"] = {
            **evaluation.get("bootstrap", {}),
            "n_boot": n_boot,
            "unit": difference[0]["unit"],
            "n_units": difference[0]["n_units"],
            "note": "the resamples of the paired bootstrap model - floor",
        }


def _f(value: Any) -> str:
    return "–" if value is None or value != value else f"{value:.4f}"


def _baseline(
    recipe: Recipe,
    splits: dict[str, list[Record]],
    classes: list[str],
    norm: tuple[list[float], list[float]] | None,
    mode: TaskMode,
    eval_name: str,
    model_out: dict[str, Any],
    model_threshold: Any,
) -> dict[str, Any]:
    from resnet_apps.metrics import paired_headline, paired_headline_segmentation
    from resnet_apps.metrics.segmentation import segmentation_confusion

    seed, n_boot, k = recipe.data.split.seed, recipe.eval.bootstrap, len(classes)

    def reader(name: str) -> F.Arrays:
        dataset = recipe_dataset(splits[name], recipe, norm, classes, train=False)
        return lambda i: {key: np.asarray(v) for key, v in dataset[i].items() if key != "meta"}

    train_idx = F.subsample(len(splits["train"]), F.MAX_IMAGES, seed)
    val_idx = F.subsample(len(splits["val"]), F.MAX_IMAGES, seed + 1)
    order = [int(i) for i in model_out["index"]]
    records = splits[eval_name]
    raw_groups = [records[i].group for i in order]
    groups = raw_groups if raw_groups and all(g is not None for g in raw_groups) else None
    floor_threshold = None
    if mode == "segmentation":
        x_tr, y_tr = F.pixel_features(reader("train"), train_idx, F.PIXEL_BUDGET, seed)
        x_va, y_va = F.pixel_features(reader("val"), val_idx, F.PIXEL_BUDGET // 4, seed + 1)
        fitted = F.fit_floor(x_tr, y_tr, x_va, y_va, mode, k)
        sample = reader(eval_name)
        cms = []
        for i in order:
            s = sample(i)
            pred = F.predict_map(fitted, s["image"])
            cms.append(segmentation_confusion(pred, s["mask"], k, valid=s["valid"]))
        confusions = np.stack(cms) if cms else np.zeros((0, k, k), dtype=np.int64)
        floor_out = {"index": np.array(order), "confusions": confusions}
        difference = paired_headline_segmentation(confusions, model_out["confusions"], groups, n_boot, seed)
        features, n_train, n_val = F.PIXEL_FEATURES, f"{len(y_tr):,} pixels", f"{len(y_va):,} pixels"
    else:
        x_tr, y_tr = F.classification_features(reader("train"), train_idx)
        x_va, y_va = F.classification_features(reader("val"), val_idx)
        fitted = F.fit_floor(x_tr, y_tr, x_va, y_va, mode, k)
        if mode in ("binary", "multilabel"):
            val_out = {"y_true": y_va, "y_prob": fitted.predict_proba(x_va)}
            floor_threshold = operating_threshold(val_out, mode, recipe.eval.operating_point)
        x_ev, _ = F.classification_features(reader(eval_name), order)
        floor_out = {
            "index": np.array(order),
            "y_true": model_out["y_true"],
            "y_prob": fitted.predict_proba(x_ev),
        }
        difference = paired_headline(
            model_out["y_true"],
            floor_out["y_prob"],
            model_out["y_prob"],
            groups,
            n_boot,
            seed,
            mode=mode,
            threshold_a=floor_threshold if mode == "binary" else None,
            threshold_b=model_threshold if mode == "binary" else None,
        )
        features, n_train, n_val = F.FEATURES, f"{len(y_tr):,} images", f"{len(y_va):,} images"
    # point estimates here; the intervals come from the paired pass above, whose resamples (same seed, same
    # groups) are exactly those a separate bootstrap of the floor would draw: one bootstrap instead of two
    evaluation = evaluate_block(floor_out, mode, classes, threshold=floor_threshold, groups=raw_groups, seed=seed,
                                n_boot=0)  # fmt: skip
    evaluation.pop("samples", None)
    intervals_from_paired(evaluation, difference, n_boot)
    for row in difference:
        row["direction"] = "model - floor"
    metric = headline_name(recipe.eval.metric, mode)
    chosen = next((r for r in difference if r["metric"] == metric), None)
    beats = None
    if chosen is not None and chosen["ci_low"] is not None and chosen["ci_high"] is not None:
        beats = bool(chosen["ci_low"] > 0)
    return {
        "method": "logistic regression (scikit-learn), standardised features, C chosen by validation log-loss "
        f"from {list(F.C_GRID)}",
        "features": features,
        "c": fitted.c,
        "val_log_loss": fitted.val_log_loss,
        "fitted_on": {"train": n_train, "val": n_val},
        "operating_threshold": floor_threshold,
        "evaluation": {"split": eval_name, **evaluation},
        "difference": difference,
        "metric": metric,
        "beats_floor": beats,
        **(
            {"note": "no test split: the floor's C was chosen on the split it is scored on (optimistic)"}
            if eval_name == "val"
            else {}
        ),
    }
