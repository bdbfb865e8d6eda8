"""Datasets for training from a recipe: records -> split -> tensors (used by train.py and evaluate.py).

Records come from ``resnet_apps.data.records.build_records`` (section 5a) and pixels from
``resnet_apps.io.read_image``. Augmentation randomness is drawn from a generator seeded by
(seed, epoch, sample index), so a sample's augmentation does not depend on worker count, batch
order or whether the run was resumed: the property the deterministic resume test relies on.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data.records import Record, build_records
from resnet_apps.errors import DatasetError, ResnetAppsError
from resnet_apps.recipe import Recipe

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    info = _split_info(out, classes, recipe)
    if done["dropped"]:
        info["dropped_for_leakage"] = {
            "train_images": len(done["dropped"]),
            "reason": "their group is in the test split",
        }
    return SplitData(out["train"], out["val"], out["test"], classes, info)


def _split_info(splits: dict[str, list[Record]], classes: list[str], recipe: Recipe) -> dict[str, Any]:
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
    """``data.on_error: skip``: read every record once, drop the unreadable ones, return ``{path, reason}``.

    The reasons go to skipped.csv and the report; the run carries on with the rest.
    """
    probe = RecipeDataset([], recipe, ([0.0], [1.0]), 2, train=False)
    skipped: list[dict[str, str]] = []
    for name in ("train", "val", "test"):
        kept = []
        for record in getattr(split, name):
            try:
                probe.read(record)
                if record.mask_path is not None and probe.decoder is not None:
                    probe.decoder.read(probe.root / record.mask_path)
                kept.append(record)
            except ResnetAppsError as error:
                skipped.append({"path": record.path, "reason": str(error).replace(str(probe.root) + "/", "")})
        setattr(split, name, kept)
    split.info = _split_info(
        {"train": split.train, "val": split.val, "test": split.test}, split.classes, recipe
    )
    if skipped:
        log(f"skipped {len(skipped)} unreadable file(s) (data.on_error: skip); listed in skipped.csv")
    return skipped


class RecipeDataset(Dataset):
    """Samples ``{image [C, H, W] float32, label | labels [K] | mask [H, W] int64, valid [H, W], index}``.

    Args:
        records: the split's records (paths relative to ``root``).
        recipe: the recipe (bands, scale, size, augmentation, task).
        norm: (mean [C], std [C]) applied after scaling.
        num_classes: classes of the task (segmentation masks are decoded to 0..K-1 / IGNORE_INDEX).
        train: training-time augmentation and random crops (else deterministic, full images for segmentation).
    """

    def __init__(
        self,
        records: list[Record],
        recipe: Recipe,
        norm: tuple[list[float], list[float]],
        num_classes: int,
        train: bool,
    ) -> None:
        self.records = records
        self.recipe = recipe
        self.root = Path(recipe.data.root)
        self.train = train
        self.epoch = 0
        self.mean = torch.tensor(norm[0], dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(norm[1], dtype=torch.float32)[:, None, None]
        self.num_classes = num_classes
        self.decoder = None
        if recipe.task == "segmentation":
            from resnet_apps.data.config import as_source_config
            from resnet_apps.data.masks import MaskDecoder

            self.decoder = MaskDecoder(as_source_config(recipe.data.source), self.root, num_classes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def read(self, record: Record) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw pixels [C, H, W] float32 (scaled) and the valid mask [H, W] (or None).

        With ``data.cache`` the decoded arrays are kept in ``resnet_apps.data.cache.ArrayCache`` (keyed by
        file content and these reading parameters), so the second epoch does not decode again.
        """
        if not self.recipe.data.cache:
            return self._decode(record)
        from resnet_apps.data.cache import ArrayCache

        if getattr(self, "_cache", None) is None:
            self._cache = ArrayCache()
        data = self.recipe.data
        files = [self.root / p for p in (record.band_paths or (record.path,))]
        params = {"reader": "train_data/1", "bands": data.bands, "scale": data.scale,
                  "grayscale": data.grayscale, "dicom_window": data.dicom_window}
        key = self._cache.key(files, params)
        hit = self._cache.load(key)
        if hit is not None:
            return np.array(hit["image"]), (np.array(hit["valid"]) if "valid" in hit else None)
        arr, valid = self._decode(record)
        self._cache.store(key, {"image": arr, **({"valid": valid} if valid is not None else {})})
        return arr, valid

    def _decode(self, record: Record) -> tuple[np.ndarray, np.ndarray | None]:
        from resnet_apps.io import read_image

        data = self.recipe.data
        bands = data.bands
        kind = "geotiff"
        if record.band_paths:
            layers = [read_image(self.root / p)[0][:1] for p in record.band_paths]
            arr, valid = np.concatenate(layers), None
        else:
            arr, meta = read_image(self.root / record.path, bands=bands, dicom_window=data.dicom_window)
            valid, kind = getattr(meta, "valid", None), getattr(meta, "kind", "image")
        arr = arr.astype(np.float32)
        if kind != "dicom" and data.scale != 1.0:  # DICOM arrives in [0, 1] already (display-ready)
            arr = arr * np.float32(data.scale)
        if data.grayscale and arr.shape[0] == 3:
            arr = arr.mean(axis=0, keepdims=True)
        return arr, valid

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        arr, valid = self.read(record)
        image = torch.from_numpy(np.ascontiguousarray(arr))
        valid_t = (
            torch.from_numpy(np.asarray(valid, dtype=bool))
            if valid is not None
            else torch.ones(image.shape[1:], dtype=torch.bool)
        )
        image = torch.nan_to_num((image - self.mean) / self.std) * valid_t
        sample: dict[str, Any] = {"index": index}
        rng = np.random.default_rng([self.recipe.train.seed, self.epoch, index])
        if self.decoder is not None:
            mask = torch.from_numpy(self.decoder.read(self.root / str(record.mask_path)).astype(np.int64))
            if mask.shape != image.shape[1:]:
                raise DatasetError(
                    f"{self.root / record.mask_path}: mask {tuple(mask.shape)} differs from its "
                    f"image {tuple(image.shape[1:])}; fix the pair"
                )
            mask[~valid_t] = IGNORE_INDEX
            if self.recipe.data.resize:
                size = (self.recipe.data.resize, self.recipe.data.resize)
                image = F.interpolate(
                    image[None], size=size, mode="bilinear", align_corners=False, antialias=True
                )[0]
                mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
                valid_t = mask != IGNORE_INDEX
            if self.train:
                image, mask, valid_t = _random_crop(image, mask, valid_t, self.recipe.data.image_size, rng)
                image, mask, valid_t = self._augment(image, rng, mask, valid_t)
            sample["mask"] = mask
        else:
            size = self.recipe.data.image_size
            if image.shape[1:] != (size, size):
                image = F.interpolate(
                    image[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True
                )[0]
                valid_t = torch.ones((size, size), dtype=torch.bool)
            if self.train:
                image, _, valid_t = self._augment(image, rng, None, valid_t)
            if record.labels is not None:
                sample["label"] = torch.tensor(record.labels, dtype=torch.float32)
            else:
                sample["label"] = torch.tensor(record.label, dtype=torch.int64)
        sample["image"] = image.contiguous()
        sample["valid"] = valid_t
        return sample

    def _augment(
        self, image: torch.Tensor, rng: np.random.Generator, mask: torch.Tensor | None, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        kind = self.recipe.data.augment
        tensors = [t for t in (image, mask, valid) if t is not None]
        if kind == "nadir":
            # a nadir chip has no "up": any of the 8 flips/rotations is an equally real image
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            tensors = [torch.rot90(t, k, dims=(-2, -1)) for t in tensors]
            if flip:
                tensors = [torch.flip(t, dims=(-1,)) for t in tensors]
        elif kind == "chest_xray":
            # never mirrored (situs, side markers, right/left lung labels); mild contrast/brightness only
            gain, shift = float(rng.uniform(0.9, 1.1)), float(rng.uniform(-0.1, 0.1))
            tensors[0] = tensors[0] * gain + shift
        image = tensors[0].contiguous()
        if mask is None:
            return image, None, tensors[-1].contiguous()
        return image, tensors[1].contiguous(), tensors[2].contiguous()


def _random_crop(
    image: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A size x size crop; smaller images are padded (image 0, mask IGNORE_INDEX, valid False)."""
    h, w = mask.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
        mask = F.pad(mask, (0, pw, 0, ph), value=IGNORE_INDEX)
        valid = F.pad(valid, (0, pw, 0, ph), value=False)
        h, w = mask.shape
    top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    return (
        image[:, top : top + size, left : left + size],
        mask[top : top + size, left : left + size],
        valid[top : top + size, left : left + size],
    )


def normalisation(recipe: Recipe, records: list[Record]) -> tuple[list[str], list[float], list[float], str]:
    """Band names and per-band (mean, std) for ``data.normalize``; also says where they came from.

    ``card``: the data card's statistics by band name; bands the card lacks (or a recipe without a card)
    fall back to statistics of up to 64 training images, and the source says so.
    """
    probe = RecipeDataset(records[:1], recipe, ([0.0], [1.0]), 2, train=False)
    first, _ = probe.read(records[0])
    names = _band_names(recipe, records[0], first.shape[0])
    channels = first.shape[0]
    if recipe.data.normalize == "none":
        return names, [0.0] * channels, [1.0] * channels, "none"
    if recipe.data.normalize == "imagenet":
        if channels not in (1, 3):
            raise ResnetAppsError(
                f"data.normalize: imagenet needs 1 or 3 bands, the data has {channels}; use card"
            )
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        return (
            names,
            mean[:channels] if channels == 3 else [0.449],
            std if channels == 3 else [0.226],
            "imagenet",
        )
    stats: dict[str, Any] = {}
    if recipe.data.card:
        from resnet_apps.cards import load_card

        stats = load_card(recipe.data.card).band_stats
    if all(n in stats for n in names):
        return (
            names,
            [float(stats[n]["mean"]) for n in names],
            [float(stats[n]["std"]) for n in names],
            f"data card {recipe.data.card}",
        )
    sample = [probe.read(r)[0] for r in records[: min(64, len(records))]]
    flat = np.concatenate([s.reshape(channels, -1) for s in sample], axis=1)
    std = [float(max(s, 1e-6)) for s in np.nanstd(flat, axis=1)]
    return names, [float(m) for m in np.nanmean(flat, axis=1)], std, f"{len(sample)} training images"


def _band_names(recipe: Recipe, record: Record, channels: int) -> list[str]:
    if record.band_names:
        return list(record.band_names)
    if recipe.data.bands is not None:
        return [str(b) for b in recipe.data.bands]
    if recipe.data.grayscale or channels == 1:
        return ["gray"]
    return ["red", "green", "blue"] if channels == 3 else [f"band{i + 1}" for i in range(channels)]


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
