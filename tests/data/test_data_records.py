"""build_records for every layout in ../shared/data, a generated NIH-style CSV, and bad indexes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from resnet_apps.data import NIH_CHESTXRAY14_LABELS, as_source_config, build_records, hash_id
from resnet_apps.errors import DatasetError

KERMANY_PATTERN = r"^(person\d+)_|^(IM-\d+)-|^(NORMAL2-IM-\d+)-"
CLOUD_SOURCE = {
    "kind": "pairs",
    "mask_column": "train_gt/gt_{id}.TIF",
    "band_files": {
        "red": "train_red/red_{id}.TIF",
        "green": "train_green/green_{id}.TIF",
        "blue": "train_blue/blue_{id}.TIF",
        "nir": "train_nir/nir_{id}.TIF",
    },
    "group_pattern": r"(LC08_\w+?_\d{6}_\d{8})",
    "mask_values": {0: 0, 255: 1},
}


def test_eurosat_ms_folder(shared_data: Path) -> None:
    records, classes = build_records("folder", shared_data / "eurosat_ms")
    assert len(records) == 469  # SOURCES.md section 1
    assert len(classes) == 10 and classes[0] == "AnnualCrop" and classes[-1] == "SeaLake"
    per_class = {c: sum(r.label == i for r in records) for i, c in enumerate(classes)}
    assert per_class["Pasture"] == 40 and per_class["Highway"] == 44 and per_class["Forest"] == 50
    # natural order within a class: _2 before _10
    forest = [r.path for r in records if r.label == classes.index("Forest")]
    assert forest.index("Forest/Forest_2.tif") < forest.index("Forest/Forest_10.tif")


def test_eurosat_rgb_folder(shared_data: Path) -> None:
    records, classes = build_records({"kind": "folder"}, shared_data / "eurosat_rgb")
    assert len(records) == 3000 and len(classes) == 10  # 300 per class
    assert all(r.path.endswith(".jpg") for r in records)


def test_kermany_csv_with_patient_pattern(shared_data: Path) -> None:
    source = {"kind": "csv", "index": "labels.csv", "split_column": "split", "group_pattern": KERMANY_PATTERN}
    records, classes = build_records(source, shared_data / "chest_xray_pneumonia_kermany")
    assert classes == ["NORMAL", "PNEUMONIA"] and len(records) == 1624
    assert {r.split for r in records} == {"train", "test"}
    by_path = {r.path: r for r in records}
    # one patient's two films share a group; groups are hashes, never the raw "person..." string
    names = [p for p in by_path if re.search(r"/person1_(bacteria|virus)_", p)]
    assert len({by_path[p].group for p in names}) == 1
    assert by_path[names[0]].group == hash_id("person1")
    assert by_path["train/NORMAL/IM-0115-0001.jpeg"].group == hash_id("IM-0115")
    normal2 = next(p for p in by_path if "/NORMAL2-IM-" in p)
    patient = re.match(r"(NORMAL2-IM-\d+)-", Path(normal2).name).group(1)  # type: ignore[union-attr]
    assert by_path[normal2].group == hash_id(patient)
    assert all(len(r.group or "") == 16 and "person" not in (r.group or "") for r in records)


def test_dubai_pairs_classes_from_csv(shared_data: Path) -> None:
    source = {
        "kind": "pairs",
        "index": "pairs.csv",
        "path_column": "image",
        "mask_column": "mask",
        "group_column": "tile",
        "mask_encoding": "rgb",
        "class_colors": "classes.csv",
        "ignore_colors": ["#000000"],
    }
    records, classes = build_records(source, shared_data / "dubai_aerial_landcover_segmentation")
    assert len(records) == 72
    assert classes == ["Building", "Land (unpaved area)", "Road", "Vegetation", "Water", "Unlabeled"]
    assert len({r.group for r in records}) == 8  # 8 tiles
    assert records[0].mask_path == "tile_1/masks/image_part_001.png"


def test_cloud38_band_stacks(shared_data: Path) -> None:
    records, classes = build_records(CLOUD_SOURCE, shared_data / "cloud38_landsat8_segmentation")
    assert len(records) == 12 and classes == ["0", "1"]
    first = records[0]
    patch = "patch_51_3_by_3_LC08_L1TP_011002_20160620_20170323_01_T1"
    assert first.mask_path == f"train_gt/gt_{patch}.TIF"
    assert first.band_paths == tuple(f"train_{b}/{b}_{patch}.TIF" for b in ("red", "green", "blue", "nir"))
    assert first.band_names == ("red", "green", "blue", "nir")
    # scene = path/row + date: the 12 patches come from 12 different scenes
    assert first.group == hash_id("LC08_L1TP_011002_20160620")


def test_covid_lung_pairs_grouped_by_patient(shared_data: Path) -> None:
    source = {
        "kind": "pairs",
        "index": "pairs.csv",
        "path_column": "image",
        "mask_column": "lung_mask",
        "group_index": "metadata.csv",
        "group_column": "patientid",
        "mask_values": {0: 0, 1: 1, 2: 2},
    }
    root = shared_data / "covid_cxr_lung_segmentation_generalblockchain"
    records, classes = build_records(source, root, classes=["background", "right_lung", "left_lung"])
    assert len(records) == 90 and classes[2] == "left_lung"
    # metadata.csv: patient "2" has the auntminnie-a/b films (day 0 and day 3)
    films = [r for r in records if "2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus" in r.path]
    assert len(films) >= 2 and len({r.group for r in films}) == 1 and films[0].group == hash_id("2")
    assert len({r.group for r in records}) < 90  # several patients have follow-up films


def test_nih_multilabel_csv(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    rows = [
        ("00000001_000.png", "Cardiomegaly", "1"),
        ("00000001_001.png", "Cardiomegaly|Emphysema", "1"),
        ("00000002_000.png", "No Finding", "2"),
        ("00000003_000.png", "", "3"),
        ("00000004_000.png", "Effusion|Mass", "4"),
    ]
    for name, _, _ in rows:
        (tmp_path / "images" / name).write_bytes(b"x")
    lines = ["Image Index,Finding Labels,Patient ID"] + [",".join(r) for r in rows]
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    source = {
        "kind": "multilabel_csv",
        "index": "Data_Entry_2017.csv",
        "path_column": "Image Index",
        "labels_column": "Finding Labels",
        "group_column": "Patient ID",
        "image_dir": "images",
    }
    records, classes = build_records(source, tmp_path)
    assert classes == list(NIH_CHESTXRAY14_LABELS) and len(classes) == 14
    k = classes.index
    assert records[0].path == "images/00000001_000.png"
    assert records[1].labels[k("Cardiomegaly")] == 1.0 and records[1].labels[k("Emphysema")] == 1.0  # type: ignore[index]
    assert sum(records[1].labels) == 2.0  # type: ignore[arg-type]
    assert records[2].labels == tuple([0.0] * 14)  # "No Finding": all negative
    assert all(math.isnan(v) for v in records[3].labels)  # type: ignore[union-attr]  # missing: masked
    assert records[0].group == records[1].group != records[2].group


def test_per_class_columns_uncertain_is_nan(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "index.csv").write_text("Path,Edema,Effusion\na.png,1,-1\nb.png,,0\n")
    source = {"kind": "multilabel_csv", "index": "index.csv", "path_column": "Path"}
    records, _ = build_records(source, tmp_path, classes=["Edema", "Effusion"])
    assert records[0].labels[0] == 1.0 and math.isnan(records[0].labels[1])  # type: ignore[index]
    assert math.isnan(records[1].labels[0]) and records[1].labels[1] == 0.0  # type: ignore[index]


# --- bad input: each a typed error naming the file and the fix ------------------------------------


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no class folders.*root/<class>/<image>"):
        build_records("folder", tmp_path)
    (tmp_path / "Forest").mkdir()
    with pytest.raises(DatasetError, match=r"Forest: class folder holds no image files"):
        build_records("folder", tmp_path)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere: dataset folder not found; fix data.root"):
        build_records("folder", tmp_path / "nowhere")


def test_unreadable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 0 does not stop root (tests may run as root), so the OS refusal is simulated where it happens
    import resnet_apps.data.records as records_module

    def refuse(path: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(records_module.os, "scandir", refuse)
    with pytest.raises(
        DatasetError, match=r"folder cannot be read \(Permission denied\); check its permissions"
    ):
        build_records("folder", tmp_path)


def test_csv_naming_missing_files(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("filename,label\na.png,cat\nb.png,dog\nc.png,dog\n")
    with pytest.raises(DatasetError, match=r"2 file\(s\) named by the index do not exist.*'b.png', 'c.png'"):
        build_records({"kind": "csv", "index": "labels.csv"}, tmp_path)


def test_csv_missing_column_and_unmatched_group(tmp_path: Path) -> None:
    (tmp_path / "scan.png").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file,label\nscan.png,cat\n")
    with pytest.raises(DatasetError, match=r"column\(s\) \['filename'\] not found"):
        build_records({"kind": "csv", "index": "labels.csv"}, tmp_path)
    source = {"kind": "csv", "index": "labels.csv", "path_column": "file", "group_pattern": KERMANY_PATTERN}
    with pytest.raises(DatasetError, match=r"scan.png.*group_pattern.*does not match"):
        build_records(source, tmp_path)


def test_unknown_source_key() -> None:
    with pytest.raises(DatasetError, match=r"unknown key\(s\) \['group_colum'\]"):
        as_source_config({"kind": "csv", "group_colum": "patient"})
