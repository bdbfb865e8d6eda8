"""The results table built from saved metrics.json files (issue 7): rows, anchors, README markers, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resnet_apps.cli import main
from resnet_apps.errors import ReportError
from resnet_apps.report.results_table import (
    END_MARKER,
    START_MARKER,
    load_rows,
    replace_between_markers,
    results_markdown,
)


def _classification_doc() -> dict[str, Any]:
    """A scratch EuroSAT-like run: 3 epochs of 10.5 + 20.25 + 30.0 s, anchor 'accuracy' 0.991."""
    return {
        "schema_version": 1,
        "run": {
            "name": "ms",
            "recipe": "eurosat_ms_resnet50",
            "task": "classification",
            "device": "cpu",
            "hardware": "x86_64, torch threads 2",
        },
        "anchor": {"metric": "accuracy", "value": 0.991, "source": "SSL4EO-S12", "protocol": "27,000 chips"},
        "split": {"method": "stratified", "sizes": {"train": 329, "val": 70, "test": 70}},
        "history": [
            {"epoch": 1, "seconds": 10.5, "metric": "accuracy"},
            {"epoch": 2, "seconds": 20.25, "metric": "accuracy"},
            {"epoch": 3, "seconds": 30.0, "metric": "accuracy"},
        ],
        "evaluation": {
            "kind": "classification",
            "mode": "multiclass",
            "classes": ["a", "b"],
            "n_samples": 70,
            "headline": [
                {
                    "name": "accuracy",
                    "label": "Overall accuracy",
                    "value": 0.4571,
                    "ci_low": 0.3429,
                    "ci_high": 0.5714,
                },
                {"name": "kappa", "label": "Cohen's kappa", "value": 0.39, "ci_low": 0.27, "ci_high": 0.51},
            ],
            "bootstrap": {"n_boot": 1000, "seed": 0, "unit": "sample", "n_units": 70},
        },
        "reproducibility": {"weights_source": "none", "imagenet_weights_used": False},
    }


def _segmentation_doc() -> dict[str, Any]:
    """A cloud run fine-tuned from another run dir; anchor iou_cloud is a per-class IoU; no split sizes."""
    return {
        "schema_version": 1,
        "run": {"name": "cloud", "recipe": "cloud_seg_fpn_resnet34", "task": "segmentation"},
        "anchor": {
            "metric": "iou_cloud",
            "value": 0.785,
            "source": "Cloud-Net",
            "protocol": "20 test scenes",
        },
        "split": {"counts": {"train": {"clear": 5, "cloud": 3}, "val": {"clear": 1}, "test": {"cloud": 2}}},
        "history": [{"epoch": 1, "seconds": 125.4, "metric": "miou"}],
        "evaluation": {
            "kind": "segmentation",
            "mode": "segmentation",
            "classes": ["clear", "cloud"],
            "n_samples": 2,
            "headline": [
                {"name": "miou", "label": "Mean IoU", "value": 0.5, "ci_low": 0.25, "ci_high": 0.75},
                {"name": "mean_dice", "label": "Mean Dice", "value": 0.6, "ci_low": None, "ci_high": None},
            ],
            "per_class": [
                {"class": "clear", "iou": 0.7, "iou_ci_low": 0.6, "iou_ci_high": 0.8},
                {"class": "cloud", "iou": 0.3, "iou_ci_low": 0.1, "iou_ci_high": 0.45},
            ],
            "bootstrap": {"n_boot": 200, "seed": 0, "unit": "group", "n_units": 2},
        },
        "reproducibility": {"weights_source": "/tmp/r7/eurosat_rgb_pre", "imagenet_weights_used": False},
    }


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    second_ms = _classification_doc()  # same recipe, same anchor: shares note [2] with eurosat_ms
    for name, doc in (
        ("eurosat_ms", _classification_doc()),
        ("cloud", _segmentation_doc()),
        ("ms_b", second_ms),
    ):
        (root / name).mkdir(parents=True)
        (root / name / "metrics.json").write_text(json.dumps(doc), encoding="utf-8")
    (root / "conv1").mkdir()
    (root / "conv1" / "comparison.json").write_text(
        json.dumps(
            {
                "a": "ms_timm",
                "b": "ms_rgb",
                "n_boot": 1000,
                "seed": 0,
                "note": "",
                "differences": [
                    {
                        "metric": "accuracy",
                        "a": 0.5,
                        "b": 0.6,
                        "diff": 0.1,
                        "ci_low": -0.02,
                        "ci_high": 0.2143,
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    return root


def test_rows_values(results_dir: Path) -> None:
    rows = {r["run"]: r for r in load_rows(results_dir)}
    assert sorted(rows) == [
        "cloud",
        "eurosat_ms",
        "ms_b",
    ]  # folder names, sorted; the comparison folder is no run
    ms, cloud = rows["eurosat_ms"], rows["cloud"]
    # anchor metric 'accuracy' is a headline name; history's selection metric is the same, so one metric only
    assert ms["metrics"] == [
        {"label": "Overall accuracy", "value": 0.4571, "ci_low": 0.3429, "ci_high": 0.5714}
    ]
    assert ms["train_seconds"] == pytest.approx(60.75) and ms["epochs"] == 3  # 10.5 + 20.25 + 30.0
    assert ms["split"] == "329 / 70 / 70"
    assert (ms["ci_units"], rows["cloud"]["ci_units"]) == ("70 images", "2 groups")  # what the bootstrap drew
    assert ms["weights"] == "scratch (random init; no ImageNet)"
    assert ms["hardware"] == "cpu, x86_64, torch threads 2"
    assert (ms["anchor_metric"], ms["anchor_value"]) == ("accuracy", 0.991)
    # iou_cloud -> the per-class IoU of 'cloud' with its CI, then the selection metric miou
    assert [m["value"] for m in cloud["metrics"]] == [0.3, 0.5]
    assert (cloud["metrics"][0]["ci_low"], cloud["metrics"][0]["ci_high"]) == (0.1, 0.45)
    assert cloud["split"] == "8 / 1 / 2"  # summed per-class counts when split.sizes is absent
    assert cloud["weights"] == "our run `eurosat_rgb_pre` (no ImageNet)"
    assert cloud["hardware"] == "not recorded"


def test_markdown_table(results_dir: Path) -> None:
    text = results_markdown(results_dir)
    lines = text.splitlines()
    header = lines[0]
    assert header.startswith(
        "| run | weights | test metric (95 % CI) | seed spread | "
        "trivial floor (95 % CI); model − floor (paired 95 % CI) | published anchor |"
    )
    cloud_line = next(line for line in lines if line.startswith("| `cloud`"))
    ms_line = next(line for line in lines if line.startswith("| `eurosat_ms`"))
    assert "IoU of class 'cloud' **0.300** (0.100–0.450)<br>Mean IoU **0.500** (0.250–0.750)" in cloud_line
    assert "| iou_cloud 0.785 [1] | 8 / 1 / 2 | 2 groups | 2 min 05 s (1) |" in cloud_line
    assert "Overall accuracy **0.457** (0.343–0.571)" in ms_line and "| 1 min 01 s (3) |" in ms_line
    assert "[2] `eurosat_ms`, `ms_b`: SSL4EO-S12. Protocol: 27,000 chips." in text
    assert "[3]" not in text  # two distinct anchors, two notes
    # the paired comparison follows the runs table
    row = (
        "| `conv1` | `ms_timm` | `ms_rgb` | accuracy | 0.500 | 0.600 | 0.100 | -0.020 to 0.214 "
        "| 1,000 (bootstrap seed 0) |"
    )
    assert row in text
    assert "| ece |" not in text  # only headline metrics a reader decides on enter the comparison table


def test_readme_markers(results_dir: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\n## Results\nintro\n{START_MARKER}\nold table\n{END_MARKER}\nafter\n", encoding="utf-8"
    )
    assert main(["results", "--dir", str(results_dir), "--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert "old table" not in text
    assert text.startswith("# x\n\n## Results\nintro\n" + START_MARKER + "\n| run |")
    assert text.endswith(END_MARKER + "\nafter\n")
    # a second run gives the same file (idempotent)
    assert main(["results", "--dir", str(results_dir), "--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == text


def test_missing_markers_and_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="markers"):
        replace_between_markers("no markers here", "table")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no \\*/metrics.json"):
        results_markdown(tmp_path / "empty")
    with pytest.raises(ReportError, match="no such folder"):
        load_rows(tmp_path / "absent")


def _with_seed_and_floor(seed: int, accuracy: float, overrides: list[str]) -> dict[str, Any]:
    """The classification doc as seed ``seed`` of one recipe, with a floor of 0.865 (0.842-0.885)."""
    doc = _classification_doc()
    doc["run"]["overrides"] = overrides
    doc["reproducibility"]["seed"] = seed
    doc["evaluation"]["headline"][0]["value"] = accuracy
    doc["history"] = [
        {"epoch": e, "seconds": 10.0, "metric": "accuracy", "val_metric": 0.5 + 0.1 * e} for e in range(1, 5)
    ]
    doc["baseline"] = {
        "evaluation": {
            **doc["evaluation"],
            "headline": [{"name": "accuracy", "value": 0.865, "ci_low": 0.842, "ci_high": 0.885}],
        },
        "difference": [
            {
                "metric": "accuracy",
                "a": 0.865,
                "b": accuracy,
                "diff": accuracy - 0.865,
                "ci_low": -0.1,
                "ci_high": 0.02,
            }
        ],
        "metric": "accuracy",
        "beats_floor": False,
    }
    return doc


def test_floor_seed_spread_and_convergence_columns(tmp_path: Path) -> None:
    root = tmp_path / "results"
    runs = {
        "s0": _with_seed_and_floor(0, 0.80, ["train.epochs=30"]),
        "s1": _with_seed_and_floor(1, 0.84, ["train.seed=1", "train.epochs=30"]),
        "s2": _with_seed_and_floor(2, 0.90, ["train.epochs=30", "train.seed=2"]),
        "other": _with_seed_and_floor(0, 0.70, ["train.epochs=5"]),  # other overrides: not a seed sibling
        "archive/old": _with_seed_and_floor(3, 0.10, ["train.epochs=30"]),  # a sub-folder: kept out
    }
    for name, doc in runs.items():
        (root / name).mkdir(parents=True)
        (root / name / "metrics.json").write_text(json.dumps(doc), encoding="utf-8")
    rows = {r["run"]: r for r in load_rows(root)}
    assert sorted(rows) == ["other", "s0", "s1", "s2"]
    spread = rows["s1"]["seeds"]
    # 0.80, 0.84, 0.90: mean 0.8467, sample sd 0.0503
    assert spread["n"] == 3 and spread["mean"] == pytest.approx(0.846667, abs=1e-6)
    assert spread["sd"] == pytest.approx(0.050332, abs=1e-6) and (spread["min"], spread["max"]) == (
        0.80,
        0.90,
    )
    assert rows["other"]["seeds"] is None
    floor = rows["s0"]["floor"]
    assert (floor["value"], floor["ci_low"], floor["ci_high"], floor["beats"]) == (0.865, 0.842, 0.885, False)
    assert floor["diff"] == pytest.approx(-0.065)
    assert rows["s0"]["converged"] is False  # 0.6 .. 0.9 over 4 epochs: still rising
    text = results_markdown(root)
    s0 = next(line for line in text.splitlines() if line.startswith("| `s0`"))
    assert "| 0.847 ± 0.050 sd, 0.800–0.900, 3 seeds |" in s0
    assert "| 0.865 (0.842–0.885); -0.065 (-0.100 to 0.020) **NOT above the floor** |" in s0
    assert "| 40 s (4, not converged) |" in s0
    assert "| 1 seed | 0.865" in next(line for line in text.splitlines() if line.startswith("| `other`"))


def test_further_published_figures_of_one_anchor(tmp_path: Path) -> None:
    from resnet_apps.report.markdown import report_markdown
    from resnet_apps.report.sections import anchor_values

    doc = _classification_doc()
    doc["anchor"]["also"] = {"kappa": 0.5, "auroc": 0.9}  # no AUROC row in this evaluation: left out
    assert anchor_values(doc["evaluation"], doc["anchor"]) == {"accuracy": 0.991, "kappa": 0.5}
    (tmp_path / "r" / "ms").mkdir(parents=True)
    (tmp_path / "r" / "ms" / "metrics.json").write_text(json.dumps(doc), encoding="utf-8")
    row = load_rows(tmp_path / "r")[0]
    assert [m["label"] for m in row["metrics"]] == ["Overall accuracy", "Cohen's kappa"]
    assert "| accuracy 0.991, kappa 0.500, auroc 0.900 [1] |" in results_markdown(tmp_path / "r")
    text = report_markdown({**doc, "validation": None})
    assert "| Cohen's kappa | 0.390 | 0.270 – 0.510 | 0.500 |" in text
    assert "| Overall accuracy | 0.457 | 0.343 – 0.571 | 0.991 |" in text


def test_floor_of_a_per_class_anchor_comes_from_the_floors_per_class_table() -> None:
    from resnet_apps.report.results_columns import floor_of

    doc = {
        "baseline": {
            "evaluation": {
                "headline": [{"name": "miou", "value": 0.499, "ci_low": 0.498, "ci_high": 0.499}],
                "per_class": [
                    {"class": "clear", "iou": 0.998, "iou_ci_low": 0.995, "iou_ci_high": 1.0},
                    {"class": "Cloud", "iou": 0.125, "iou_ci_low": 0.05, "iou_ci_high": 0.2},
                ],
            },
            "difference": [{"metric": "miou", "diff": 0.0, "ci_low": -0.01, "ci_high": 0.01}],
        }
    }
    floor = floor_of(doc, "iou_cloud")  # the anchor's metric: IoU of class 'cloud', not a headline row
    assert floor is not None
    assert (floor["value"], floor["ci_low"], floor["ci_high"]) == (0.125, 0.05, 0.2)
    assert floor["diff"] is None and floor["beats"] is None  # no paired difference was computed for it
    assert floor_of(doc, "iou_snow") is None and floor_of(doc, None) is None
    assert floor_of(doc, "miou")["beats"] is False  # type: ignore[index]
