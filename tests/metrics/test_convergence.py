"""The convergence rule on synthetic histories (metrics.convergence)."""

from __future__ import annotations

import pytest

from resnet_apps.metrics.convergence import convergence, window


def _history(values: list[float | None]) -> list[dict]:
    return [{"epoch": i + 1, "val_metric": v, "metric": "accuracy"} for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("epochs", "k"),
    [(2, 3), (10, 3), (30, 3), (31, 4), (50, 5), (100, 10)],  # K = max(3, ceil(10 %))
)
def test_window(epochs: int, k: int) -> None:
    assert window(epochs) == k


def test_still_rising_over_the_last_epochs_is_not_converged() -> None:
    # 10 epochs, K = 3: best before the window 0.70 (epoch 7), best in it 0.80 (epoch 10): rise 0.10
    c = convergence(_history([0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.72, 0.76, 0.8]))
    assert c is not None
    assert c["converged"] is False and c["best_epoch"] == 10 and c["window"] == 3 and c["epochs_run"] == 10
    assert c["rise"] == pytest.approx(0.10)
    assert c["sentence"].startswith("not converged: the validation accuracy rose by 0.1000 over the last 3")


def test_plateau_and_noise_below_the_tolerance_are_converged() -> None:
    # best 0.90 at epoch 5; the last 3 epochs reach 0.903: a rise of 0.003 <= 0.005 is noise
    c = convergence(_history([0.5, 0.7, 0.85, 0.88, 0.90, 0.89, 0.89, 0.903, 0.9, 0.899]))
    assert c is not None and c["converged"] is True and c["best_epoch"] == 8
    assert c["rise"] == pytest.approx(0.003)
    # a fall after the best epoch: negative rise, converged
    d = convergence(_history([0.5, 0.9, 0.8, 0.7, 0.7, 0.6]))
    assert d is not None and d["converged"] is True and d["rise"] == pytest.approx(-0.2)


def test_too_few_epochs_and_undefined_metrics() -> None:
    c = convergence(_history([0.5, 0.6]))  # 2 epochs <= K = 3: cannot tell, flagged
    assert c is not None and c["converged"] is False and c["rise"] == pytest.approx(0.1)
    assert "only 2 epoch(s)" in c["sentence"]
    u = convergence(_history([None, None, None, None]))
    assert u is not None and u["converged"] is None and u["rise"] is None
    assert convergence([]) is None
