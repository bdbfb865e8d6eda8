"""Was the run still improving when it stopped? A rule on the per-epoch validation metric (history.json).

The rule (higher is better, as for every ``eval.metric``):

- window ``K = max(3, ceil(10 % of the epochs run))``;
- ``rise`` = best validation metric within the last K epochs minus the best before them;
- the run is **not converged** when ``rise > TOLERANCE`` (0.005 absolute, about one image in 200), i.e. the
  best epoch lies in the last K epochs and it beat everything before by more than noise; or when it ran
  K epochs or fewer (too short to tell: ``rise`` is then last minus first).

A run stopped early by ``train.early_stop_patience`` has had ``patience`` epochs without improvement, so
with ``patience >= K`` it is converged by this rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

TOLERANCE = 0.005


def window(epochs_run: int) -> int:
    """K = max(3, ceil(0.1 * epochs_run)): 10 epochs -> 3, 50 -> 5, 100 -> 10."""
    return max(3, math.ceil(0.1 * epochs_run))


def convergence(history: Sequence[dict[str, Any]], tolerance: float = TOLERANCE) -> dict[str, Any] | None:
    """The ``convergence`` block of metrics.json from the training history; None without a history.

    Args:
        history: per-epoch rows ``{"epoch", "val_metric", "metric", ...}`` (``val_metric`` None when undefined).
        tolerance: the rise (absolute) that still counts as noise.

    Returns:
        ``{"converged", "best_epoch", "epochs_run", "rise", "window", "metric", "tolerance", "rule",
        "sentence"}``; ``rise`` and ``converged`` are None when no epoch has a defined metric.
    """
    if not history:
        return None
    epochs_run = len(history)
    k = window(epochs_run)
    metric = str(history[-1].get("metric") or "validation metric")
    values = [(h.get("epoch"), h.get("val_metric")) for h in history]
    defined = [(e, float(v)) for e, v in values if v is not None and v == v]
    rule = (
        f"not converged when the best validation {metric} of the last K = max(3, 10 % of epochs) epochs beats "
        f"the best before them by more than {tolerance}, or when K epochs or fewer were run"
    )
    base = {
        "epochs_run": epochs_run,
        "window": k,
        "metric": metric,
        "tolerance": tolerance,
        "rule": rule,
    }
    if not defined:
        return {**base, "converged": None, "best_epoch": None, "rise": None,
                "sentence": f"convergence unknown: the validation {metric} was undefined in every epoch"}  # fmt: skip
    best_epoch = max(defined, key=lambda ev: ev[1])[0]
    tail_vals = [float(v) for _, v in values[-k:] if v is not None and v == v]
    head_vals = [float(v) for _, v in values[:-k] if v is not None and v == v]
    if head_vals and tail_vals:
        rise = max(tail_vals) - max(head_vals)
        converged = rise <= tolerance
        sentence = (
            f"not converged: the validation {metric} rose by {rise:.4f} over the last {k} of {epochs_run} epochs "
            f"(best epoch {best_epoch}); train longer"
            if not converged
            else f"converged: the last {k} of {epochs_run} epochs did not raise the validation {metric} by more "
            f"than {tolerance} (best epoch {best_epoch})"
        )
    else:
        rise = defined[-1][1] - defined[0][1]
        converged = False
        sentence = (
            f"not converged: only {epochs_run} epoch(s) run, too few to judge (K = {k}); the validation "
            f"{metric} moved by {rise:+.4f} from first to last epoch; train longer"
        )
    return {**base, "converged": converged, "best_epoch": best_epoch, "rise": rise, "sentence": sentence}
