"""Records: what a dataset holds before any pixel is read (ARCHITECTURE.md section 4).

``build_records(source, root)`` turns each layout of section 5a into a list of :class:`Record` plus the
class names: a folder of class folders, an index CSV, an NIH ChestX-ray14 style multi-label CSV, and
image/mask pairs (from an index CSV, or band stacks of single-band files found through a mask template).
Every path named is checked here, so a CSV naming missing files fails before training starts.
Groups (patients, tiles) are hashed on the way in: no patient identifier travels further.
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_apps.data.config import SourceConfig, as_source_config
from resnet_apps.data.index_csv import (
    index_group_column,
    index_path,
    read_csv,
    rel_path,
    row_groups,
    split_value,
)
from resnet_apps.errors import DatasetError
from resnet_apps.io.identity import keyed_hash
from resnet_apps.io.sniff import IMAGE_SUFFIXES, is_image_file

# NIH ChestX-ray14 findings (Wang et al. 2017), in the order of the dataset's paper and torchxrayvision.
NIH_CHESTXRAY14_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

# Values of a per-class column (CheXpert style) that mean "not known": masked as NaN in the loss.
_UNCERTAIN = {"", "-1", "-1.0", "uncertain", "nan", "na", "n/a"}


def hash_id(value: str) -> str:
    """Keyed hash (HMAC-SHA256) of an identifier, 16 hex characters: patients, tiles and file ids never travel
    raw, and without the key (``resnet_apps.io.identity``) a list of candidate ids cannot be hashed to match."""
    return keyed_hash(value)


@dataclass(frozen=True)
class Record:
    """One sample before reading; paths are POSIX strings relative to the dataset root.

    Attributes:
        path: the image (for a band stack: its first band file).
        label: class index (single-label classification).
        labels: one float per class, 1/0 or NaN for missing/uncertain (multi-label).
        mask_path: the segmentation mask.
        group: hashed patient / tile / spatial block, or None.
        split: "train" | "val" | "test" from a split column, or None.
        band_paths: band stack files in band order (several single-band files make one image).
        band_names: names of ``band_paths`` (the keys of ``band_files``).
    """

    path: str
    label: int | None = None
    labels: tuple[float, ...] | None = None
    mask_path: str | None = None
    group: str | None = None
    split: str | None = None
    band_paths: tuple[str, ...] | None = None
    band_names: tuple[str, ...] | None = None


def build_records(
    source: Any, root: str | Path, classes: Sequence[str] | None = None
) -> tuple[list[Record], list[str]]:
    """Index a dataset without reading pixels.

    Args:
        source: the ``data.source`` block (dict, recipe dataclass or :class:`SourceConfig`).
        root: dataset folder; relative paths in CSVs resolve against it.
        classes: explicit class list; otherwise folder names / CSV labels, sorted (pairs: the keys of
            ``class_colors`` in order, else ``None``-free indices from ``mask_values``).

    Returns:
        ``(records, classes)``.

    Raises:
        DatasetError: missing or unreadable root, empty folder, missing columns, unknown labels, files
            named that do not exist, a group pattern that does not match a file name.
    """
    cfg = as_source_config(source)
    root = Path(root)
    _check_root(root)
    if cfg.kind == "folder":
        records, classes = _folder_records(root, classes)
    elif cfg.kind == "csv":
        records, classes = _csv_records(cfg, root, classes)
    elif cfg.kind == "multilabel_csv":
        records, classes = _multilabel_records(cfg, root, classes)
    elif cfg.kind == "npz":
        records, classes = _npz_records(cfg, root, classes)
    else:
        records, classes = _pair_records(cfg, root, classes)
    if cfg.test_dir:
        records = _with_test_folder(records, root, cfg.test_dir, classes)
    if not records:
        raise DatasetError(
            f"{root}: no samples found for source kind {cfg.kind!r}; check data.root and data.source"
        )
    _check_files_exist(root, records)
    return records, list(classes)


# --- layouts -------------------------------------------------------------------------------------


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found; fix data.root (relative to the recipe file)")
    try:
        next(os.scandir(root), None)
    except OSError as error:
        raise DatasetError(
            f"{root}: folder cannot be read ({error.strerror}); check its permissions"
        ) from error


def _folder_records(root: Path, classes: Sequence[str] | None) -> tuple[list[Record], list[str]]:
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DatasetError(
            f"{root}: no class folders; a folder source needs one sub-folder of images per class "
            "(root/<class>/<image>), or use source kind 'csv'"
        )
    names = list(classes) if classes is not None else found
    missing = [c for c in names if c not in found]
    if missing:
        raise DatasetError(
            f"{root}: class folder(s) {missing} not found; fix data.classes or add the folders"
        )
    records = []
    for index, name in enumerate(names):
        files = _image_files(root / name)
        if not files:
            raise DatasetError(
                f"{root / name}: class folder holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        records += [Record(path=f.relative_to(root).as_posix(), label=index) for f in files]
    return records, names


def _image_files(folder: Path) -> list[Path]:
    try:
        files = [p for p in folder.rglob("*") if p.is_file() and is_image_file(p)]
    except OSError as error:
        raise DatasetError(f"{folder}: folder cannot be read ({error}); check its permissions") from error
    return sorted(files, key=lambda p: _natural_key(p.as_posix()))


def _natural_key(text: str) -> list[Any]:
    # Forest_2 before Forest_10, as people number files
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _csv_records(
    cfg: SourceConfig, root: Path, classes: Sequence[str] | None
) -> tuple[list[Record], list[str]]:
    index = index_path(cfg, root)
    rows = read_csv(index, [cfg.path_column, cfg.label_column, cfg.split_column, index_group_column(cfg)])
    for line, row in enumerate(rows, start=2):
        if not (row[cfg.label_column] or "").strip():
            raise DatasetError(
                f"{index}: line {line} has an empty {cfg.label_column!r}; fill it or drop the row"
            )
    names = list(classes) if classes is not None else sorted({row[cfg.label_column].strip() for row in rows})
    lookup = {name: i for i, name in enumerate(names)}
    groups = row_groups(cfg, root, [row[cfg.path_column] for row in rows], rows)
    records = []
    for line, (row, group) in enumerate(zip(rows, groups, strict=True), start=2):
        label = row[cfg.label_column].strip()
        if label not in lookup:
            raise DatasetError(f"{index}: line {line} label {label!r} is not in data.classes {names}; add it")
        records.append(
            Record(
                path=rel_path(cfg.image_dir, row[cfg.path_column]),
                label=lookup[label],
                group=group,
                split=split_value(cfg, row, index, line),
            )
        )
    return records, names


def _multilabel_records(
    cfg: SourceConfig, root: Path, classes: Sequence[str] | None
) -> tuple[list[Record], list[str]]:
    index = index_path(cfg, root)
    path_column = cfg.path_column if cfg.path_column != "filename" else "Image Index"
    rows = read_csv(index, [path_column, cfg.labels_column, cfg.split_column, index_group_column(cfg)])
    if cfg.labels_column is None:
        # one column per class (CheXpert style): 1 positive, 0 negative, -1/blank/"uncertain" -> NaN
        if classes is None:
            raise DatasetError(
                f"{index}: per-class columns need data.classes (or set data.source.labels_column)"
            )
        names = list(classes)
        read_csv(index, names)
        table = [
            tuple(_class_value(row[name], index, line, name) for name in names)
            for line, row in enumerate(rows, start=2)
        ]
    else:
        cells = [(row[cfg.labels_column] or "").strip() for row in rows]
        seen = {t.strip() for c in cells for t in c.split(cfg.label_separator) if t.strip()} - {
            cfg.no_finding
        }
        if classes is not None:
            names = list(classes)
        elif seen <= set(NIH_CHESTXRAY14_LABELS):
            names = list(NIH_CHESTXRAY14_LABELS)  # keep all 14 even when a sample lacks some
        else:
            names = sorted(seen)
        table = [_finding_vector(cell, names, cfg, index, line) for line, cell in enumerate(cells, start=2)]
    groups = row_groups(cfg, root, [row[path_column] for row in rows], rows)
    records = [
        Record(
            path=rel_path(cfg.image_dir, row[path_column]),
            labels=vector,
            group=group,
            split=split_value(cfg, row, index, line),
        )
        for line, (row, vector, group) in enumerate(zip(rows, table, groups, strict=True), start=2)
    ]
    return records, names


def _finding_vector(
    cell: str, names: list[str], cfg: SourceConfig, index: Path, line: int
) -> tuple[float, ...]:
    if cell == "" or cell.lower() in _UNCERTAIN:
        return tuple(math.nan for _ in names)  # missing labels are masked, not negatives
    tokens = {t.strip() for t in cell.split(cfg.label_separator) if t.strip()}
    if tokens == {cfg.no_finding}:
        return tuple(0.0 for _ in names)
    unknown = sorted(tokens - set(names) - {cfg.no_finding})
    if unknown:
        raise DatasetError(f"{index}: line {line} finding(s) {unknown} are not in data.classes; add them")
    return tuple(1.0 if name in tokens else 0.0 for name in names)


def _class_value(text: str | None, index: Path, line: int, column: str) -> float:
    value = (text or "").strip().lower()
    if value in _UNCERTAIN:
        return math.nan
    try:
        number = float(value)
    except ValueError:
        raise DatasetError(
            f"{index}: line {line} column {column!r} holds {text!r}; use 1, 0, -1 or blank"
        ) from None
    if number not in (0.0, 1.0):
        raise DatasetError(f"{index}: line {line} column {column!r} holds {text!r}; use 1, 0, -1 or blank")
    return number


def _pair_records(
    cfg: SourceConfig, root: Path, classes: Sequence[str] | None
) -> tuple[list[Record], list[str]]:
    from resnet_apps.data.masks import class_names_from_source

    names = list(classes) if classes is not None else class_names_from_source(cfg, root)
    if cfg.band_files:
        return _band_stack_records(cfg, root), names
    index = index_path(cfg, root)
    if cfg.mask_column is None:
        raise DatasetError(f"data.source.mask_column: pairs from {index} need the mask column name")
    rows = read_csv(index, [cfg.path_column, cfg.mask_column, cfg.split_column, index_group_column(cfg)])
    groups = row_groups(cfg, root, [row[cfg.path_column] for row in rows], rows)
    records = [
        Record(
            path=rel_path(cfg.image_dir, row[cfg.path_column]),
            mask_path=rel_path(None, row[cfg.mask_column]),
            group=group,
            split=split_value(cfg, row, index, line),
        )
        for line, (row, group) in enumerate(zip(rows, groups, strict=True), start=2)
    ]
    return records, names


def _band_stack_records(cfg: SourceConfig, root: Path) -> list[Record]:
    """Band stacks: masks from an index CSV, or globbed from ``mask_column`` as an ``{id}`` template."""
    assert cfg.band_files is not None
    if cfg.index is not None:
        rows = read_csv(root / cfg.index, [cfg.mask_column, cfg.split_column, index_group_column(cfg)])
        masks = [row[cfg.mask_column] for row in rows if cfg.mask_column is not None]
    else:
        if cfg.mask_column is None or "{id}" not in cfg.mask_column:
            raise DatasetError(
                "data.source.mask_column: band stacks without an index CSV need a mask template with {id}, "
                "e.g. 'train_gt/gt_{id}.TIF'"
            )
        rows = []
        found = glob.glob(glob.escape(str(root)) + "/" + cfg.mask_column.replace("{id}", "*"))
        masks = sorted((Path(m).relative_to(root).as_posix() for m in found), key=_natural_key)
    pattern = re.compile(cfg.id_pattern) if cfg.id_pattern else _template_regex(cfg.mask_column)
    if rows:
        groups = row_groups(cfg, root, masks, rows)
    elif cfg.group_pattern or cfg.group_index:
        groups = row_groups(cfg, root, masks, [{} for _ in masks])
    else:
        groups = [None] * len(masks)
    records = []
    for i, (mask, group) in enumerate(zip(masks, groups, strict=True)):
        match = pattern.search(Path(mask).name if cfg.id_pattern else mask)
        if match is None:
            raise DatasetError(
                f"{root / mask}: data.source.id_pattern {pattern.pattern!r} does not match this mask name"
            )
        bands = tuple(t.replace("{id}", match.group(1)) for t in cfg.band_files.values())
        split = split_value(cfg, rows[i], root / str(cfg.index), i + 2) if rows else None
        records.append(
            Record(
                path=bands[0],
                mask_path=mask,
                group=group,
                split=split,
                band_paths=bands,
                band_names=tuple(cfg.band_files),
            )
        )
    return records


def _template_regex(template: str | None) -> re.Pattern[str]:
    assert template is not None
    head, _, tail = template.partition("{id}")
    return re.compile(re.escape(head) + "(.+?)" + re.escape(tail) + "$")


def _npz_records(
    cfg: SourceConfig, root: Path, classes: Sequence[str] | None
) -> tuple[list[Record], list[str]]:
    """One record per image of a MedMNIST-style archive (``data.npz``), split from its key, label = index."""
    from resnet_apps.data.npz import SEPARATOR, npz_labels

    index = index_path(cfg, root)
    labels = npz_labels(index)
    found = sorted({int(v) for values in labels.values() for v in values})
    names = list(classes) if classes is not None else [str(v) for v in found]
    if found and (found[0] < 0 or found[-1] >= len(names)):
        raise DatasetError(
            f"{index}: class indices {found} but data.classes names {len(names)} classes; name one class per "
            "index, in index order (e.g. [normal, pneumonia] for 0, 1)"
        )
    rel = index.relative_to(root).as_posix()
    records = [
        Record(path=f"{rel}{SEPARATOR}{split}/{i}", label=int(v), split=split)
        for split, values in labels.items()
        for i, v in enumerate(values)
    ]
    return records, names


def _with_test_folder(
    records: list[Record], root: Path, test_dir: str, classes: Sequence[str]
) -> list[Record]:
    """The source's test split replaced by ``root/test_dir/<class>/<image>`` (class folders = ``classes``)."""
    if any(r.split is None for r in records):
        raise DatasetError(
            f"{root}: data.source.test_dir replaces the source's own test split, so every record needs a split "
            "(an npz archive, or a split_column); set data.source.split_column or drop test_dir"
        )
    folder = root / test_dir
    _check_root(folder)
    test, _ = _folder_records(folder, list(classes))
    prefix = Path(test_dir).as_posix()
    return [r for r in records if r.split != "test"] + [
        Record(path=f"{prefix}/{r.path}", label=r.label, split="test") for r in test
    ]


def _check_files_exist(root: Path, records: list[Record]) -> None:
    from resnet_apps.data.npz import npz_member

    missing = []
    for record in records:
        member = npz_member(record.path)
        for path in (*(record.band_paths or (member[0] if member else record.path,)), record.mask_path):
            if path is not None and not (root / path).is_file():
                missing.append(path)
    if missing:
        raise DatasetError(
            f"{root}: {len(missing)} file(s) named by the index do not exist, e.g. {missing[:5]}; "
            "fix the paths (relative to data.root) or remove those rows"
        )
