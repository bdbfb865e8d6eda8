"""One home for "the file appears under its final name only when complete" (no torch).

Every output (metrics, reports, checkpoints, manifests, maps) is written to a temporary name in the same
folder, flushed to disk and moved into place with ``os.replace``: a reader or a crash at any moment sees
the old file or the new one, never half of one. Temporary names are ``.<final name>.<random>.tmp`` so a
leftover from a SIGKILL is recognisable (:func:`clean_stale_temps` removes them).

``mkstemp`` creates files with mode 0600; outputs get ``0666 & ~umask`` instead (0644 under the usual umask
022), so colleagues on a shared server can read a report. Secrets pass ``mode=0o600``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


def output_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: ``0o666 & ~umask``.

    Read from ``/proc/self/status`` where it exists (thread-safe); elsewhere the umask is read by setting
    and restoring it, the only portable way.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temp_prefix(path: Path) -> str:
    """Prefix of the temporary names used for ``path`` (hidden, and names the final file)."""
    return f".{path.name}."


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut after os.replace keeps the new name)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform / filesystem: the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``, on an exception it goes.

    The caller (or a library such as safetensors / GDAL) writes the temporary file by name. Its data is
    fsynced, its mode set (``mode``, default :func:`output_mode`) and then it is renamed over ``path``.

    Args:
        path: the final name.
        mode: permission bits of the result; ``0o600`` for secrets.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=temp_prefix(final), suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, output_mode() if mode is None else mode)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], object], mode: int | None = None
) -> Path:
    """Call ``write(tmp)`` on a temporary name and move the result to ``path``; returns ``path``."""
    with atomic_path(path, mode) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), mode)


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int | None = None) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: str | os.PathLike[str], data: Any, **dumps: Any) -> Path:
    """``json.dumps(data, **dumps)`` plus a final newline, written atomically; returns ``path``."""
    return atomic_write_text(path, json.dumps(data, **dumps) + "\n")


def clean_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove temporaries that a killed writer left in ``folder``; returns what was removed.

    Only call this where no other process can be writing (the run directory is locked, or the caller
    owns the folder). ``name`` limits the cleaning to the temporaries of one final file name.
    Also removes the plain ``tmp*.tmp`` names of older versions (``mkstemp`` without a prefix).
    """
    base = Path(folder)
    if not base.is_dir():
        return []
    pattern = f"{temp_prefix(Path(name))}*{TEMP_SUFFIX}" if name else f".*{TEMP_SUFFIX}"
    found = set(base.glob(pattern))
    if name is None:
        found |= set(base.glob(f"tmp*{TEMP_SUFFIX}"))
    removed = []
    for path in sorted(found):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
