"""The study's data: a folder of class folders read once into memory at 32 px, split, augmented on the batch.

The degradation study trains 12+ small networks for many epochs on a CPU, so the per-step cost must be
the network alone: every image is decoded and resized once (``load_images``), standardised per channel
with the training split's statistics, and augmented with tensor ops on the whole batch (``augment``).
3,000 EuroSAT RGB images at 3 x 32 x 32 float32 take 37 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from resnet_apps.data.records import build_records
from resnet_apps.errors import DatasetError
from resnet_apps.io.image import read_image

IMAGE_SIZE = 32  # the paper's CIFAR-10 resolution
PAD = 4  # the paper's augmentation: 4-px padding and a random 32-px crop


@dataclass
class StudyData:
    """Standardised images and labels of both splits.

    Attributes:
        train_x: [N_train, C, 32, 32] float32, zero mean / unit variance per channel over the training split.
        train_y: [N_train] int64 class indices.
        test_x, test_y: the held-out split, standardised with the training statistics.
        classes: class names in index order.
        root: the dataset folder.
        split_seed: seed of the stratified split.
        test_fraction: share of every class held out.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    root: str
    split_seed: int
    test_fraction: float

    @property
    def in_chans(self) -> int:
        return int(self.train_x.shape[1])

    def describe(self) -> dict[str, object]:
        """Plain facts for study.json (counts per class per split, sizes)."""
        return {
            "root": self.root,
            "classes": self.classes,
            "image_size": IMAGE_SIZE,
            "in_chans": self.in_chans,
            "split": f"stratified {1 - self.test_fraction:.0%}/{self.test_fraction:.0%}, seed {self.split_seed}",
            "n_train": int(self.train_y.numel()),
            "n_test": int(self.test_y.numel()),
            "train_per_class": torch.bincount(self.train_y, minlength=len(self.classes)).tolist(),
            "test_per_class": torch.bincount(self.test_y, minlength=len(self.classes)).tolist(),
        }


def load_images(root: str | Path, size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every image of ``root/<class>/*`` as float32 [N, C, size, size] (antialiased resize) and labels [N]."""
    records, classes = build_records({"kind": "folder"}, root)
    images, labels = [], []
    for record in records:
        array, _ = read_image(Path(root) / record.path)
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
        if tensor.shape[-2:] != (size, size):
            tensor = F.interpolate(
                tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        images.append(tensor)
        labels.append(record.label)
    bands = {int(t.shape[1]) for t in images}
    if len(bands) != 1:
        raise DatasetError(f"{root}: images have different band counts {sorted(bands)}; use one band layout")
    return torch.cat(images), torch.tensor(labels, dtype=torch.int64), classes


def load_study_data(root: str | Path, test_fraction: float = 0.2, split_seed: int = 0) -> StudyData:
    """Read ``root``, split it stratified by class, standardise with the training split's channel statistics.

    Raises:
        DatasetError: unreadable folder, mixed band counts, or a class too small to appear in both splits.
    """
    from sklearn.model_selection import train_test_split

    x, y, classes = load_images(root)
    counts = torch.bincount(y, minlength=len(classes))
    if int(counts.min()) < 2:
        small = [c for c, n in zip(classes, counts.tolist(), strict=True) if n < 2]
        raise DatasetError(f"{root}: class(es) {small} have fewer than 2 images; a stratified split needs 2+")
    indices = np.arange(len(y))
    train_idx, test_idx = train_test_split(
        indices, test_size=test_fraction, stratify=y.numpy(), random_state=split_seed
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    train_x, test_x = x[train_idx], x[test_idx]
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return StudyData(
        train_x=((train_x - mean) / std).contiguous(),
        train_y=y[train_idx],
        test_x=((test_x - mean) / std).contiguous(),
        test_y=y[test_idx],
        classes=classes,
        root=str(root),
        split_seed=split_seed,
        test_fraction=test_fraction,
    )


def augment(batch: torch.Tensor, generator: torch.Generator, flip: bool) -> torch.Tensor:
    """The paper's augmentation on a whole batch: zero-pad 4 px, random 32-px crop, random horizontal flip.

    Args:
        batch: [B, C, H, W] standardised images (zero padding is the mean).
        generator: the source of randomness (seeded per run and epoch, so a resumed run repeats it).
        flip: mirror a random half left-right (only where the modality allows it, e.g. nadir imagery).

    Returns:
        [B, C, H, W].
    """
    b, _, h, w = batch.shape
    padded = F.pad(batch, (PAD, PAD, PAD, PAD))
    offsets = torch.randint(0, 2 * PAD + 1, (2, b), generator=generator)
    # gather each image's crop with one advanced index: rows [B, H, 1], cols [B, 1, W]
    rows = offsets[0][:, None] + torch.arange(h)[None]
    cols = offsets[1][:, None] + torch.arange(w)[None]
    if flip:
        mirrored = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    batch_index = torch.arange(b)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()
