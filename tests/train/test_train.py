"""Training end to end on tiny generated data: run directory, checkpoints, metrics, typed failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import make_geotiff_folder, write_recipe  # noqa: I001

from resnet_apps.errors import RunDirError, TrainingDivergedError, WeightsUnavailableError


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 2-epoch resnet18 run on 24 generated 4-band GeoTIFFs, shared by the tests below."""
    from resnet_apps.train.loop import train

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("tiny")
    recipe = write_recipe(base / "tiny.yaml", make_geotiff_folder(base / "data"))
    return train(recipe, out=base / "run")


def test_run_directory_holds_checkpoints_metrics_and_the_resolved_recipe(tiny_run: Path) -> None:
    for name in (
        "recipe.yaml",
        "split.json",
        "history.jsonl",
        "metrics.json",
        "checkpoints/best.safetensors",
        "checkpoints/best.json",
        "checkpoints/last.safetensors",
        "checkpoints/last.state.safetensors",
    ):
        assert (tiny_run / name).is_file(), name
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["schema_version"] == 1 and metrics["run"]["task"] == "classification"
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert all(h["val_loss"] > 0 and h["train_loss"] > 0 for h in metrics["history"])
    assert len((tiny_run / "history.jsonl").read_text().splitlines()) == 2
    # 24 images, stratified 25 % test / 25 % val: 6 + 6, the rest trains
    assert metrics["split"]["sizes"] == {"train": 12, "val": 6, "test": 6}
    assert metrics["evaluation"]["split"] == "test" and metrics["evaluation"]["n_samples"] == 6
    assert metrics["reproducibility"]["imagenet_weights_used"] is False
    assert len(metrics["reproducibility"]["recipe_hash"]) == 16
    meta = json.loads((tiny_run / "checkpoints" / "best.json").read_text())
    assert meta["classes"] == ["Crop", "Forest", "Water"] and meta["model"]["in_chans"] == 4
    assert meta["preprocessing"]["scale"] == 0.0001 and len(meta["preprocessing"]["mean"]) == 4


def test_best_checkpoint_reproduces_the_reported_test_probabilities(tiny_run: Path) -> None:
    from resnet_apps.models.checkpoint import load_run
    from resnet_apps.recipe import load_recipe
    from resnet_apps.train.datasets import recipe_dataset, split_records

    model, meta = load_run(tiny_run)
    recipe = load_recipe(tiny_run / "recipe.yaml")
    split = split_records(recipe)
    pre = meta["preprocessing"]
    dataset = recipe_dataset(split.test, recipe, (pre["mean"], pre["std"]), split.classes, train=False)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    with torch.no_grad():
        prob = torch.softmax(model(images), 1).numpy()
    reported = np.array(
        json.loads((tiny_run / "metrics.json").read_text())["evaluation"]["samples"]["y_prob"]
    )
    np.testing.assert_allclose(prob, reported, atol=1e-4)


def test_evaluate_command_gives_the_same_test_numbers(tiny_run: Path) -> None:
    from resnet_apps.train.evaluate_run import evaluate_run

    out = evaluate_run(tiny_run, split="test")
    assert out.parent == tiny_run and (out / "metrics.json").is_file()
    again = json.loads((out / "metrics.json").read_text())["evaluation"]
    first = json.loads((tiny_run / "metrics.json").read_text())["evaluation"]
    assert again["headline"][0]["value"] == pytest.approx(first["headline"][0]["value"])


def test_metrics_hold_the_baseline_floor_and_convergence_and_the_report_flags_them(tiny_run: Path) -> None:
    from resnet_apps.train.evaluate_run import evaluate_run

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    base = metrics["baseline"]
    # class k is 2500 (about 17 sd) brighter in band k: per-band means separate the classes, the floor is exact
    floor = {r["name"]: r for r in base["evaluation"]["headline"]}
    assert floor["accuracy"]["value"] == pytest.approx(1.0)
    # its interval comes from the paired resamples: 50 of them (eval.bootstrap), all exact: [1, 1]
    assert (floor["accuracy"]["ci_low"], floor["accuracy"]["ci_high"]) == (1.0, 1.0)
    assert base["evaluation"]["bootstrap"]["n_boot"] == 50
    assert base["evaluation"]["split"] == "test" and base["evaluation"]["n_samples"] == 6
    assert base["metric"] == "accuracy" and base["c"] in (0.01, 0.1, 1.0, 10.0)
    diff = next(r for r in base["difference"] if r["metric"] == "accuracy")
    model = {r["name"]: r for r in metrics["evaluation"]["headline"]}["accuracy"]["value"]
    assert diff["a"] == pytest.approx(1.0) and diff["b"] == pytest.approx(model)
    assert diff["diff"] == pytest.approx(model - 1.0) and diff["direction"] == "model - floor"
    assert base["beats_floor"] is False  # a 2-epoch model cannot lie above a perfect floor
    conv = metrics["convergence"]
    assert conv["epochs_run"] == 2 and conv["window"] == 3 and conv["converged"] is False
    report = (tiny_run / "report.md").read_text()
    assert (
        "The model does NOT beat a trivial baseline" in report and "Not converged: only 2 epoch(s)" in report
    )
    assert "## Model vs trivial floor" in report
    assert "Model vs trivial baseline floor" in (tiny_run / "report.html").read_text()
    # re-evaluating the run directory computes the same floor on the same split
    out = evaluate_run(tiny_run, split="test")
    again = json.loads((out / "metrics.json").read_text())
    assert again["baseline"]["evaluation"]["headline"][0]["value"] == pytest.approx(
        base["evaluation"]["headline"][0]["value"]
    )
    assert again["convergence"]["best_epoch"] == conv["best_epoch"]


def test_an_existing_run_directory_is_never_overwritten(tiny_run: Path) -> None:
    from resnet_apps.train.loop import train

    before = (tiny_run / "metrics.json").read_bytes()
    with pytest.raises(RunDirError, match="--resume"):
        train(tiny_run / "recipe.yaml", out=tiny_run)
    assert (tiny_run / "metrics.json").read_bytes() == before


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import resnet_apps.train.loop as T

    real = T.build_loss

    class Poisoned(torch.nn.Module):  # epoch 1 is healthy (3 steps); the 4th loss is NaN
        def __init__(self, loss: torch.nn.Module) -> None:
            super().__init__()
            self.loss, self.calls = loss, 0

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            value = self.loss(logits, target)
            return value * float("nan") if self.calls > 3 else value

    def poisoned(*args, **kwargs):
        return Poisoned(real(*args, **kwargs))

    monkeypatch.setattr(T, "build_loss", poisoned)
    recipe = write_recipe(tmp_path / "r.yaml", make_geotiff_folder(tmp_path / "data"))
    with pytest.raises(TrainingDivergedError, match="epoch 2, step 1") as info:
        T.train(recipe, out=tmp_path / "run")
    assert "last good checkpoint" in str(info.value)
    meta = json.loads((tmp_path / "run" / "checkpoints" / "last.json").read_text())
    assert meta["epoch"] == 1 and (tmp_path / "run" / "checkpoints" / "best.safetensors").is_file()


def test_missing_imagenet_weights_fail_unless_the_recipe_says_scratch(tmp_path: Path) -> None:
    from resnet_apps.cli import main
    from resnet_apps.recipe import load_recipe
    from resnet_apps.train.setup import build_recipe_model

    recipe_path = write_recipe(
        tmp_path / "r.yaml",
        make_geotiff_folder(tmp_path / "data", per_class=2),
        model={"weights": "imagenet"},
    )
    with pytest.raises(WeightsUnavailableError):
        build_recipe_model(load_recipe(recipe_path), 4, 3, ["a", "b", "c", "d"], log=lambda *a: None)
    assert main(["train", str(recipe_path), "--out", str(tmp_path / "run")]) == 2  # CLI: message, exit 2
    assert not (tmp_path / "run").exists()  # a run that never started leaves no folder behind
    notes: list[str] = []
    _, info = build_recipe_model(
        load_recipe(recipe_path, ["model.on_missing_weights=scratch"]),
        4,
        3,
        ["a", "b", "c", "d"],
        log=notes.append,
    )
    assert info["imagenet_weights_used"] is False and "RANDOM weights" in notes[0]


def test_learning_rate_schedule_by_hand() -> None:
    from resnet_apps.train.setup import lr_factor

    # warm-up 10 of 110 steps: (step + 1) / 10, then cosine over the remaining 100
    assert lr_factor(0, 110, 10) == pytest.approx(0.1)
    assert lr_factor(9, 110, 10) == pytest.approx(1.0)
    assert lr_factor(59, 110, 10) == pytest.approx(0.5)  # halfway through the cosine
    assert lr_factor(109, 110, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 4, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_class_weights_and_masked_bce_by_hand() -> None:
    from resnet_apps.train.datasets import balanced_weights
    from resnet_apps.train.setup import MaskedBCE

    # 30 / 10 images: n / (K * n_k) = 40 / 60 and 40 / 20
    assert balanced_weights(np.array([30.0, 10.0])) == pytest.approx([2 / 3, 2.0])
    loss = MaskedBCE(None, 0.0)
    logits = torch.zeros(2, 2)
    target = torch.tensor([[1.0, float("nan")], [0.0, float("nan")]])
    assert loss(logits, target).item() == pytest.approx(math.log(2))  # NaN terms do not count


def test_evaluate_on_new_data_uses_every_image_and_the_checkpoint_threshold(tiny_run: Path) -> None:
    from resnet_apps.recipe import load_recipe
    from resnet_apps.train.evaluate_run import evaluate_run

    root = Path(load_recipe(tiny_run / "recipe.yaml").data.root)
    out = evaluate_run(tiny_run, data=root)
    metrics = json.loads((out / "metrics.json").read_text())
    assert out.name.startswith(f"evaluate-data-{root.name}-")
    assert metrics["evaluation"]["n_samples"] == 24  # all 3 x 8 images, whatever split they had
    assert metrics["run"]["evaluated_run"] == tiny_run.name


def test_a_re_evaluation_keeps_the_runs_training_overrides(tiny_run: Path, tmp_path: Path) -> None:
    """The results table groups seeds by the overrides a run was trained with: evaluate must carry them."""
    import shutil

    from resnet_apps.recipe import load_recipe
    from resnet_apps.train.evaluate_run import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "overrides.json").write_text(json.dumps(["train.epochs=2", "train.seed=3"]))
    out = evaluate_run(run, data=Path(load_recipe(run / "recipe.yaml").data.root))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["overrides"] == ["train.epochs=2", "train.seed=3"]


def test_evaluate_uses_the_runs_own_split_when_the_hash_key_changed(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups are keyed hashes: on a machine with another key the rebuilt split differs, and evaluate must
    still score the run's own test images (split.json), not a new draw that may hold training images."""
    import shutil

    from resnet_apps.data.records import hash_id
    from resnet_apps.train.evaluate_run import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("evaluate-*", ".train.lock"))
    split = json.loads((run / "split.json").read_text())
    # stand-in for "another key drew another split": the run's test split is what the recipe now calls val
    split["records"]["test"] = split["records"]["val"]
    (run / "split.json").write_text(json.dumps(split))
    monkeypatch.setenv("RESNET_APPS_HASH_KEY", "the-other-machine-key-0123456789")
    lines: list[str] = []
    out = evaluate_run(run, split="test", log=lines.append)
    ids = json.loads((out / "metrics.json").read_text())["evaluation"]["samples"]["ids"]
    assert sorted(ids) == sorted(hash_id(r["path"]) for r in split["records"]["val"])
    assert any("another identifier hash key" in line for line in lines)
