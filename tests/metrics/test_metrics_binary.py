"""Binary metrics: operating point, rates, the plain-language sentence, calibration; hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from resnet_apps.errors import MetricsError
from resnet_apps.metrics import choose_operating_point, evaluate_classification
from resnet_apps.metrics.binary import (
    BINARY_HEADLINE,
    BINARY_METRICS,
    confusion_at,
    explain_operating_point,
    rates,
)

# 4 cases: negatives score 0.1 and 0.4, positives 0.35 and 0.8
Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.4, 0.35, 0.8])
CLASSES = ["NORMAL", "PNEUMONIA"]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("youden", 0.8),  # J = 0.5 first at 0.8 (sens 0.5, spec 1); ties keep the highest threshold
        ("sensitivity:1.0", 0.35),  # highest threshold flagging both positives
        ("sensitivity:0.5", 0.8),  # 0.8 already flags half of the positives
        ("specificity:1.0", 0.8),  # lowest threshold that flags no negative
        ("specificity:0.5", 0.35),  # one of two negatives (0.4) flagged at 0.35
    ],
)
def test_choose_operating_point(method: str, expected: float) -> None:
    assert choose_operating_point(Y, S, method) == pytest.approx(expected)


def test_choose_operating_point_errors_and_multilabel() -> None:
    with pytest.raises(MetricsError, match="one class"):
        choose_operating_point(np.ones(4), S)  # no negatives in validation
    with pytest.raises(MetricsError, match="unknown method"):
        choose_operating_point(Y, S, "f1")
    with pytest.raises(MetricsError, match="must lie"):
        choose_operating_point(Y, S, "sensitivity:1.5")
    # [N, K] -> one threshold per label, NaN targets ignored (col 1: the NaN row has the highest score)
    y2 = np.array([[0, 0], [0, np.nan], [1, 0], [1, 1]], dtype=float)
    s2 = np.array([[0.1, 0.2], [0.4, 0.99], [0.35, 0.3], [0.8, 0.9]])
    assert choose_operating_point(y2, s2, "specificity:1.0") == pytest.approx([0.8, 0.9])


def test_rates_and_sentence_hand_computed() -> None:
    c = confusion_at(Y, S, 0.35)  # flagged: 0.4 (neg), 0.35 and 0.8 (pos)
    assert c == {"tp": 2, "fp": 1, "tn": 1, "fn": 0}
    r = rates(c)
    assert r["sensitivity"] == 1.0 and r["specificity"] == 0.5
    assert r["ppv"] == pytest.approx(2 / 3) and r["npv"] == 1.0 and r["balanced_accuracy"] == 0.75
    sentence = explain_operating_point(c, 0.35, "PNEUMONIA", "NORMAL")
    assert sentence == (
        "At threshold 0.35, 100 % of PNEUMONIA cases are flagged (2 of 2) and 0 are missed; "
        "1 in 3 flags is false (1 of 3 flagged cases are NORMAL); 50 % of NORMAL cases are "
        "cleared (1 of 2)."
    )
    # 95 % flagged, 1 in 4 false: 19 of 20 positives, 19 TP + 6 FP (FDR 6/25 = 0.24 -> 1 in 4)
    s = explain_operating_point({"tp": 19, "fn": 1, "fp": 6, "tn": 74}, 0.3, "PNEUMONIA", "NORMAL")
    assert "95 % of PNEUMONIA cases are flagged" in s and "1 in 4 flags is false" in s
    assert "nothing is flagged" in explain_operating_point(
        {"tp": 0, "fn": 2, "fp": 0, "tn": 2}, 0.9, "P", "N"
    )


def _row(ev: dict, name: str) -> dict:
    return next(r for r in ev["headline"] if r["name"] == name)


def test_evaluate_binary_hand_computed_and_calibration() -> None:
    y = np.array([0, 1, 1, 1])
    s = np.array([0.2, 0.2, 0.8, 0.8])
    ev = evaluate_classification(y, s, CLASSES, mode="binary", threshold=0.5, n_boot=0)
    # Brier: (0.04 + 0.64 + 0.04 + 0.04) / 4 = 0.19
    assert _row(ev, "brier")["value"] == pytest.approx(0.19)
    # ECE: bin 0.2 holds conf 0.2 vs 1/2 positive -> 0.3 * 1/2; bin 0.8: |1 - 0.8| * 1/2 -> 0.25
    assert _row(ev, "ece")["value"] == pytest.approx(0.25)
    assert ev["calibration"]["ece"] == pytest.approx(0.25)
    counts = [b["count"] for b in ev["calibration"]["bins"]]
    assert counts[2] == 2 and counts[8] == 2 and sum(counts) == 4
    # AUROC: pairs (neg 0.2 vs pos 0.2, 0.8, 0.8) -> (0.5 + 1 + 1) / 3
    assert _row(ev, "auroc")["value"] == pytest.approx(2.5 / 3)
    op = ev["operating_point"]
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (2, 0, 1, 1)
    assert op["source"] == "validation" and op["sensitivity"] == pytest.approx(2 / 3)
    assert ev["confusion"]["matrix"] == [[1, 0], [1, 2]]


def test_degenerate_binary_cases() -> None:
    # one class absent: AUROC and specificity undefined -> None (JSON null), not an exception
    ev = evaluate_classification(np.ones(5, int), np.linspace(0.1, 0.9, 5), CLASSES, mode="binary", n_boot=20)
    assert _row(ev, "auroc")["value"] is None and _row(ev, "specificity")["value"] is None
    assert _row(ev, "auroc")["n_skipped"] == 20 and ev["curves"]["roc"] == []
    assert ev["operating_point"]["source"].startswith("default 0.5")
    # all predictions equal: AUROC 0.5, AP = prevalence, everything flagged at 0.5
    y = np.array([0, 1, 0, 1, 1])
    ev = evaluate_classification(y, np.full(5, 0.5), CLASSES, mode="binary", threshold=0.5, n_boot=0)
    assert _row(ev, "auroc")["value"] == 0.5 and _row(ev, "average_precision")["value"] == pytest.approx(0.6)
    assert _row(ev, "sensitivity")["value"] == 1.0 and _row(ev, "specificity")["value"] == 0.0
    # perfect classifier: AUROC 1 and a CI of [1, 1]
    y = np.array([0, 1] * 20)
    ev = evaluate_classification(y, y * 0.8 + 0.1, CLASSES, mode="binary", threshold=0.5, n_boot=50)
    auc = _row(ev, "auroc")
    assert (auc["value"], auc["ci_low"], auc["ci_high"]) == (1.0, 1.0, 1.0)


def test_rare_positive_resamples_are_skipped_and_counted() -> None:
    y = np.array([1] + [0] * 9)  # one positive: ~35 % of resamples hold none (0.9 ** 10)
    s = np.linspace(0.9, 0.0, 10)
    ev = evaluate_classification(y, s, CLASSES, mode="binary", threshold=0.5, n_boot=100, seed=1)
    auc = _row(ev, "auroc")
    assert 15 < auc["n_skipped"] < 60 and auc["n_valid"] + auc["n_skipped"] == 100
    assert _row(ev, "accuracy")["n_skipped"] == 0


def test_metric_tables_agree() -> None:
    assert list(BINARY_METRICS) == list(BINARY_HEADLINE)


def test_binary_input_errors() -> None:
    with pytest.raises(MetricsError, match="0/1"):
        evaluate_classification(np.array([0, 2]), np.array([0.1, 0.2]), CLASSES, mode="binary")
    with pytest.raises(MetricsError, match="negative, positive"):
        evaluate_classification(Y, S, ["a", "b", "c"], mode="binary")
    with pytest.raises(MetricsError, match="groups"):
        evaluate_classification(Y, S, CLASSES, mode="binary", groups=["a"])
