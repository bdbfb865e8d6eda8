"""Recipes: strict keys with suggestions, typed dotted overrides, path resolution, shipped recipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resnet_apps.errors import RecipeError
from resnet_apps.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
# recipe -> the folder of ../shared/data it runs on (None: no data shipped, tested on generated files)
DATA_OF = {
    "eurosat_ms_resnet50": "eurosat_ms",
    "eurosat_rgb_resnet50": "eurosat_rgb",
    "chest_xray_pneumonia_resnet50": "chest_xray_pneumonia_kermany",
    "cloud_seg_fpn_resnet34": "cloud38_landsat8_segmentation",
    "landcover_seg_fpn_resnet50": "dubai_aerial_landcover_segmentation",
    "lung_seg_fpn_resnet34": "covid_cxr_lung_segmentation_generalblockchain",
    "pneumonia_medmnist_resnet18_28": "pneumoniamnist_balanced",  # + the Kermany test folder (test_dir)
    "chest_xray_multilabel_resnet50": None,
    "demo": None,
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = "name: t\ntask: classification\ndata: {root: data, source: folder}\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (BASE + "trian: {epochs: 1}\n", "did you mean 'train'"),  # misspelt section
        (BASE + "train: {epoch: 1}\n", "did you mean 'epochs'"),  # misspelt key
        (BASE + "train: {epochs: one}\n", "train.epochs = 'one' has the wrong type"),
        (BASE + "train: {optimizer: adam}\n", "did you mean 'adamw'"),  # choice with a suggestion
        (BASE + "eval: {operating_point: 'sensitivity:1.5'}\n", "operating_point"),
        ("name: t\ndata: {root: x}\n", "missing required key 'task'"),
        (BASE + "data: {split: {val: 0.6, test: 0.5}}\n", "sum below 1"),
    ],
)
def test_bad_recipes_are_refused_with_the_field_and_a_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_recipe(_write(tmp_path, text))


def test_overrides_are_typed_and_nested(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE)
    r = load_recipe(
        path,
        [
            "train.epochs=3",
            "train.lr=1",
            "data.source.kind=csv",
            "data.bands=[B04, B03, 7]",
            "data.split.seed=5",
            "eval.operating_point=sensitivity:0.95",
        ],
    )
    assert (
        r.train.epochs == 3 and r.train.lr == 1.0 and isinstance(r.train.lr, float)
    )  # int accepted as float
    assert r.data.source.kind == "csv"  # the short form `source: folder` became {kind: ...}
    assert r.data.bands == ["B04", "B03", 7]
    assert r.data.split.seed == 5 and r.eval.operating_point == "sensitivity:0.95"
    with pytest.raises(RecipeError, match="did you mean 'epochs'"):
        load_recipe(path, ["train.epoch=3"])
    with pytest.raises(RecipeError, match="key.path=value"):
        load_recipe(path, ["train.epochs"])
    with pytest.raises(RecipeError, match="wrong type"):
        load_recipe(path, ["train.deterministic=maybe"])


def test_paths_resolve_against_the_recipe_folder_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "recipes"
    sub.mkdir()
    path = sub / "r.yaml"
    path.write_text(BASE.replace("root: data", "root: '${MY_DATA:-../shared}/eurosat'"))
    monkeypatch.delenv("MY_DATA", raising=False)
    assert load_recipe(path).data.root == str(tmp_path / "shared" / "eurosat")
    monkeypatch.setenv("MY_DATA", "/elsewhere")
    assert load_recipe(path).data.root == "/elsewhere/eurosat"


def test_resolved_recipe_round_trips_and_hashes_stably(tmp_path: Path) -> None:
    r = load_recipe(REPO / "recipes" / "cloud_seg_fpn_resnet34.yaml", ["train.epochs=1"])
    saved = tmp_path / "recipe.yaml"
    saved.write_text(r.to_yaml())
    again = load_recipe(saved)
    assert again == r and again.recipe_hash() == r.recipe_hash()
    assert again.data.source.mask_values == {0: 0, 255: 1}
    assert load_recipe(saved, ["train.epochs=2"]).recipe_hash() != r.recipe_hash()


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_states_its_aim_and_loads(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert "epochs" in raw["train"], "every recipe sets train.epochs"
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.data.card and recipe.anchor.source and recipe.anchor.protocol and recipe.data.split.method
    # a published from-scratch protocol (MedMNIST trains its ResNets from scratch) is followed as published
    assert recipe.model.weights == ("none" if "medmnist" in recipe.name else "imagenet")
    # only the demo may fall back to random weights
    assert recipe.model.on_missing_weights == ("scratch" if recipe.name == "demo" else "fail")


def test_every_shipped_recipe_says_where_its_data_is() -> None:
    assert RECIPES, f"no recipe found in {REPO / 'recipes'}"
    assert sorted(DATA_OF) == [p.stem for p in RECIPES], (
        "add the new recipe to DATA_OF (None: no shared copy)"
    )


# a recipe with no copy of its data in shared/data is tested on generated files in tests/train/test_train.py
ON_SHARED_DATA = [p for p in RECIPES if DATA_OF.get(p.stem) is not None or p.stem == "demo"]


@pytest.mark.parametrize("path", ON_SHARED_DATA, ids=[p.stem for p in ON_SHARED_DATA])
def test_shipped_recipes_build_their_records_on_shared_data(
    path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnet_apps.data.records import build_records

    monkeypatch.setenv("RESNET_APPS_DATA", str(shared_data))
    recipe = load_recipe(path)
    records, classes = build_records(recipe.data.source, recipe.data.root, recipe.data.classes)
    assert len(records) >= 12 and len(classes) >= 2
    if (
        recipe.data.source.kind == "npz"
    ):  # MedMNIST protocol: archive train / val, the 624 official test images
        sizes = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
        assert sizes == {"train": 2428, "val": 270, "test": 624}
    if recipe.data.split.method == "group":
        assert all(r.group for r in records), "a group split needs a group for every record"


@pytest.mark.subprocess
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_check_command_validates_without_importing_torch(path: Path) -> None:
    code = (
        "import sys; from resnet_apps.cli import main; rc = main(['check', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'check imported torch'; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr  # 1 would mean: its data card is missing
    assert "OK" in done.stdout and "data card:" in done.stdout and "torch" not in done.stderr


def test_check_command_reports_a_bad_key(tmp_path: Path) -> None:
    from resnet_apps.cli import main

    path = _write(tmp_path, BASE + "train: {epoch: 1}\n")
    assert main(["check", str(path)]) == 2


def test_band_aware_conv1_needs_three_named_rgb_bands(tmp_path: Path) -> None:
    text = BASE + "model: {conv1_init: rgb_bands}\n"
    with pytest.raises(RecipeError, match="data.rgb_bands"):
        load_recipe(_write(tmp_path, text))
    with pytest.raises(RecipeError, match="among data.bands"):  # B05 is not one of the bands read
        load_recipe(_write(tmp_path, text), ["data.bands=[B02, B03, B04]", "data.rgb_bands=[B05, B03, B02]"])
    ok = load_recipe(
        _write(tmp_path, text), ["data.bands=[B02, B03, B04, B08]", "data.rgb_bands=[B04, B03, B02]"]
    )
    assert ok.data.rgb_bands == ["B04", "B03", "B02"]


def test_data_source_has_one_definition_and_literal_choices() -> None:
    """recipe.SourceConfig is the data layer's too; class_colors may name a CSV; choices come from Literals."""
    from resnet_apps.data.config import SourceConfig as DataSourceConfig
    from resnet_apps.data.config import as_source_config
    from resnet_apps.recipe import SourceConfig, recipe_from_dict

    assert DataSourceConfig is SourceConfig
    raw = {
        "name": "masks",
        "task": "segmentation",
        "data": {"source": {"kind": "pairs", "class_colors": "classes.csv", "ignore_colors": ["#000000"]}},
        "model": {"pooling": "catavgmax"},  # every pooling the head supports
    }
    recipe = recipe_from_dict(raw)
    source = recipe.data.source
    # a CSV path (docs/ARCHITECTURE.md 5a) was refused by the recipe's old dict-only type
    assert source.class_colors == "classes.csv" and source.ignore_colors == ("#000000",)
    assert as_source_config(source) is source  # no second conversion
    assert recipe.to_dict()["data"]["source"]["ignore_colors"] == ["#000000"]  # plain YAML lists on disk
    assert recipe.model.pooling == "catavgmax"
    for dotted, value, hint in (
        ("data.source.kind", "pair", "did you mean 'pairs'"),
        ("model.pooling", "avgmx", "did you mean 'avgmax'"),
        ("task", "segmentaton", "did you mean 'segmentation'"),
    ):
        with pytest.raises(RecipeError, match=f"{dotted} = '{value}' is not allowed; {hint}"):
            recipe_from_dict(raw, overrides=[f"{dotted}={value}"])


@pytest.mark.subprocess
def test_float_fields_take_exponent_numbers_from_the_command_line(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) reads 1e-5 as the string "1e-5": the field's type (float) decides
    path = _write(tmp_path, BASE + "train: {weight_decay: 5e-4}\n")
    r = load_recipe(path, ["train.lr=1e-5", "data.scale=1E-4"])
    assert r.train.lr == 1e-5 and r.data.scale == 1e-4 and r.train.weight_decay == 5e-4
    with pytest.raises(RecipeError, match="wrong type"):
        load_recipe(path, ["train.lr=fast"])  # not a number: still refused
    with pytest.raises(RecipeError, match="wrong type"):
        load_recipe(path, ["train.epochs=1e-5"])  # an int field does not take a float
    # the user's view: `resnet-apps check recipe --set train.lr=1e-5`
    done = subprocess.run(
        [sys.executable, "-m", "resnet_apps", "check", str(path), "--set", "train.lr=1e-5"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode in (0, 1), done.stderr  # 1: the data root of this stub recipe is absent
    assert "OK" in done.stdout and "expected float" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "name",
    [
        "../../x/name",  # would put the run directory outside --runs-root
        "/abs/name",
        "a\\b",
        "..",
        ".hidden",
        " padded ",
        "",
    ],
)
def test_recipe_name_cannot_leave_the_runs_root(name: str) -> None:
    from resnet_apps.recipe import recipe_from_dict

    with pytest.raises(RecipeError, match=r"name = .* cannot name a run folder under --runs-root"):
        recipe_from_dict({"name": name, "task": "classification", "data": {"root": "x"}})


@pytest.mark.parametrize("name", ["eurosat_ms_resnet50", "demo", "v1.2-run+aug", "Lunge Röntgen"])
def test_recipe_names_that_make_good_folders(name: str) -> None:
    from resnet_apps.recipe import recipe_from_dict

    assert recipe_from_dict({"name": name, "task": "classification", "data": {"root": "x"}}).name == name
