"""Backbones: names, feature shapes against backbone_info, parameter counts, argument checks."""

from __future__ import annotations

import pytest
import torch

from resnet_apps import backbone_info, create_backbone, list_backbones
from resnet_apps.errors import UnknownBackboneError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    # On a shared 2-core machine OpenMP threads spin against each other: one thread is ~20x faster here
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The family x in_chans x task cross product (forward shapes against backbone_info) is in test_heads.py,
# where each backbone is built once and serves both heads.


@pytest.mark.parametrize("in_chans", [1, 13])  # grey X-ray, Sentinel-2 L1C
def test_features_match_backbone_info(in_chans: int) -> None:
    info = backbone_info("resnet18", in_chans=in_chans)
    backbone = create_backbone("resnet18", in_chans=in_chans).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, in_chans, 64, 64))
    assert len(features) == 4
    assert [f.shape[1] for f in features] == info["channels"] == backbone.feature_info.channels()
    assert info["strides"] == [4, 8, 16, 32] == backbone.feature_info.reduction()
    assert [tuple(f.shape[-2:]) for f in features] == [(64 // s, 64 // s) for s in info["strides"]]
    assert sum(p.numel() for p in backbone.parameters()) == info["params"]
    assert backbone.weights_source == "none" and backbone.imagenet_weights_used is False
    assert backbone.in_chans == in_chans


@pytest.mark.parametrize(
    ("name", "channels", "params"),
    [
        # torchvision's resnet18 has 11,689,512 parameters; minus fc (512 * 1000 + 1000) = 11,176,512
        ("resnet18", [64, 128, 256, 512], 11_689_512 - 513_000),
        # resnet50: 25,557,032 minus fc (2048 * 1000 + 1000)
        ("resnet50", [256, 512, 1024, 2048], 25_557_032 - 2_049_000),
        ("wide_resnet50_2", [256, 512, 1024, 2048], 68_883_240 - 2_049_000),
    ],
)
def test_backbone_info_counts(name: str, channels: list[int], params: int) -> None:
    info = backbone_info(name)
    assert info["channels"] == channels
    assert info["params"] == params
    assert info["params_with_classifier"] - info["params"] == channels[-1] * 1000 + 1000
    assert info["mean"] == (0.485, 0.456, 0.406) and info["std"] == (0.229, 0.224, 0.225)
    assert info["input_size"] == (3, 224, 224)


def test_backbone_info_in_chans_changes_only_conv1() -> None:
    # conv1 of resnet18 is 64 x C x 7 x 7 without bias: 13 bands add 64 * 10 * 49 weights
    assert (
        backbone_info("resnet18", in_chans=13)["params"] - backbone_info("resnet18")["params"] == 64 * 10 * 49
    )


def test_backbone_info_reports_tag_weights_metadata() -> None:
    info = backbone_info("resnet50.tv_in1k")
    assert info["tag"] == "resnet50.tv_in1k"
    assert info["interpolation"] == "bilinear"  # torchvision weights: bilinear, unlike a1_in1k's bicubic
    assert info["hf_hub_id"] == "timm/resnet50.tv_in1k"
    assert backbone_info("resnet50")["tag"] == "resnet50.a1_in1k"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("resnet5", "resnet50"),  # typo: close match suggested
        ("resnet_50", "resnet50"),
        ("vit_base_patch16_224", None),  # a real timm model, not a ResNet
        ("resnetv2_50", None),  # pre-activation ResNet: another key layout, refused
    ],
)
def test_unknown_backbone(name: str, suggestion: str | None) -> None:
    with pytest.raises(UnknownBackboneError, match="not a ResNet-family") as caught:
        create_backbone(name)
    if suggestion:
        assert suggestion in str(caught.value)


def test_unknown_tag_lists_known_tags() -> None:
    with pytest.raises(UnknownBackboneError, match="a1_in1k"):
        backbone_info("resnet50.a1_in1kk")


def test_list_backbones() -> None:
    names = list_backbones()
    for expected in [
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet50d",
        "wide_resnet50_2",
        "resnext50_32x4d",
        "seresnet50",
        "resnet18d",
        "ecaresnet50d",
        "seresnext50_32x4d",
    ]:
        assert expected in names
    assert not any(n.startswith(("vit", "resnetv2", "test_")) for n in names)
    pretrained = list_backbones(pretrained_only=True)
    assert set(pretrained) <= set(names) and "resnet50" in pretrained


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(in_chans=0), "in_chans"),
        (dict(conv1_init="random"), "conv1_init"),
        (dict(conv1_init="rgb_bands"), "needs rgb_bands"),
        (
            dict(in_chans=4, conv1_init="rgb_bands", rgb_bands=(0, 1, 4)),
            "distinct band indices",
        ),  # 4 out of range
        (dict(in_chans=4, conv1_init="rgb_bands", rgb_bands=(0, 0, 1)), "distinct band indices"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_backbone("resnet18", **kwargs)


def test_out_indices() -> None:
    backbone = create_backbone("resnet18", out_indices=(2, 4))
    features = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == [128, 512]
    assert backbone_info("resnet18", out_indices=(2, 4))["strides"] == [8, 32]
