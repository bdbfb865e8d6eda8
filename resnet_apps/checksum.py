"""File digests: the one implementation the weights store, downloads and the array cache share.

A leaf module (stdlib only, no torch), so every layer may import it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

CHUNK = 1 << 20  # 1 MiB reads: constant memory for multi-GB archives, few syscalls for small files


def _file_digest(path: str | os.PathLike[str], digest: Any, chunk: int) -> str:
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return str(digest.hexdigest())


def sha256_file(path: str | os.PathLike[str], chunk: int = CHUNK) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    return _file_digest(path, hashlib.sha256(), chunk)


def md5_file(path: str | os.PathLike[str], chunk: int = CHUNK) -> str:
    """Hex md5 of a file: only to check a publisher's published md5 (Zenodo), never as our own pin."""
    return _file_digest(path, hashlib.md5(usedforsecurity=False), chunk)
