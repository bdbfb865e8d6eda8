"""Source kind npz (MedMNIST archives) and data.source.test_dir (a test split from a class folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_apps.data.npz import cache_identity, npz_member
from resnet_apps.data.records import build_records
from resnet_apps.errors import DatasetError


def _archive(root: Path, sizes: dict[str, int]) -> Path:
    """MedMNIST layout; image i of a split has every pixel equal to i (so reads can be checked)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_images"] = np.stack([np.full((28, 28), i, np.uint8) for i in range(n)])
        arrays[f"{split}_labels"] = rng.integers(0, 2, size=(n, 1)).astype(np.uint8)
    path = root / "pneumoniamnist.npz"
    np.savez(path, **arrays)
    return path


def _test_folder(root: Path, per_class: dict[str, int]) -> None:
    for name, n in per_class.items():
        (root / "kermany_test" / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((224, 224), 200, np.uint8)).save(
                root / "kermany_test" / name / f"{i}.png"
            )


def test_npz_records_keep_the_archive_splits_and_labels(tmp_path: Path) -> None:
    path = _archive(tmp_path, {"train": 12, "val": 4, "test": 5})
    records, classes = build_records(
        {"kind": "npz", "index": "pneumoniamnist.npz"}, tmp_path, ["normal", "pneumonia"]
    )
    assert classes == ["normal", "pneumonia"]
    assert [sum(r.split == s for r in records) for s in ("train", "val", "test")] == [12, 4, 5]
    labels = np.load(path)["val_labels"][:, 0].tolist()
    assert [r.label for r in records if r.split == "val"] == labels
    assert records[13].path == "pneumoniamnist.npz#val/1" and npz_member(records[13].path) == (
        "pneumoniamnist.npz",
        "val",
        1,
    )


def test_test_dir_replaces_the_archive_test_split(tmp_path: Path) -> None:
    # the archive's 5 test images leave; the folder's 3 + 4 come in, labelled by folder name
    _archive(tmp_path, {"train": 12, "val": 4, "test": 5})
    _test_folder(tmp_path, {"normal": 3, "pneumonia": 4})
    source = {"kind": "npz", "index": "pneumoniamnist.npz", "test_dir": "kermany_test"}
    records, _ = build_records(source, tmp_path, ["normal", "pneumonia"])
    test = [r for r in records if r.split == "test"]
    assert len(records) == 12 + 4 + 7 and len(test) == 7
    assert [r.label for r in test] == [0, 0, 0, 1, 1, 1, 1]
    assert test[0].path == "kermany_test/normal/0.png"


def test_npz_images_are_read_resized_and_cached_per_member(tmp_path: Path) -> None:
    from resnet_apps.data.cache import ArrayCache
    from resnet_apps.data.dataset import RecordDataset
    from resnet_apps.data.preprocessing import Preprocessing

    _archive(tmp_path, {"train": 6, "val": 2})
    _test_folder(tmp_path, {"normal": 1, "pneumonia": 1})
    source = {"kind": "npz", "index": "pneumoniamnist.npz", "test_dir": "kermany_test"}
    records, classes = build_records(source, tmp_path, ["normal", "pneumonia"])
    prep = Preprocessing(scale=1 / 255, image_size=28, grayscale=True)
    for cache in (False, ArrayCache(tmp_path / "cache")):
        dataset = RecordDataset(records, tmp_path, prep, classes=classes, cache=cache)
        # image i of train is i everywhere: members are told apart (by the cache too)
        assert [float(dataset[i]["image"].mean()) * 255 for i in range(3)] == pytest.approx(
            [0, 1, 2], abs=1e-4
        )
        test = dataset[len(records) - 1]["image"]
        assert tuple(test.shape) == (1, 28, 28) and float(test.mean()) * 255 == pytest.approx(200, abs=1e-3)
    assert cache_identity("a.npz#train/3") == ("a.npz", {"npz_member": "train/3"})
    assert cache_identity("x/y.png") == ("x/y.png", {})


def test_npz_errors_name_the_fix(tmp_path: Path) -> None:
    _archive(tmp_path, {"train": 4})
    with pytest.raises(DatasetError, match="data.classes names 1 classes"):
        build_records({"kind": "npz", "index": "pneumoniamnist.npz"}, tmp_path, ["only"])
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DatasetError, match="no <split>_images"):
        build_records({"kind": "npz", "index": "other.npz"}, tmp_path)
