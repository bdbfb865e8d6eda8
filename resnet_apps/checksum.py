"""sha256 of a file's bytes: the one implementation the weights store, downloads and the array cache share.

A leaf module (stdlib only, no torch), so every layer may import it.
"""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20  # 1 MiB reads: constant memory for multi-GB archives, few syscalls for small files


def sha256_file(path: str | os.PathLike[str], chunk: int = CHUNK) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
