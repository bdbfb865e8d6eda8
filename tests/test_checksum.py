"""The one file-digest helper: same digest as hashlib over the whole bytes, whatever the chunk size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from resnet_apps.checksum import md5_file, sha256_file


@pytest.mark.parametrize(
    ("size", "chunk"),
    [
        (0, 1 << 20),  # empty file: the digest of b""
        (10, 3),  # several chunks, last one short
        (4096, 1024),  # chunk boundary exactly at the end
    ],
)
def test_sha256_file_matches_hashlib(tmp_path: Path, size: int, chunk: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path, chunk=chunk) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()  # str paths too
    assert md5_file(path, chunk=chunk) == hashlib.md5(data).hexdigest()  # publishers' md5 (Zenodo)
