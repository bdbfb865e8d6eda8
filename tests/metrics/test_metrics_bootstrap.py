"""The bootstrap: seeded, whole groups resampled, degenerate replicates counted, paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from resnet_apps.errors import MetricsError
from resnet_apps.metrics import Resampler, bootstrap, paired_difference, paired_headline


def test_seeded_and_percentile_matches_normal_theory() -> None:
    x = np.random.default_rng(0).normal(10.0, 2.0, 400)
    r1 = bootstrap(lambda idx: np.array([x[idx].mean()]), 400, n_boot=600, seed=5)
    r2 = bootstrap(lambda idx: np.array([x[idx].mean()]), 400, n_boot=600, seed=5)
    assert r1.ci_low[0] == r2.ci_low[0] and r1.ci_high[0] == r2.ci_high[0]
    half = 1.96 * x.std() / np.sqrt(400)  # ~0.196
    assert r1.ci_high[0] - r1.ci_low[0] == pytest.approx(2 * half, rel=0.15)
    r3 = bootstrap(lambda idx: np.array([x[idx].mean()]), 400, n_boot=600, seed=6)
    assert r3.ci_low[0] != r1.ci_low[0]


def test_groups_are_resampled_whole() -> None:
    groups = np.repeat(["p1", "p2", "p3", "p4"], [1, 2, 3, 4])  # sizes 1..4
    resampler = Resampler(10, groups, seed=0)
    assert resampler.unit == "group" and resampler.n_units == 4
    for _ in range(50):
        idx = resampler.draw()
        counts = np.bincount(idx, minlength=10)
        # every member of a group appears as often as the group was drawn
        for start, size in ((0, 1), (1, 2), (3, 3), (6, 4)):
            assert len(set(counts[start : start + size])) == 1
    with pytest.raises(MetricsError, match="one group per sample"):
        Resampler(10, groups[:5])


def test_degenerate_replicates_are_counted() -> None:
    y = np.array([1, 0, 0, 0, 0])

    def share_positive_over_negative(idx: np.ndarray) -> np.ndarray:
        pos = np.sum(y[idx] == 1)
        return np.array([pos / pos if pos else np.nan])  # undefined without a positive

    r = bootstrap(share_positive_over_negative, 5, n_boot=300, seed=0)
    # P(no positive in 5 draws) = 0.8^5 = 0.33
    assert 70 < r.n_skipped[0] < 130 and r.n_valid[0] + r.n_skipped[0] == 300
    assert (r.ci_low[0], r.ci_high[0]) == (1.0, 1.0)
    with pytest.raises(MetricsError, match="ci="):
        bootstrap(lambda idx: np.array([1.0]), 5, n_boot=3, ci=95)


def test_paired_difference() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    a = np.clip(0.35 * y + 0.65 * rng.random(300), 0, 1)
    b = np.clip(a + 0.15 * y, 0, 1)  # B ranks every positive higher: better AUROC
    groups = [f"p{i // 3}" for i in range(300)]
    d = paired_difference("auroc", y, a, b, groups, n_boot=40, seed=0)
    assert d["direction"] == "B - A" and d["unit"] == "group" and d["n_units"] == 100
    assert d["diff"] == pytest.approx(d["b"] - d["a"], abs=1e-5) and d["ci_low"] > 0
    same = paired_difference("auroc", y, a, a, n_boot=50)
    assert (same["diff"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)

    # a custom metric function, and multiclass names
    def mean_prob(yt: np.ndarray, p: np.ndarray) -> float:
        return float(p.mean())

    assert paired_difference(mean_prob, y, a, a + 0.1, n_boot=10)["diff"] == pytest.approx(0.1)
    yc = rng.integers(0, 3, 60)
    pc = rng.dirichlet(np.ones(3), 60)
    d = paired_difference("accuracy", yc, pc, np.eye(3)[yc] * 0.9 + 0.03, n_boot=20)
    assert d["b"] == 1.0 and d["diff"] > 0
    with pytest.raises(MetricsError, match="not one of"):
        paired_difference("miou", y, a, b)


def test_paired_headline_matches_single_metric_calls() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 120)
    a = np.clip(0.3 * y + 0.7 * rng.random(120), 0, 1)
    b = np.clip(0.5 * y + 0.5 * rng.random(120), 0, 1)
    rows = paired_headline(y, a, b, n_boot=25, seed=4, threshold_a=0.5, threshold_b=0.6)
    assert [r["metric"] for r in rows][:3] == ["auroc", "average_precision", "sensitivity"]
    for name in ("auroc", "sensitivity", "brier"):
        one = paired_difference(name, y, a, b, n_boot=25, seed=4, threshold_a=0.5, threshold_b=0.6)
        assert next(r for r in rows if r["metric"] == name) == one  # same resamples, same numbers
