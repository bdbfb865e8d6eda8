"""The preprocessing cache: second epoch without decoding, invalidated by content and by parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dicom_fixtures import make_dicom

import resnet_apps.io
from resnet_apps.data import ArrayCache, Preprocessing, Record, RecordDataset, default_cache_dir


@pytest.fixture()
def dicom_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count read_dicom calls made by the dataset (it looks the function up on resnet_apps.io)."""
    calls: list[str] = []
    real = resnet_apps.io.read_dicom

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(resnet_apps.io, "read_dicom", counting)
    return calls


def _films(tmp_path: Path) -> list[Record]:
    ramp = np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) % 1000
    make_dicom(tmp_path / "a.dcm", ramp, window=(500.0, 1000.0))
    make_dicom(tmp_path / "b.dcm", ramp[::-1].copy(), window=(500.0, 1000.0))
    return [Record(path="a.dcm", label=0), Record(path="b.dcm", label=1)]


def test_second_epoch_does_not_decode_dicom(tmp_path: Path, dicom_calls: list[str]) -> None:
    records = _films(tmp_path)
    cache = ArrayCache(tmp_path / "cache")
    ds = RecordDataset(records, tmp_path, Preprocessing(image_size=16), cache=cache)
    first = [ds[i]["image"].clone() for i in range(2)]
    assert sorted(dicom_calls) == ["a.dcm", "b.dcm"]
    second = [ds[i]["image"] for i in range(2)]  # epoch 2
    assert sorted(dicom_calls) == ["a.dcm", "b.dcm"]  # no new decode
    assert cache.hits == 2 and cache.misses == 2
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.numpy(), b.numpy())
    # a new dataset object (new process, next run) also hits: the cache is on disk
    again = RecordDataset(
        records, tmp_path, Preprocessing(image_size=16), cache=ArrayCache(tmp_path / "cache")
    )
    again[0]
    assert sorted(dicom_calls) == ["a.dcm", "b.dcm"]


def test_cached_arrays_are_memory_mapped(tmp_path: Path, dicom_calls: list[str]) -> None:
    ds = RecordDataset(_films(tmp_path), tmp_path, Preprocessing(), cache=ArrayCache(tmp_path / "cache"))
    ds.arrays(0)
    cached = ds.arrays(0)
    assert isinstance(cached["image"], np.memmap) and not cached["image"].flags.writeable
    assert cached["image"].shape == (1, 32, 40) and cached["image"].dtype == np.float32


def test_changed_preprocessing_invalidates(tmp_path: Path, dicom_calls: list[str]) -> None:
    records = _films(tmp_path)
    cache_dir = tmp_path / "cache"
    RecordDataset(records, tmp_path, Preprocessing(image_size=16), cache=cache_dir)[0]
    assert dicom_calls == ["a.dcm"]
    RecordDataset(records, tmp_path, Preprocessing(image_size=16), cache=cache_dir)[0]
    assert dicom_calls == ["a.dcm"]  # same parameters: hit
    RecordDataset(records, tmp_path, Preprocessing(image_size=24), cache=cache_dir)[0]
    assert dicom_calls == ["a.dcm", "a.dcm"]  # new size: decoded again
    window = Preprocessing(image_size=16, dicom_window=(300.0, 200.0))
    out = RecordDataset(records, tmp_path, window, cache=cache_dir)[0]
    assert dicom_calls == ["a.dcm"] * 3  # new window: decoded again, and the pixels differ
    plain = RecordDataset(records, tmp_path, Preprocessing(image_size=16), cache=cache_dir)[0]
    assert not np.allclose(out["image"].numpy(), plain["image"].numpy())
    # mean/std are applied after the cache: changing them needs no decode
    RecordDataset(records, tmp_path, Preprocessing(image_size=16, mean=(0.5,), std=(0.2,)), cache=cache_dir)[
        0
    ]
    assert dicom_calls == ["a.dcm"] * 3


def test_changed_file_content_invalidates(tmp_path: Path, dicom_calls: list[str]) -> None:
    records = _films(tmp_path)
    cache_dir = tmp_path / "cache"
    before = RecordDataset(records, tmp_path, Preprocessing(), cache=cache_dir)[0]["image"].numpy()
    make_dicom(
        tmp_path / "a.dcm", np.full((32, 40), 900, np.uint16), window=(500.0, 1000.0)
    )  # rewritten in place
    after = RecordDataset(records, tmp_path, Preprocessing(), cache=cache_dir)[0]["image"].numpy()
    assert dicom_calls == ["a.dcm", "a.dcm"]
    assert after.min() == after.max() == pytest.approx(0.9, abs=0.01)  # window 500/1000: 900 -> ~0.9
    assert not np.allclose(before, after)


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESNET_APPS_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    assert ArrayCache().arrays == tmp_path / "elsewhere" / "arrays" / "v1"
    monkeypatch.delenv("RESNET_APPS_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "resnet_apps"
