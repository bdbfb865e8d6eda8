"""Run directories: ``runs/<recipe name>-<timestamp>``, never overwritten (no torch)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from resnet_apps.errors import RunDirError
from resnet_apps.io.atomic import atomic_write_json


def new_run_dir(name: str, out: str | Path | None = None, runs_root: str | Path = "runs") -> Path:
    """Create a fresh run directory and return it.

    Args:
        name: the recipe name.
        out: an explicit folder; refused when it exists and is not empty (use ``--resume`` to continue).
        runs_root: parent of the default ``<name>-<YYYYmmdd-HHMMSS>`` folder; a clash within the same
            second gets ``-2``, ``-3``... so nothing is overwritten.
    """
    if out is not None:
        path = Path(out)
        refuse_existing(path)
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(runs_root) / f"{name}-{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def refuse_existing(out: str | Path | None) -> None:
    """RunDirError when ``out`` exists and is not an empty folder (a run directory is never overwritten)."""
    if out is None:
        return
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunDirError(
            f"{path}: run directory exists; choose another --out, or continue it with --resume {path}"
        )


def check_resumable(run_dir: str | Path) -> Path:
    """A run directory of ours with a resume state, or RunDirError naming what is missing."""
    path = Path(run_dir)
    if not (path / "recipe.yaml").is_file():
        raise RunDirError(
            f"{path}: not a resnet_apps run directory (no recipe.yaml); check the --resume path"
        )
    if not (path / "checkpoints" / "last.state.safetensors").is_file():
        raise RunDirError(f"{path}: no checkpoints/last.state.safetensors to resume from; start a new run")
    return path


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
