"""Outputs: checked writable before work starts; full disks and read-only folders are typed errors."""

from __future__ import annotations

import errno
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_apps.errors import OutputWriteError
from resnet_apps.io.writable import check_writable, writing


def blocked(tmp_path: Path) -> Path:
    """A folder path under a regular file: unwritable even for root (tests may run as root in CI)."""
    (tmp_path / "file.txt").write_text("x")
    return tmp_path / "file.txt" / "sub"


def test_new_folder_is_writable_and_nothing_is_left(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    assert check_writable(out, "predict --out") == out
    assert list(tmp_path.iterdir()) == []  # the probe was removed and no folder made


def test_a_path_under_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        OutputWriteError, match=r"file.txt/sub: train --out cannot be written here \(a part of"
    ):
        check_writable(blocked(tmp_path), "train --out")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "permission denied"),
        (errno.ENOSPC, "the disk is full"),
    ],
)
def test_probe_failures_are_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, reason: str
) -> None:
    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(code, "simulated", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputWriteError, match=rf"report --out cannot be written here \({reason}"):
        check_writable(tmp_path / "out", "report --out")


def test_full_disk_mid_write_names_the_path_and_the_fix(tmp_path: Path) -> None:
    target = tmp_path / "predictions.csv"
    with pytest.raises(
        OutputWriteError,
        match=r"predictions.csv: predict --out could not be written \(the disk is full\)"
        r".*free space .*--resume",
    ):
        with writing(target, "predict --out"):
            raise OSError(errno.ENOSPC, "No space left on device")
    from safetensors import SafetensorError

    with pytest.raises(
        OutputWriteError, match="last.safetensors: checkpoint could not be written .the disk is full"
    ):
        with writing(tmp_path / "last.safetensors", "checkpoint"):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_unrelated_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):  # not a write problem: not disguised as one
        with writing(tmp_path, "train"):
            raise FileNotFoundError(errno.ENOENT, "gone", "x")
    with pytest.raises(PermissionError):  # around a whole command, EACCES may be a read
        with writing(tmp_path, "train", space_only=True):
            raise PermissionError(errno.EACCES, "denied", "input.tif")
    with pytest.raises(ValueError):
        with writing(tmp_path, "train"):
            raise ValueError("a bug")


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "RUN", "in.png", "--out", "{out}"],
        ["train", "r.yaml", "--out", "{out}"],
        ["evaluate", "RUN", "--out", "{out}"],
        ["report", "RUN", "--out", "{out}"],
    ],
)
def test_cli_refuses_unwritable_out_before_work(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from resnet_apps.cli import main

    out = blocked(tmp_path)
    assert main([a.replace("{out}", str(out)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"error: {out}: " in err and "cannot be written here" in err and "Traceback" not in err


def test_checkpoint_save_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch
    import torch
    from safetensors import SafetensorError

    from resnet_apps.train.state import _atomic_save

    path = tmp_path / "checkpoints" / "last.state.safetensors"
    _atomic_save({"w": torch.ones(3)}, path, {"format": "pt"})
    good = path.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OutputWriteError, match=r"last.state.safetensors: checkpoint could not be written"):
        _atomic_save({"w": torch.zeros(3)}, path, {"format": "pt"})
    assert path.read_bytes() == good  # the last good state is untouched: resume works after freeing space
    assert [p.name for p in path.parent.iterdir()] == ["last.state.safetensors"]  # no temp file left


def test_unwritable_cache_is_disabled_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from resnet_apps.data.cache import ArrayCache
    from resnet_apps.data.dataset import RecordDataset
    from resnet_apps.data.loading import Preprocessing
    from resnet_apps.data.records import Record

    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setenv("RESNET_APPS_CACHE_DIR", str(blocked(tmp_path)))
    with caplog.at_level(logging.WARNING):
        dataset = RecordDataset(
            [Record(path="a.png", label=0)], tmp_path, Preprocessing(), classes=["x"], cache=True
        )
    assert dataset.cache is None
    assert (
        "cache disabled" in caplog.text
        and "file.txt/sub" in caplog.text
        and "RESNET_APPS_CACHE_DIR" in caplog.text
    )
    assert float(dataset.arrays(0)["image"].max()) == 7.0  # the run goes on, uncached
    # a cache that fails while storing loses the entry, not the run
    cache = ArrayCache(blocked(tmp_path))
    cache.store("ab" * 32, {"image": np.zeros(2)})
    assert cache.load("ab" * 32) is None
