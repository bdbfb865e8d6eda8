"""Index CSVs of a dataset: reading them, and the groups, splits and paths their rows give.

Shared by the layouts of :mod:`resnet_apps.data.records` (index CSV, multi-label CSV, image/mask pairs):
a missing file or column is a :class:`~resnet_apps.errors.DatasetError` naming the CSV, the column and the
fix; groups (patients, tiles) are keyed hashes from here on, so no patient identifier travels further.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from resnet_apps.data.config import SourceConfig
from resnet_apps.errors import DatasetError
from resnet_apps.io.identity import keyed_hash


def read_csv(path: Path, required: Sequence[str | None]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"{path}: index CSV not found; fix data.source.index (relative to data.root)")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        absent = [c for c in required if c is not None and c not in columns]
        if absent:
            raise DatasetError(
                f"{path}: column(s) {absent} not found; the CSV has {columns}. Fix data.source"
            )
        return list(reader)


def index_path(cfg: SourceConfig, root: Path) -> Path:
    if cfg.index is None:
        raise DatasetError(f"data.source.index: kind {cfg.kind!r} needs an index CSV (relative to {root})")
    return root / cfg.index


def row_groups(
    cfg: SourceConfig, root: Path, paths: list[str], rows: list[dict[str, str]]
) -> list[str | None]:
    """Hashed group per row: ``group_column``, ``group_index`` (joined on file name) or ``group_pattern``."""
    if cfg.group_index is not None:
        column = cfg.group_column or "patientid"
        table = read_csv(root / cfg.group_index, [cfg.group_index_key, column])
        by_name = {Path(row[cfg.group_index_key]).name: row[column] for row in table}
        missing = [p for p in paths if Path(p).name not in by_name]
        if missing:
            raise DatasetError(
                f"{root / cfg.group_index}: no {cfg.group_index_key!r} row for {len(missing)} file(s), "
                f"e.g. {missing[:3]}; add them or drop data.source.group_index"
            )
        return [keyed_hash(by_name[Path(p).name]) for p in paths]
    if cfg.group_column is not None:
        return [
            keyed_hash(row[cfg.group_column].strip()) if row[cfg.group_column].strip() else None
            for row in rows
        ]
    if cfg.group_pattern is not None:
        pattern = re.compile(cfg.group_pattern)
        return [keyed_hash(pattern_group(pattern, Path(p).name, root / p)) for p in paths]
    return [None] * len(paths)


def index_group_column(cfg: SourceConfig) -> str | None:
    # with group_index, group_column names a column of that second CSV, not of the index
    return None if cfg.group_index is not None else cfg.group_column


def pattern_group(pattern: re.Pattern[str], name: str, where: Path) -> str:
    match = pattern.search(name)
    if match is None:
        raise DatasetError(
            f"{where}: data.source.group_pattern {pattern.pattern!r} does not match file name {name!r}; "
            "widen the pattern (alternatives with |) so every file yields its patient/tile"
        )
    # first capture group that took part in the match: patterns may list alternatives
    value = next((g for g in match.groups() if g is not None), match.group(0))
    return value


def split_value(cfg: SourceConfig, row: dict[str, str], index: Path, line: int) -> str | None:
    if cfg.split_column is None:
        return None
    value = (row[cfg.split_column] or "").strip().lower()
    value = {"valid": "val", "validation": "val"}.get(value, value)
    if value not in ("train", "val", "test"):
        raise DatasetError(f"{index}: line {line} split {row[cfg.split_column]!r} is not train/val/test")
    return value


def rel_path(image_dir: str | None, path: str) -> str:
    path = path.strip().replace("\\", "/")
    return (Path(image_dir) / path).as_posix() if image_dir else path
