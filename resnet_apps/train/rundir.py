"""Run directories: ``runs/<recipe name>-<timestamp>``, never overwritten, locked while a process trains in them
(no torch)."""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from resnet_apps.errors import RunDirError, RunLockedError
from resnet_apps.io.atomic import atomic_write_json

LOCK_NAME = ".train.lock"
STATE_FILE = Path("checkpoints") / "last.state.safetensors"

# run directory (resolved) -> the open lock file; flock locks die with their process, even on SIGKILL
_held: dict[Path, tuple[int, int]] = {}  # path -> (fd, pid of the holder)


def new_run_dir(name: str, out: str | Path | None = None, runs_root: str | Path = "runs") -> Path:
    """Create a fresh run directory, lock it for this process and return it.

    Creation is atomic: the default folder is made with ``mkdir`` that fails when it exists (a clash within
    the same second gets ``-2``, ``-3``...), and an explicit ``out`` is locked before it is checked to be
    empty, so two processes started together can never both train into one folder.

    Args:
        name: the recipe name.
        out: an explicit folder; refused when it exists and is not empty (see :func:`refuse_existing`).
        runs_root: parent of the default ``<name>-<YYYYmmdd-HHMMSS>`` folder.

    Raises:
        RunDirError: ``out`` holds another run or other files; RunLockedError: a live process holds it.
    """
    if out is not None:
        path = Path(out)
        refuse_existing(path)
        path.mkdir(parents=True, exist_ok=True)
        lock_run_dir(path)
        try:
            refuse_existing(path)  # another process may have filled it between the check and the lock
        except RunDirError:
            release_run_dir(path)
            raise
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(runs_root) / f"{name}-{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            lock_run_dir(path)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def _entries(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name != LOCK_NAME]


def refuse_existing(out: str | Path | None) -> None:
    """RunDirError when ``out`` exists and is not an empty folder (a run directory is never overwritten).

    The advice matches what ``--resume`` will do: only a folder with a resume state can be continued; a run
    that stopped before its first checkpoint (bad data in the first epoch, say) must be deleted or left.
    """
    if out is None:
        return
    path = Path(out)
    if not path.exists() or (path.is_dir() and not _entries(path)):
        return
    if (path / STATE_FILE).is_file():
        raise RunDirError(
            f"{path}: run directory exists; continue it with --resume {path}, or choose another --out"
        )
    if (path / "recipe.yaml").is_file():
        raise RunDirError(
            f"{path}: holds a run that stopped before its first checkpoint (no {STATE_FILE.as_posix()}), so "
            f"it cannot be resumed; delete that folder to start again there, or choose another --out"
        )
    raise RunDirError(
        f"{path}: exists and is not an empty folder (a run directory is never overwritten); choose "
        "another --out"
    )


def check_resumable(run_dir: str | Path) -> Path:
    """A run directory of ours with a resume state, locked for this process; else RunDirError saying why."""
    path = Path(run_dir)
    if not (path / "recipe.yaml").is_file():
        raise RunDirError(
            f"{path}: not a resnet_apps run directory (no recipe.yaml); check the --resume path"
        )
    if not (path / STATE_FILE).is_file():
        raise RunDirError(
            f"{path}: no {STATE_FILE.as_posix()} to resume from (the run stopped before its first "
            "checkpoint); start a new run instead: delete that folder and train with the same --out, or "
            "choose another --out"
        )
    lock_run_dir(path)
    return path


def _is_main_rank() -> bool:
    # torchrun starts one process per rank, all calling check_resumable: only rank 0 takes the lock
    return os.environ.get("RANK", "0") == "0"


def lock_run_dir(run_dir: str | Path) -> None:
    """Hold ``run_dir/.train.lock`` (an exclusive ``flock``) until this process exits.

    The file names the holder (pid, host); a second process is refused with that pid. A lock whose process
    died (even by SIGKILL) is free again at once: the kernel drops flock locks with their process, so no
    stale lock needs to be guessed from a pid. Re-entrant within one process; a no-op on ranks other
    than 0 and where ``fcntl`` does not exist (Windows).

    Raises:
        RunLockedError: another live process holds the lock.
    """
    path = Path(run_dir).resolve()
    if not _is_main_rank() or path in _held:
        return
    try:
        import fcntl
    except ImportError:
        return
    lock = path / LOCK_NAME
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunLockedError(
                f"{path}: {holder} is training in this run directory (lock file {lock}); wait for it to "
                "finish or stop that process, then run again; two runs must never write one folder"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file that its last holder unlinked while we were opening it
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
    _held[path] = (fd, os.getpid())
    if len(_held) == 1:
        atexit.register(_release_all)


def release_run_dir(run_dir: str | Path) -> None:
    """Give up this process's lock on ``run_dir`` (and remove the lock file); no-op when not held."""
    path = Path(run_dir).resolve()
    held = _held.pop(path, None)
    if held is None or held[1] != os.getpid():  # a forked child never releases its parent's lock
        return
    (path / LOCK_NAME).unlink(missing_ok=True)  # while still holding it: nobody can take the old file
    os.close(held[0])


def _release_all() -> None:
    for path in list(_held):
        release_run_dir(path)


def write_json(path: Path, data: Any) -> None:
    """JSON, written to a temp file and renamed (a reader never sees half a file)."""
    atomic_write_json(path, data, indent=1, default=str)


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, default=str) + "\n")


def git_commit() -> str | None:
    """The checkout's commit (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def launch_overrides(run_dir: Path, overrides: list[str] | tuple[str, ...], resuming: bool) -> list[str]:
    """The ``--set`` values that started the run (a resumed run keeps the original ones and adds its own)."""
    first: list[str] = []
    if resuming and (run_dir / "overrides.json").is_file():
        first = list(json.loads((run_dir / "overrides.json").read_text(encoding="utf-8")))
    return first + [o for o in overrides if o not in first]
