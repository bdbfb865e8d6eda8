"""`resnet-apps report RUN_A RUN_B`: side by side with paired differences, sample alignment and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report_fixtures import binary_run, multiclass_run, segmentation_run

from resnet_apps.cli import main
from resnet_apps.errors import ReportError
from resnet_apps.report import compare_runs, load_metrics, write_metrics
from resnet_apps.report.compare import _verdict


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pair")
    # same cases, B ranks them better (ImageNet vs scratch)
    return binary_run(root, "scratch", skill=0.3, imagenet=False), binary_run(root, "imagenet", skill=0.45)


def test_binary_comparison_cli(pair: tuple[Path, Path], tmp_path: Path) -> None:
    scratch, imagenet = pair
    assert main(["report", str(scratch), str(imagenet), "--out", str(tmp_path), "--n-boot", "40"]) == 0
    result = json.loads((tmp_path / "comparison.json").read_text())
    diffs = {d["metric"]: d for d in result["differences"]}
    auroc = diffs["auroc"]
    assert auroc["direction"] == "B - A" and auroc["unit"] == "group" and auroc["n_units"] == 80
    assert auroc["diff"] == pytest.approx(auroc["b"] - auroc["a"], abs=1e-5)
    assert auroc["ci_low"] > 0  # the better run is better on paired resamples
    # each run keeps its own validation threshold for threshold metrics
    assert diffs["sensitivity"]["a"] == load_metrics(scratch)["evaluation"]["operating_point"]["sensitivity"]
    html = (tmp_path / "comparison.html").read_text()
    assert "B better" in html and "imagenet" in html and "scratch" in html and "<script" not in html
    assert html.count("<img ") == 1  # ROC curves of both runs
    assert "| AUROC |" in (tmp_path / "comparison.md").read_text()


def test_unmatched_samples_are_paired_on_the_intersection(pair: tuple[Path, Path], tmp_path: Path) -> None:
    scratch, imagenet = pair
    doc = load_metrics(imagenet)
    s = doc["evaluation"]["samples"]
    for key in ("ids", "groups", "y_true", "y_prob"):
        s[key] = s[key][:200]  # B was evaluated on fewer images
    write_metrics(tmp_path / "b", doc)
    paths = compare_runs(scratch, tmp_path / "b", tmp_path / "out", n_boot=10)
    note = json.loads(paths["json"].read_text())["note"]
    assert "Only the 200 samples present in both runs are paired" in note


def test_refusals(pair: tuple[Path, Path], tmp_path: Path) -> None:
    scratch, imagenet = pair
    doc = load_metrics(imagenet)
    doc["evaluation"]["samples"]["y_true"][0] = 1 - doc["evaluation"]["samples"]["y_true"][0]
    write_metrics(tmp_path / "flipped", doc)
    with pytest.raises(ReportError, match="disagree on the true labels"):
        compare_runs(scratch, tmp_path / "flipped", tmp_path / "o1", n_boot=5)
    doc = load_metrics(imagenet)
    doc["evaluation"]["samples"]["ids"] = [f"other{i}" for i in range(240)]
    write_metrics(tmp_path / "other", doc)
    with pytest.raises(ReportError, match="share no test sample"):
        compare_runs(scratch, tmp_path / "other", tmp_path / "o2", n_boot=5)
    with pytest.raises(ReportError, match="evaluation.kind differs"):
        compare_runs(scratch, segmentation_run(tmp_path), tmp_path / "o3", n_boot=5)
    # without per-sample predictions: side by side only, and it says why
    doc = load_metrics(imagenet)
    del doc["evaluation"]["samples"]
    write_metrics(tmp_path / "nosamples", doc)
    paths = compare_runs(scratch, tmp_path / "nosamples", tmp_path / "o4")
    assert "no evaluation.samples" in paths["html"].read_text()


def test_segmentation_and_multiclass_pairs(tmp_path: Path) -> None:
    a = segmentation_run(tmp_path / "a", quality=0.6)
    b = segmentation_run(tmp_path / "b", quality=0.9)
    diffs = {
        d["metric"]: d for d in json.loads(compare_runs(a, b, n_boot=30)["json"].read_text())["differences"]
    }
    assert diffs["miou"]["ci_low"] > 0 and diffs["miou"]["unit"] == "group"
    assert (b / "compare_landcover_seg" / "comparison.html").is_file()  # default output folder
    mc = multiclass_run(tmp_path)
    same = json.loads(compare_runs(mc, mc, tmp_path / "mc", n_boot=10)["json"].read_text())["differences"]
    assert all(d["diff"] == 0 for d in same if d["diff"] is not None)  # a run against itself: no difference


@pytest.mark.parametrize(
    ("row", "verdict"),
    [
        ({"metric": "auroc", "ci_low": 0.01, "ci_high": 0.05}, "B better"),  # higher is better, CI above 0
        ({"metric": "auroc", "ci_low": -0.01, "ci_high": 0.05}, "no clear difference"),  # CI spans 0
        ({"metric": "brier", "ci_low": 0.01, "ci_high": 0.05}, "A better"),  # lower is better
        ({"metric": "ece", "ci_low": -0.05, "ci_high": -0.01}, "B better"),
        ({"metric": "auroc", "ci_low": None, "ci_high": None}, "undefined"),
    ],
)
def test_verdict(row: dict, verdict: str) -> None:
    assert _verdict(row) == verdict
