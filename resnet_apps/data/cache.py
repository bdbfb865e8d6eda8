"""On-disk cache of decoded, preprocessed (pre-augmentation) arrays, memory-mapped on read.

Key design (why it is correct and cheap):
- Content: the sha256 of every input file's bytes (image, band files, mask). Hashing a file costs a
  read, not a decode, and is itself remembered under a *fast key* (absolute path, size, mtime_ns): a file
  that was edited in place changes size or mtime and is hashed again; one that was copied or touched
  without change hashes the same and still hits. So the cache is keyed by content, as the issue asks,
  while an epoch costs one ``stat`` per file.
- Parameters: the JSON of everything that shapes the cached arrays (bands, scale, image size, DICOM
  window, grayscale, mask decoding). Changing any one gives a new key; stale entries are simply unused.
- Entries are folders ``<dir>/v1/<key[:2]>/<key>/`` of ``.npy`` files written to a temporary folder and
  renamed into place, so parallel DataLoader workers never see half an entry.

The folder is ``$RESNET_APPS_CACHE_DIR`` or ``~/.cache/resnet_apps``, under ``arrays/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet_apps.io.atomic import atomic_write_text

_VERSION = "v1"


def default_cache_dir() -> Path:
    """``$RESNET_APPS_CACHE_DIR`` or ``~/.cache/resnet_apps`` (arrays live in ``arrays/`` below it)."""
    env = os.environ.get("RESNET_APPS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "resnet_apps"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ArrayCache:
    """Content- and parameter-keyed store of named arrays.

    Args:
        directory: cache root (default :func:`default_cache_dir`).
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.root = Path(directory) if directory is not None else default_cache_dir()
        self.arrays = self.root / "arrays" / _VERSION
        self._hashes: dict[tuple[str, int, int], str] = {}  # fast key -> content hash, this process
        self.hits = 0
        self.misses = 0

    def content_hash(self, path: Path) -> str:
        """sha256 of the file, remembered per (path, size, mtime) in memory and on disk."""
        stat = path.stat()
        fast = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
        if fast in self._hashes:
            return self._hashes[fast]
        memo = self.root / "hashes" / _VERSION / hashlib.sha256(repr(fast).encode()).hexdigest()
        try:
            value = memo.read_text().strip()
        except OSError:
            value = ""
        if len(value) != 64:
            value = file_sha256(path)
            _atomic_write_text(memo, value)
        self._hashes[fast] = value
        return value

    def key(self, files: Sequence[Path], params: Mapping[str, Any]) -> str:
        """Entry key: sha256 over the input files' content hashes and the preprocessing parameters."""
        payload = {"files": [self.content_hash(f) for f in files], "params": params}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def _entry(self, key: str) -> Path:
        return self.arrays / key[:2] / key

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The entry's arrays, memory-mapped read-only, or None on a miss."""
        entry = self._entry(key)
        if not (entry / "done").is_file():
            self.misses += 1
            return None
        try:
            arrays = {p.stem: np.load(p, mmap_mode="r") for p in entry.glob("*.npy")}
        except (OSError, ValueError):
            self.misses += 1  # damaged entry (disk full, killed writer): rebuild it
            return None
        self.hits += 1
        return arrays

    def writable(self) -> str | None:
        """None when entries can be written here, else why not (read-only, full, a file in the way)."""
        try:
            self.arrays.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.arrays, prefix=".write-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            return f"{type(error).__name__}: {error.strerror or error}"
        return None

    def store(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Write the arrays atomically; a concurrent writer of the same key wins harmlessly.

        A cache that cannot be written (full disk, read-only) is an optimisation lost, not an error:
        nothing is raised and the arrays are simply decoded again next time.
        """
        entry = self._entry(key)
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=entry.parent))
        except OSError:
            return
        try:
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
            (tmp / "done").write_text("ok")
            os.replace(tmp, entry)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another worker renamed first, or the disk is full


def _atomic_write_text(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError:
        pass  # the memo is an optimisation; hashing again next time is correct
