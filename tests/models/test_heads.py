"""Heads: family x in_chans x task shapes, FPN structure, padding, binary/multi-label, shared backbone."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_apps import backbone_info, build_model, create_backbone
from resnet_apps.models.heads import FPNDecoder


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    # On a shared 2-core machine OpenMP threads spin against each other: one thread is ~20x faster here
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FAMILIES = [
    "resnet18",  # basic blocks, plain stem
    "resnet50",  # bottlenecks, channels 256..2048
    "resnet18d",  # deep stem: conv1 is a Sequential (first conv "conv1.0")
]
IN_CHANS = [1, 3, 4, 13]  # grey X-ray, RGB, RGB+NIR, Sentinel-2 L1C
TASKS = ["classification", "segmentation"]


@functools.cache
def _backbone(name: str, in_chans: int) -> nn.Module:
    # one backbone per (family, in_chans), serving both heads: also the "one backbone, two heads" case
    torch.manual_seed(0)
    return create_backbone(name, in_chans=in_chans).eval()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("in_chans", IN_CHANS)
@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_match_backbone_info(name: str, in_chans: int, task: str) -> None:
    info = backbone_info(name, in_chans=in_chans)
    backbone = _backbone(name, in_chans)
    model = build_model(task, backbone=backbone, num_classes=5).eval()
    x = torch.randn(1, in_chans, 32, 32)  # small: the stride-32 map is 1 x 1
    with torch.no_grad():
        features = backbone(x)
        logits = model(x)
    assert [f.shape[1] for f in features] == info["channels"]
    assert [32 // f.shape[-1] for f in features] == info["strides"] == [4, 8, 16, 32]
    expected = (1, 5) if task == "classification" else (1, 5, 32, 32)
    assert tuple(logits.shape) == expected
    assert model.backbone is backbone and model.model_config["in_chans"] == in_chans
    assert model.model_config["backbone"] == name and model.task == task
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("kwargs", "shape", "activation"),
    [
        (dict(num_classes=1), (2, 1), "sigmoid"),  # binary: one logit
        (dict(num_classes=14, multilabel=True), (2, 14), "sigmoid"),  # ChestX-ray14 style
        (dict(num_classes=10), (2, 10), "softmax"),  # EuroSAT style
        (dict(num_classes=3, pooling="catavgmax"), (2, 3), "softmax"),  # pooled features 2 x 512
    ],
)
def test_classification_variants(kwargs: dict, shape: tuple, activation: str) -> None:
    model = build_model("classification", backbone="resnet18", in_chans=1, **kwargs).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 32, 32))
    assert tuple(logits.shape) == shape
    assert model.output_activation == activation
    pool_mult = 2 if kwargs.get("pooling") == "catavgmax" else 1
    assert model.fc.in_features == 512 * pool_mult


def test_classification_is_linear_on_pooled_features() -> None:
    model = build_model(
        "classification", backbone=_backbone("resnet18", 3), num_classes=4, dropout=0.5
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pooled = model.backbone(x)[-1].mean(dim=(2, 3))  # global average pooling, by hand
        expected = pooled @ model.fc.weight.T + model.fc.bias
        assert torch.allclose(model(x), expected, atol=1e-5)  # dropout is off in eval


def test_fpn_upsampling_stages_per_level() -> None:
    decoder = FPNDecoder([64, 128, 256, 512], [4, 8, 16, 32], fpn_channels=32, segmentation_channels=16)
    # Panoptic FPN: p2 one conv, p3 one (conv, up), p4 two, p5 three -> 0, 1, 2, 3 upsamplings
    ups = [sum(isinstance(m, nn.Upsample) for m in branch.modules()) for branch in decoder.branches]
    convs = [sum(isinstance(m, nn.Conv2d) for m in branch.modules()) for branch in decoder.branches]
    assert ups == [0, 1, 2, 3] and convs == [1, 1, 2, 3]
    levels = zip([64, 128, 256, 512], [4, 8, 16, 32], strict=True)
    features = [torch.randn(1, c, 64 // s, 64 // s) for c, s in levels]
    assert tuple(decoder(features).shape) == (1, 16, 16, 16)  # merged at stride 4


def test_fpn_rejects_non_pyramid_strides() -> None:
    with pytest.raises(ValueError, match="successive strides"):
        FPNDecoder([64, 128], [4, 16])


@pytest.mark.parametrize(("height", "width"), [(40, 45), (33, 70), (64, 32)])
def test_segmentation_pads_to_32_and_crops_back(height: int, width: int) -> None:
    model = build_model(
        "segmentation", backbone=_backbone("resnet18", 4), num_classes=3, fpn_channels=32
    ).eval()
    x = torch.randn(1, 4, height, width)
    padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32  # next multiples of 32
    with torch.no_grad():
        logits = model(x)
        # the same computation by hand: zero-pad bottom/right, run, upsample, crop
        padded = F.pad(x, (0, padded_w - width, 0, padded_h - height))
        full = model.classifier(model.decoder(model.backbone(padded)))
        full = F.interpolate(full, size=(padded_h, padded_w), mode="bilinear", align_corners=False)
    assert tuple(logits.shape) == (1, 3, height, width)
    assert torch.allclose(logits, full[..., :height, :width], atol=1e-5)


def test_one_backbone_serves_both_heads() -> None:
    backbone = create_backbone("resnet18", in_chans=4)
    seg = build_model("segmentation", backbone=backbone, num_classes=6, fpn_channels=32)
    clf = build_model("classification", backbone=backbone, num_classes=2)
    assert seg.backbone is clf.backbone
    # a step through the classifier changes what the segmenter sees: the parameters are shared
    before = seg.backbone.conv1.weight.detach().clone()
    optimizer = torch.optim.SGD(clf.parameters(), lr=1.0)
    clf(torch.randn(2, 4, 32, 32)).sum().backward()
    optimizer.step()
    assert not torch.equal(seg.backbone.conv1.weight, before)
    assert seg.pretrained_cfg is clf.pretrained_cfg


def test_bad_task() -> None:
    with pytest.raises(ValueError, match="task"):
        build_model("detection", backbone="resnet18")
