"""Seeded percentile bootstrap, resampling whole groups (patients, tiles) when they are given.

Why groups: two radiographs of one patient, or two tiles cut from one scene, are not independent. Resampling
single images then under-states the spread; resampling whole patients (a "cluster bootstrap") does not.

Every statistic is a function ``stat(idx) -> np.ndarray [M]`` of an index array into the test set, so several
metrics share one set of resamples. A replicate where a metric is undefined (e.g. AUROC when the resample
holds one class only) returns NaN for that metric: it is skipped for that metric and counted in ``n_skipped``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from resnet_apps.errors import MetricsError

StatFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile intervals for M statistics.

    Attributes:
        value: point estimates on the full set, [M].
        ci_low / ci_high: percentile bounds, [M]; NaN where fewer than 2 replicates were valid.
        n_valid: replicates in which the statistic was defined, [M].
        n_skipped: degenerate replicates (statistic undefined), [M].
        unit: "group" when whole groups were resampled, else "sample".
        n_units: number of groups (or samples) resampled.
    """

    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_valid: np.ndarray
    n_skipped: np.ndarray
    unit: str
    n_units: int

    def part(self, start: int, stop: int | None = None) -> BootstrapResult:
        """The same result restricted to statistics [start, stop)."""
        cut = slice(start, stop)
        return replace(
            self,
            value=self.value[cut],
            ci_low=self.ci_low[cut],
            ci_high=self.ci_high[cut],
            n_valid=self.n_valid[cut],
            n_skipped=self.n_skipped[cut],
        )


class Resampler:
    """Draws bootstrap index sets over samples, or over whole groups when ``groups`` is given.

    Args:
        n: number of samples.
        groups: [N] group label per sample (hashed patient / tile id) or None.
        seed: seed of the numpy Generator; the same seed gives the same resamples.
    """

    def __init__(self, n: int, groups: Sequence | np.ndarray | None = None, seed: int = 0) -> None:
        if n < 1:
            raise MetricsError("bootstrap: the test set is empty; nothing to resample")
        self.n = n
        self.rng = np.random.default_rng(seed)
        if groups is None:
            self.members: list[np.ndarray] | None = None
            self.unit, self.n_units = "sample", n
            return
        groups_arr = np.asarray(groups)
        if groups_arr.shape != (n,):
            raise MetricsError(
                f"bootstrap: groups has shape {groups_arr.shape}, expected ({n},): one group per sample"
            )
        _, inverse = np.unique(groups_arr.astype(str), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse)
        self.members = np.split(order, np.cumsum(counts)[:-1])
        self.unit, self.n_units = "group", len(self.members)

    def draw(self) -> np.ndarray:
        """One resample: [N'] indices (N' = N for samples; varies with group sizes for groups)."""
        if self.members is None:
            return self.rng.integers(0, self.n, size=self.n)
        chosen = self.rng.integers(0, self.n_units, size=self.n_units)
        return np.concatenate([self.members[g] for g in chosen])

    def draw_counts(self) -> np.ndarray:
        """One resample as multiplicities per unit: [n_units] ints summing to n_units (for summed stats)."""
        chosen = self.rng.integers(0, self.n_units, size=self.n_units)
        return np.bincount(chosen, minlength=self.n_units)


def percentile_interval(replicates: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile bounds of [B, M] replicates ignoring NaN rows per metric; returns (low, high, n_valid)."""
    if not 0.0 < ci < 1.0:
        raise MetricsError(f"bootstrap: ci={ci} must lie strictly between 0 and 1 (e.g. 0.95)")
    valid = np.isfinite(replicates)
    n_valid = valid.sum(axis=0)
    alpha = (1.0 - ci) / 2.0
    low = np.full(replicates.shape[1], np.nan)
    high = np.full(replicates.shape[1], np.nan)
    for m in range(replicates.shape[1]):
        if n_valid[m] >= 2:  # one replicate is not an interval
            column = replicates[valid[:, m], m]
            low[m], high[m] = np.quantile(column, [alpha, 1.0 - alpha])
    return low, high, n_valid


def bootstrap(
    stat: StatFn,
    n: int,
    *,
    groups: Sequence | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> BootstrapResult:
    """Percentile bootstrap of ``stat`` over ``n`` samples (or their groups).

    Args:
        stat: maps an index array [N'] to M statistics [M]; NaN marks "undefined on this resample".
        n: number of samples in the test set.
        groups: [N] group per sample, or None to resample samples.
        n_boot: number of replicates; 0 gives point estimates with NaN intervals.
        seed: numpy Generator seed.
        ci: coverage of the interval (0.95 -> 2.5th and 97.5th percentiles).

    Returns:
        BootstrapResult with [M] arrays.
    """
    resampler = Resampler(n, groups, seed)
    value = np.atleast_1d(np.asarray(stat(np.arange(n)), dtype=float))
    reps = np.full((max(n_boot, 0), value.size), np.nan)
    for b in range(max(n_boot, 0)):
        reps[b] = stat(resampler.draw())
    return summarize(value, reps, ci, resampler)


def summarize(value: np.ndarray, reps: np.ndarray, ci: float, resampler: Resampler) -> BootstrapResult:
    """Point estimates [M] and replicates [B, M] -> BootstrapResult (B = 0 gives NaN intervals)."""
    if len(reps):
        low, high, n_valid = percentile_interval(reps, ci)
    else:  # point estimates only
        low, high, n_valid = (
            np.full(value.size, np.nan),
            np.full(value.size, np.nan),
            np.zeros(value.size, int),
        )
    return BootstrapResult(value, low, high, n_valid, len(reps) - n_valid, resampler.unit, resampler.n_units)
