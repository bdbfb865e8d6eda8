"""What the loop, the final evaluation and ``evaluate RUN`` share: the ``Run``, its eval loader, checkpoint meta."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from resnet_apps.data.dataset import RecordDataset
from resnet_apps.data.seen import dicom_seen
from resnet_apps.errors import CheckpointError
from resnet_apps.recipe import Recipe, TaskMode
from resnet_apps.train.batches import choose_workers
from resnet_apps.train.datasets import SplitData, collate


@dataclass
class LoopState:
    """Where the training loop stands: what the resume state stores and the final evaluation reads.

    Mid-epoch (``complete`` False), ``epoch`` is the epoch in progress and ``step`` the steps done of it;
    ``loss_sum``/``loss_n``/``seconds`` cover those steps. Once an epoch is finished and checkpointed,
    ``complete`` is True and ``epoch`` names it. Nothing random is stored: the loop re-derives every
    seed from (seed, epoch, step), so this position alone resumes a run exactly.
    """

    epoch: int = 1
    step: int = 0  # optimiser steps done in ``epoch``
    complete: bool = False  # ``epoch`` finished: validated, history row written, checkpoints saved
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    best: float | None = None  # best validation metric so far (None: none defined yet)
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the last improvement (early stopping)
    loss_sum: float = 0.0  # sum over this epoch's images of the training loss
    loss_n: int = 0  # images behind loss_sum
    seconds: float = 0.0  # training time of this epoch so far (validation excluded)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (the ``loop`` entry of the resume state)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "resume state") -> LoopState:
        """The inverse of :meth:`to_dict`; a missing or unknown key is a ``CheckpointError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = names - set(data), set(data) - names
        if missing or unknown:
            raise CheckpointError(
                f"{origin}: loop position has missing keys {sorted(missing)} and unknown keys "
                f"{sorted(unknown)}; it was written by another version of resnet_apps (start the run anew)"
            )
        best = data["best"]
        return cls(
            epoch=int(data["epoch"]),
            step=int(data["step"]),
            complete=bool(data["complete"]),
            history=[dict(row) for row in data["history"]],
            best=None if best is None else float(best),
            best_epoch=int(data["best_epoch"]),
            bad_epochs=int(data["bad_epochs"]),
            loss_sum=float(data["loss_sum"]),
            loss_n=int(data["loss_n"]),
            seconds=float(data["seconds"]),
        )

    def reset_epoch(self) -> None:
        """Zero the per-epoch counters (a new epoch starts; ``epoch`` itself is set by the loop)."""
        self.step, self.complete, self.loss_sum, self.loss_n, self.seconds = 0, False, 0.0, 0, 0.0

    def end_epoch(self, row: dict[str, Any], metric: float) -> bool:
        """Record a finished epoch's history row and validation ``metric``; returns whether it improved.

        The first epoch always counts as an improvement; a NaN metric (undefined, e.g. one class in val)
        never does after that, and is stored as ``best = None``.
        """
        improved = self.best is None or (not math.isnan(metric) and metric > self.best)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = (
                (None if math.isnan(metric) else metric),
                row["epoch"],
                0,
            )
        else:
            self.bad_epochs += 1
        self.history.append(row)
        self.epoch, self.complete = row["epoch"], True
        return improved


@dataclass
class Run:
    """Everything the loop and the final evaluation share."""

    recipe: Recipe
    run_dir: Path
    device: torch.device
    world: int
    split: SplitData
    mode: TaskMode
    band_names: list[str]
    norm: tuple[list[float], list[float]]
    norm_source: str
    model: nn.Module
    model_info: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    loop: LoopState = field(default_factory=LoopState)
    overrides: list[str] = field(default_factory=list)  # the --set values that started the run


def eval_loader(dataset: RecordDataset, run: Run) -> DataLoader:
    """A loader over ``dataset`` in file order: batch 1 for segmentation (whole images), sharded under DDP."""
    sampler: DistributedSampler[int] | None = (
        DistributedSampler(dataset, shuffle=False) if run.world > 1 else None
    )
    batch = 1 if run.recipe.task == "segmentation" else run.recipe.train.batch_size
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=choose_workers(run.recipe.train.num_workers, cached=False)[0],
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
            k: info.get(k, "imagenet" if k == "stem" else None)
            for k in (
                "backbone",
                "in_chans",
                "num_classes",
                "multilabel",
                "dropout",
                "fpn_channels",
                "pooling",
                "head",
                "stem",
            )
        },
        "classes": run.split.classes,
        "preprocessing": {
            "bands": run.band_names,
            "scale": r.data.scale,
            "mean": run.norm[0],
            "std": run.norm[1],
            "image_size": r.data.image_size,
            "resize": r.data.resize,  # segmentation: the side whole images are resized to (None: native)
            "dicom_window": r.data.dicom_window,
            "grayscale": r.data.grayscale,
            "dicom_frame": r.data.dicom_frame,
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
        "data_seen": _data_seen(run),
    }


_SEEN: dict[str, dict[str, Any]] = {}


def _data_seen(run: Run) -> dict[str, Any]:
    """DICOM Modality / BodyPartExamined of the training files (read once per record index); when training saw
    no DICOM, what the data card declares under ``dicom_seen`` (``source`` then names the card)."""
    key = data_hash(run.split) + run.recipe.data.root
    if key not in _SEEN:
        seen: dict[str, Any] = dict(dicom_seen(run.split.train, run.recipe.data.root))
        if not any(seen.values()) and run.recipe.data.card:
            # trained on exported JPEG/PNG films: the card may say what DICOM inputs must be (chest CR/DX)
            from resnet_apps.cards import load_card
            from resnet_apps.errors import ResnetAppsError

            try:
                declared = load_card(run.recipe.data.card).front_matter.get("dicom_seen") or {}
            except ResnetAppsError:
                declared = {}
            if isinstance(declared, dict) and any(declared.values()):
                seen = {k: [str(v).upper() for v in declared.get(k) or []] for k in ("modality", "body_part")}
                seen["source"] = f"data card {run.recipe.data.card}"
        _SEEN[key] = seen
    return _SEEN[key]
