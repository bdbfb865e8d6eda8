"""The error for a non-finite loss: say the true cause, and mention a checkpoint only when one exists.

Two causes look alike from the loop (the loss is NaN): a segmentation batch in which no pixel is
labelled (the masks hold codes the recipe does not map; the mean over zero pixels is NaN), and true
divergence (learning rate, fp16 overflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data.config import as_source_config
from resnet_apps.data.mask_check import unmapped_values_text
from resnet_apps.errors import DatasetError, ResnetAppsError, TrainingDivergedError


def _checkpoints(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def loss_not_finite_error(
    run_dir: Path,
    loss: float,
    epoch: int,
    step: int,
    target: torch.Tensor,
    sample: Mapping[str, Any],
    dataset: Any,
    task: str,
) -> ResnetAppsError:
    """The typed error for a NaN / infinite loss at ``(epoch, step)`` (step 0-based).

    Args:
        run_dir: the run directory (its ``checkpoints/`` decides whether a checkpoint is mentioned).
        loss: the loss value.
        target: the batch's targets (masks [B, H, W] for segmentation).
        sample: the batch (its ``index`` names the records read).
        dataset: the training ``RecordDataset`` (records, root, source, classes).
        task: ``recipe.task``.
    """
    if task == "segmentation" and bool((target == IGNORE_INDEX).all()):
        indices = [int(i) for i in sample.get("index", [])]
        records = [dataset.records[i] for i in indices if 0 <= i < len(dataset.records)]
        masks = [Path(dataset.root) / r.mask_path for r in records if r.mask_path][:4]
        cfg = as_source_config(getattr(dataset, "source", None) or {"kind": "pairs"})
        codes = unmapped_values_text(masks, cfg, len(dataset.classes))
        first = f" (e.g. {masks[0]})" if masks else ""
        return DatasetError(
            f"no labelled pixel in this batch (epoch {epoch}, step {step + 1}){first}: mask values {codes} "
            "are not among data.classes / data.source.mask_values; fix: map them with "
            "data.source.mask_values (code: class index), then run `resnet-apps check RECIPE`"
        )
    saved = _checkpoints(run_dir)
    kept = (
        f"the last good checkpoint is kept in {run_dir / 'checkpoints'}"
        if saved
        else "no checkpoint had been written yet"
    )
    return TrainingDivergedError(
        f"{run_dir}: loss is {loss} at epoch {epoch}, step {step + 1}; training stopped and {kept}. "
        "Lower train.lr, set train.grad_clip, or use precision fp32"
    )
