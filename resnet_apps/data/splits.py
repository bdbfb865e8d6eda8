"""Train/val/test splits that keep a patient (or a spatial block) in one split, and a leakage check.

A split is a plain dict, saved with the run and re-applied from it::

    {"method": "group", "seed": 0, "val": 0.15, "test": 0.15,
     "indices": {"train": [...], "val": [...], "test": [...]},
     "paths": {"train": [...], ...},                # relative paths: the split survives a re-ordered index
     "groups": {"train": 310, ...}, "leakage": {"ok": true, "offending_groups": []},
     "dropped": [{"path": ..., "reason": ...}]}   # group + keep_test only: train images of test patients

Methods: ``stratified`` (no groups; scikit-learn ``train_test_split``), ``random`` (the same, without
stratifying), ``group`` (whole groups held out:
scikit-learn ``train_test_split`` over the groups, stratified by each group's most frequent label, or
``GroupShuffleSplit`` when there is nothing to stratify; fractions count groups, not images),
``column`` (the index CSV's split column; a missing val split is drawn from train by group) and
``spatial`` (groups are blocks of ``block_size_m`` metres around each chip's centre).
Fractions are approximate with groups: patients with many images move the image shares.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet_apps.data.records import Record, hash_id
from resnet_apps.errors import DatasetError, LeakageError

SPLITS = ("train", "val", "test")
METHODS = ("stratified", "random", "group", "column", "spatial")


def _two_way(
    idx: np.ndarray,
    labels: np.ndarray | None,
    groups: np.ndarray | None,
    fraction: float,
    seed: int,
    stratify: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, held) with about ``fraction`` of it held out, whole groups kept together."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if fraction <= 0 or len(idx) == 0:
        return idx, idx[:0]
    if groups is None:
        strat = (
            labels[idx]
            if (stratify and labels is not None and _can_stratify(labels[idx], fraction))
            else None
        )
        n_held = max(1, int(round(fraction * len(idx))))  # round, not sklearn's ceil: 0.15 of 200 is 30
        rest, held = train_test_split(idx, test_size=n_held, random_state=seed, shuffle=True, stratify=strat)
        return np.sort(rest), np.sort(held)
    names, inverse = np.unique(groups[idx], return_inverse=True)
    if len(names) < 2:
        raise DatasetError(
            f"split: only {len(names)} group(s) among {len(idx)} samples; cannot hold any out by group"
        )
    n_held = min(len(names) - 1, max(1, int(round(fraction * len(names)))))
    group_labels = None
    if stratify and labels is not None:
        # one label per group (its most frequent); StratifiedGroupKFold does this per sample but is
        # quadratic in the number of groups (minutes for NIH's 30,805 patients), this is linear
        runs: dict[int, Counter[str]] = defaultdict(Counter)
        for g, lab in zip(inverse.tolist(), labels[idx].tolist(), strict=True):
            runs[g][lab] += 1
        group_labels = np.array([runs[g].most_common(1)[0][0] for g in range(len(names))])
        if not _can_stratify(group_labels, n_held / len(names)):
            group_labels = None
    if group_labels is None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=n_held, random_state=seed)
        rest_pos, held_pos = next(splitter.split(idx, groups=inverse))
        return np.sort(idx[rest_pos]), np.sort(idx[held_pos])
    _, held_groups = train_test_split(
        np.arange(len(names)), test_size=n_held, random_state=seed, shuffle=True, stratify=group_labels
    )
    held = np.isin(inverse, held_groups)
    return np.sort(idx[~held]), np.sort(idx[held])


def _can_stratify(labels: np.ndarray, fraction: float) -> bool:
    _, counts = np.unique(labels, return_counts=True)
    return bool(counts.min() >= 2 and len(counts) <= fraction * len(labels))


def group_split(
    labels: Sequence[Any] | None,
    groups: Sequence[str] | None,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    stratify: bool = True,
) -> dict[str, list[int]]:
    """Indices per split; every group in exactly one split; label shares kept where possible.

    Args:
        labels: one label per sample (int or str; multi-label rows: pass None or a summary label).
        groups: one group per sample (patient / tile / block); None -> sample-level (stratified) split.
        val, test: fractions of all samples (approximate with groups).
        seed: makes the split reproducible.
        stratify: keep label shares (stratified over groups) instead of plain GroupShuffleSplit.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` sorted indices.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DatasetError(f"data.split: val={val} and test={test} must be >= 0 and sum to less than 1")
    n = len(labels) if labels is not None else len(groups or [])
    lab = None if labels is None else np.asarray([str(v) for v in labels])
    grp = None if groups is None else np.asarray([str(g) for g in groups])
    if grp is not None and len(grp) != n:
        raise DatasetError(f"split: {len(grp)} groups for {n} samples")
    rest, held_test = _two_way(np.arange(n), lab, grp, test, seed, stratify)
    val_of_rest = val / (1.0 - test) if test < 1 else 0.0
    train, held_val = _two_way(rest, lab, grp, val_of_rest, seed + 1, stratify)
    return {"train": train.tolist(), "val": held_val.tolist(), "test": held_test.tolist()}


def find_leakage(split_groups: Mapping[str, Sequence[str | None]]) -> list[str]:
    """Groups present in more than one split (None groups are ignored), sorted."""
    seen: dict[str, set[str]] = defaultdict(set)
    for split, groups in split_groups.items():
        for group in groups:
            if group:
                seen[group].add(split)
    return sorted(g for g, splits in seen.items() if len(splits) > 1)


def check_leakage(
    split_groups: Mapping[str, Sequence[str | None]], examples: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`LeakageError` naming every group found in more than one split.

    Args:
        split_groups: split name -> group of each of its samples (hashed ids).
        examples: optional group -> one file of that group, to make the message actionable.
    """
    offending = find_leakage(split_groups)
    if offending:
        where = {g: sorted(s for s, groups in split_groups.items() if g in set(groups)) for g in offending}
        shown = "; ".join(
            f"{g} in {'+'.join(where[g])}" + (f" (e.g. {examples[g]})" if examples and g in examples else "")
            for g in offending[:10]
        )
        raise LeakageError(
            f"{len(offending)} group(s) appear in more than one split: {shown}"
            f"{' ...' if len(offending) > 10 else ''}. Fix: split by group (data.split.method: group) or "
            "correct the split column so each patient / tile / block sits in one split"
        )


def make_split(
    records: Sequence[Record],
    method: str = "stratified",
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    *,
    root: str | Path | None = None,
    block_size_m: float = 10_000.0,
    keep_test: bool = True,
) -> dict[str, Any]:
    """Split records and check that no group crosses splits.

    Args:
        records: all records (their ``label``, ``group`` and ``split`` fields are used).
        method: ``stratified`` | ``random`` | ``group`` | ``column`` | ``spatial``.
        val, test: fractions (``column``: val is drawn from the column's train part when it has no val).
        seed: random seed, saved in the result.
        root: dataset root, needed by ``spatial`` to open the GeoTIFFs.
        block_size_m: ``spatial`` block side in metres.
        keep_test: ``column``: keep the column's test split (False: draw test like val). ``group`` with a
            split column holding "test": that test split is kept, the other images of its groups are left
            out of train/val (listed in ``"dropped"``), and val is drawn by group from the rest.

    Returns:
        The split dict described in the module docstring.

    Raises:
        LeakageError: a group in more than one split (e.g. a split column that mixes a patient).
    """
    if method not in METHODS:
        raise DatasetError(f"data.split.method: unknown {method!r}; use one of {', '.join(METHODS)}")
    labels = [_label_key(r) for r in records]
    groups: list[str | None] = [r.group for r in records]
    if method == "spatial":
        if root is None:
            raise DatasetError("data.split.method spatial needs the dataset root to read chip coordinates")
        groups = list(spatial_groups([Path(root) / r.path for r in records], block_size_m))
    has_groups = all(g is not None for g in groups)
    if method in ("group", "spatial") and not has_groups:
        missing = next(r.path for r, g in zip(records, groups, strict=True) if g is None)
        raise DatasetError(
            f"data.split.method {method}: {missing} has no group; "
            "set data.source.group_column or group_pattern"
        )
    grp = [str(g) for g in groups] if (has_groups and method not in ("stratified", "random")) else None
    dropped: list[dict[str, str]] = []
    source_test = [i for i, r in enumerate(records) if r.split == "test"]
    if method == "column":
        parts = _column_split(records, labels, grp, val, test, seed, keep_test)
    elif method == "group" and keep_test and source_test and grp is not None:
        parts, dropped = _keep_source_test(records, labels, grp, source_test, val, seed)
    else:
        parts = group_split(labels, grp, val, test, seed, stratify=method != "random")
    split_groups = {s: [groups[i] for i in parts[s]] for s in SPLITS}
    examples = {g: records[i].path for s in SPLITS for i in parts[s] for g in [groups[i]] if g}
    check_leakage(split_groups, examples)
    return {
        "method": method,
        "seed": seed,
        "val": val,
        "test": test,
        **({"block_size_m": block_size_m} if method == "spatial" else {}),
        "indices": parts,
        "paths": {s: [records[i].path for i in parts[s]] for s in SPLITS},
        "groups": {s: len({g for g in split_groups[s] if g}) for s in SPLITS},
        "leakage": {"ok": True, "offending_groups": []},
        "dropped": dropped,
    }


def _keep_source_test(
    records: Sequence[Record],
    labels: list[str],
    groups: Sequence[str],
    test_idx: list[int],
    val: float,
    seed: int,
) -> tuple[dict[str, list[int]], list[dict[str, str]]]:
    """Keep the source's test split; drop other samples of its patients; draw val from the rest by group.

    The Kermany train/test folders share 50 ``person<id>`` prefixes in our copy: keeping the published test
    set comparable means the training side must lose those patients' images, not the test side.
    """
    test_groups = {groups[i] for i in test_idx}
    pool, dropped = [], []
    for i, record in enumerate(records):
        if record.split == "test":
            continue
        if groups[i] in test_groups:
            dropped.append({"path": record.path, "reason": "patient/group also in the source's test split"})
        else:
            pool.append(i)
    sub = group_split([labels[i] for i in pool], [str(groups[i]) for i in pool], val=val, test=0.0, seed=seed)
    parts = {
        "train": [pool[j] for j in sub["train"]],
        "val": [pool[j] for j in sub["val"]],
        "test": sorted(test_idx),
    }
    return parts, dropped


def _column_split(
    records: Sequence[Record],
    labels: list[str],
    groups: Sequence[str] | None,
    val: float,
    test: float,
    seed: int,
    keep_test: bool,
) -> dict[str, list[int]]:
    missing = [r.path for r in records if r.split is None]
    if missing:
        raise DatasetError(
            f"data.split.method column: {missing[0]} has no split value; set data.source.split_column"
        )
    parts = {s: [i for i, r in enumerate(records) if r.split == s] for s in SPLITS}
    if not parts["val"] and val > 0:
        # carve val (and test when not kept) out of the column's train part, by group where known
        train = parts["train"]
        sub = group_split(
            [labels[i] for i in train],
            None if groups is None else [groups[i] for i in train],
            val=val,
            test=0.0 if keep_test else test,
            seed=seed,
        )
        parts["val"] = sorted(train[j] for j in sub["val"])
        if not keep_test:
            parts["test"] = sorted(parts["test"] + [train[j] for j in sub["test"]])
        parts["train"] = sorted(train[j] for j in sub["train"])
    return parts


def _label_key(record: Record) -> str:
    if record.label is not None:
        return str(record.label)
    if record.labels is not None:
        # multi-label: stratify on "any finding" (NaN rows count as unknown)
        known = [v for v in record.labels if not math.isnan(v)]
        return "unknown" if not known else str(int(max(known)))
    return "0"


def spatial_groups(paths: Sequence[Path], block_size_m: float) -> list[str]:
    """Hashed block of each chip's centre: ``(crs, floor(x / block), floor(y / block))``.

    Chips without georeference raise, since spatial splitting would silently degrade to random.
    """
    import rasterio

    groups = []
    for path in paths:
        try:
            with rasterio.open(path) as src:
                crs, transform, width, height = src.crs, src.transform, src.width, src.height
        except rasterio.errors.RasterioIOError as error:
            raise DatasetError(f"{path}: cannot read its georeference ({error})") from error
        if crs is None:
            raise DatasetError(
                f"{path}: no CRS, so no spatial block; use data.split.method group (e.g. by scene) instead"
            )
        col, row = width / 2.0, height / 2.0
        x, y = (
            transform.c + transform.a * col + transform.b * row,
            transform.f + transform.d * col + transform.e * row,
        )
        block = f"{crs.to_string()}:{math.floor(x / block_size_m)}:{math.floor(y / block_size_m)}"
        groups.append(hash_id(block))
    return groups


def split_counts(
    split: Mapping[str, Any], records: Sequence[Record], classes: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Samples per class per split (for metrics.json ``split.counts``; segmentation: total only)."""
    counts: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        tally: dict[str, int] = defaultdict(int)
        for i in split["indices"][name]:
            label = records[i].label
            tally[classes[label] if label is not None and label < len(classes) else "all"] += 1
        counts[name] = dict(tally)
    return counts
