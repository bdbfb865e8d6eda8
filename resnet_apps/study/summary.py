"""Summaries of a degradation study over seeds, the ordering found, and the paper's anchors (no torch).

The intervals are Student-t 95 % intervals of the mean over seeds (with 3 seeds: mean +/- 4.30 s/sqrt(3)),
for single networks and for the per-seed difference deep minus shallow (same seed: same initialisation
stream and batch order). A difference counts as "resolved" only when its interval excludes zero.
"""

from __future__ import annotations

import math
from typing import Any

# He et al. 2016, Table 6 (CIFAR-10 test error, %); plain nets appear there only as curves (Fig. 6).
PAPER_TEST_ERROR = {"resnet-20": 8.75, "resnet-32": 7.51, "resnet-44": 7.17, "resnet-56": 6.97}
# A public 5-seed reproduction of the same protocol on CIFAR-10: test error %, mean and std.
REPRODUCTION_TEST_ERROR = {
    "plain-20": (9.78, 0.13),
    "plain-56": (12.95, 0.22),
    "resnet-20": (8.51, 0.22),
    "resnet-56": (7.40, 0.27),
}
METRICS = ("train_error_clean", "train_error", "test_error", "train_loss", "test_loss")


def mean_interval(values: list[float], level: float = 0.95) -> dict[str, Any]:
    """n, mean, sample std, and the t interval of the mean (None with fewer than 2 values)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = sum(values) / n
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    from scipy.stats import t

    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def _final(seed_doc: dict[str, Any], key: str, epochs: int) -> float | None:
    history = seed_doc.get("history", [])
    if len(history) < epochs or seed_doc.get("diverged"):
        return None  # unfinished runs do not enter the final table
    value = history[-1].get(key)
    return None if value is None else float(value)


def _finals(net: dict[str, Any], key: str, epochs: int) -> dict[str, float]:
    out = {}
    for seed, doc in net["seeds"].items():
        value = _final(doc, key, epochs)
        if value is not None:
            out[seed] = value
    return out


def _verdict(stats: dict[str, Any], expect_positive: bool) -> str:
    low, high = stats.get("ci_low"), stats.get("ci_high")
    if stats.get("mean") is None:
        return "not measured"
    if low is None or high is None:
        return "one seed only: no interval"
    if low > 0:
        return "deeper is higher" + (" (as the paper)" if expect_positive else " (unlike the paper)")
    if high < 0:
        return "deeper is lower" + ("" if expect_positive else " (as the paper)")
    return "no resolved difference (interval contains 0)"


def ordering(networks: dict[str, Any], epochs: int, key: str = "train_error_clean") -> list[dict[str, Any]]:
    """Deepest minus shallowest depth, per family, on the final ``key``: per-seed differences and their interval."""
    rows = []
    for residual, family in ((False, "plain"), (True, "resnet")):
        depths = sorted(n["depth"] for n in networks.values() if n["residual"] == residual)
        if len(depths) < 2:
            continue
        shallow, deep = f"{family}-{depths[0]}", f"{family}-{depths[-1]}"
        a, b = _finals(networks[shallow], key, epochs), _finals(networks[deep], key, epochs)
        seeds = sorted(set(a) & set(b), key=int)
        diffs = [b[s] - a[s] for s in seeds]
        stats = mean_interval(diffs)
        rows.append(
            {
                "family": family,
                "metric": key,
                "shallow": shallow,
                "deep": deep,
                "seeds": seeds,
                "differences": diffs,
                **stats,
                # the paper: plain deep > plain shallow (degradation); residual deep <= residual shallow
                "paper_expects": "deeper is higher" if not residual else "deeper is at or below",
                "found": _verdict(stats, expect_positive=not residual),
            }
        )
    return rows


def shortcut_effect(
    networks: dict[str, Any], epochs: int, key: str = "train_error_clean"
) -> list[dict[str, Any]]:
    """Residual minus plain at each depth on the final ``key``: per-seed differences and their interval."""
    rows = []
    for depth in sorted({n["depth"] for n in networks.values()}):
        plain, residual = f"plain-{depth}", f"resnet-{depth}"
        if plain not in networks or residual not in networks:
            continue
        a, b = _finals(networks[plain], key, epochs), _finals(networks[residual], key, epochs)
        seeds = sorted(set(a) & set(b), key=int)
        diffs = [b[s] - a[s] for s in seeds]
        stats = mean_interval(diffs)
        rows.append(
            {
                "depth": depth,
                "metric": key,
                "plain": plain,
                "residual": residual,
                "seeds": seeds,
                "differences": diffs,
                **stats,
                "found": _verdict(stats, expect_positive=False).replace("deeper", "residual"),
            }
        )
    return rows


def summarize(networks: dict[str, Any], epochs: int) -> dict[str, Any]:
    """Per network: final metrics over seeds (mean, std, t interval); the ordering; gradient norms by depth."""
    table = {}
    for name, net in sorted(networks.items(), key=lambda kv: (kv[1]["residual"], kv[1]["depth"])):
        row: dict[str, Any] = {"depth": net["depth"], "residual": net["residual"], "params": net["params"]}
        for key in METRICS:
            row[key] = mean_interval(list(_finals(net, key, epochs).values()))
        row["paper_test_error_percent"] = PAPER_TEST_ERROR.get(name)
        repro = REPRODUCTION_TEST_ERROR.get(name)
        row["reproduction_test_error_percent"] = (
            None if repro is None else {"mean": repro[0], "std": repro[1]}
        )
        table[name] = row
    return {
        "final": table,
        "ordering": ordering(networks, epochs, "train_error_clean")
        + ordering(networks, epochs, "train_error"),
        "ordering_test": ordering(networks, epochs, "test_error"),
        "shortcut_effect": shortcut_effect(networks, epochs, "train_error_clean")
        + shortcut_effect(networks, epochs, "test_error"),
        "gradient_norm_by_depth": gradient_summary(networks),
        "interval": "Student-t 95 % interval of the mean over seeds",
    }


def gradient_summary(networks: dict[str, Any]) -> dict[str, Any]:
    """Per network, mean over seeds: first-conv gradient norm at each kept point, and the per-layer profile."""
    out: dict[str, Any] = {}
    for name, net in networks.items():
        points: dict[str, list[list[float]]] = {}
        for doc in net["seeds"].values():
            for entry in doc.get("grad_profile", []):
                points.setdefault(entry["point"], []).append(entry["by_layer"])
        summary = {}
        for point, profiles in points.items():
            layers = [sum(col) / len(col) for col in zip(*profiles, strict=True)]
            summary[point] = {
                "first_conv": layers[0],
                "last_conv": layers[-1],
                "by_layer": layers,
                "seeds": len(profiles),
            }
        out[name] = {"depth": net["depth"], "residual": net["residual"], "points": summary}
    return out
