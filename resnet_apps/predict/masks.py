"""Segmentation of whole DICOM images: one class map per instance, at the source's Rows x Columns.

The image is read as training read it (``predict.folder.ImageLoader``: the ``io.read_dicom`` chain,
scale, grey), resized to the run's whole-image side (``preprocessing.resize``, else ``image_size``),
standardised; the model's [1, K, S, S] logits become an [S, S] class map (argmax; one logit: > 0), which is
resized back to Rows x Columns with nearest neighbour. Outputs (``out``): ``masks/<image_id>.png`` (uint8
class indices) and a ``predictions.csv`` row per image: ``image_id``, ``path`` (hashed names from
:mod:`resnet_apps.predict.pacs`), ``f_<class>`` (the fraction of pixels of each class); an unreadable
instance goes to ``errors.csv`` and the rest go on.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydicom import dcmread
from torch import nn

from resnet_apps.errors import ImageReadError
from resnet_apps.io.atomic import atomic_path
from resnet_apps.predict.folder import ERROR_COLUMNS, ERRORS_CSV, PREDICTIONS_CSV, ImageLoader, image_id

MASKS_DIR = "masks"


def model_side(meta: Mapping[str, Any]) -> int:
    """The side whole images are resized to: the run's ``resize``, else its ``image_size``.

    ``resize`` is in the preprocessing block of newer checkpoints and in the saved recipe of older ones.
    A run trained on native-resolution crops (no ``resize``) is fed its ``image_size`` here: its scale
    differs from training's (tiling at native resolution is not done for DICOM yet).
    """
    pre = meta.get("preprocessing") or {}
    recipe_data = (meta.get("recipe") or {}).get("data") or {}
    side = pre.get("resize") or recipe_data.get("resize") or pre.get("image_size")
    if not side:
        raise ImageReadError(
            "the checkpoint records no preprocessing.resize nor image_size; retrain or fix it"
        )
    return int(side)


def class_map(model: nn.Module, image: torch.Tensor, size: tuple[int, int], device: str) -> np.ndarray:
    """[C, S, S] standardised image -> [H, W] uint8 class indices at ``size`` (rows, columns), nearest."""
    with torch.inference_mode():
        logits = model(image.unsqueeze(0).to(device))[0].float().cpu()  # [K, S, S]
    labels = (logits[0] > 0) if logits.shape[0] == 1 else logits.argmax(dim=0)
    small = Image.fromarray(labels.numpy().astype(np.uint8))
    return np.asarray(small.resize((size[1], size[0]), Image.Resampling.NEAREST))


def _append(path: Path, columns: list[str], row: list[Any]) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(columns)
        writer.writerow(row)


def predict_masks(
    model: nn.Module, meta: Mapping[str, Any], folder: str | Path, out: str | Path, *, device: str = "cpu"
) -> dict[str, int]:
    """Segment every ``*.dcm`` under ``folder`` into ``out`` (masks/, predictions.csv, errors.csv).

    Returns:
        ``{"predicted": n, "errors": m}``.
    """
    folder, out = Path(folder), Path(out)
    classes = [str(c) for c in meta.get("classes") or []]
    side = model_side(meta)
    loader = ImageLoader({**meta, "preprocessing": {**meta["preprocessing"], "image_size": side}})
    (out / MASKS_DIR).mkdir(parents=True, exist_ok=True)
    model.eval().to(device)
    counts = {"predicted": 0, "errors": 0}
    for path in sorted(folder.rglob("*.dcm")):
        relative = path.relative_to(folder).as_posix()
        ident = image_id(relative)
        try:
            header = dcmread(path, stop_before_pixels=True)
            if int(header.get("NumberOfFrames") or 1) > 1:
                raise ImageReadError(f"{relative}: a multi-frame instance; segmentation takes single frames")
            mask = class_map(model, loader(path), (int(header.Rows), int(header.Columns)), device)
        except (ImageReadError, OSError, ValueError, AttributeError) as error:
            _append(out / ERRORS_CSV, ERROR_COLUMNS, [ident, relative, f"{type(error).__name__}: {error}"])
            counts["errors"] += 1
            continue
        with atomic_path(out / MASKS_DIR / f"{ident}.png") as tmp:
            Image.fromarray(mask).save(tmp, format="PNG")
        fractions = np.bincount(mask.ravel(), minlength=len(classes))[: len(classes)] / mask.size
        _append(
            out / PREDICTIONS_CSV,
            ["image_id", "path", *(f"f_{c}" for c in classes)],
            [ident, relative, *(f"{f:.6f}" for f in fractions)],
        )
        counts["predicted"] += 1
    return counts


__all__ = ["MASKS_DIR", "class_map", "model_side", "predict_masks"]
