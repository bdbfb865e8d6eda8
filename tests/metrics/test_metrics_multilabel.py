"""Multi-label metrics: missing (NaN) labels are masked, never negative; macro means over defined labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from resnet_apps.metrics import evaluate_classification

LABELS = ["Effusion", "Mass", "Hernia"]
# label 0: a NaN row with a high score; label 2 has no positive at all (AUROC undefined)
Y = np.array([[1, 0, 0], [0, 1, 0], [np.nan, 0, 0], [0, 1, 0], [1, np.nan, 0], [0, 0, 0]], dtype=float)
P = np.array(
    [[0.9, 0.2, 0.1], [0.2, 0.7, 0.2], [0.95, 0.1, 0.3], [0.4, 0.6, 0.1], [0.7, 0.9, 0.2], [0.3, 0.65, 0.4]]
)


def test_nan_labels_masked_not_negative() -> None:
    ev = evaluate_classification(Y, P, LABELS, mode="multilabel", threshold=0.5, n_boot=0)
    pc = {r["class"]: r for r in ev["per_class"]}
    # Effusion known rows 0,1,3,4,5: positives 0.9, 0.7; negatives 0.2, 0.4, 0.3 -> perfectly ranked
    assert pc["Effusion"]["auroc"] == 1.0 and pc["Effusion"]["missing"] == 1 and pc["Effusion"]["known"] == 5
    # counting the NaN row as negative would give a lower AUROC (0.95 negative outranks both positives)
    as_negative = roc_auc_score(np.nan_to_num(Y[:, 0]), P[:, 0])
    assert as_negative < 1.0
    # Mass known rows 0,1,2,3,5: positives 0.7, 0.6; negatives 0.2, 0.1, 0.65 -> (2 + 1) / (2 * 3)... pairs:
    # 0.7 beats all 3; 0.6 beats 0.2, 0.1 but not 0.65 -> 5 / 6
    assert pc["Mass"]["auroc"] == pytest.approx(5 / 6)
    # Hernia has no positive: undefined, excluded from the macro mean
    assert pc["Hernia"]["auroc"] is None and pc["Hernia"]["average_precision"] is None
    h = {r["name"]: r["value"] for r in ev["headline"]}
    assert h["macro_auroc"] == pytest.approx((1.0 + 5 / 6) / 2)
    # Brier over the 16 known entries only
    known = ~np.isnan(Y)
    assert h["brier"] == pytest.approx(np.mean((P[known] - Y[known]) ** 2), abs=1e-6)
    # operating point per label at 0.5: Effusion flags 0.9, 0.7 (both positives) and no negative
    op = {o["label"]: o for o in ev["operating_points"]}
    assert (op["Effusion"]["tp"], op["Effusion"]["fp"], op["Effusion"]["fn"]) == (2, 0, 0)
    assert ev["samples"]["y_true"][2][0] is None  # NaN kept as null for later pairing


def test_multilabel_per_label_thresholds_and_bootstrap() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.3).astype(float)
    y[rng.random((200, 3)) < 0.1] = np.nan
    p = np.clip(np.nan_to_num(y) * 0.4 + rng.random((200, 3)) * 0.6, 0, 1)
    ev = evaluate_classification(
        y,
        p,
        LABELS,
        mode="multilabel",
        threshold=[0.3, 0.5, 0.7],
        n_boot=30,
        groups=[f"patient{i // 2}" for i in range(200)],
    )
    assert [o["threshold"] for o in ev["operating_points"]] == [0.3, 0.5, 0.7]
    row = ev["headline"][0]
    assert row["ci_low"] < row["value"] < row["ci_high"] and row["n_valid"] == 30
    pc = ev["per_class"][0]
    assert pc["auroc_ci_low"] < pc["auroc"] < pc["auroc_ci_high"]
    assert ev["bootstrap"]["unit"] == "group" and ev["bootstrap"]["n_units"] == 100
