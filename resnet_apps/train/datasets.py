"""Training data from a recipe: records -> split -> ``data.RecordDataset`` (used by train.py and evaluate.py).

Records come from ``resnet_apps.data.records.build_records`` (section 5a), splits from
``data.splits.make_split``, pixels from ``data.loading.load_arrays`` (through ``RecordDataset`` and its
``ArrayCache``) and augmentation from ``data.transforms.build_transforms`` (albumentations). Each
sample's augmentation is seeded from (train.seed, epoch, sample index) (``RecordDataset(seed=...)``), so it
does not depend on worker count, batch order or whether the run was resumed: the property the
deterministic resume test relies on.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data.dataset import RecordDataset
from resnet_apps.data.loading import read_band_names
from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.data.records import Record, build_records
from resnet_apps.errors import DatasetError, ResnetAppsError
from resnet_apps.io.bands import constant_bands
from resnet_apps.recipe import Recipe


@dataclass
class SplitData:
    """Records divided into splits, plus what the report shows about the split."""

    train: list[Record]
    val: list[Record]
    test: list[Record]
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def split_records(recipe: Recipe) -> SplitData:
    """Index the recipe's data and divide it into train / val / test with ``data.splits.make_split``.

    Which ``make_split`` method runs (ARCHITECTURE.md sections 4 and 5):
    - every record carries a split (split column, train/test folders): ``column``: the source's splits are
      kept, val is drawn from train by group when missing; a group crossing splits raises ``LeakageError``.
      With ``data.split.on_leak: drop_train`` and ``method: group`` it is ``group`` instead: the source's
      test split is kept whole and the train images of its groups are dropped (Kermany).
    - ``stratified`` / ``random`` on records that all have groups becomes ``group`` (whole groups, stratified
      by each group's label), so a patient is never split across train and test.
    """
    from resnet_apps.data.splits import make_split

    cfg = recipe.data.split
    records, classes = build_records(recipe.data.source, recipe.data.root, recipe.data.classes)
    method = cfg.method
    has_groups = bool(records) and all(r.group is not None for r in records)
    if method in ("stratified", "random", "group") and records and all(r.split is not None for r in records):
        drop = method == "group" and cfg.on_leak == "drop_train" and cfg.keep_test
        method = "group" if drop and has_groups else "column"
    elif method in ("stratified", "random") and has_groups:
        method = "group"
    done = make_split(
        records,
        method,
        cfg.val,
        cfg.test,
        cfg.seed,
        root=recipe.data.root,
        keep_test=cfg.keep_test,
    )
    out = {name: [records[i] for i in done["indices"][name]] for name in ("train", "val", "test")}
    for name in ("train", "val"):
        if not out[name]:
            raise DatasetError(
                f"{recipe.data.root}: the {name} split is empty; add data or change data.split"
            )
    info = split_info(out, classes, recipe)
    if done["dropped"]:
        info["dropped_for_leakage"] = {
            "train_images": len(done["dropped"]),
            "reason": "their group is in the test split",
        }
    return SplitData(out["train"], out["val"], out["test"], classes, info)


def split_info(splits: dict[str, list[Record]], classes: list[str], recipe: Recipe) -> dict[str, Any]:
    """counts per class, sizes and groups per split, and the leakage check (``data.splits.check_leakage``)."""
    from resnet_apps.data.splits import check_leakage

    counts: dict[str, dict[str, int]] = {}
    groups: dict[str, int] = {}
    for name, records in splits.items():
        c: Counter[str] = Counter()
        for r in records:
            if r.label is not None:
                c[classes[r.label]] += 1
            elif r.labels is not None:
                c.update(classes[k] for k, v in enumerate(r.labels) if v == 1)
            else:
                c["images"] += 1
        counts[name] = dict(sorted(c.items()))
        groups[name] = len({r.group for r in records if r.group is not None})
    check_leakage({name: [r.group for r in records] for name, records in splits.items()})
    return {
        "method": recipe.data.split.method,
        "seed": recipe.data.split.seed,
        "counts": counts,
        "sizes": {k: len(v) for k, v in splits.items()},
        "groups": groups if any(groups.values()) else {},
        "leakage": {"ok": True, "offending_groups": []},
    }


def drop_unreadable(split: SplitData, recipe: Recipe, log: Any = print) -> list[dict[str, str]]:
    """``data.on_error: skip``: read every record once (``RecordDataset.validate``), drop the unreadable ones.

    Returns ``{path, reason}`` rows for skipped.csv and the report; the run carries on with the rest.
    Reading also fills the array cache, so the first epoch does not decode again.
    """
    root = str(Path(recipe.data.root)) + "/"  # reasons name files relative to the data root
    skipped: list[dict[str, str]] = []
    for name in ("train", "val", "test"):
        records = getattr(split, name)
        if not records:
            continue
        probe = recipe_dataset(records, recipe, None, split.classes, train=False, on_error="skip")
        try:
            probe.validate()
            kept = probe.records
        except DatasetError:  # every file of this split is unreadable
            kept = []
        skipped += [{"path": s["path"], "reason": s["reason"].replace(root, "")} for s in probe.skipped]
        setattr(split, name, kept)
    split.info = split_info(
        {"train": split.train, "val": split.val, "test": split.test}, split.classes, recipe
    )
    if skipped:
        log(f"skipped {len(skipped)} unreadable file(s) (data.on_error: skip); listed in skipped.csv")
    return skipped


def recipe_preprocessing(recipe: Recipe, norm: tuple[list[float], list[float]] | None) -> Preprocessing:
    """The recipe's ``data`` block as ``data.Preprocessing``.

    Classification resizes every image to ``data.image_size``; segmentation resizes whole images only when
    ``data.resize`` is set (``image_size`` is then its training crop).
    """
    d = recipe.data
    return Preprocessing(
        bands=tuple(d.bands) if d.bands is not None else None,
        scale=d.scale,
        mean=tuple(norm[0]) if norm is not None else None,
        std=tuple(norm[1]) if norm is not None else None,
        image_size=d.resize if recipe.task == "segmentation" else d.image_size,
        dicom_window=d.dicom_window,
        grayscale=d.grayscale,
        dicom_frame=d.dicom_frame,
        max_pixels=d.max_pixels,
    )


def recipe_dataset(
    records: list[Record],
    recipe: Recipe,
    norm: tuple[list[float], list[float]] | None,
    classes: list[str],
    train: bool,
    on_error: str = "fail",
) -> RecordDataset:
    """A ``RecordDataset`` of one split: samples ``{image [C, H, W], label | mask [H, W], valid, index, meta}``.

    Args:
        records: the split's records (paths relative to ``data.root``).
        recipe: bands, scale, size, augmentation, cache, task.
        norm: (mean [C], std [C]) applied after augmentation; None: not normalised.
        classes: the task's classes (segmentation masks are decoded to 0..K-1 / IGNORE_INDEX).
        train: ``data.augment`` (albumentations, seeded per sample from ``train.seed``, epoch and index) and,
            for segmentation, random ``data.image_size`` crops; else whole, unaugmented images.
        on_error: ``fail``; ``skip`` only for the upfront :func:`drop_unreadable` pass.
    """
    from resnet_apps.data.transforms import build_transforms

    crop = recipe.data.image_size if recipe.task == "segmentation" else None
    transform = build_transforms(recipe.data.augment, train=train, crop_size=crop)
    return RecordDataset(
        records,
        recipe.data.root,
        recipe_preprocessing(recipe, norm),
        classes=classes,
        source=recipe.data.source,
        transform=transform,
        on_error=on_error,
        cache=recipe.data.cache,
        seed=recipe.train.seed if train else None,
    )


def normalisation(
    recipe: Recipe, records: list[Record], classes: list[str]
) -> tuple[list[str], list[float], list[float], str]:
    """Band names and per-band (mean, std) for ``data.normalize``; also says where they came from.

    ``card``: the data card's statistics by band name (``data.transforms.normalization``); bands the card
    lacks (or a recipe without a card) fall back to statistics of up to 64 training images, and the
    source says so. ``imagenet`` on one grey band uses the mean of ImageNet's three.
    """
    from resnet_apps.data.transforms import normalization

    probe = recipe_dataset(records[:64], recipe, None, classes, train=False)
    first = probe.arrays(0)["image"]
    channels = first.shape[0]
    names = _band_names(recipe, records[0], channels)
    _warn_constant(probe, names, channels)
    if recipe.data.normalize == "none":
        return names, [0.0] * channels, [1.0] * channels, "none"
    if recipe.data.normalize == "imagenet":
        if channels not in (1, 3):
            raise DatasetError(
                f"data.normalize: imagenet needs 1 or 3 bands, the data has {channels}; use card"
            )
        if channels == 1:  # a grey film: the mean of ImageNet's R, G, B statistics
            return names, [0.449], [0.226], "imagenet"
        mean, std = normalization("imagenet", names)
        return names, list(mean or ()), list(std or ()), "imagenet"
    stats: dict[str, Any] = {}
    if recipe.data.card:
        from resnet_apps.cards import load_card

        stats = load_card(recipe.data.card).band_stats
    if all(n in stats for n in names):
        mean, std = normalization("card", names, stats)
        return names, list(mean or ()), list(std or ()), f"data card {recipe.data.card}"
    sample = [np.asarray(probe.arrays(i)["image"]) for i in range(len(probe))]
    flat = np.concatenate([s.reshape(channels, -1) for s in sample], axis=1)
    std_est = [float(max(s, 1e-6)) for s in np.nanstd(flat, axis=1)]
    return names, [float(m) for m in np.nanmean(flat, axis=1)], std_est, f"{len(sample)} training images"


def _band_names(recipe: Recipe, record: Record, channels: int) -> list[str]:
    """The reader's names of the bands read (``band1``..., ``B04``, ``red``): what predict selects by."""
    try:
        names = read_band_names(record, Path(recipe.data.root), recipe_preprocessing(recipe, None))
    except ResnetAppsError:
        names = []
    if len(names) == channels:
        return names
    if recipe.data.grayscale or channels == 1:
        return ["gray"]
    return ["red", "green", "blue"] if channels == 3 else [f"band{i + 1}" for i in range(channels)]


def _warn_constant(probe: RecordDataset, names: list[str], channels: int) -> None:
    """Warn (once, naming the bands) when a selected band holds one value over up to 8 images."""
    seen = [probe.arrays(i) for i in range(min(len(probe), 8))]
    image = np.concatenate([np.asarray(a["image"]).reshape(channels, 1, -1) for a in seen], axis=2)
    valid = np.concatenate([np.asarray(a["valid"]).reshape(1, -1) for a in seen], axis=1)
    flat = constant_bands(image, names, valid)
    if flat:
        warnings.warn(
            f"data.bands: band(s) {flat} hold a single value in the first {len(seen)} training images: "
            "such a band carries no information (an alpha channel? a band number off by one? numbers are "
            "1-based like GDAL: band1 is 1); check data.bands against `resnet-apps inspect FILE`",
            UserWarning,
            stacklevel=2,
        )


def class_counts(records: list[Record], num_classes: int) -> np.ndarray:
    """[K] label counts (multi-label: positives per label) of a split."""
    counts = np.zeros(num_classes)
    for r in records:
        if r.label is not None:
            counts[r.label] += 1
        elif r.labels is not None:
            counts += np.nan_to_num(np.asarray(r.labels, dtype=float))
    return counts


def balanced_weights(counts: np.ndarray) -> list[float]:
    """sklearn's 'balanced' rule: n / (K * count_k); classes absent from train get weight 1."""
    total, k = counts.sum(), len(counts)
    return [float(total / (k * c)) if c > 0 else 1.0 for c in counts]


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch; segmentation evaluation batches of different sizes are padded to the largest."""
    out: dict[str, Any] = {"index": torch.tensor([b["index"] for b in batch])}
    h = max(b["image"].shape[-2] for b in batch)
    w = max(b["image"].shape[-1] for b in batch)
    out["size"] = torch.tensor([list(b["image"].shape[-2:]) for b in batch])
    out["image"] = torch.stack(
        [F.pad(b["image"], (0, w - b["image"].shape[-1], 0, h - b["image"].shape[-2])) for b in batch]
    )
    out["valid"] = torch.stack(
        [F.pad(b["valid"], (0, w - b["valid"].shape[-1], 0, h - b["valid"].shape[-2])) for b in batch]
    )
    if "mask" in batch[0]:
        out["mask"] = torch.stack(
            [
                F.pad(b["mask"], (0, w - b["mask"].shape[-1], 0, h - b["mask"].shape[-2]), value=IGNORE_INDEX)
                for b in batch
            ]
        )
    if "label" in batch[0]:
        out["label"] = torch.stack([b["label"] for b in batch])
    return out


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    """Optimiser steps in one epoch (last partial batch kept)."""
    return max(1, math.ceil(math.ceil(n / world) / batch_size))
