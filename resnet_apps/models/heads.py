"""Task heads on a ResNet backbone: ``ClassificationModel``, ``FPNDecoder``, ``SegmentationModel``.

``build_model`` assembles one from a backbone name or module.

One backbone instance may serve both heads (pass the module as ``backbone=`` twice): they then share its
parameters. Every model carries ``backbone``, ``pretrained_cfg`` (the weights' mean/std) and
``model_config`` (the plain dict that ``checkpoint.load_run`` rebuilds it from).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from torch import nn

from resnet_apps.constants import POOLINGS, TASKS, Pooling, Task
from resnet_apps.models.backbones import cifar_stem, create_backbone

HEADS = ("linear", "residual_mlp")
STEMS = ("imagenet", "cifar")
RESIDUAL_MLP_BLOCKS = 2  # pre-norm residual blocks of the residual_mlp head
RESIDUAL_MLP_EXPANSION = 0.25  # hidden width / pooled width (2048 -> 512 on resnet50)


class ResidualMLPBlock(nn.Module):
    """x + Dropout(Linear(Dropout(GELU(Linear(LayerNorm(x)))))): a pre-norm residual MLP block.

    The second linear layer starts at zero, so the block starts as the identity and the head as the
    linear one: the shortcut, not the MLP, carries the features until training finds a use for the MLP.
    """

    def __init__(self, width: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, D] -> [B, D]."""
        return x + self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(self.norm(x))))))


def residual_mlp(width: int, dropout: float, blocks: int = RESIDUAL_MLP_BLOCKS) -> nn.Sequential:
    """``blocks`` pre-norm residual MLP blocks over pooled features of ``width``."""
    hidden = max(1, int(width * RESIDUAL_MLP_EXPANSION))
    return nn.Sequential(*(ResidualMLPBlock(width, hidden, dropout) for _ in range(blocks)))


class ClassificationModel(nn.Module):
    """Backbone -> global pooling of the last map -> [residual MLP blocks] -> dropout -> linear.

    ``head="linear"``: the classifier sits on the pooled features. ``head="residual_mlp"``: the pooled
    features first pass :data:`RESIDUAL_MLP_BLOCKS` pre-norm residual MLP blocks (:class:`ResidualMLPBlock`).

    Multi-class: K logits (softmax over them). Binary: ``num_classes=1`` gives one logit (sigmoid).
    Multi-label: K independent logits (sigmoid each). ``output_activation`` names which.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        multilabel: bool = False,
        dropout: float = 0.0,
        pooling: Pooling = "avg",
        head: str = "linear",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.pool = SelectAdaptivePool2d(pool_type=pooling, flatten=True)
        self.dropout = nn.Dropout(dropout)
        in_features = _feature_info(backbone).channels()[-1] * self.pool.feat_mult()
        # nn.Identity has no parameters: linear-head checkpoints keep their keys
        self.mlp = residual_mlp(in_features, dropout) if head == "residual_mlp" else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)
        self.head = head
        self.num_classes = num_classes
        self.multilabel = multilabel
        self.output_activation = "sigmoid" if multilabel or num_classes == 1 else "softmax"

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return cast("dict[str, Any]", getattr(self.backbone, "pretrained_cfg", {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> logits [B, K]."""
        return self.fc(self.dropout(self.mlp(self.pool(self.backbone(x)[-1]))))


def _feature_info(backbone: nn.Module) -> Any:
    """timm's FeatureInfo of a create_backbone module (channels(), reduction())."""
    return getattr(backbone, "feature_info")  # noqa: B009 - a dynamic attribute nn.Module does not declare


def _conv_gn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    # GroupNorm with 32 groups as in Panoptic FPN (batch-size independent: segmentation batches are small)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(math.gcd(32, out_channels), out_channels),
        nn.ReLU(inplace=True),
    )


class FPNDecoder(nn.Module):
    """FPN and the semantic branch of Panoptic FPN (Kirillov et al. 2019, Fig. 3).

    c2..c5 -> lateral 1x1 convs -> top-down: p5 = l5, p4 = l4 + up2(p5), ... -> 3x3 smoothing -> each p_i goes
    through log2(s_i / s_min) stages of (3x3 conv, GroupNorm, ReLU, 2x bilinear upsampling), p2 through one
    conv stage without upsampling, so all reach stride s_min (4) -> merged by summation.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        fpn_channels: int = 256,
        segmentation_channels: int = 128,
    ) -> None:
        super().__init__()
        pairs = zip(strides, strides[1:], strict=False)
        if list(strides) != sorted(strides) or any(b != 2 * a for a, b in pairs):
            raise ValueError(
                f"FPN needs feature maps at successive strides (4, 8, 16, 32), got {list(strides)}"
            )
        self.strides = list(strides)
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1) for _ in in_channels)
        self.branches = nn.ModuleList()
        for stride in strides:
            n_up = int(math.log2(stride // strides[0]))
            stages: list[nn.Module] = [_conv_gn_relu(fpn_channels, segmentation_channels)]
            for i in range(n_up):
                if i > 0:
                    stages.append(_conv_gn_relu(segmentation_channels, segmentation_channels))
                stages.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.branches.append(nn.Sequential(*stages))
        self.out_channels = segmentation_channels

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """[c2 [B, C2, H/4, W/4], ..., c5 [B, C5, H/32, W/32]] -> [B, segmentation_channels, H/4, W/4]."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        pyramid = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):  # top-down pathway: coarse to fine
            pyramid.insert(0, lateral + F.interpolate(pyramid[0], size=lateral.shape[-2:], mode="nearest"))
        merged = None
        for smooth, branch, p in zip(self.smooth, self.branches, pyramid, strict=True):
            out = branch(smooth(p))
            merged = out if merged is None else merged + out
        assert merged is not None
        return merged


class SegmentationModel(nn.Module):
    """Backbone -> FPNDecoder -> 1x1 classifier -> bilinear upsampling to the input size.

    Inputs whose height or width is not a multiple of the coarsest stride (32) are zero-padded on the
    bottom and right up to the next multiple, and the logits are cropped back, so any H, W works and
    every output pixel lines up with its input pixel. (Zero is the mean after normalisation.)
    """

    def __init__(
        self, backbone: nn.Module, num_classes: int, fpn_channels: int = 256, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        strides = list(_feature_info(backbone).reduction())
        self.decoder = FPNDecoder(_feature_info(backbone).channels(), strides, fpn_channels)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(self.decoder.out_channels, num_classes, 1)
        self.pad_multiple = strides[-1]
        self.num_classes = num_classes
        self.output_activation = "sigmoid" if num_classes == 1 else "softmax"

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return cast("dict[str, Any]", getattr(self.backbone, "pretrained_cfg", {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> logits [B, K, H, W] (any H, W: padded to a multiple of 32, cropped back)."""
        height, width = x.shape[-2:]
        pad_h = -height % self.pad_multiple
        pad_w = -width % self.pad_multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.classifier(self.dropout(self.decoder(self.backbone(x))))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :height, :width]


def build_model(
    task: Task,
    backbone: str | nn.Module = "resnet50",
    in_chans: int = 3,
    num_classes: int = 2,
    weights: str | os.PathLike[str] = "none",
    multilabel: bool = False,
    dropout: float = 0.0,
    pooling: Pooling = "avg",
    fpn_channels: int = 256,
    conv1_init: str = "timm",
    rgb_bands: Sequence[int] | None = None,
    head: str = "linear",
    stem: str = "imagenet",
) -> nn.Module:
    """A classification or segmentation model on a ResNet backbone.

    Args:
        task: "classification" (logits [B, K]) or "segmentation" (logits [B, K, H, W]).
        backbone: timm name ("resnet50", "resnet50.tv_in1k") or a module from :func:`create_backbone`
            (then ``in_chans``, ``weights``, ``conv1_init``, ``rgb_bands`` are the module's own).
        in_chans: input bands.
        num_classes: K; 1 gives a single binary logit.
        weights: see :func:`resnet_apps.models.backbones.create_backbone`.
        multilabel: classification with K independent sigmoid outputs.
        dropout: before the classifier.
        pooling: "avg", "max", "avgmax" or "catavgmax" (classification).
        fpn_channels: FPN width (segmentation).
        conv1_init, rgb_bands: see :func:`resnet_apps.models.backbones.create_backbone`.
        head: "linear" or "residual_mlp" (classification; see :class:`ClassificationModel`).
        stem: "imagenet" (timm's) or "cifar" (3x3 stride-1 conv1, no max-pool: ``backbones.cifar_stem``).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if head not in HEADS or (task == "segmentation" and head != "linear"):
        raise ValueError(f"head must be one of {HEADS} (segmentation: linear), got {head!r} for {task}")
    if isinstance(backbone, nn.Module):
        module = backbone
        if not hasattr(module, "feature_info"):
            raise TypeError("backbone module must come from create_backbone (needs .feature_info)")
        in_chans = int(getattr(module, "in_chans", in_chans))
        name = str(getattr(module, "backbone_name", type(module).__name__))
        conv1_init = str(getattr(module, "conv1_init", conv1_init))
    else:
        name = backbone
        module = create_backbone(
            backbone, in_chans=in_chans, weights=weights, conv1_init=conv1_init, rgb_bands=rgb_bands
        )
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
    if stem == "cifar":
        cifar_stem(module)
    model: Any  # gets the plain attributes task and model_config
    if task == "classification":
        model = ClassificationModel(
            module, num_classes, multilabel=multilabel, dropout=dropout, pooling=pooling, head=head
        )
    else:
        model = SegmentationModel(module, num_classes, fpn_channels=fpn_channels, dropout=dropout)
    model.task = task
    model.model_config = {
        "backbone": name,
        "in_chans": int(in_chans),
        "num_classes": int(num_classes),
        "multilabel": bool(multilabel),
        "dropout": float(dropout),
        "pooling": pooling,
        "fpn_channels": int(fpn_channels),
        "conv1_init": conv1_init,
        "head": head,
        "stem": stem,
    }
    return model
