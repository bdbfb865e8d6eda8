"""Grad-CAM: heat maps in [0, 1] that point at the evidence, overlays, and the report gallery entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resnet_apps.models.explain import gradcam, save_gradcam_gallery, save_overlay, target_layer
from resnet_apps.models.heads import build_model


class MeanNet(torch.nn.Module):
    """Logit 1 = mean of ``backbone.layer4`` (a 1x1 conv with weight 1, so its map equals the input).

    Grad-CAM weights the layer's channel by its mean gradient (1/64 > 0), so the heat map is the
    activation itself, min-max normalised: 1 where the input is 1, 0 where it is 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Module()
        self.backbone.layer4 = torch.nn.Conv2d(1, 1, 1, bias=False)
        torch.nn.init.ones_(self.backbone.layer4.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.relu(self.backbone.layer4(x)).mean(dim=(1, 2, 3))  # layer4: [B, 1, 8, 8]
        return torch.stack([-mean, mean], dim=1)


def test_heat_map_points_at_the_evidence() -> None:
    x = torch.zeros(1, 8, 8)
    x[:, :4, :4] = 1.0  # the evidence: the top-left quadrant
    heat = gradcam(MeanNet(), x, class_idx=1)
    assert heat.shape == (8, 8) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == 1.0
    np.testing.assert_allclose(heat[:4, :4], 1.0, atol=1e-6)
    np.testing.assert_allclose(heat[4:, :], 0.0, atol=1e-6)
    np.testing.assert_allclose(heat[:, 4:], 0.0, atol=1e-6)


def test_overlay_png(tmp_path: Path) -> None:
    image = torch.linspace(-1, 1, 3 * 16 * 16).reshape(3, 16, 16)
    heat = np.zeros((16, 16), dtype=np.float32)
    heat[8:, 8:] = 1.0
    path = save_overlay(image, heat, tmp_path / "o" / "x.png", alpha=1.0)
    png = np.asarray(Image.open(path))
    assert png.shape == (16, 16, 3)
    # alpha 1: pure jet colours: 1.0 is dark red (128, 0, 0), 0.0 is dark blue (0, 0, 128)
    assert tuple(png[12, 12]) == (128, 0, 0) and tuple(png[0, 0]) == (0, 0, 128)


def test_gallery_entries_for_the_report(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("classification", "resnet18", in_chans=3, num_classes=2).eval()
    assert target_layer(model) == "backbone.layer4"
    samples = [
        {"image": torch.randn(3, 32, 32), "label": torch.tensor(k % 2), "meta": {"path": f"{k}.png"}}
        for k in range(6)
    ]
    entries = save_gradcam_gallery(model, samples, ["NORMAL", "PNEUMONIA"], tmp_path / "gallery", n=4)
    assert len(entries) == 4
    for i, entry in enumerate(entries, start=1):
        assert set(entry) == {"image", "true", "pred", "prob", "score_of", "correct"}
        assert entry["score_of"] == "PNEUMONIA"  # binary: the score is p(positive), whatever was predicted
        assert entry["image"] == f"gallery/{i:04d}.png" and (tmp_path / entry["image"]).is_file()
        assert 0.0 <= entry["prob"] <= 1.0
        # binary: prob is p(PNEUMONIA); the label follows the 0.5 threshold
        assert (
            entry["pred"] == ("PNEUMONIA" if entry["prob"] >= 0.5 else "NORMAL")
            or abs(entry["prob"] - 0.5) < 1e-3
        )
        assert entry["correct"] == (entry["pred"] == entry["true"])
    # wrong and right predictions alternate while both exist
    kinds = [e["correct"] for e in entries]
    if 0 < sum(kinds) < len(kinds):
        assert kinds[0] is False and kinds[1] is True


def test_gallery_shows_every_true_class_and_says_whose_score(tmp_path: Path) -> None:
    """A test split sorted by class (8 NORMAL, then 8 PNEUMONIA) still gives positive cases in the gallery."""
    from resnet_apps.report import results

    torch.manual_seed(1)
    model = build_model("classification", "resnet18", in_chans=3, num_classes=1).eval()
    samples = [{"image": torch.randn(3, 32, 32), "label": torch.tensor(k // 8)} for k in range(16)]
    entries = save_gradcam_gallery(model, samples, ["NORMAL", "PNEUMONIA"], tmp_path / "gallery", n=4)
    assert {e["true"] for e in entries} == {"NORMAL", "PNEUMONIA"}
    html = results.gradcam({"gradcam": entries}, tmp_path)
    assert "p(PNEUMONIA) " in html and "score " not in html.split("</p>", 1)[1]
