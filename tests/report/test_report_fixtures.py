"""Realistic run directories for the report tests, built with our own metric functions on synthetic data.

Imported by the other tests in tests/report/ (pytest puts a test file's folder on sys.path); the tests at
the bottom check that each fixture is a valid metrics document, so a broken builder fails here first.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from resnet_apps.metrics import (
    choose_operating_point,
    evaluate_classification,
    evaluate_segmentation,
    segmentation_confusion,
)
from resnet_apps.report import load_metrics, write_metrics

N_BOOT = 20  # small: the report tests check layout, the metric tests check the intervals
EUROSAT = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
]
CARD_MD = """# Kermany chest X-ray (synthetic fixture)

Paediatric chest radiographs from **Guangzhou**, labelled *NORMAL* or *PNEUMONIA* ([source](https://data.mendeley.com/datasets/rscbjbr9sj/3)).

## Known limits
- One hospital, one age group: do not expect transfer to adults.
- Labels are from reports, not from `CT`.

| split | images |
|---|---|
| train | 5232 |

Raw HTML must stay text: <script>alert("card")</script> and [bad](javascript:alert(1)).
"""


# Each builder runs once per process; later calls copy the built run directory (the metrics are identical).
_BUILT: dict[tuple, Path] = {}
_BUILD_ROOT = Path(tempfile.mkdtemp(prefix="resnet_apps_report_fixtures_"))
atexit.register(shutil.rmtree, _BUILD_ROOT, True)


def _once(build: Callable[..., Path]) -> Callable[..., Path]:
    @functools.wraps(build)
    def cached(root: Path, *args: Any, **kwargs: Any) -> Path:
        key = (build.__name__, args, tuple(sorted(kwargs.items())))
        if key not in _BUILT:
            _BUILT[key] = build(_BUILD_ROOT / str(len(_BUILT)), *args, **kwargs)
        return Path(shutil.copytree(_BUILT[key], Path(root) / _BUILT[key].name, dirs_exist_ok=True))

    return cached


def _png(path: Path, seed: int, size: int = 96) -> str:
    """A small colourful PNG standing in for a Grad-CAM or overlay image produced by the trainer."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    blob = np.exp(-(((xx - rng.integers(20, 76)) ** 2 + (yy - rng.integers(20, 76)) ** 2) / 300.0))
    rgb = np.stack([blob * 255, 80 + 60 * np.sin(xx / 9.0), 255 * (1 - blob)], axis=-1).clip(0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path.name


def _history(epochs: int = 6) -> list[dict[str, Any]]:
    return [
        {
            "epoch": e,
            "train_loss": 0.7 * 0.8**e,
            "val_loss": 0.6 * 0.85**e + 0.05,
            "val_metric": 0.7 + 0.04 * e,
            "lr": 1e-3 * 0.9**e,
            "seconds": 12.5,
            "images_per_s": 410.0,
        }
        for e in range(1, epochs + 1)
    ]


def _repro(imagenet: bool, seed: int = 0) -> dict[str, Any]:
    return {
        "versions": {"resnet_apps": "0.1.0", "torch": "2.14.1", "timm": "1.0.31", "numpy": np.__version__},
        "git_commit": "fc61fd3",
        "recipe_hash": "sha256:ab12",
        "data_hash": "sha256:cd34",
        "seed": seed,
        "weights_source": "hf-hub:timm/resnet50.a1_in1k" if imagenet else "none",
        "imagenet_weights_used": imagenet,
    }


@_once
def binary_run(
    root: Path,
    name: str = "pneumonia_imagenet",
    skill: float = 0.45,
    imagenet: bool = True,
    leakage_ok: bool = True,
) -> Path:
    """Kermany-like binary run: 240 test images from 80 patients, threshold from validation (sens 0.95)."""
    rng = np.random.default_rng(7)  # the same cases for every run: runs differ only in skill
    run = root / name
    y_val, y_test = rng.integers(0, 2, 200), rng.integers(0, 2, 240)
    noise_val, noise_test = rng.random(200), rng.random(240)
    p_val = np.clip(skill * y_val + (1 - skill) * noise_val, 0, 1)
    p_test = np.clip(skill * y_test + (1 - skill) * noise_test, 0, 1)
    patients = [f"pt{i // 3:03d}" for i in range(240)]
    threshold = choose_operating_point(y_val, p_val, "sensitivity:0.95")
    classes = ["NORMAL", "PNEUMONIA"]
    evaluation = evaluate_classification(
        y_test,
        p_test,
        classes,
        mode="binary",
        threshold=threshold,
        groups=patients,
        n_boot=N_BOOT,
        sample_ids=[f"h{i:04d}" for i in range(240)],
    )
    gradcam = []
    for i, (t, p) in enumerate(zip(y_test[:6], p_test[:6], strict=False)):
        rel = f"gallery/{_png(run / 'gallery' / f'cam_{i:02d}.png', i)}"
        pred = int(p >= threshold)
        gradcam.append(
            {
                "image": rel,
                "true": classes[t],
                "pred": classes[pred],
                "prob": float(p),
                "correct": bool(pred == t),
            }
        )
    doc = {
        "run": {
            "name": name,
            "recipe": "recipes/kermany_resnet50.yaml",
            "task": "classification",
            "created": "2026-11-25T02:00:00Z",
            "metric": "AUROC",
        },
        "anchor": {
            "metric": "auroc",
            "value": 0.968,
            "source": "Kermany et al. 2018, Cell",
            "protocol": "InceptionV3 ImageNet transfer, official 624-image test split",
        },
        "data_card": {
            "name": "kermany",
            "markdown": CARD_MD,
            "front_matter": {
                "title": "Chest X-Ray Images (Pneumonia)",
                "licence": "CC BY 4.0",
                "citation": "Kermany et al., Cell 2018",
                "modality": "CR, JPEG",
                "classes": [
                    {"name": "NORMAL", "definition": "no opacity"},
                    {"name": "PNEUMONIA", "definition": "bacterial or viral"},
                ],
                "known_limits": ["single centre", "paediatric only"],
            },
        },
        "split": {
            "method": "group",
            "seed": 0,
            "group_pattern": "^(person\\d+)_",
            "counts": {
                "train": {"NORMAL": 1100, "PNEUMONIA": 3100},
                "val": {"NORMAL": 100, "PNEUMONIA": 100},
                "test": {"NORMAL": int((y_test == 0).sum()), "PNEUMONIA": int(y_test.sum())},
            },
            "groups": {"train": 2100, "val": 70, "test": 80},
            "leakage": {"ok": leakage_ok, "offending_groups": [] if leakage_ok else ["3f9a0c1d2e4b5a69"]},
        },
        "history": _history(),
        "evaluation": {"split": "test", **evaluation},
        "validation": {
            "split": "val",
            **evaluate_classification(
                y_val, p_val, classes, mode="binary", threshold=threshold, n_boot=0, keep_samples=False
            ),
        },
        "gradcam": gradcam,
        "skipped": [
            {"path": "train/NORMAL/IM-0001 <corrupt>.jpeg", "reason": "truncated JPEG (ImageReadError)"}
        ],
        "reproducibility": _repro(imagenet),
    }
    write_metrics(run, doc)
    return run


@_once
def multiclass_run(root: Path, name: str = "eurosat_ms") -> Path:
    """EuroSAT-like 10-class land-cover run with tiles grouped in pairs."""
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 10, n)
    logits = rng.normal(0, 1, (n, 10))
    logits[np.arange(n), y] += 2.5
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    evaluation = evaluate_classification(
        y, prob, EUROSAT, groups=[f"tile{i // 2}" for i in range(n)], n_boot=N_BOOT
    )
    run = root / name
    doc = {
        "run": {
            "name": name,
            "recipe": "recipes/eurosat_ms_resnet50.yaml",
            "task": "classification",
            "metric": "overall accuracy",
        },
        "anchor": {
            "metric": "accuracy",
            "value": 0.991,
            "source": "SSL4EO-S12 (Wang et al. 2022)",
            "protocol": "linear probe + fine-tune, 13 bands, 80/20 random split",
        },
        "split": {
            "method": "stratified",
            "seed": 0,
            "counts": {"test": {c: int((y == i).sum()) for i, c in enumerate(EUROSAT)}},
        },
        "history": _history(3),
        "evaluation": {"split": "test", **evaluation},
        "gradcam": [],
        "skipped": [],
        "reproducibility": _repro(False),
    }
    write_metrics(run, doc)
    return run


@_once
def multilabel_run(root: Path, name: str = "chestxray14") -> Path:
    """ChestX-ray14-like multi-label run with missing (NaN) labels and per-label thresholds."""
    rng = np.random.default_rng(2)
    labels = ["Atelectasis", "Effusion", "Mass", "Nodule", "Pneumothorax"]
    y = (rng.random((250, 5)) < 0.25).astype(float)
    y[rng.random((250, 5)) < 0.08] = np.nan
    p = np.clip(np.nan_to_num(y) * 0.35 + rng.random((250, 5)) * 0.65, 0, 1)
    thresholds = choose_operating_point(y, p, "youden")
    evaluation = evaluate_classification(
        y,
        p,
        labels,
        mode="multilabel",
        threshold=thresholds,
        groups=[f"pt{i // 2}" for i in range(250)],
        n_boot=N_BOOT,
    )
    run = root / name
    write_metrics(
        run,
        {
            "run": {"name": name, "recipe": "recipes/chestxray14.yaml", "task": "classification"},
            "evaluation": {"split": "test", **evaluation},
            "reproducibility": _repro(True),
        },
    )
    return run


@_once
def segmentation_run(root: Path, name: str = "landcover_seg", quality: float = 0.8) -> Path:
    """Building/road/water segmentation run: 16 tiles from 4 scenes, ignore pixels, 2 overlay PNGs."""
    rng = np.random.default_rng(3)
    classes = ["background", "building", "road", "water"]
    target = rng.integers(0, 4, (16, 24, 24))
    target[:, :2, :] = 255  # nodata border
    noise = np.random.default_rng(int(quality * 100)).random(target.shape)
    pred = np.where(noise < quality, target, (target + 1) % 4) % 4
    cms = np.stack([segmentation_confusion(pp, tt, 4) for pp, tt in zip(pred, target, strict=False)])
    evaluation = evaluate_segmentation(
        cms,
        classes,
        groups=[f"scene{i // 4}" for i in range(16)],
        n_boot=N_BOOT,
        sample_ids=[f"tile{i}" for i in range(16)],
    )
    run = root / name
    overlays = [
        {
            "image": f"gallery/{_png(run / 'gallery' / f'seg_{i}.png', 10 + i)}",
            "caption": f"tile {i}: prediction over RGB (B04, B03, B02)",
        }
        for i in range(2)
    ]
    write_metrics(
        run,
        {
            "run": {"name": name, "recipe": "recipes/seg.yaml", "task": "segmentation", "metric": "mIoU"},
            "anchor": {
                "metric": "miou",
                "value": 0.52,
                "source": "DeepGlobe baseline",
                "protocol": "512 px tiles",
            },
            "history": _history(4),
            "evaluation": {"split": "test", **evaluation},
            "overlays": overlays,
            "skipped": [],
            "reproducibility": _repro(True),
        },
    )
    return run


def test_fixture_documents_validate(tmp_path: Path) -> None:
    for build in (binary_run, multiclass_run, multilabel_run, segmentation_run):
        doc = load_metrics(build(tmp_path))
        assert doc["schema_version"] == 1 and doc["evaluation"]["headline"]
    binary = load_metrics(tmp_path / "pneumonia_imagenet")
    assert binary["evaluation"]["operating_point"]["source"] == "validation"
    assert len(binary["evaluation"]["samples"]["ids"]) == 240
