"""Output folders: proven writable before the work starts, and write failures as typed errors (no torch).

``check_writable(path, what)`` runs when a command starts (``train --out``, ``predict --out``, ``report``,
``evaluate --out``): it creates and removes a probe file in the folder, or in its nearest existing
ancestor when the folder is still to be made, so a read-only mount, a path under a file or a folder
without write permission fails in a second instead of after an epoch. The probe is a real write, so
it is truthful for root too (root ignores permission bits, not read-only mounts).

``writing(path, what)`` wraps a write: a full disk (ENOSPC, EDQUOT), a read-only file system, a
permission or path error, or a safetensors write error becomes an ``OutputWriteError`` naming the path
and the fix. Resume after freeing space works as before: checkpoints are written to a temporary name
and renamed, so a failed write leaves the previous one in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from resnet_apps.errors import OutputWriteError

# errno values that mean "this output cannot be written here" (anything else is a real bug: re-raised)
WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file of that name is in the way",
    errno.EISDIR: "a folder of that name is in the way",
    errno.ENAMETOOLONG: "the name is too long",
}


def _reason(error: BaseException) -> str | None:
    code = getattr(error, "errno", None)
    if code in WRITE_ERRNOS:
        return WRITE_ERRNOS[code]
    # safetensors reports Rust io errors as text: "... No space left on device (os error 28)"
    match = re.search(r"os error (\d+)|code: (\d+),", str(error))
    if match:
        return WRITE_ERRNOS.get(int(match.group(1) or match.group(2)))
    return None


def _fix(reason: str, path: Path) -> str:
    if reason in (WRITE_ERRNOS[errno.ENOSPC], WRITE_ERRNOS[errno.EDQUOT]):
        return f"free space (df -h {path.parent}) and rerun; a train run continues with --resume RUN_DIR"
    return "choose a folder you can write to, or fix its permissions / mount"


def check_writable(path: str | os.PathLike[str], what: str) -> Path:
    """Prove that ``path`` (a folder, made later if missing) can be written; nothing is left behind.

    Args:
        path: the output folder (it need not exist yet).
        what: the option it came from, named in the error (e.g. ``"predict --out"``).

    Returns:
        ``path`` as a Path.

    Raises:
        OutputWriteError: naming the path, the reason and the fix.
    """
    path = Path(path)
    probe_dir = path
    while not probe_dir.exists():  # the nearest existing ancestor is where the folder would be made
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    try:
        if not probe_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe_dir))
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".resnet_apps-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = _reason(error) or f"{type(error).__name__}: {error}"
        raise OutputWriteError(
            f"{path}: {what} cannot be written here ({reason}, at {probe_dir}); fix: {_fix(reason, path)}"
        ) from error
    return path


# what only a write can meet: safe to translate around a whole command (EACCES may be a read)
SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], what: str, *, space_only: bool = False) -> Iterator[None]:
    """Turn a failed write under ``path`` into an ``OutputWriteError`` naming it (see module docstring).

    Args:
        path: the file or folder written (named when the error carries no file name).
        what: the command or option, named in the error.
        space_only: translate only full-disk and read-only errors (for a wrapper around a whole command,
            where a permission error may come from reading an input).
    """
    try:
        yield
    except OutputWriteError:
        raise
    except Exception as error:  # OSError, or safetensors' SafetensorError (not an OSError)
        if not isinstance(error, OSError) and type(error).__name__ != "SafetensorError":
            raise
        reason = _reason(error)
        if reason is None or (space_only and reason not in {WRITE_ERRNOS[c] for c in SPACE_ERRNOS}):
            raise
        where = getattr(error, "filename", None) or path
        raise OutputWriteError(
            f"{where}: {what} could not be written ({reason}); fix: {_fix(reason, Path(where))}"
        ) from error
