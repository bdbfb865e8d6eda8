"""The ``data.source`` block as this package reads it (ARCHITECTURE.md section 5a).

``recipe.py`` owns the frozen dataclass that a recipe file becomes; this module accepts that object, any
other object with the same attribute names, or a plain dict, and turns it into :class:`SourceConfig`.
Keeping the adapter here means ``data`` does not import ``recipe`` (and tests can pass dicts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from resnet_apps.errors import DatasetError

SOURCE_KINDS = ("folder", "csv", "multilabel_csv", "pairs")
MASK_ENCODINGS = ("index", "rgb", "palette")


@dataclass(frozen=True)
class SourceConfig:
    """Where the files are and how labels, groups and masks are encoded (section 5a).

    Attributes beyond section 5a (optional, default off):
        group_index: a second CSV (relative to root) that holds the group column, joined on the image's
            file name, e.g. the COVID lung set's ``metadata.csv`` (``filename`` -> ``patientid``).
        group_index_key: the file-name column of ``group_index``.
    """

    kind: str = "folder"
    index: str | None = None
    path_column: str = "filename"
    label_column: str = "label"
    split_column: str | None = None
    group_column: str | None = None
    group_pattern: str | None = None
    labels_column: str | None = None
    label_separator: str = "|"
    no_finding: str = "No Finding"
    image_dir: str | None = None
    mask_column: str | None = None
    band_files: Mapping[str, str] | None = None
    id_pattern: str | None = None
    mask_encoding: str = "index"
    class_colors: Mapping[str, str] | str | None = None
    ignore_colors: tuple[str, ...] = field(default_factory=tuple)
    mask_values: Mapping[int, int] | None = None
    group_index: str | None = None
    group_index_key: str = "filename"

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise DatasetError(
                f"data.source.kind: unknown kind {self.kind!r}; use one of {', '.join(SOURCE_KINDS)}"
            )
        if self.mask_encoding not in MASK_ENCODINGS:
            raise DatasetError(
                f"data.source.mask_encoding: unknown encoding {self.mask_encoding!r}; "
                f"use one of {', '.join(MASK_ENCODINGS)}"
            )


_FIELDS = {f.name for f in dataclasses.fields(SourceConfig)}


def as_source_config(source: Any) -> SourceConfig:
    """Build a :class:`SourceConfig` from a dict, a recipe dataclass or any object with those attributes.

    Args:
        source: ``SourceConfig``; a mapping (unknown keys are an error naming the key); an object whose
            attributes carry the section 5a names (missing ones take their defaults); or a bare kind
            string such as ``"folder"``.

    Returns:
        The normalised configuration (``mask_values`` keys and values as ints, colours as tuples).
    """
    if isinstance(source, SourceConfig):
        return source
    if source is None:
        values: dict[str, Any] = {}
    elif isinstance(source, str):
        values = {"kind": source}
    elif isinstance(source, Mapping):
        unknown = sorted(set(source) - _FIELDS)
        if unknown:
            raise DatasetError(f"data.source: unknown key(s) {unknown}; valid keys are {sorted(_FIELDS)}")
        values = dict(source)
    else:
        values = {name: getattr(source, name) for name in _FIELDS if hasattr(source, name)}
    values = {k: v for k, v in values.items() if v is not None or k in _NULLABLE}
    if values.get("mask_values") is not None:
        values["mask_values"] = {int(k): int(v) for k, v in dict(values["mask_values"]).items()}
    if values.get("band_files") is not None:
        values["band_files"] = {str(k): str(v) for k, v in dict(values["band_files"]).items()}
    if isinstance(values.get("class_colors"), Mapping):
        values["class_colors"] = {str(k): str(v) for k, v in dict(values["class_colors"]).items()}
    if values.get("ignore_colors") is not None:
        colors = values["ignore_colors"]
        values["ignore_colors"] = (colors,) if isinstance(colors, str) else tuple(colors)
    return SourceConfig(**values)


# attributes whose None is meaningful (everything else falls back to its default when None)
_NULLABLE = {
    "index",
    "split_column",
    "group_column",
    "group_pattern",
    "labels_column",
    "image_dir",
    "mask_column",
    "band_files",
    "id_pattern",
    "class_colors",
    "mask_values",
    "group_index",
}
