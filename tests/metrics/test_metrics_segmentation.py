"""Segmentation metrics: confusion with ignore / nodata pixels excluded, IoU, Dice, pixel accuracy, CIs."""

from __future__ import annotations

import numpy as np
import pytest

from resnet_apps.errors import MetricsError
from resnet_apps.metrics import evaluate_segmentation, paired_difference_segmentation, segmentation_confusion


def test_confusion_excludes_ignore_and_nodata() -> None:
    target = np.array([[0, 0, 1], [0, 255, 1]])
    pred = np.array([[0, 1, 1], [0, 1, 0]])
    valid = np.array([[True, True, True], [True, True, False]])
    # kept pixels: (0,0)->0, (0,1)->1, (1,1)->1 [pos (0,2)], (0,0) [pos (1,0)]; 255 ignored, (1,2) nodata
    cm = segmentation_confusion(pred, target, 2, valid=valid)
    assert cm.tolist() == [[2, 1], [0, 1]]
    assert cm.dtype == np.int64
    with pytest.raises(MetricsError, match="mask_values"):
        segmentation_confusion(pred, np.array([[0, 0, 7], [0, 0, 0]]), 2)
    with pytest.raises(MetricsError, match="differ"):
        segmentation_confusion(pred, target[:, :2], 2)


def test_iou_dice_accuracy_hand_computed() -> None:
    cms = np.array([[[2, 1, 0], [0, 1, 0], [0, 0, 0]]])  # class 2 absent in target and prediction
    ev = evaluate_segmentation(cms, ["bg", "building", "water"], n_boot=0)
    pc = {r["class"]: r for r in ev["per_class"]}
    # IoU bg = 2 / (2 + 0 + 1), building = 1 / (1 + 1 + 0); Dice = 4/5 and 2/3
    assert pc["bg"]["iou"] == pytest.approx(2 / 3, abs=1e-6) and pc["building"]["iou"] == 0.5
    assert pc["bg"]["dice"] == 0.8 and pc["building"]["dice"] == pytest.approx(2 / 3, abs=1e-6)
    assert pc["water"]["iou"] is None  # absent class: undefined, not 0 and not 1
    h = {r["name"]: r["value"] for r in ev["headline"]}
    assert h["miou"] == pytest.approx((2 / 3 + 0.5) / 2, abs=1e-6)
    assert h["mean_dice"] == pytest.approx((0.8 + 2 / 3) / 2, abs=1e-6)
    assert h["pixel_accuracy"] == 0.75
    assert (
        pc["bg"]["producers_accuracy"] == pytest.approx(2 / 3, abs=1e-6) and pc["bg"]["users_accuracy"] == 1.0
    )
    assert ev["n_pixels"] == 4


def test_segmentation_bootstrap_groups_and_pairing() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, (12, 8, 8))
    good = np.where(rng.random((12, 8, 8)) < 0.8, target, (target + 1) % 3)
    bad = np.where(rng.random((12, 8, 8)) < 0.5, target, (target + 1) % 3)
    ca = np.stack([segmentation_confusion(b, t, 3) for b, t in zip(bad, target, strict=False)])
    cb = np.stack([segmentation_confusion(g, t, 3) for g, t in zip(good, target, strict=False)])
    scenes = [f"scene{i // 3}" for i in range(12)]
    ev = evaluate_segmentation(cb, ["a", "b", "c"], groups=scenes, n_boot=50, seed=1)
    assert ev["bootstrap"]["unit"] == "group" and ev["bootstrap"]["n_units"] == 4
    miou = ev["headline"][0]
    assert miou["ci_low"] <= miou["value"] <= miou["ci_high"]
    assert len(ev["samples"]["confusions"]) == 12
    # same seed, same interval
    assert (
        evaluate_segmentation(cb, ["a", "b", "c"], groups=scenes, n_boot=50, seed=1)["headline"]
        == ev["headline"]
    )
    diff = paired_difference_segmentation(ca, cb, "pixel_accuracy", n_boot=100)
    assert diff["diff"] == pytest.approx(diff["b"] - diff["a"], abs=1e-5) and diff["ci_low"] > 0
    same = paired_difference_segmentation(ca, ca, "miou", n_boot=20)
    assert (same["diff"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
