"""The residual MLP classification head: shapes, identity start, recipe field, checkpoint and export round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet_apps import build_model, load_run
from resnet_apps.errors import RecipeError
from resnet_apps.models.checkpoint import save_checkpoint
from resnet_apps.models.export import export_run
from resnet_apps.models.heads import RESIDUAL_MLP_BLOCKS, ResidualMLPBlock
from resnet_apps.recipe import load_recipe

META = {
    "classes": ["water", "crop", "urban"],
    "preprocessing": {
        "bands": ["B04", "B08"],
        "scale": 0.0001,
        "mean": [0.1, 0.3],
        "std": [0.05, 0.1],
        "image_size": 32,
        "dicom_window": None,
        "grayscale": False,
    },
    "operating_threshold": 0.5,
}
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "eurosat_rgb_resnet50.yaml"


def _model(head: str, seed: int = 0, dropout: float = 0.1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("classification", "resnet18", in_chans=2, num_classes=3, dropout=dropout, head=head)


def test_forward_shapes_and_block_count() -> None:
    model = _model("residual_mlp").eval()
    with torch.no_grad():
        assert model(torch.randn(4, 2, 32, 32)).shape == (4, 3)
    blocks = [m for m in model.modules() if isinstance(m, ResidualMLPBlock)]
    assert len(blocks) == RESIDUAL_MLP_BLOCKS
    assert blocks[0].fc1.in_features == 512 and blocks[0].fc1.out_features == 128  # resnet18: 512 pooled
    assert model.model_config["head"] == "residual_mlp"
    assert build_model("classification", "resnet18", num_classes=2).model_config["head"] == "linear"


def test_residual_head_starts_as_the_linear_head() -> None:
    """Zero-initialised second layers: with equal backbone and classifier weights the outputs are equal."""
    linear, mlp = _model("linear").eval(), _model("residual_mlp").eval()
    mlp.load_state_dict(linear.state_dict(), strict=False)  # backbone + fc; the MLP keeps its init
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        assert torch.allclose(mlp(x), linear(x), atol=1e-6)
        next(b for b in mlp.modules() if isinstance(b, ResidualMLPBlock)).fc2.weight.normal_()
        assert not torch.allclose(mlp(x), linear(x), atol=1e-3)


def test_linear_head_state_dict_keys_unchanged() -> None:
    keys = set(_model("linear").state_dict())
    assert not any(k.startswith("mlp.") for k in keys) and {"fc.weight", "fc.bias"} <= keys


def test_segmentation_refuses_the_mlp_head() -> None:
    with pytest.raises(ValueError, match="segmentation"):
        build_model("segmentation", "resnet18", num_classes=2, head="residual_mlp")
    with pytest.raises(ValueError, match="head"):
        build_model("classification", "resnet18", num_classes=2, head="transformer")


def test_load_run_round_trip(tmp_path: Path) -> None:
    model = _model("residual_mlp").eval()
    with torch.no_grad():  # a trained-looking head, not the identity start
        for block in model.mlp:
            block.fc2.weight.normal_(0, 0.02)
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best", model, META)
    loaded, meta = load_run(tmp_path / "run")
    assert meta["model"]["head"] == "residual_mlp"
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_old_checkpoints_without_head_load_as_linear(tmp_path: Path) -> None:
    model = _model("linear").eval()
    meta = dict(META, model={k: v for k, v in model.model_config.items() if k != "head"})
    save_checkpoint(tmp_path / "old" / "checkpoints" / "best", model, meta)
    loaded, _ = load_run(tmp_path / "old")
    assert loaded.head == "linear"


def test_export_parity(tmp_path: Path) -> None:
    model = _model("residual_mlp").eval()
    with torch.no_grad():
        for block in model.mlp:
            block.fc2.weight.normal_(0, 0.02)
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best", model, META)
    info = export_run(tmp_path / "run", "torchscript")
    assert info["parity"]["ok"] and info["parity"]["max_abs_diff"] < 1e-4
    pytest.importorskip("onnxruntime")
    info = export_run(tmp_path / "run", "onnx")
    assert info["parity"]["ok"] and info["parity"]["max_abs_diff"] < 1e-4


def test_recipe_field() -> None:
    recipe = load_recipe(RECIPE, overrides=["model.head=residual_mlp"])
    assert recipe.model.head == "residual_mlp"
    assert load_recipe(RECIPE).model.head == "linear"
    with pytest.raises(RecipeError, match="model.head"):
        load_recipe(RECIPE, overrides=["model.head=mlp"])


def test_train_records_the_head_and_load_run_rebuilds_it(tmp_path: Path) -> None:
    """`model.head: residual_mlp` in a recipe reaches the checkpoint's model block through train()."""
    from train_fixtures import make_geotiff_folder, write_recipe

    from resnet_apps.train.loop import train

    torch.set_num_threads(1)
    recipe = write_recipe(
        tmp_path / "tiny.yaml",
        make_geotiff_folder(tmp_path / "data", per_class=4),
        model={"head": "residual_mlp", "dropout": 0.1},
        train={"epochs": 1},
    )
    run = train(recipe, out=tmp_path / "run")
    model, meta = load_run(run)
    assert meta["model"]["head"] == "residual_mlp" and model.head == "residual_mlp"
    assert any(isinstance(m, ResidualMLPBlock) for m in model.modules())
