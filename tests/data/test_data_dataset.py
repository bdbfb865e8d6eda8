"""RecordDataset on real data of every layout (values checked against direct reads) and on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from dicom_fixtures import make_dicom
from PIL import Image

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data import Preprocessing, Record, RecordDataset, build_records, write_skipped
from resnet_apps.errors import (
    BandError,
    DatasetError,
    DicomError,
    ImageReadError,
    MaskMismatchError,
    NoPixelDataError,
    NoValidPixelsError,
)

DUBAI_SOURCE = {
    "kind": "pairs",
    "index": "pairs.csv",
    "path_column": "image",
    "mask_column": "mask",
    "group_column": "tile",
    "mask_encoding": "rgb",
    "class_colors": "classes.csv",
    "ignore_colors": ["#000000"],
}


def write_tif(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    """A [C, H, W] GeoTIFF at 10 m in UTM 33N."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs="EPSG:32633",
        transform=Affine(10, 0, 500000, 0, -10, 5000000),
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


def test_eurosat_ms_sample_values(shared_data: Path) -> None:
    root = shared_data / "eurosat_ms"
    records, classes = build_records("folder", root)
    record = next(r for r in records if r.path == "River/River_1.tif")
    mean = tuple(0.1 + 0.01 * i for i in range(13))
    std = tuple(0.05 + 0.001 * i for i in range(13))
    ds = RecordDataset([record], root, Preprocessing(scale=1e-4, mean=mean, std=std))
    sample = ds[0]
    with rasterio.open(root / record.path) as src:
        raw = src.read().astype(np.float64)
    expected = (raw * 1e-4 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    assert sample["image"].shape == (13, 64, 64) and sample["image"].dtype == torch.float32
    np.testing.assert_allclose(sample["image"].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert sample["label"].dtype == torch.int64 and classes[int(sample["label"])] == "River"
    assert sample["valid"].all() and sample["meta"]["path"] == "River/River_1.tif"
    assert len(sample["meta"]["id"]) == 16


def test_eurosat_resize_is_area_mean_and_band_subset(shared_data: Path) -> None:
    root = shared_data / "eurosat_ms"
    record = Record(path="Forest/Forest_1.tif", label=1)
    ds = RecordDataset([record], root, Preprocessing(bands=("B04", "B03", "B02"), scale=1e-4, image_size=32))
    image = ds[0]["image"].numpy()
    with rasterio.open(root / record.path) as src:
        rgb = src.read([4, 3, 2]).astype(np.float64) * 1e-4  # rasterio bands are 1-based: B04, B03, B02
    block_mean = rgb.reshape(3, 32, 2, 32, 2).mean(axis=(2, 4))  # INTER_AREA by exactly 2 = 2x2 mean
    assert image.shape == (3, 32, 32)
    np.testing.assert_allclose(image, block_mean, rtol=1e-5, atol=1e-6)


def test_eurosat_rgb_scaled_to_unit(shared_data: Path) -> None:
    root = shared_data / "eurosat_rgb"
    ds = RecordDataset([Record(path="SeaLake/SeaLake_1.jpg", label=9)], root, Preprocessing(scale=1 / 255))
    image = ds[0]["image"].numpy()
    expected = np.asarray(Image.open(root / "SeaLake/SeaLake_1.jpg").convert("RGB"), dtype=np.float64) / 255
    np.testing.assert_allclose(image, expected.transpose(2, 0, 1), atol=1e-6)


def test_dubai_colour_masks(shared_data: Path) -> None:
    root = shared_data / "dubai_aerial_landcover_segmentation"
    records, classes = build_records(DUBAI_SOURCE, root)
    wanted = {"tile_8/images/image_part_003.jpg", "tile_2/images/image_part_001.jpg"}
    ds = RecordDataset(
        [r for r in records if r.path in wanted],
        root,
        Preprocessing(scale=1 / 255),
        classes=classes,
        source=DUBAI_SOURCE,
    )
    samples = {ds.records[i].path: ds[i] for i in range(len(ds))}
    big = samples["tile_8/images/image_part_003.jpg"]
    rgb = np.asarray(Image.open(root / "tile_8/masks/image_part_003.png").convert("RGB")).astype(int)
    black = (rgb == 0).all(axis=2)
    # SOURCES.md: 17 % of this mask is black (unannotated) -> IGNORE_INDEX, nothing else is
    mask = big["mask"].numpy()
    assert big["mask"].dtype == torch.int64 and mask.shape == rgb.shape[:2]
    assert 0.16 < black.mean() < 0.18
    assert np.array_equal(mask == IGNORE_INDEX, black)
    building = (rgb == (0x3C, 0x10, 0x98)).all(axis=2)
    water = (rgb == (0xE2, 0xA9, 0x29)).all(axis=2)
    assert np.array_equal(mask == classes.index("Building"), building)
    assert np.array_equal(mask == classes.index("Water"), water)
    # tile 2 masks are palette ("P") PNGs: converted to RGB first, so every pixel maps to a class
    assert Image.open(root / "tile_2/masks/image_part_001.png").mode == "P"
    palette_mask = samples["tile_2/images/image_part_001.jpg"]["mask"].numpy()
    assert palette_mask.shape == (544, 509) and palette_mask.max() < len(classes)
    assert len(np.unique(palette_mask)) >= 3


def test_cloud38_stack_and_cloud_fraction(shared_data: Path) -> None:
    root = shared_data / "cloud38_landsat8_segmentation"
    source = {
        "kind": "pairs",
        "mask_column": "train_gt/gt_{id}.TIF",
        "mask_values": {0: 0, 255: 1},
        "band_files": {
            "red": "train_red/red_{id}.TIF",
            "green": "train_green/green_{id}.TIF",
            "blue": "train_blue/blue_{id}.TIF",
            "nir": "train_nir/nir_{id}.TIF",
        },
    }
    records, classes = build_records(source, root)
    record = next(r for r in records if "061017_20160720" in r.path)
    ds = RecordDataset(
        [record], root, Preprocessing(scale=1 / 65535), classes=["clear", "cloud"], source=source
    )
    sample = ds[0]
    assert sample["image"].shape == (4, 384, 384)
    with rasterio.open(root / record.band_paths[3]) as src:  # type: ignore[index]
        nir = src.read(1).astype(np.float64) / 65535
    np.testing.assert_allclose(sample["image"][3].numpy(), nir, atol=1e-6)
    mask = sample["mask"].numpy()
    assert set(np.unique(mask)) <= {0, 1}
    assert abs((mask == 1).mean() - 0.966) < 0.001  # SOURCES.md: this patch is ~0.97 cloud


def test_covid_lung_masks_right_left(shared_data: Path) -> None:
    root = shared_data / "covid_cxr_lung_segmentation_generalblockchain"
    source = {
        "kind": "pairs",
        "index": "pairs.csv",
        "path_column": "image",
        "mask_column": "lung_mask",
        "group_index": "metadata.csv",
        "group_column": "patientid",
        "mask_values": {0: 0, 1: 1, 2: 2},
    }
    records, _ = build_records(source, root, classes=["background", "right_lung", "left_lung"])
    ds = RecordDataset(
        records[:2],
        root,
        Preprocessing(scale=1 / 255, grayscale=True, image_size=128),
        classes=["background", "right_lung", "left_lung"],
        source=source,
    )
    for i in range(2):
        sample = ds[i]
        mask = sample["mask"].numpy()
        assert sample["image"].shape == (1, 128, 128) and set(np.unique(mask)) == {0, 1, 2}
        cols = np.arange(128)[None, :]
        # radiological convention: the patient's right lung is on the image's left
        assert (cols * (mask == 1)).sum() / (mask == 1).sum() < (cols * (mask == 2)).sum() / (mask == 2).sum()
        assert sample["meta"]["group"] == records[i].group


def test_dicom_through_read_dicom(shared_data: Path) -> None:
    from resnet_apps.io import read_dicom

    root = shared_data / "dicom_radiographs"
    path = "chest/CR-MONO1-10-chest.dcm"
    ds = RecordDataset(
        [Record(path=path, label=0)], root, Preprocessing(scale=1 / 255)
    )  # scale not for DICOM
    image = ds[0]["image"].numpy()
    expected, _ = read_dicom(root / path)
    assert image.shape == (1, 440, 440)
    np.testing.assert_allclose(image[0], expected, atol=1e-6)
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_nodata_pixels_zeroed_and_ignored(tmp_path: Path) -> None:
    data = np.full((2, 4, 4), 100, dtype=np.uint16)
    data[:, 0, 0] = 0  # nodata corner
    write_tif(tmp_path / "chip.tif", data, nodata=0)
    Image.fromarray(np.ones((4, 4), np.uint8)).save(tmp_path / "mask.png")
    record = Record(path="chip.tif", mask_path="mask.png")
    prep = Preprocessing(scale=0.01, mean=(0.5, 0.5), std=(0.25, 0.25))
    sample = RecordDataset([record], tmp_path, prep, classes=["a", "b"], source={"kind": "pairs"})[0]
    assert not sample["valid"][0, 0] and sample["valid"].sum() == 15
    assert sample["image"][:, 0, 0].tolist() == [0.0, 0.0]
    assert sample["image"][0, 1, 1] == pytest.approx((1.0 - 0.5) / 0.25)
    assert sample["mask"][0, 0] == IGNORE_INDEX and sample["mask"][1, 1] == 1


# --- bad input: each a typed error naming the file; skip records the reason -------------------------


def test_truncated_dicom(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "cut.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(DicomError, match="cut.dcm"):
        RecordDataset([Record(path="cut.dcm", label=0)], tmp_path)[0]


def test_corrupt_dicom(tmp_path: Path) -> None:
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x07garbage" * 20)
    with pytest.raises(ImageReadError, match="junk.dcm"):
        RecordDataset([Record(path="junk.dcm", label=0)], tmp_path)[0]


def test_dicom_without_pixels(tmp_path: Path) -> None:
    make_dicom(tmp_path / "report.dcm", no_pixels=True)
    with pytest.raises(NoPixelDataError, match="report.dcm"):
        RecordDataset([Record(path="report.dcm", label=0)], tmp_path)[0]


def test_geotiff_with_fewer_bands_than_asked(tmp_path: Path) -> None:
    write_tif(tmp_path / "rgb.tif", np.ones((3, 8, 8), np.uint16))
    prep = Preprocessing(bands=("B01", "B02", "B03", "B04"))
    with pytest.raises(BandError, match=r"rgb.tif.*'B01'"):
        RecordDataset([Record(path="rgb.tif", label=0)], tmp_path, prep)[0]
    with pytest.raises(BandError, match="rgb.tif"):
        RecordDataset([Record(path="rgb.tif", label=0)], tmp_path, Preprocessing(bands=(0, 5)))[0]


def test_all_nodata_chip(tmp_path: Path) -> None:
    write_tif(tmp_path / "empty.tif", np.zeros((2, 8, 8), np.uint16), nodata=0)
    with pytest.raises(NoValidPixelsError, match=r"empty.tif: no valid pixel.*on_error: skip"):
        RecordDataset([Record(path="empty.tif", label=0)], tmp_path)[0]


def test_nans_are_invalid_and_all_nan_fails(tmp_path: Path) -> None:
    data = np.ones((1, 4, 4), np.float32)
    data[0, 2, 3] = np.nan
    write_tif(tmp_path / "some_nan.tif", data)
    sample = RecordDataset([Record(path="some_nan.tif", label=0)], tmp_path)[0]
    assert not sample["valid"][2, 3] and sample["valid"].sum() == 15
    assert torch.isfinite(sample["image"]).all() and sample["image"][0, 2, 3] == 0.0
    write_tif(tmp_path / "all_nan.tif", np.full((1, 4, 4), np.nan, np.float32))
    with pytest.raises(NoValidPixelsError, match="all_nan.tif"):
        RecordDataset([Record(path="all_nan.tif", label=0)], tmp_path)[0]


def test_mask_size_mismatch(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((10, 11), np.uint8)).save(tmp_path / "mask.png")
    ds = RecordDataset(
        [Record(path="img.png", mask_path="mask.png")], tmp_path, classes=["a", "b"], source={"kind": "pairs"}
    )
    with pytest.raises(MaskMismatchError, match=r"mask.png: mask is 10x11 but its image .*img.png is 10x12"):
        ds[0]


def test_on_error_skip_records_and_moves_on(tmp_path: Path) -> None:
    write_tif(tmp_path / "good.tif", np.full((1, 4, 4), 7, np.uint16))
    write_tif(tmp_path / "empty.tif", np.zeros((1, 4, 4), np.uint16), nodata=0)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    records = [
        Record(path="empty.tif", label=0),
        Record(path="broken.png", label=0),
        Record(path="good.tif", label=1),
    ]
    ds = RecordDataset(records, tmp_path, on_error="skip")
    sample = ds[0]  # empty.tif and broken.png are skipped: the next good sample comes back
    assert sample["meta"]["path"] == "good.tif" and float(sample["image"][0, 0, 0]) == 7.0
    assert [s["path"] for s in ds.skipped] == ["empty.tif", "broken.png"]
    assert "NoValidPixelsError" in ds.skipped[0]["reason"] and "broken.png" in ds.skipped[1]["reason"]
    ds[1]  # already known bad: not recorded twice
    assert len(ds.skipped) == 2
    fresh = RecordDataset(records, tmp_path, on_error="skip")
    assert len(fresh.validate()) == 2 and len(fresh) == 1  # upfront pass drops them
    write_skipped(fresh.skipped, tmp_path / "skipped.csv")
    assert (tmp_path / "skipped.csv").read_text().splitlines()[0] == "path,reason"
    with pytest.raises(NoValidPixelsError):
        RecordDataset(records, tmp_path, on_error="fail")[0]


def test_palette_index_masks_and_unknown_colours(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "img.png")
    indices = np.array([[0, 1, 2, 255]] * 4, np.uint8)
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [9, 9, 9] * 253)
    palette.save(tmp_path / "voc.png")
    record = Record(path="img.png", mask_path="voc.png")
    # palette encoding: the P indices are the classes (Pascal VOC style, 255 = ignore)
    ds = RecordDataset(
        [record], tmp_path, classes=["bg", "a", "b"], source={"kind": "pairs", "mask_encoding": "palette"}
    )
    assert ds[0]["mask"][0].tolist() == [0, 1, 2, IGNORE_INDEX]
    # rgb encoding of the same file: palette expanded to colours; one colour is unknown -> named error
    rgb_source = {"kind": "pairs", "mask_encoding": "rgb", "class_colors": {"bg": "#000000", "a": "#C80000"}}
    ds = RecordDataset([record], tmp_path, classes=["bg", "a"], source=rgb_source)
    with pytest.raises(DatasetError, match=r"voc.png: mask colour\(s\) #00C800 \(4 px\), #090909 \(4 px\)"):
        ds[0]


def test_multilabel_sample_keeps_nan(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 128, np.uint8)).save(tmp_path / "film.png")
    record = Record(path="film.png", labels=(1.0, 0.0, float("nan")))
    sample = RecordDataset([record], tmp_path, Preprocessing(scale=1 / 255))[0]
    assert sample["label"].dtype == torch.float32 and sample["label"][:2].tolist() == [1.0, 0.0]
    assert torch.isnan(sample["label"][2])
    assert sample["image"].shape == (1, 4, 4) and float(sample["image"][0, 0, 0]) == pytest.approx(128 / 255)


def test_seeded_augmentation_depends_on_seed_epoch_and_index_only(tmp_path: Path) -> None:
    from resnet_apps.data import build_transforms

    rng = np.random.default_rng(0)
    records = []
    for i in range(3):
        write_tif(tmp_path / f"c{i}.tif", rng.integers(0, 1000, (2, 8, 8)).astype(np.uint16))
        records.append(Record(path=f"c{i}.tif", label=i))

    def dataset() -> RecordDataset:
        return RecordDataset(records, tmp_path, transform=build_transforms("nadir"), seed=7)

    first, second = dataset(), dataset()
    first.set_epoch(2)
    second.set_epoch(2)
    forward = [first[i]["image"] for i in range(3)]
    backward = [second[i]["image"] for i in (2, 1, 0)][::-1]  # another order, another dataset object
    for a, b in zip(forward, backward, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [first[i]["index"] for i in range(3)] == [0, 1, 2]
    # another epoch draws anew: at least one of the 3 chips differs (8 flips/rotations x brightness)
    first.set_epoch(3)
    assert any(not torch.equal(first[i]["image"], forward[i]) for i in range(3))
    # no seed: the transform's own stream runs on, so a repeat read is (almost surely) different
    free = RecordDataset(records, tmp_path, transform=build_transforms("nadir"))
    assert any(not torch.equal(free[0]["image"], free[0]["image"]) for _ in range(5))
