"""The baseline floor (train.floor): features, the C search, and scores on separable / inseparable data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.train import floor as F


def test_image_features_by_hand() -> None:
    # band 0: 0..99 (mean 49.5, median 49.5), band 1: constant 7; the invalid half of band 0 is ignored
    image = np.stack([np.arange(100.0).reshape(10, 10), np.full((10, 10), 7.0)])
    feats = F.image_features(image).reshape(2, 7)
    assert feats[0, 0] == pytest.approx(49.5)
    assert feats[0, 1] == pytest.approx(np.arange(100.0).std())
    assert feats[0, 2:].tolist() == pytest.approx(
        np.percentile(np.arange(100.0), [5, 25, 50, 75, 95]).tolist()
    )
    assert feats[1].tolist() == pytest.approx([7.0, 0.0, 7.0, 7.0, 7.0, 7.0, 7.0])
    valid = np.zeros((10, 10), dtype=bool)
    valid[:5] = True  # pixels 0..49
    assert F.image_features(image, valid).reshape(2, 7)[0, 0] == pytest.approx(24.5)


def _images(n: int, k: int, separable: bool, seed: int) -> list[dict[str, Any]]:
    """Class k brightens band k by 3 sd when separable; else labels are independent of the pixels."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % k
        image = rng.normal(0, 1, size=(3, 8, 8))
        if separable:
            image[label % 3] += 3.0
        out.append({"image": image, "valid": np.ones((8, 8), bool), "label": label})
    return out


@pytest.mark.parametrize(
    ("separable", "mode", "k", "low", "high"),
    [
        (True, "multiclass", 3, 0.95, 1.0),  # per-band means separate the classes: accuracy ~1
        (False, "multiclass", 3, 0.15, 0.55),  # labels independent of pixels: chance (1/3)
        (True, "binary", 2, 0.98, 1.0),  # AUROC ~1
        (False, "binary", 2, 0.3, 0.7),  # AUROC ~0.5
    ],
)
def test_floor_scores_near_one_when_band_means_separate_and_near_chance_otherwise(
    separable: bool, mode: str, k: int, low: float, high: float
) -> None:
    train, val, test = (_images(n, k, separable, seed) for n, seed in ((120, 0), (60, 1), (150, 2)))
    xs = [F.classification_features(lambda i, s=s: s[i], range(len(s))) for s in (train, val, test)]
    floor = F.fit_floor(xs[0][0], xs[0][1], xs[1][0], xs[1][1], mode, k)
    assert floor.c in F.C_GRID
    prob = floor.predict_proba(xs[2][0])
    y = xs[2][1].astype(int)
    score = roc_auc_score(y, prob) if mode == "binary" else float(np.mean(prob.argmax(1) == y))
    assert low <= score <= high


def test_multilabel_floor_fits_one_model_per_label_and_skips_unknown_targets() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = np.stack([(x[:, 0] > 0).astype(float), (x[:, 1] > 0).astype(float), np.zeros(200)], axis=1)
    y[::7, 0] = np.nan  # unknown labels are left out of label 0's fit
    floor = F.fit_floor(x[:150], y[:150], x[150:], y[150:], "multilabel", 3)
    prob = floor.predict_proba(x[150:])
    assert prob.shape == (50, 3)
    assert floor.models[2] is None and np.all(prob[:, 2] == 0.0)  # label 2 never positive in train
    assert roc_auc_score(y[150:, 1], prob[:, 1]) > 0.95


def test_segmentation_pixels_respect_the_budget_and_the_ignore_index() -> None:
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(4):
        mask = rng.integers(0, 2, size=(16, 16))
        image = rng.normal(size=(2, 16, 16)) + 4.0 * mask  # class 1 is bright in both bands
        mask[0] = IGNORE_INDEX  # the first row is unlabelled: never sampled
        samples.append({"image": image, "valid": np.ones((16, 16), bool), "mask": mask})
    x, y = F.pixel_features(lambda i: samples[i], range(4), budget=100, seed=0)
    assert x.shape == (100, 2) and set(np.unique(y)) <= {0, 1}
    floor = F.fit_floor(x, y, x, y, "segmentation", 2)
    pred = F.predict_map(floor, samples[0]["image"])
    truth = samples[0]["mask"][1:]
    assert pred.shape == (16, 16) and np.mean(pred[1:] == truth) > 0.95


def test_subsample_is_seeded_and_bounded() -> None:
    assert F.subsample(5, 10, 0).tolist() == [0, 1, 2, 3, 4]
    a, b = F.subsample(1000, 10, 3), F.subsample(1000, 10, 3)
    assert len(a) == 10 and a.tolist() == b.tolist() and a.tolist() == sorted(a.tolist())


def test_floor_intervals_equal_a_separate_bootstrap_with_the_same_seed() -> None:
    # the floor's headline intervals are read off the paired pass (one bootstrap instead of two): they must
    # be exactly those evaluate_classification draws with the same seed and groups
    from resnet_apps.metrics import paired_headline
    from resnet_apps.metrics.classification import evaluate_classification
    from resnet_apps.train.baseline import intervals_from_paired

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    floor, model = np.clip(0.4 * y + 0.6 * rng.random(120), 0, 1), rng.random(120)
    groups = [f"g{i // 3}" for i in range(120)]
    separate = evaluate_classification(y, floor, ["n", "p"], mode="binary", threshold=0.5, groups=groups,
                                       n_boot=60, seed=4)  # fmt: skip
    point = evaluate_classification(
        y, floor, ["n", "p"], mode="binary", threshold=0.5, groups=groups, n_boot=0
    )
    paired = paired_headline(y, floor, model, groups, 60, 4, mode="binary", threshold_a=0.5, threshold_b=0.5)
    intervals_from_paired(point, paired, 60)
    for a, b in zip(separate["headline"], point["headline"], strict=True):
        assert (a["name"], a["ci_low"], a["ci_high"]) == (b["name"], b["ci_low"], b["ci_high"])
    assert point["bootstrap"]["n_boot"] == 60 and point["bootstrap"]["unit"] == separate["bootstrap"]["unit"]
