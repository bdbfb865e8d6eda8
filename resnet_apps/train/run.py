"""What the loop, the final evaluation and ``evaluate RUN`` share: the ``Run``, its eval loader, checkpoint meta."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from resnet_apps.data.dataset import RecordDataset
from resnet_apps.recipe import Recipe
from resnet_apps.train.datasets import SplitData, collate


@dataclass
class Run:
    """Everything the loop and the final evaluation share."""

    recipe: Recipe
    run_dir: Path
    device: torch.device
    world: int
    split: SplitData
    mode: str
    band_names: list[str]
    norm: tuple[list[float], list[float]]
    norm_source: str
    model: nn.Module
    model_info: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    loop: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)  # the --set values that started the run


def eval_loader(dataset: RecordDataset, run: Run) -> DataLoader:
    """A loader over ``dataset`` in file order: batch 1 for segmentation (whole images), sharded under DDP."""
    sampler = DistributedSampler(dataset, shuffle=False) if run.world > 1 else None
    batch = 1 if run.recipe.task == "segmentation" else run.recipe.train.batch_size
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=run.recipe.train.num_workers,
        collate_fn=collate,
    )


def versions() -> dict[str, str]:
    import numpy
    import timm

    from resnet_apps import __version__

    return {
        "resnet_apps": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def data_hash(split: SplitData) -> str:
    """sha256 of the record index: every path, label, group and split, with each file's size."""
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        for r in getattr(split, name):
            digest.update(json.dumps([name, r.path, r.label, r.labels, r.mask_path, r.group]).encode())
    return digest.hexdigest()


def checkpoint_meta(run: Run, epoch: int, metrics: dict[str, Any], threshold: Any = None) -> dict[str, Any]:
    """The checkpoint JSON of ARCHITECTURE.md section 2 (rebuilds the model and its preprocessing)."""
    r = run.recipe
    info = run.model_info
    return {
        "format_version": 1,
        "task": r.task,
        "model": {
            k: info[k]
            for k in (
                "backbone",
                "in_chans",
                "num_classes",
                "multilabel",
                "dropout",
                "fpn_channels",
                "pooling",
                "head",
            )
        },
        "classes": run.split.classes,
        "preprocessing": {
            "bands": run.band_names,
            "scale": r.data.scale,
            "mean": run.norm[0],
            "std": run.norm[1],
            "image_size": r.data.image_size,
            "dicom_window": r.data.dicom_window,
            "grayscale": r.data.grayscale,
            "normalize": r.data.normalize,
        },
        "operating_threshold": threshold,
        "positive_class": run.split.classes[-1] if run.mode == "binary" else None,
        "weights_source": info["weights_source"],
        "imagenet_weights_used": info["imagenet_weights_used"],
        "epoch": epoch,
        "metrics": metrics,
        "recipe": r.to_dict(),
        "versions": versions(),
        "data_hash": data_hash(run.split),
    }
