"""Grad-CAM heat maps on the last backbone stage (``monai.visualize.GradCAM``) and overlay PNGs.

``gradcam(model, image)`` returns a heat map [H, W] in [0, 1]; ``save_overlay`` blends it over the image;
``save_gradcam_gallery`` writes the report's gallery and returns its entries for ``metrics.json``
(``{"image", "true", "pred", "prob", "correct"}``, docs/ARCHITECTURE.md section 6).
matplotlib is imported only when a PNG is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_apps.io.atomic import atomic_write
from resnet_apps.models.decision import Decision


def target_layer(model: nn.Module) -> str:
    """Name of the last ResNet stage: ``backbone.layer4`` for our models, else the last ``layer4``-like module."""
    names = [name for name, _ in model.named_modules()]
    if "backbone.layer4" in names:
        return "backbone.layer4"
    stages = [n for n in names if n.split(".")[-1] in ("layer4", "layer3", "stages.3")]
    if not stages:
        raise ValueError(
            f"{type(model).__name__} has no ResNet stage named layer4; pass layer= with a module name "
            f"(for example one of {names[-5:]})"
        )
    return stages[-1]


def gradcam(
    model: nn.Module, image: torch.Tensor, class_idx: int | None = None, layer: str | None = None
) -> np.ndarray:
    """Grad-CAM of one image for one output.

    Args:
        model: classification model, [B, C, H, W] -> logits [B, K].
        image: normalised image [C, H, W] or [1, C, H, W].
        class_idx: output index to explain (None: the highest logit).
        layer: module name of the target layer (default :func:`target_layer`).

    Returns:
        heat map float32 [H, W] in [0, 1] (all zeros when the gradient vanishes everywhere).
    """
    from monai.visualize import GradCAM  # heavy import, only when explaining

    x = image[None] if image.ndim == 3 else image
    was_training = model.training
    model.eval()
    # MONAI's default_normalizer maps (min, max) to (1, 0), i.e. flips the map; ours keeps 1 = most evidence
    cam = GradCAM(nn_module=model, target_layers=layer or target_layer(model), postprocessing=_min_max)
    with torch.enable_grad():
        heat = cam(x.detach().float().clone().requires_grad_(True), class_idx=class_idx)
    model.train(was_training)
    heat_np = heat[0, 0].detach().cpu().numpy().astype(np.float32)
    return np.nan_to_num(np.clip(heat_np, 0.0, 1.0), nan=0.0)


def _min_max(heat: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max scaling of [B, 1, H, W] to [0, 1]; a flat map (no evidence anywhere) becomes 0."""
    flat = heat.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    span = (hi - lo).clamp_min(torch.finfo(heat.dtype).tiny)
    scaled = (heat - lo[:, None, None, None]) / span[:, None, None, None]
    return torch.where((hi > lo)[:, None, None, None], scaled, torch.zeros_like(heat))


def display_image(image: torch.Tensor | np.ndarray, rgb: Sequence[int] | None = None) -> np.ndarray:
    """A normalised image [C, H, W] as uint8 RGB [H, W, 3], each channel stretched between its 1st and 99th percentile.

    Args:
        image: [C, H, W].
        rgb: channel indices shown as red, green, blue (default: the first three, or the only one).
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = arr.astype(np.float32)
    if rgb is None:
        rgb = [0, 1, 2] if arr.shape[0] >= 3 else [0, 0, 0]
    planes = []
    for k in rgb:
        band = arr[k]
        lo, hi = np.percentile(band, [1, 99])
        planes.append(np.clip((band - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(band))
    return (np.stack(planes, axis=-1) * 255).round().astype(np.uint8)


def save_overlay(
    image: torch.Tensor | np.ndarray,
    heat: np.ndarray,
    path: str | Path,
    alpha: float = 0.45,
    rgb: Sequence[int] | None = None,
) -> Path:
    """Write the image with the heat map (jet colour map) blended over it as a PNG.

    Args:
        image: normalised image [C, H, W].
        heat: [H, W] in [0, 1].
        path: the PNG to write (folders are created).
        alpha: weight of the heat map.
        rgb: channel indices to show (see :func:`display_image`).
    """
    import matplotlib
    from PIL import Image

    base = display_image(image, rgb).astype(np.float32)
    colour = matplotlib.colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    blended = ((1 - alpha) * base + alpha * colour).round().clip(0, 255).astype(np.uint8)
    # a temporary name, then os.replace: a kill mid-write leaves no truncated PNG under the final name
    return atomic_write(Path(path), lambda tmp: Image.fromarray(blended).save(tmp, format="PNG"))


def _true_label(label: Any, classes: Sequence[str]) -> str:
    """Class name of an int64 label, or "A|B" for a multi-label vector (NaN = unknown is left out)."""
    value = torch.as_tensor(label)
    if value.ndim == 0:
        return classes[int(value)]
    return "|".join(c for c, v in zip(classes, value.tolist(), strict=True) if v == 1)


def save_gradcam_gallery(
    model: nn.Module,
    samples: Iterable[Mapping[str, Any]],
    classes: Sequence[str],
    out_dir: str | Path,
    n: int = 8,
    *,
    threshold: float | Sequence[float] | None = 0.5,
    positive_class: str | None = None,
    rgb: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Grad-CAM overlays of ``n`` samples, misclassified and correct ones interleaved, for the report.

    Up to ``4 * n`` samples are predicted; the gallery alternates wrong and right predictions (in sample
    order) so that the report shows both what the model looks at when right and when wrong.

    Args:
        model: classification model ([B, C, H, W] -> [B, K]).
        samples: dataset samples (``image`` [C, H, W] normalised, ``label`` int64 [] or [K]).
        classes: class names.
        out_dir: folder for ``0001.png`` ... (created); entries name images as ``<out_dir name>/0001.png``,
            i.e. relative to the run directory when ``out_dir`` is ``RUN_DIR/gallery``.
        n: number of images.
        threshold: operating threshold: binary, on the positive class probability; multi-label (a model
            whose ``multilabel`` attribute is true), one number or one per class. None: 0.5.
        positive_class: the positive class of a binary model (default: the last class).
        rgb: channels shown as RGB (default: the first three).

    Returns:
        ``[{"image": "gallery/0001.png", "true": "PNEUMONIA", "pred": "NORMAL", "prob": 0.31,
        "score_of": "PNEUMONIA", "correct": False}]``; ``prob`` is the probability of ``score_of``: the positive
        class for binary models, else the predicted class. Wrong and right cases alternate, each round-robin
        over the true classes.
    """
    out_dir = Path(out_dir)
    num_outputs = 1 if len(classes) == 2 and _num_outputs(model) == 1 else len(classes)
    decision = Decision.build(
        classes,
        threshold,
        positive_class,
        num_outputs,
        multilabel=bool(getattr(model, "multilabel", False)),  # set by heads.ClassificationModel
    )
    candidates: list[tuple[Mapping[str, Any], int, dict[str, Any]]] = []
    model.eval()
    for k, sample in enumerate(samples):
        if k >= 4 * n:
            break
        with torch.no_grad():
            prob = decision.probabilities(model(sample["image"][None].float()))
        pred_index = decision.label_indices(prob)[0]
        pred, true = decision.labels(prob)[0], _true_label(sample["label"], classes)
        p = decision.positive_probability(prob)[0] if decision.binary else prob[0, pred_index]
        # say whose probability the score is: p(PNEUMONIA) 0.89 beside "predicted NORMAL" is not a contradiction
        score_of = decision.classes[decision.positive_index] if decision.binary else pred
        candidates.append(
            (
                sample,
                pred_index,
                {"true": true, "pred": pred, "prob": round(float(p), 4), "score_of": score_of,
                 "correct": pred == true},
            )
        )  # fmt: skip
    wrong = _by_true_class([c for c in candidates if not c[2]["correct"]])
    right = _by_true_class([c for c in candidates if c[2]["correct"]])
    chosen: list[Any] = []
    while len(chosen) < n and (wrong or right):
        for group in (wrong, right):
            if group and len(chosen) < n:
                chosen.append(group.pop(0))
    entries = []
    for i, (sample, pred_index, entry) in enumerate(chosen, start=1):
        heat = gradcam(model, sample["image"], class_idx=decision.target_index(pred_index))
        name = f"{i:04d}.png"
        save_overlay(sample["image"], heat, out_dir / name, rgb=rgb)
        entries.append({"image": f"{out_dir.name}/{name}", **entry})
    return entries


def _by_true_class(items: list[Any]) -> list[Any]:
    """Round-robin over true classes, so a gallery of 8 shows positive cases too, not 8 of the first class."""
    queues: dict[str, list[Any]] = {}
    for item in items:
        queues.setdefault(str(item[2]["true"]), []).append(item)
    out: list[Any] = []
    while any(queues.values()):
        for queue in queues.values():
            if queue:
                out.append(queue.pop(0))
    return out


def _num_outputs(model: nn.Module) -> int:
    """K of a classification model (its last Linear layer's width)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else 0
