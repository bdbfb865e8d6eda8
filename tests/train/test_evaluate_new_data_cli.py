"""``evaluate RUN --data DIR`` on a collection with other class names, a class subset and no groups (item 3)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from train_fixtures import make_geotiff_folder, write_recipe

from resnet_apps.cli import main
from resnet_apps.train.evaluate_data import new_data_recipe, parse_class_map


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("evalnew")
    data = make_geotiff_folder(base / "data", per_class=4)
    recipe = write_recipe(base / "r.yaml", data, train={"epochs": 1}, eval={"bootstrap": 30})
    out = base / "run"
    assert main(["train", str(recipe), "--out", str(out)]) == 0
    return out


def _their_collection(root: Path, run: Path) -> Path:
    """Their names for two of our three classes (Crop, Forest); no Water; file names carry no ids."""
    data = Path(yaml.safe_load((run / "recipe.yaml").read_text())["data"]["root"])
    for theirs, ours in (("crops", "Crop"), ("trees", "Forest")):
        (root / theirs).mkdir(parents=True)
        for k, f in enumerate(sorted((data / ours).glob("*.tif"))):
            shutil.copy(f, root / theirs / f"img{k}.tif")
    return root


def test_new_collection_with_a_class_map_and_absent_classes(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = _their_collection(tmp_path / "theirs", run)
    mapping = tmp_path / "map.csv"
    mapping.write_text("their,ours\ntrees,Forest\n")
    out = tmp_path / "eval"
    argv = ["evaluate", str(run), "--data", str(theirs), "--map", "crops=Crop", "--map", str(mapping)]
    assert main([*argv, "--set", "eval.bootstrap=40", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "metrics.json").read_text())
    ev = doc["evaluation"]
    assert ev["n_samples"] == 8 and ev["bootstrap"]["n_boot"] == 40 and ev["bootstrap"]["unit"] != "group"
    notes = " ".join(ev["notes"])
    assert "crops -> Crop" in notes and "trees -> Forest" in notes
    assert "Classes absent from this data: Water" in notes and "resample individual images" in notes
    support = {row["class"]: row["support"] for row in ev["per_class"]}
    assert support == {"Crop": 4, "Forest": 4, "Water": 0}
    assert "Classes absent from this data: Water" in (out / "report.md").read_text()
    # scikit-learn's warnings: at most one line per kind, not one per resample
    lines = [line for line in printed.splitlines() if "Warning" in line]
    assert len(lines) == len(set(lines)) and len(lines) <= 5


def test_new_collection_errors_name_the_fix(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = _their_collection(tmp_path / "theirs", run)
    cases = [
        (["--map", "crops=Crop"], r"'trees'.*--map trees=<one of Crop, Forest, Water>"),  # unmapped class
        (["--set", "data.bands=[1,2]"], "preprocessing comes from the checkpoint"),  # fixed by the run
        (["--set", "train.epochs=3"], r"only data\.\*"),  # not a property of the data
    ]
    for extra, message in cases:
        code = main(["evaluate", str(run), "--data", str(theirs), *extra, "--out", str(tmp_path / "x")])
        assert code == 2 and re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


def test_training_groups_and_split_column_are_not_forced_on_new_data(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "task": "classification",
                "data": {
                    "root": "x",
                    "classes": ["NORMAL", "PNEUMONIA"],
                    "source": {"kind": "csv", "index": "i.csv", "split_column": "split",
                               "group_pattern": r"(patient\d+)"},
                },
            }
        )
    )  # fmt: skip
    fresh = new_data_recipe(recipe, tmp_path, [])
    assert fresh.data.source.group_pattern is None and fresh.data.source.split_column is None
    assert fresh.data.classes is None  # their class names come from their data, then --map
    kept = new_data_recipe(recipe, tmp_path, [r"data.source.group_pattern=(p\d+)"])
    assert kept.data.source.group_pattern == r"(p\d+)" and kept.data.root == str(tmp_path.resolve())
    assert parse_class_map(["a=b", "c = d"]) == {"a": "b", "c": "d"}
