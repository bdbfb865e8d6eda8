"""Multiclass metrics (land cover): hand-computed accuracy, kappa, F1, producer's / user's accuracy, ECE."""

from __future__ import annotations

import json

import numpy as np
import pytest

from resnet_apps.errors import MetricsError
from resnet_apps.metrics import evaluate_classification

# 6 images, 3 classes; predicted = [0, 1, 1, 1, 2, 0] -> confusion rows [1 1 0], [0 2 0], [1 0 1]
Y = np.array([0, 0, 1, 1, 2, 2])
PRED = np.array([0, 1, 1, 1, 2, 0])
CLASSES = ["Forest", "River", "Urban"]


def _probs(pred: np.ndarray, k: int = 3) -> np.ndarray:
    p = np.full((len(pred), k), 0.1)
    p[np.arange(len(pred)), pred] = 0.8
    return p


def _h(ev: dict) -> dict:
    return {r["name"]: r["value"] for r in ev["headline"]}


def test_multiclass_hand_computed() -> None:
    ev = evaluate_classification(Y, _probs(PRED), CLASSES, n_boot=0)
    h = _h(ev)
    assert h["accuracy"] == pytest.approx(4 / 6)
    assert h["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # F1 per class: 0.5, 2*(2/3)*1/(5/3) = 0.8, 2*1*0.5/1.5 = 2/3
    assert h["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3, abs=1e-6)
    assert h["micro_f1"] == pytest.approx(4 / 6)
    # kappa: po = 2/3, pe = (2*2 + 2*3 + 2*1) / 36 = 1/3 -> (2/3 - 1/3) / (2/3) = 0.5
    assert h["kappa"] == pytest.approx(0.5)
    # Brier: correct rows 0.2^2 + 2 * 0.1^2 = 0.06, wrong rows 0.8^2 + 0.9^2 + 0.1^2 = 1.46
    assert h["brier"] == pytest.approx((4 * 0.06 + 2 * 1.46) / 6, abs=1e-6)
    # top-label ECE: every confidence is 0.8, accuracy 4/6
    assert h["ece"] == pytest.approx(0.8 - 4 / 6, abs=1e-6)
    assert ev["confusion"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    pc = {r["class"]: r for r in ev["per_class"]}
    # producer's = recall (omission), user's = precision (commission)
    assert pc["Forest"]["producers_accuracy"] == 0.5 and pc["Forest"]["users_accuracy"] == 0.5
    assert pc["River"]["producers_accuracy"] == 1.0 and pc["River"]["users_accuracy"] == pytest.approx(
        2 / 3, 1e-5
    )
    assert pc["Urban"]["producers_accuracy"] == 0.5 and pc["Urban"]["users_accuracy"] == 1.0
    assert pc["River"]["support"] == 2 and pc["River"]["predicted"] == 3
    json.dumps(ev, allow_nan=False)  # strictly JSON: no NaN anywhere


def test_multiclass_degenerate_cases() -> None:
    # a class absent from the test set: its recall is undefined (None), the rest still computes
    ev = evaluate_classification(Y, _probs(PRED, 4), [*CLASSES, "Glacier"], n_boot=10)
    glacier = ev["per_class"][3]
    assert glacier["support"] == 0 and glacier["recall"] is None and glacier["auroc_ovr"] is None
    assert _h(ev)["accuracy"] == pytest.approx(4 / 6)
    # perfect predictions: everything 1, intervals [1, 1]
    ev = evaluate_classification(Y, _probs(Y), CLASSES, n_boot=30)
    row = ev["headline"][0]
    assert (row["value"], row["ci_low"], row["ci_high"]) == (1.0, 1.0, 1.0)
    assert _h(ev)["kappa"] == 1.0
    # all predictions the same class: accuracy 1/3, kappa 0, macro F1 = F1 of that class / 3
    ev = evaluate_classification(Y, _probs(np.zeros(6, int)), CLASSES, n_boot=0)
    h = _h(ev)
    assert h["accuracy"] == pytest.approx(1 / 3) and h["kappa"] == pytest.approx(0.0)
    assert h["macro_f1"] == pytest.approx((2 * (1 / 3) * 1 / (1 / 3 + 1)) / 3, abs=1e-6)


def test_multiclass_bootstrap_groups_and_samples() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    prob = rng.dirichlet(np.ones(3), 120)
    prob[np.arange(120), y] += 0.6
    prob /= prob.sum(axis=1, keepdims=True)
    groups = [f"tile{i // 4}" for i in range(120)]
    ids = [f"id{i}" for i in range(120)]
    ev = evaluate_classification(y, prob, CLASSES, groups=groups, n_boot=40, seed=3, sample_ids=ids)
    assert ev["bootstrap"]["unit"] == "group" and ev["bootstrap"]["n_units"] == 30 and ev["n_groups"] == 30
    acc = ev["headline"][0]
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"] and acc["ci_high"] - acc["ci_low"] > 0
    assert ev["samples"]["ids"][:2] == ["id0", "id1"] and len(ev["samples"]["y_prob"][0]) == 3
    assert len(ev["curves"]["roc"]) == 3 and len(ev["curves"]["roc"][0]["fpr"]) <= 200


def test_multiclass_input_errors() -> None:
    with pytest.raises(MetricsError, match="expected"):
        evaluate_classification(Y, _probs(PRED)[:, :2], CLASSES)
    with pytest.raises(MetricsError, match="outside"):
        evaluate_classification(np.array([0, 5]), _probs(np.array([0, 1])), CLASSES)
    with pytest.raises(MetricsError, match="mode"):
        evaluate_classification(Y, _probs(PRED), CLASSES, mode="regression")
