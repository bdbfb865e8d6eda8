"""Training augmentation (albumentations) on N-band float32 images with their masks, and normalisation.

Presets know the domain:
- ``nadir``: satellite / aerial chips seen from straight above have no "up": flips and 90-degree rotations
  are free; plus a light brightness/contrast change.
- ``chest_xray``: small affine (rotation within 10 degrees, 5 % shift, 10 % scale) and brightness/contrast;
  never mirrored by default (the heart is on the patient's left; side markers would read backwards). If a
  recipe mirrors anyway (``hflip=True``) for lung segmentation, ``swap_labels_on_hflip={1: 2, 2: 1}``
  swaps right/left lung labels together with the pixels.
- ``none``: nothing (evaluation; resizing happens before the cache, normalisation after augmentation).

Checked for 13-band float32 (tests/data/test_data_transforms.py): flips, RandomRotate90, Affine and Resize
handle any channel count (albumentations chunks OpenCV calls past 4 channels). albumentations'
RandomBrightnessContrast clips float images to [0, 1], which would cut reflectance above 1 (clouds, snow)
and any normalised value, so :class:`UnclippedBrightnessContrast` keeps its sampling and skips the clip.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.errors import DatasetError

PRESETS = ("nadir", "chest_xray", "none")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UnclippedBrightnessContrast(A.RandomBrightnessContrast):
    """``alpha * x + beta`` with albumentations' own sampling, without clipping to [0, 1].

    With ``brightness_by_max=False`` (our default) ``beta`` is a fraction of the image mean, so the shift
    is relative for reflectance (~0.1) and display values (~0.5) alike; all bands get the same change.
    """

    def __init__(self, brightness_limit: float = 0.1, contrast_limit: float = 0.1, p: float = 0.5) -> None:
        super().__init__(
            brightness_limit=brightness_limit, contrast_limit=contrast_limit, brightness_by_max=False, p=p
        )

    def apply(self, img: np.ndarray, alpha: float, beta: float, **params: Any) -> np.ndarray:
        return (img * np.float32(alpha) + np.float32(beta)).astype(np.float32, copy=False)


class HorizontalFlipSwapLabels(A.HorizontalFlip):
    """Mirror left-right and swap paired labels in the mask (e.g. right lung 1 <-> left lung 2).

    Args:
        swap: class index -> class index applied to masks after flipping; symmetric pairs expected.
        p: probability.
    """

    def __init__(self, swap: Mapping[int, int], p: float = 0.5) -> None:
        super().__init__(p=p)
        self.lut = np.arange(256, dtype=np.uint8)
        for a, b in swap.items():
            self.lut[int(a)] = int(b)

    def apply_to_mask(self, mask: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        flipped = super().apply_to_mask(mask, *args, **params)
        return self.lut[flipped] if flipped.dtype == np.uint8 else flipped


class Augment:
    """Callable applied by the dataset to (image [C, H, W], mask [H, W] | None, valid [H, W]).

    The valid mask travels as an "invalid" uint8 plane so that pixels rotated in from outside the image
    (albumentations fills masks with ``fill_mask``) come out invalid, and mask pixels come out ignored.
    """

    def __init__(self, compose: A.Compose, name: str) -> None:
        self.compose = compose
        self.name = name

    def set_seed(self, seed: int) -> None:
        """Make the next call's draws a function of ``seed`` alone (per-sample seeding for resumable runs).

        One numpy and one Python generator are shared by every transform of the pipeline, drawn in order.
        ``Compose.set_random_seed`` would instead seed each transform with the same value, so transforms
        with equal ``p`` (HorizontalFlip, VerticalFlip) would always fire together.
        """
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(
        self, image: np.ndarray, mask: np.ndarray | None, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        invalid = np.where(valid, 0, IGNORE_INDEX).astype(np.uint8)
        masks = [invalid] + ([mask.astype(np.uint8)] if mask is not None else [])
        out = self.compose(image=np.ascontiguousarray(image.transpose(1, 2, 0)), masks=masks)
        new_image = np.ascontiguousarray(np.atleast_3d(out["image"]).transpose(2, 0, 1), dtype=np.float32)
        new_valid = np.asarray(out["masks"][0]) == 0
        new_mask = np.asarray(out["masks"][1]) if mask is not None else None
        return new_image, new_mask, new_valid

    def __repr__(self) -> str:
        return f"Augment({self.name}: {[type(t).__name__ for t in self.compose.transforms]})"


def build_transforms(
    preset: str = "none",
    train: bool = True,
    *,
    hflip: bool | None = None,
    swap_labels_on_hflip: Mapping[int, int] | None = None,
    crop_size: int | Sequence[int] | None = None,
    seed: int | None = None,
) -> Augment | None:
    """The augmentation for a split.

    Args:
        preset: ``nadir`` | ``chest_xray`` | ``none``.
        train: False gives None (evaluation: resize and normalise only, both done by the dataset).
        hflip: override the preset's horizontal flip (chest_xray: off by default).
        swap_labels_on_hflip: mask labels swapped when a flip happens ({1: 2, 2: 1} for right/left lung).
        crop_size: random crop (padded with ignore where the image is smaller), e.g. 512 for aerial tiles.
        seed: albumentations seed, for reproducible augmentation.

    Returns:
        An :class:`Augment`, or None when nothing is to be done.
    """
    if preset not in PRESETS:
        raise DatasetError(f"data.augment: unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    if not train:
        return None
    steps: list[A.BasicTransform] = []
    if crop_size is not None:
        h, w = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
        steps += [
            A.PadIfNeeded(
                min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX
            ),
            A.RandomCrop(h, w),
        ]
    flip = {"nadir": True, "chest_xray": False, "none": False}[preset] if hflip is None else hflip
    if flip:
        steps.append(
            HorizontalFlipSwapLabels(swap_labels_on_hflip) if swap_labels_on_hflip else A.HorizontalFlip()
        )
    if preset == "nadir":
        steps += [A.VerticalFlip(), A.RandomRotate90(), UnclippedBrightnessContrast(0.1, 0.1, p=0.5)]
    elif preset == "chest_xray":
        steps += [
            A.Affine(
                rotate=(-10, 10),
                translate_percent=(-0.05, 0.05),
                scale=(0.9, 1.1),
                p=0.7,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE_INDEX,
            ),
            UnclippedBrightnessContrast(0.1, 0.1, p=0.5),
        ]
    if not steps:
        return None
    return Augment(A.Compose(steps, seed=seed), preset)


def normalization(
    normalize: str, band_names: Sequence[str], card_stats: Mapping[str, Mapping[str, float]] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]] | tuple[None, None]:
    """Per-band (mean, std) for ``data.normalize``.

    Args:
        normalize: ``card`` (the data card's ``statistics``, by band name), ``imagenet`` (3 bands only, for
            values in [0, 1]) or ``none``.
        band_names: the bands the model sees, in order.
        card_stats: the card's ``statistics`` block ({band: {mean, std, ...}}).

    Raises:
        DatasetError: a band missing from the card, or ImageNet statistics asked for a non-RGB band set.
    """
    if normalize == "none":
        return None, None
    if normalize == "imagenet":
        if len(band_names) != 3:
            raise DatasetError(
                f"data.normalize: imagenet statistics describe 3 RGB bands, not {len(band_names)} "
                f"({list(band_names)}); use normalize: card with statistics from `resnet-apps data stats`"
            )
        return IMAGENET_MEAN, IMAGENET_STD
    if normalize != "card":
        raise DatasetError(f"data.normalize: unknown value {normalize!r}; use card, imagenet or none")
    stats = card_stats or {}
    missing = [b for b in band_names if str(b) not in stats]
    if missing:
        raise DatasetError(
            f"data card statistics lack band(s) {missing} (it has {sorted(stats)}); run "
            "`resnet-apps data stats DIR --bands ...` and paste its output under statistics:"
        )
    mean = tuple(float(stats[str(b)]["mean"]) for b in band_names)
    std = tuple(float(stats[str(b)]["std"]) for b in band_names)
    if any(s <= 0 for s in std):
        raise DatasetError(f"data card statistics: std must be > 0 for every band, got {std}")
    return mean, std
