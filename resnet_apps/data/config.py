"""The ``data.source`` block as this package reads it (ARCHITECTURE.md section 5a).

``recipe/`` (recipe.schema) owns :class:`SourceConfig`, the one definition of the block (recipe/ is a torch-free leaf
below ``data``); this module turns a plain dict (tests, callers without a recipe), a bare kind string or
any object with those attribute names into it, with the data layer's :class:`DatasetError` for bad keys
and values.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from resnet_apps.errors import DatasetError
from resnet_apps.recipe import MaskEncoding, SourceConfig, SourceKind

__all__ = ["MASK_ENCODINGS", "SOURCE_KINDS", "SourceConfig", "as_source_config"]

SOURCE_KINDS: tuple[SourceKind, ...] = typing.get_args(SourceKind)
MASK_ENCODINGS: tuple[MaskEncoding, ...] = typing.get_args(MaskEncoding)
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
        return _checked(source)
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
    return _checked(SourceConfig(**values))


def _checked(cfg: SourceConfig) -> SourceConfig:
    """Refuse a kind or mask encoding outside the choices (a recipe file is checked by ``resnet_apps.recipe``)."""
    if cfg.kind not in SOURCE_KINDS:
        raise DatasetError(
            f"data.source.kind: unknown kind {cfg.kind!r}; use one of {', '.join(SOURCE_KINDS)}"
        )
    if cfg.mask_encoding not in MASK_ENCODINGS:
        raise DatasetError(
            f"data.source.mask_encoding: unknown encoding {cfg.mask_encoding!r}; "
            f"use one of {', '.join(MASK_ENCODINGS)}"
        )
    return cfg


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
