"""Build the model, loss, optimiser and learning-rate schedule that a recipe describes (used by train.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.errors import BandError, RecipeError, WeightsUnavailableError
from resnet_apps.io.bands import select_bands
from resnet_apps.models.heads import build_model
from resnet_apps.recipe import Head, Pooling, Precision, Recipe, Task, TaskMode, TrainConfig


def task_mode(recipe: Recipe, num_classes: int) -> TaskMode:
    """ "multiclass", "binary" (2 classes, one logit), "multilabel" or "segmentation"."""
    if recipe.task == "segmentation":
        return "segmentation"
    if recipe.model.multilabel:
        return "multilabel"
    return "binary" if num_classes == 2 else "multiclass"


@dataclass(frozen=True)
class ModelArgs:
    """What ``models.heads.build_model`` takes beside the task and the weights, resolved from a recipe."""

    backbone: str  # timm name, e.g. "resnet50"
    in_chans: int
    num_classes: int  # outputs: 1 for binary (one logit)
    multilabel: bool
    dropout: float
    pooling: Pooling
    fpn_channels: int
    conv1_init: str  # "timm" | "rgb_bands"
    rgb_bands: list[int] | None  # indices of red, green, blue among the bands (conv1_init rgb_bands)
    head: Head = "linear"  # classification head: linear, or residual MLP blocks before it
    stem: str = "imagenet"  # imagenet | cifar (3x3 stride-1 conv1, no max-pool)

    def build(self, task: Task, weights: str) -> nn.Module:
        return build_model(
            task,
            backbone=self.backbone,
            in_chans=self.in_chans,
            num_classes=self.num_classes,
            weights=weights,
            multilabel=self.multilabel,
            dropout=self.dropout,
            pooling=self.pooling,
            fpn_channels=self.fpn_channels,
            conv1_init=self.conv1_init,
            rgb_bands=self.rgb_bands,
            head=self.head,
            stem=self.stem,
        )


def rgb_positions(recipe: Recipe, band_names: list[str]) -> list[int]:
    """Input channels of ``data.rgb_bands``: names, or 1-based band numbers as in ``data.bands``."""
    wanted = list(recipe.data.rgb_bands or [])
    chosen = list(recipe.data.bands or [])
    # a number listed in data.bands means that input channel; otherwise it is the file's band number
    named = [band_names[chosen.index(b)] if isinstance(b, int) and b in chosen else b for b in wanted]
    try:
        positions = select_bands(named, band_names, "model.conv1_init: rgb_bands")
    except BandError as error:
        raise RecipeError(
            f"model.conv1_init: rgb_bands needs data.rgb_bands naming 3 of the bands {band_names} ({error})"
        ) from error
    if len(positions) != 3:
        raise RecipeError(
            f"model.conv1_init: rgb_bands needs data.rgb_bands naming 3 of the bands {band_names}"
        )
    return positions


def build_recipe_model(
    recipe: Recipe,
    in_chans: int,
    num_classes: int,
    band_names: list[str],
    log: Callable[[str], object] = print,
) -> tuple[nn.Module, dict[str, Any]]:
    """The recipe's model, and where its weights came from.

    ``model.on_missing_weights: scratch`` turns an offline ImageNet request into random initialisation,
    said plainly on the console and in the report; ``fail`` lets ``WeightsUnavailableError`` propagate.

    Returns:
        model and ``{"backbone", "in_chans", "num_classes", "multilabel", "dropout", "fpn_channels",
        "weights_source", "imagenet_weights_used", "weights_note"}``.
    """
    m = recipe.model
    outputs = 1 if task_mode(recipe, num_classes) == "binary" else num_classes
    rgb = None
    if m.conv1_init == "rgb_bands":
        rgb = rgb_positions(recipe, band_names)
    args = ModelArgs(
        backbone=m.backbone,
        in_chans=in_chans,
        num_classes=outputs,
        multilabel=m.multilabel,
        dropout=m.dropout,
        pooling=m.pooling,
        fpn_channels=m.fpn_channels,
        conv1_init=m.conv1_init,
        rgb_bands=rgb,
        head=m.head,
        stem=m.stem,
    )
    note = ""
    try:
        model = args.build(recipe.task, m.weights)
    except WeightsUnavailableError as error:
        if m.on_missing_weights != "scratch":
            raise
        note = (
            f"ImageNet weights for {m.backbone} are not available offline, so the backbone starts from "
            f"RANDOM weights (model.on_missing_weights: scratch). ({error})"
        )
        log(f"note: {note}")
        model = args.build(recipe.task, "none")
    backbone = getattr(model, "backbone", model)
    info = {
        "backbone": m.backbone,
        "in_chans": in_chans,
        "num_classes": outputs,
        "multilabel": m.multilabel,
        "dropout": m.dropout,
        "fpn_channels": m.fpn_channels,
        "pooling": m.pooling,
        "head": m.head,
        "stem": m.stem,
        "weights_source": str(getattr(backbone, "weights_source", m.weights if not note else "none")),
        "imagenet_weights_used": bool(getattr(backbone, "imagenet_weights_used", False)),
        "weights_note": note,
    }
    return model, info


def build_loss(recipe: Recipe, mode: TaskMode, class_weights: list[float] | None) -> nn.Module:
    """Cross-entropy (multiclass, segmentation with IGNORE_INDEX) or BCE (binary with pos_weight, multilabel).

    Multi-label targets may hold NaN (missing / uncertain): those terms are masked, never counted negative.
    """
    smoothing = recipe.train.label_smoothing
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
    if mode in ("multiclass", "segmentation"):
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing, ignore_index=IGNORE_INDEX)
    # binary: pos_weight = w_pos / w_neg reproduces class weighting for a single logit
    pos_weight = None
    if weight is not None:
        pos_weight = weight[1:] / weight[:1] if mode == "binary" else weight
    return MaskedBCE(pos_weight, smoothing)


class MaskedBCE(nn.Module):
    """BCE-with-logits over [B] or [B, K] targets; NaN targets are ignored; label smoothing towards 0.5."""

    pos_weight: torch.Tensor | None  # a buffer, so that it moves with .to(device)

    def __init__(self, pos_weight: torch.Tensor | None, smoothing: float) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight if pos_weight is not None else None)
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype).reshape(logits.shape)
        known = ~torch.isnan(target)
        target = torch.nan_to_num(target) * (1 - self.smoothing) + 0.5 * self.smoothing
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits.float(), target.float(), pos_weight=self.pos_weight, reduction="none"
        )
        return (loss * known).sum() / known.sum().clamp_min(1)


def build_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD with two parameter groups: backbone at ``lr * backbone_lr_mult``, the head at ``lr``.

    Norm and bias parameters get no weight decay (decaying a BatchNorm scale only shrinks it).
    Each group remembers its ``base_lr`` so the schedule can scale it.
    """
    t = recipe.train
    backbone_ids = {id(p) for p in getattr(model, "backbone", nn.Module()).parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        groups.setdefault((id(p) in backbone_ids, p.ndim <= 1), []).append(p)
    param_groups = []
    for (is_backbone, no_decay), params in sorted(groups.items()):
        lr = t.lr * (t.backbone_lr_mult if is_backbone else 1.0)
        param_groups.append(
            {
                "params": params,
                "lr": lr,
                "base_lr": lr,
                "backbone": is_backbone,
                "weight_decay": 0.0 if no_decay else t.weight_decay,
            }
        )
    if t.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=t.lr, momentum=t.momentum, nesterov=True)
    return torch.optim.AdamW(param_groups, lr=t.lr)


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int,
    milestones: Sequence[int] | None = None,
    gamma: float = 0.1,
) -> float:
    """Linear warm-up from 1/warmup to 1, then cosine decay to 0 at ``total_steps``, or, with ``milestones``
    (global steps), a step decay: ``gamma ** (number of milestones <= step)`` (torch's MultiStepLR).

    E.g. warmup 10, total 110: step 0 -> 0.1, step 9 -> 1.0, step 60 -> 0.5, step 109 -> ~0.0002.
    Multistep, 100 epochs of 10 steps, milestones at epochs 50 and 75 (steps 500, 750), no warm-up:
    step 499 -> 1.0, step 500 -> 0.1, step 749 -> 0.1, step 750 -> 0.01.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if milestones is not None:
        return float(gamma ** sum(1 for m in milestones if step >= m))
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps + 1) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def milestone_steps(train_cfg: TrainConfig, per_epoch: int) -> list[int] | None:
    """Global steps of ``train.milestones`` (fractions of the epochs, rounded to whole epochs) for the
    multistep schedule; None for cosine. 100 epochs, [0.5, 0.75]: the first steps of epochs 51 and 76."""
    if train_cfg.schedule != "multistep":
        return None
    return [int(round(m * train_cfg.epochs)) * per_epoch for m in train_cfg.milestones]


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return max(g["lr"] for g in optimizer.param_groups)


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Linear-probe warm-up: the backbone takes no gradient (its BatchNorm statistics still adapt)."""
    for p in getattr(model, "backbone", nn.Module()).parameters():
        p.requires_grad_(not frozen)


def autocast_context(precision: Precision, device: torch.device) -> torch.autocast:
    """bf16 autocast on CPU; fp16 or bf16 on CUDA; fp32: no autocast."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.float16 if precision == "fp16" and device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)
