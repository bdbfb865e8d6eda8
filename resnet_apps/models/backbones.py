"""ResNet backbones through timm: ``create_backbone``, ``list_backbones``, ``backbone_info``.

A backbone is timm's ``features_only`` model (a plain ``nn.Module``) of a model defined in timm's
``resnet.py``: resnet18 ... resnet200, the ``c/d/s/t`` stems, wide_resnet, resnext, seresnet(xt),
ecaresnet, resnetaa/blur, resnetrs. They share torchvision's key layout, so any of their state dicts
(timm or torchvision) loads unchanged. Pre-activation ResNetV2, BiT, CLIP ResNets are other files and
other layouts, and are rejected by name.

Example::

    backbone = create_backbone("resnet50", in_chans=13, weights="imagenet")
    c2, c3, c4, c5 = backbone(x)        # x [B, 13, H, W] -> strides 4, 8, 16, 32
    backbone.feature_info.channels()    # [256, 512, 1024, 2048]
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Sequence
from typing import Any

import timm
import torch
from torch import nn

from resnet_apps.errors import UnknownBackboneError, WeightsFormatError
from resnet_apps.weights.conv1 import first_conv_weight, rgb_band_conv1
from resnet_apps.weights.locations import ResolvedWeights, resnet_family
from resnet_apps.weights.resolve import resolve_weights

CONV1_INITS = ("timm", "rgb_bands")


def list_backbones(pretrained_only: bool = False) -> list[str]:
    """Architecture names accepted by :func:`create_backbone`.

    Args:
        pretrained_only: keep only architectures for which timm knows ImageNet weights.
    """
    names = resnet_family()
    if pretrained_only:
        with_weights = {tag.split(".")[0] for tag in timm.list_pretrained()}
        names = tuple(n for n in names if n in with_weights)
    return list(names)


def check_name(name: str) -> tuple[str, str | None]:
    """Split "resnet50.a1_in1k" into ("resnet50", "a1_in1k") after checking both exist.

    Raises:
        UnknownBackboneError: not a ResNet-family model of timm, or an unknown tag (with close matches).
    """
    arch, _, tag = name.partition(".")
    family = resnet_family()
    if arch not in family:
        close = difflib.get_close_matches(arch, family, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownBackboneError(
            f"unknown backbone {name!r}: not a ResNet-family model of timm. {hint}"
            "See `resnet_apps.list_backbones()` (resnet18/34/50/101/152, resnet50d, wide_resnet50_2, "
            "resnext50_32x4d, seresnet50, ...)"
        )
    if tag:
        tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{arch}.*")]
        if tag not in tags:
            close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.5)
            raise UnknownBackboneError(
                f"unknown pretrained tag {tag!r} for {arch}; known: {', '.join(close or tags[:8])}"
            )
    return arch, tag or None


@functools.lru_cache(maxsize=32)
def _meta_info(name: str, in_chans: int, out_indices: tuple[int, ...]) -> dict[str, Any]:
    # Built on the meta device: shapes only, no memory, no init cost; once per (name, in_chans, out_indices).
    features: Any
    with torch.device("meta"):
        full = timm.create_model(name, pretrained=False, in_chans=in_chans)
        features = timm.create_model(
            name, pretrained=False, in_chans=in_chans, features_only=True, out_indices=out_indices
        )
    cfg = timm.models.get_pretrained_cfg(name)
    return {
        "channels": list(features.feature_info.channels()),
        "strides": list(features.feature_info.reduction()),
        "params": sum(p.numel() for p in features.parameters()),
        "params_with_classifier": sum(p.numel() for p in full.parameters()),
        "state_shapes": {k: tuple(v.shape) for k, v in full.state_dict().items()},
        "first_conv": cfg.first_conv if cfg and cfg.first_conv else "conv1",
        "classifier": cfg.classifier if cfg and cfg.classifier else "fc",
    }


def backbone_info(name: str, in_chans: int = 3, out_indices: Sequence[int] = (1, 2, 3, 4)) -> dict[str, Any]:
    """What a backbone gives and expects, from timm's registry and a build on the meta device.

    Args:
        name: timm name, optionally tagged ("resnet50", "resnet50.tv_in1k").
        in_chans: input bands (changes only conv1's parameter count).
        out_indices: feature levels as in :func:`create_backbone`.

    Returns:
        {"name", "architecture", "tag", "channels" [per level], "strides" [per level], "params" (backbone),
         "params_with_classifier", "mean", "std", "input_size", "interpolation", "crop_pct", "hf_hub_id",
         "url", "license", "first_conv"}.
    """
    arch, _ = check_name(name)
    meta = _meta_info(name, int(in_chans), tuple(out_indices))
    cfg = timm.models.get_pretrained_cfg(name)
    cfg_dict = cfg.to_dict() if cfg is not None else {}
    return {
        "name": name,
        "architecture": arch,
        "tag": f"{arch}.{cfg_dict['tag']}" if cfg_dict.get("tag") else None,
        "channels": list(meta["channels"]),
        "strides": list(meta["strides"]),
        "params": meta["params"],
        "params_with_classifier": meta["params_with_classifier"],
        "mean": tuple(cfg_dict.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(cfg_dict.get("std", (0.229, 0.224, 0.225))),
        "input_size": tuple(cfg_dict.get("input_size", (3, 224, 224))),
        "interpolation": cfg_dict.get("interpolation", "bicubic"),
        "crop_pct": cfg_dict.get("crop_pct"),
        "hf_hub_id": cfg_dict.get("hf_hub_id"),
        "url": cfg_dict.get("url"),
        "license": cfg_dict.get("license"),
        "first_conv": meta["first_conv"],
    }


def _check_against_model(resolved: ResolvedWeights, name: str, in_chans: int) -> None:
    """Refuse a source whose tensors do not fit ``name`` (timm loads non-strictly once fc is dropped)."""
    if resolved.shapes is None:
        return
    meta = _meta_info(name, int(in_chans), (1, 2, 3, 4))
    classifier, first_conv = meta["classifier"], meta["first_conv"]
    expected = {k: s for k, s in meta["state_shapes"].items() if not k.startswith(f"{classifier}.")}
    missing = sorted(k for k in expected if k not in resolved.shapes)
    wrong = sorted(
        k
        for k, s in expected.items()
        if k in resolved.shapes and k != f"{first_conv}.weight" and tuple(resolved.shapes[k]) != tuple(s)
    )
    if missing or wrong:
        detail = f"missing {missing[:4]}" if missing else f"shape mismatch in {wrong[:4]}"
        raise WeightsFormatError(
            f"weights {resolved.source} do not fit backbone {name!r}: {detail} "
            f"({len(missing)} missing, {len(wrong)} mismatched). Check that the file was saved from a {name} "
            "(timm or torchvision layout), or change the backbone field"
        )


def cifar_stem(model: nn.Module) -> nn.Module:
    """Replace a timm ResNet feature extractor's stem in place by the CIFAR one; returns the model.

    conv1 becomes a 3x3 stride-1 convolution (same input and output channels, freshly initialised) and the
    max-pool an identity, so layer1 sees the input at full resolution: the ResNet-18 (28) of MedMNIST v2
    (``MedMNIST/experiments``, models.py) and He et al.'s CIFAR networks. The recorded feature reductions
    are divided by 4 accordingly (layer1 .. layer4: strides 1, 2, 4, 8).
    """
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise ValueError(
            "model.stem: cifar needs a ResNet with a single conv1 and a max-pool (resnet18, resnet34, "
            f"resnet50, ...); {getattr(model, 'backbone_name', type(model).__name__)} has a deep stem"
        )
    model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    feature_info: Any = model.feature_info  # timm's FeatureInfo: a list of dicts in .info
    for info in feature_info.info:
        info["reduction"] = max(1, int(info["reduction"]) // 4)
    return model


def create_backbone(
    name: str,
    in_chans: int = 3,
    weights: str | os.PathLike[str] = "none",
    out_indices: Sequence[int] = (1, 2, 3, 4),
    conv1_init: str = "timm",
    rgb_bands: Sequence[int] | None = None,
) -> nn.Module:
    """A ResNet feature extractor with weights resolved offline-first.

    Args:
        name: timm ResNet-family name, optionally tagged ("resnet50", "resnet50.tv_in1k").
        in_chans: input bands (>= 1). With pretrained weights timm adapts conv1: 1 band sums the RGB
            filters; N bands repeat R, G, B, R, ... and scale by 3/N.
        weights: "none" (random init, never touches the network), "imagenet" (timm's default tag for
            ``name`` or the tag in ``name``), a timm tag, a .safetensors/.pth/.bin file (timm or torchvision
            layout) or a run directory of ours (its backbone). See :mod:`resnet_apps.weights.resolve`.
        out_indices: feature levels; 1..4 are the outputs of layer1..layer4 (strides 4, 8, 16, 32).
        conv1_init: "timm" (above) or "rgb_bands": copy the RGB filters onto bands ``rgb_bands`` and give
            the others the mean RGB filter, all scaled by 3/N (see ``weights.rgb_band_conv1``).
            Only meaningful with RGB pretrained weights; with weights="none" it is a no-op.
        rgb_bands: (red, green, blue) band indices into the input, e.g. Sentinel-2 B04, B03, B02.

    Returns:
        timm ``FeatureListNet``: forward(x [B, in_chans, H, W]) -> list of [B, C_i, H / s_i, W / s_i].
        Attributes: ``feature_info`` (channels(), reduction()), ``pretrained_cfg`` (mean, std, ...),
        ``weights_source`` ("none", a path), ``imagenet_weights_used``, ``backbone_name``, ``in_chans``,
        ``conv1_init``.

    Raises:
        UnknownBackboneError, WeightsUnavailableError (offline, in under 5 s), WeightsFormatError.
    """
    arch, _ = check_name(name)
    if int(in_chans) < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    if conv1_init not in CONV1_INITS:
        raise ValueError(f"conv1_init must be one of {CONV1_INITS}, got {conv1_init!r}")
    if conv1_init == "rgb_bands" and rgb_bands is None:
        raise ValueError("conv1_init='rgb_bands' needs rgb_bands=(red, green, blue) band indices")
    if rgb_bands is not None:
        bands = [int(i) for i in rgb_bands]
        if len(bands) != 3 or len(set(bands)) != 3 or not all(0 <= i < int(in_chans) for i in bands):
            raise ValueError(
                f"rgb_bands must be 3 distinct band indices in [0, {in_chans}), got {tuple(rgb_bands)}; "
                "fix data.rgb_bands in the recipe (e.g. [B04, B03, B02] for Sentinel-2)"
            )
    resolved = resolve_weights(name, weights)
    model: Any  # timm's FeatureListNet, with the attributes set below
    kwargs: dict[str, Any] = dict(features_only=True, out_indices=tuple(out_indices), in_chans=int(in_chans))
    if resolved.kind == "none":
        model = timm.create_model(name, pretrained=False, **kwargs)
    else:
        _check_against_model(resolved, arch, in_chans)
        cfg = timm.models.get_pretrained_cfg(resolved.tag or name)
        input_size = tuple(cfg.input_size) if cfg is not None else (3, 224, 224)
        # input_size[0] tells timm how many channels the source kernel has, so that it adapts from there
        overlay: dict[str, Any] = {"input_size": (resolved.source_in_chans, *input_size[1:])}
        if resolved.kind == "file":
            overlay["file"] = str(resolved.path)
        else:
            overlay["state_dict"] = resolved.state_dict
        model = timm.create_model(
            resolved.tag or name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
        )
        # keep the cfg light and JSON-able: the tensors are in the model now; restore the weights' own size
        model.pretrained_cfg.pop("state_dict", None)
        model.pretrained_cfg["input_size"] = input_size
        if conv1_init == "rgb_bands":
            first_conv = _meta_info(arch, int(in_chans), (1, 2, 3, 4))["first_conv"]
            source = first_conv_weight(resolved, first_conv)
            conv = model.get_submodule(first_conv)
            with torch.no_grad():
                conv.weight.copy_(rgb_band_conv1(source, int(in_chans), rgb_bands or ()))
    model.weights_source = resolved.source
    model.imagenet_weights_used = resolved.imagenet
    model.backbone_name = name
    model.in_chans = int(in_chans)
    model.conv1_init = conv1_init if resolved.kind != "none" else "timm"
    return model
