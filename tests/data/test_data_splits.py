"""Splits: by patient (Kermany), stratified, by split column, by spatial block; the leakage check."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from resnet_apps.data import Record, build_records, check_leakage, group_split, make_split, split_counts
from resnet_apps.errors import DatasetError, LeakageError

KERMANY = {
    "kind": "csv",
    "index": "labels.csv",
    "split_column": "split",
    "group_pattern": r"^(person\d+)_|^(IM-\d+)-|^(NORMAL2-IM-\d+)-",
}


@pytest.fixture(scope="module")
def kermany(shared_data: Path) -> list[Record]:
    return build_records(KERMANY, shared_data / "chest_xray_pneumonia_kermany")[0]


def _groups_of(records: list[Record], split: dict, name: str) -> set[str | None]:
    return {records[i].group for i in split["indices"][name]}


def test_group_split_keeps_patients_together(kermany: list[Record]) -> None:
    split = make_split(kermany, "group", val=0.15, test=0.15, seed=0, keep_test=False)
    train, val, test = (_groups_of(kermany, split, s) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    sizes = {s: len(split["indices"][s]) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == len(kermany) == 1624
    # whole patients per fold: the fractions are close to, not exactly, 15 %
    assert 0.10 < sizes["test"] / 1624 < 0.20 and 0.10 < sizes["val"] / 1624 < 0.20
    # stratified: the PNEUMONIA share of each split is within 5 points of the whole (624 of 1624 ~ 0.55)
    share = np.mean([r.label for r in kermany])
    for name in ("train", "val", "test"):
        labels = [kermany[i].label for i in split["indices"][name]]
        assert abs(np.mean(labels) - share) < 0.05
    # plain data, reproducible from the seed
    assert json.loads(json.dumps(split)) == split
    assert make_split(kermany, "group", 0.15, 0.15, seed=0, keep_test=False)["indices"] == split["indices"]
    assert make_split(kermany, "group", 0.15, 0.15, seed=1, keep_test=False)["indices"] != split["indices"]
    assert split["paths"]["test"][0] == kermany[split["indices"]["test"][0]].path


def test_source_split_column_leaks_patients(kermany: list[Record]) -> None:
    # the published Kermany train/test folders share patients: the column split is refused, naming them
    with pytest.raises(
        LeakageError, match=r"group\(s\) appear in more than one split: .* in test\+train \(e.g. "
    ):
        make_split(kermany, "column", val=0.15, test=0.0, seed=0)
    # "group" keeping the source test: those patients' training films are left out instead
    split = make_split(kermany, "group", val=0.15, test=0.0, seed=0, keep_test=True)
    assert len(split["indices"]["test"]) == 624  # the whole published test split
    test_groups = _groups_of(kermany, split, "test")
    assert not (_groups_of(kermany, split, "train") & test_groups)
    dropped = split["dropped"]
    assert dropped and all("also in the source's test split" in d["reason"] for d in dropped)
    by_path = {r.path: r for r in kermany}
    assert all(by_path[d["path"]].group in test_groups for d in dropped)
    assert sum(len(v) for v in split["indices"].values()) + len(dropped) == 1624


def test_leakage_check_names_groups() -> None:
    check_leakage({"train": ["p1", "p2"], "val": ["p3"], "test": ["p4", None]})  # clean: no error
    with pytest.raises(LeakageError, match=r"2 group\(s\).*p1 in test\+train.*p3 in train\+val"):
        check_leakage({"train": ["p1", "p3"], "val": ["p3"], "test": ["p1", "p4"]})


def test_constructed_leak_in_split_column(tmp_path: Path) -> None:
    for name in ("person1_a.png", "person1_b.png", "person2_a.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "index.csv").write_text(
        "filename,label,split\nperson1_a.png,1,train\nperson1_b.png,1,test\nperson2_a.png,0,val\n"
    )
    source = {"kind": "csv", "index": "index.csv", "split_column": "split", "group_pattern": r"^(person\d+)_"}
    records, _ = build_records(source, tmp_path)
    with pytest.raises(LeakageError, match=r"1 group\(s\).*in test\+train \(e.g. person1_"):
        make_split(records, "column", val=0.0, test=0.0)


def test_stratified_split_without_groups() -> None:
    records = [Record(path=f"{i}.tif", label=i % 4) for i in range(200)]
    split = make_split(records, "stratified", val=0.15, test=0.15, seed=3)
    assert [len(split["indices"][s]) for s in ("train", "val", "test")] == [140, 30, 30]
    for name in ("val", "test"):
        counts = Counter(records[i].label for i in split["indices"][name])
        assert sorted(counts.values())[0] >= 7  # every class present in near-equal share
    counts = split_counts(split, records, ["a", "b", "c", "d"])
    assert sum(counts["train"].values()) == 140 and set(counts["test"]) == {"a", "b", "c", "d"}


def test_random_split_is_unstratified_and_still_checked_for_leakage() -> None:
    records = [Record(path=f"{i}.tif", label=i % 4) for i in range(200)]
    split = make_split(records, "random", val=0.15, test=0.15, seed=3)
    # test: round(0.15 * 200) = 30; val: round(0.15 / 0.85 * 170) = 30; train the remaining 140
    assert [len(split["indices"][s]) for s in ("train", "val", "test")] == [140, 30, 30]
    assert sorted(sum(split["indices"].values(), [])) == list(range(200))
    # the same draw as an unstratified group_split
    direct = group_split([str(r.label) for r in records], None, 0.15, 0.15, seed=3, stratify=False)
    assert {s: split["indices"][s] for s in direct} == direct
    # random ignores groups, so patients with two images each end up across splits: the check refuses it
    paired = [Record(path=f"{i}.tif", label=i % 4, group=f"p{i // 2}") for i in range(200)]
    with pytest.raises(LeakageError, match="appear in more than one split"):
        make_split(paired, "random", val=0.15, test=0.15, seed=3)


def test_group_split_function_directly() -> None:
    labels = [0, 1] * 30
    groups = [f"g{i // 3}" for i in range(60)]  # 20 groups of 3
    parts = group_split(labels, groups, val=0.2, test=0.2, seed=0)
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == list(range(60))
    seen = {s: {groups[i] for i in parts[s]} for s in parts}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"])
    assert all(len(parts[s]) % 3 == 0 for s in parts)  # whole groups only


def _chip(path: Path, x0: float, y0: float) -> None:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=1,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10, 0, x0, 0, -10, y0),
    ) as dst:
        dst.write(np.ones((1, 64, 64), np.uint16))


def test_spatial_blocks(tmp_path: Path) -> None:
    # 4 clusters of 5 neighbouring chips each (640 m chips, clusters 50 km apart); 10 km blocks
    records = []
    for cluster in range(4):
        for k in range(5):
            name = f"c{cluster}_{k}.tif"
            _chip(tmp_path / name, 500000 + cluster * 50000 + k * 640, 5000000)
            records.append(Record(path=name, label=cluster % 2))
    split = make_split(records, "spatial", val=0.25, test=0.25, seed=0, root=tmp_path, block_size_m=10000)
    assert split["block_size_m"] == 10000 and split["groups"] == {"train": 2, "val": 1, "test": 1}
    for name in ("train", "val", "test"):
        clusters = {records[i].path[:2] for i in split["indices"][name]}
        assert len(split["indices"][name]) == 5 * len(clusters)  # a cluster is never cut


def test_spatial_split_needs_georeference(shared_data: Path) -> None:
    root = shared_data / "cloud38_landsat8_segmentation"
    records = [Record(path="train_gt/gt_patch_51_3_by_3_LC08_L1TP_011002_20160620_20170323_01_T1.TIF")] * 2
    with pytest.raises(DatasetError, match=r"no CRS, so no spatial block; use data.split.method group"):
        make_split(records, "spatial", root=root)
