"""The array cache: one [N, C, H, W] shard written once, reused, invalidated, never used half-written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dicom_fixtures import make_dicom
from train_fixtures import make_geotiff_folder

import resnet_apps.io
from resnet_apps.data import ArrayCache, Preprocessing, Record, RecordDataset
from resnet_apps.data.array_cache import open_shard, shard_dir, shard_for, shard_key


@pytest.fixture()
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files decoded (the dataset looks read_image / read_geotiff / read_dicom up on resnet_apps.io)."""
    calls: list[str] = []
    for name in ("read_image", "read_geotiff", "read_dicom"):
        real = getattr(resnet_apps.io, name)

        def counting(path: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            first = path[0] if isinstance(path, list) else path
            calls.append(Path(first).name)
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(resnet_apps.io, name, counting)
    return calls


def _chips(tmp_path: Path) -> tuple[list[Record], Path]:
    root = make_geotiff_folder(tmp_path / "data", per_class=3, size=16, bands=4)
    paths = sorted(p.relative_to(root) for p in root.rglob("*.tif"))
    records = [Record(path=str(p), label=i % 3) for i, p in enumerate(paths)]
    return records, root


def _dataset(records: list[Record], root: Path, cache: Path, **prep: Any) -> RecordDataset:
    return RecordDataset(
        records, root, Preprocessing(scale=1e-4, **prep), cache=ArrayCache(cache), classes=["a", "b", "c"]
    )


def test_shard_is_written_once_and_reused(tmp_path: Path, decodes: list[str]) -> None:
    records, root = _chips(tmp_path)
    shard = shard_for(_dataset(records, root, tmp_path / "cache"))
    assert shard is not None and len(decodes) == len(records) == 9
    assert shard.image.dtype == np.int16 and shard.image.shape == (9, 4, 16, 16)  # integers < 32768: raw
    assert isinstance(shard.image.base, np.memmap) and not shard.image.flags.writeable  # a read-only map
    assert shard.scale == pytest.approx(1e-4)
    again = shard_for(_dataset(records, root, tmp_path / "cache"))  # a new run: opened, not decoded
    assert again is not None and len(decodes) == 9 and again.key == shard.key
    assert np.array_equal(again.label, [r.label for r in records])


def test_gather_equals_per_sample_loading(tmp_path: Path) -> None:
    records, root = _chips(tmp_path)
    ds = _dataset(records, root, tmp_path / "cache")
    shard = shard_for(ds)
    assert shard is not None
    indices = [7, 2, 2, 5, 0]
    batch = shard.gather(indices)
    image = shard.to_float(batch["image"])
    assert batch["image"].dtype.itemsize == 2 and image.shape == (5, 4, 16, 16)
    for row, i in enumerate(indices):
        sample = ds[i]  # the per-sample path (no transform, no normalisation)
        assert np.array_equal(image[row].numpy(), sample["image"].numpy())  # bit-for-bit float32
        assert np.array_equal(batch["valid"][row].numpy(), sample["valid"].numpy())
        assert int(batch["label"][row]) == int(sample["label"]) and int(batch["index"][row]) == i


def test_content_change_invalidates(tmp_path: Path, decodes: list[str]) -> None:
    import rasterio

    records, root = _chips(tmp_path)
    first = shard_for(_dataset(records, root, tmp_path / "cache"))
    path = root / records[4].path
    with rasterio.open(path, "r+") as handle:
        data = handle.read()
        data[0, 0, 0] += 7
        handle.write(data)
    decodes.clear()
    second = shard_for(_dataset(records, root, tmp_path / "cache"))
    assert first is not None and second is not None and first.key != second.key
    assert len(decodes) == 9  # rebuilt
    assert int(second.image[4, 0, 0, 0]) == int(first.image[4, 0, 0, 0]) + 7


def test_preprocessing_change_invalidates(tmp_path: Path, decodes: list[str]) -> None:
    records, root = _chips(tmp_path)
    shard_for(_dataset(records, root, tmp_path / "cache"))
    shard_for(_dataset(records, root, tmp_path / "cache", mean=(1.0,) * 4, std=(2.0,) * 4))
    assert len(decodes) == 9  # mean/std apply after the cache: same shard
    resized = shard_for(_dataset(records, root, tmp_path / "cache", image_size=8))
    assert len(decodes) == 18 and resized is not None and resized.image.shape == (9, 4, 8, 8)
    assert resized.image.dtype == np.float16  # resized values are not integers


def test_half_written_shard_is_ignored(tmp_path: Path, decodes: list[str]) -> None:
    records, root = _chips(tmp_path)
    ds = _dataset(records, root, tmp_path / "cache")
    shard = shard_for(ds)
    assert shard is not None
    directory, key = shard_dir(ds), shard_key(ds)
    assert directory is not None
    entry = directory / key[:2] / key
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").unlink()  # a writer killed before its completion marker
    assert open_shard(directory, key) is None
    decodes.clear()
    rebuilt = shard_for(_dataset(records, root, tmp_path / "cache"))
    assert rebuilt is not None and len(decodes) == 9
    # a truncated array behind a marker (disk trouble) is not used either
    np.save(entry / "valid.npy", np.ones((3, 16, 16), bool))
    assert json.loads((entry / "meta.json").read_text()) == meta
    assert open_shard(directory, key) is None
    # a marker naming fewer arrays than this version reads (an older layout) is rebuilt, not a crash
    (entry / "meta.json").write_text(json.dumps({**meta, "arrays": ["image", "valid"]}))
    assert open_shard(directory, key) is None
    # a writer's temporary folder is never opened as a shard
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]


def test_dicom_shard_is_float16_close_to_per_sample(
    tmp_path: Path, decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import resnet_apps.data.array_cache as array_cache

    ramp = np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) % 1000
    names = ["a.dcm", "b.dcm", "c.dcm", "d.dcm", "e.dcm"]
    for i, name in enumerate(names):
        make_dicom(tmp_path / name, np.roll(ramp, 7 * i, axis=1), window=(500.0, 1000.0))
    records = [Record(path=name, label=i % 2) for i, name in enumerate(names)]
    ds = RecordDataset(records, tmp_path, Preprocessing(image_size=16), cache=ArrayCache(tmp_path / "c"))
    monkeypatch.setattr(array_cache, "CHEAP_DECODE_S", 0.0)  # these tiny films count as costly
    monkeypatch.setattr(array_cache, "PROBE_RECORDS", 2)
    shard = shard_for(ds, workers=2)
    # the first two here (timed), the other three in the two worker processes (their calls are not seen here)
    assert decodes == ["a.dcm", "b.dcm"]
    assert shard is not None and shard.image.dtype == np.float16 and shard.scale == 1.0
    image = shard.to_float(shard.gather([3, 1, 4, 0, 2])["image"])
    per_sample = np.stack([ds[i]["image"].numpy() for i in (3, 1, 4, 0, 2)])
    np.testing.assert_allclose(image.numpy(), per_sample, atol=2**-11)


def test_cheap_decodes_stay_in_this_process(tmp_path: Path, decodes: list[str]) -> None:
    records, root = _chips(tmp_path)  # 16 px chips: far below CHEAP_DECODE_S each
    shard = shard_for(_dataset(records, root, tmp_path / "cache"), workers=2)
    assert shard is not None and len(decodes) == len(records) == 9  # every decode seen here: no pool


def test_images_of_different_sizes_use_the_per_sample_path(tmp_path: Path) -> None:
    make_dicom(tmp_path / "a.dcm", np.zeros((16, 16), np.uint16) + 5, window=(500.0, 1000.0))
    make_dicom(tmp_path / "b.dcm", np.zeros((16, 20), np.uint16) + 5, window=(500.0, 1000.0))
    records = [Record(path="a.dcm", label=0), Record(path="b.dcm", label=1)]
    ds = RecordDataset(records, tmp_path, Preprocessing(), cache=ArrayCache(tmp_path / "c"))
    assert shard_for(ds) is None
    directory = shard_dir(ds)
    assert directory is not None and not list(directory.rglob("meta.json"))


@pytest.mark.subprocess
def test_cli_data_cache_writes_the_shard_train_reads(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from train_fixtures import write_recipe

    recipe = write_recipe(
        tmp_path / "r.yaml",
        make_geotiff_folder(tmp_path / "data", per_class=4, size=16),
        data={"image_size": 16},
    )
    env = {**os.environ, "RESNET_APPS_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "resnet_apps", "data", "cache", str(recipe), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tiny: 6 training images [4, 16, 16] as int16" in done.stdout
    assert len(list((tmp_path / "cache" / "shards").rglob("meta.json"))) == 1


def test_integers_an_ulp_off_are_stored_as_integers() -> None:
    """Grey films made from R=G=B land an ulp off integer * scale: uint8 keeps them, not float16."""
    from resnet_apps.data.array_cache import _fits

    scale = 1 / 255
    values = np.arange(256, dtype=np.float32) * np.float32(scale)
    nudged = np.nextafter(values, np.float32(2))  # one ulp up, as the grey conversion leaves them
    nudged[0] = 0.0  # (zero stays zero)
    stored = _fits(nudged, "uint8", scale)
    assert stored is not None and stored.dtype == np.uint8 and np.array_equal(stored, np.arange(256))
    assert _fits(values + np.float32(1e-3), "uint8", scale) is None  # not integers: a float dtype
