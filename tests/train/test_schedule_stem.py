"""train.schedule multistep (MedMNIST's MultiStepLR) and model.stem cifar (3x3 stride-1, no max-pool)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet_apps.errors import RecipeError
from resnet_apps.recipe import recipe_from_dict
from resnet_apps.train.setup import lr_factor, milestone_steps


@pytest.mark.parametrize(
    ("step", "factor"),
    [
        (0, 1.0),  # 100 epochs of 19 steps, milestones 0.5 / 0.75: steps 950 and 1425
        (949, 1.0),  # last step of epoch 50
        (950, 0.1),  # first step of epoch 51
        (1424, 0.1),
        (1425, 0.01),  # first step of epoch 76
        (1899, 0.01),  # last step of the run
    ],
)
def test_multistep_learning_rate_at_given_steps(step: int, factor: float) -> None:
    recipe = recipe_from_dict(
        {"name": "m", "task": "classification", "train": {"epochs": 100, "schedule": "multistep"}}
    )
    milestones = milestone_steps(recipe.train, 19)
    assert milestones == [950, 1425]
    assert lr_factor(step, 1900, 0, milestones, 0.1) == pytest.approx(factor)


def test_multistep_after_warm_up_and_cosine_unchanged_by_default() -> None:
    assert lr_factor(0, 100, 10, [50], 0.1) == pytest.approx(0.1)  # warm-up first: (0 + 1) / 10
    assert lr_factor(49, 100, 10, [50], 0.1) == pytest.approx(1.0)
    assert lr_factor(50, 100, 10, [50], 0.5) == pytest.approx(0.5)
    default = recipe_from_dict({"name": "c", "task": "classification"})
    assert default.train.schedule == "cosine" and milestone_steps(default.train, 10) is None


def test_bad_milestones_are_refused() -> None:
    base = {"name": "m", "task": "classification"}
    with pytest.raises(RecipeError, match="train.milestones"):
        recipe_from_dict({**base, "train": {"schedule": "multistep", "milestones": [0.75, 0.5]}})
    with pytest.raises(RecipeError, match="train.gamma"):
        recipe_from_dict({**base, "train": {"gamma": 0.0}})


def test_cifar_stem_keeps_28_px_maps_into_layer1_and_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    from resnet_apps.models.checkpoint import load_run, save_checkpoint
    from resnet_apps.models.heads import build_model

    model = build_model("classification", "resnet18", in_chans=1, num_classes=1, stem="cifar").eval()
    conv = model.backbone.conv1
    assert (
        conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and isinstance(model.backbone.maxpool, torch.nn.Identity)
    )
    features = model.backbone(torch.zeros(1, 1, 28, 28))
    assert [f.shape[-1] for f in features] == [28, 14, 7, 4]  # imagenet stem: 7, 4, 2, 1
    assert model.backbone.feature_info.reduction() == [1, 2, 4, 8]
    assert model.model_config["stem"] == "cifar"
    meta = {"task": "classification", "model": model.model_config, "classes": ["a", "b"]}
    save_checkpoint(tmp_path / "best", model, meta)
    again, read = load_run(tmp_path / "best")
    x = torch.randn(2, 1, 28, 28)
    assert read.model.stem == "cifar"
    torch.testing.assert_close(again.eval()(x), model(x))
