"""io.atomic: outputs appear whole under their final name, readable by colleagues, and leftovers are cleaned."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from resnet_apps.io.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    clean_stale_temps,
    output_mode,
)


@pytest.fixture
def umask_027() -> object:
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_respect_the_umask_not_mkstemp_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert output_mode() == 0o644
        for path in (
            atomic_write_text(tmp_path / "report.md", "# hi\n"),
            atomic_write_json(tmp_path / "metrics.json", {"a": 1}),
            atomic_write_bytes(tmp_path / "blob.bin", b"\x00\x01"),
        ):
            assert _mode(path) == 0o644, path  # mkstemp alone gives 0600: unreadable for the group
    finally:
        os.umask(old)


def test_a_stricter_umask_is_kept(tmp_path: Path, umask_027: object) -> None:
    assert _mode(atomic_write_text(tmp_path / "r.md", "x")) == 0o640


def test_secret_mode(tmp_path: Path) -> None:
    assert _mode(atomic_write_text(tmp_path / "key", "s3cret", mode=0o600)) == 0o600


def test_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "m.json"
    atomic_write_json(target, {"v": 1})
    atomic_write_json(target, {"v": 2}, indent=1)
    assert json.loads(target.read_text()) == {"v": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.json"]


def test_exception_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        assert tmp.parent == tmp_path and tmp.name.startswith(".m.json.") and tmp.name.endswith(".tmp")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_clean_stale_temps_removes_only_temporaries(tmp_path: Path) -> None:
    keep = [tmp_path / "last.state.safetensors", tmp_path / "best.json", tmp_path / ".hidden"]
    stale = [
        tmp_path / ".last.state.safetensors.k2j3.tmp",  # this module's name for a killed writer
        tmp_path / "tmpab12cd.tmp",  # older mkstemp names without a prefix
        tmp_path / ".map.tif.x1.tmp.ovr.tmp",  # GDAL's overview temporary beside ours
    ]
    for path in keep + stale:
        path.write_bytes(b"x")
    removed = clean_stale_temps(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(keep)


def test_clean_stale_temps_by_name(tmp_path: Path) -> None:
    mine, other = tmp_path / ".a.tif.1.tmp", tmp_path / ".b.tif.1.tmp"
    mine.write_bytes(b"x")
    other.write_bytes(b"x")
    assert clean_stale_temps(tmp_path, "a.tif") == [mine]
    assert other.exists()
