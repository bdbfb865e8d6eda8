"""Segmentation masks -> class indices [H, W] int64 with ``IGNORE_INDEX`` for "do not score".

Three encodings (``data.source.mask_encoding``):
- ``index``: pixel values are classes, optionally mapped by ``mask_values`` (38-Cloud: {0: 0, 255: 1});
  a value the map does not name becomes ``IGNORE_INDEX``.
- ``rgb``: colour-coded masks (Dubai aerial set). Palette PNGs are converted to RGB first, then every exact
  colour maps to its class; ``ignore_colors`` (Dubai: black, the unannotated regions) become ``IGNORE_INDEX``;
  any other colour is an error that names it, since guessing would silently corrupt labels.
- ``palette``: a "P" PNG whose palette indices are the classes (Pascal VOC style, 255 = ignore).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data.config import SourceConfig
from resnet_apps.errors import DatasetError, PixelBudgetError
from resnet_apps.io.budget import check_pixels


def parse_color(text: str) -> tuple[int, int, int]:
    """``"#3C1098"`` or ``"60,16,152"`` -> (60, 16, 152)."""
    value = str(text).strip()
    try:
        if value.startswith("#") and len(value) == 7:
            return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)
        r, g, b = (int(v) for v in value.strip("()[] ").split(","))
        return r, g, b
    except ValueError:
        raise DatasetError(
            f"colour {text!r} is not '#RRGGBB' or 'r,g,b'; fix data.source.class_colors"
        ) from None


def load_class_colors(path: str | Path) -> dict[str, str]:
    """Read a colour table CSV (``class_name`` plus ``hex`` or ``r,g,b`` columns), in row order."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: class colour table not found; fix data.source.class_colors")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    colors = {}
    for row in rows:
        name = row.get("class_name") or row.get("name")
        if name is None:
            raise DatasetError(f"{path}: needs a 'class_name' column and 'hex' (or r,g,b) columns")
        colors[name] = row["hex"] if row.get("hex") else f"{row['r']},{row['g']},{row['b']}"
    return colors


def resolve_class_colors(cfg: SourceConfig, root: Path) -> dict[str, str] | None:
    """``class_colors`` as a dict: inline in the recipe, or a CSV path relative to the dataset root."""
    if cfg.class_colors is None:
        return None
    if isinstance(cfg.class_colors, str):
        return load_class_colors(root / cfg.class_colors)
    return dict(cfg.class_colors)


def class_names_from_source(cfg: SourceConfig, root: Path) -> list[str]:
    """Class names of a pairs source when ``data.classes`` is not given."""
    colors = resolve_class_colors(cfg, root)
    if colors is not None:
        return list(colors)
    if cfg.mask_encoding == "rgb":
        raise DatasetError("data.source.class_colors: rgb masks need a colour -> class table")
    if cfg.mask_values:
        return [str(i) for i in range(max(cfg.mask_values.values()) + 1)]
    raise DatasetError(
        "data.classes: index masks without data.source.mask_values need an explicit class list"
    )


class MaskDecoder:
    """Turns mask files into class indices; built once per dataset from the source config.

    Args:
        cfg: the source block (encoding, colours, value map).
        root: dataset root (a ``class_colors`` CSV resolves against it).
        num_classes: classes the model predicts; index values outside ``[0, num_classes)`` become ignore.
    """

    def __init__(self, cfg: SourceConfig, root: Path, num_classes: int) -> None:
        self.encoding = cfg.mask_encoding
        self.num_classes = num_classes
        self.mask_values: Mapping[int, int] | None = cfg.mask_values
        self.colors: dict[int, int] = {}
        colors = resolve_class_colors(cfg, root)
        if colors is not None:
            self.colors = {_pack(parse_color(c)): i for i, c in enumerate(colors.values())}
        for color in cfg.ignore_colors:
            self.colors[_pack(parse_color(color))] = IGNORE_INDEX
        if self.encoding == "rgb" and not colors:
            raise DatasetError("data.source.class_colors: rgb masks need a colour -> class table")

    def params(self) -> dict[str, object]:
        """What decoding depends on (part of the cache key)."""
        return {
            "encoding": self.encoding,
            "num_classes": self.num_classes,
            "values": sorted((self.mask_values or {}).items()),
            "colors": sorted(self.colors.items()),
        }

    def read(self, path: Path) -> np.ndarray:
        """Decode one mask file.

        Returns:
            Class indices [H, W] int64; ``IGNORE_INDEX`` where unlabelled.
        """
        raw = read_mask_pixels(path, rgb=self.encoding == "rgb")
        if self.encoding == "rgb":
            return self._from_rgb(raw, path)
        return self._from_index(raw)

    def _from_index(self, raw: np.ndarray) -> np.ndarray:
        values = raw.astype(np.int64)
        out = np.full(values.shape, IGNORE_INDEX, dtype=np.int64)
        if self.mask_values is not None:
            for value, cls in self.mask_values.items():
                out[values == value] = cls
        else:
            keep = (values >= 0) & (values < self.num_classes)
            out[keep] = values[keep]
        return out

    def _from_rgb(self, raw: np.ndarray, path: Path) -> np.ndarray:
        packed = _pack_array(raw)
        keys = np.array(sorted(self.colors), dtype=np.int64)
        classes = np.array([self.colors[k] for k in keys], dtype=np.int64)
        pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
        known = keys[pos] == packed
        if not known.all():
            unknown, counts = np.unique(packed[~known], return_counts=True)
            shown = ", ".join(
                f"#{int(u):06X} ({int(n)} px)" for u, n in zip(unknown[:5], counts[:5], strict=True)
            )
            raise DatasetError(
                f"{path}: mask colour(s) {shown} are in neither class_colors nor ignore_colors; "
                "add them to data.source.class_colors or data.source.ignore_colors"
            )
        return classes[pos]


def read_mask_pixels(path: Path, rgb: bool) -> np.ndarray:
    """Raw mask pixels: [H, W] (index / palette indices) or [H, W, 3] uint8 when ``rgb``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            check_pixels(path, image.height, image.width, len(image.getbands()))  # before the decode
            if rgb:
                return np.asarray(image.convert("RGB"))  # palette PNGs (Dubai tile 2) become RGB here
            if image.mode in ("RGB", "RGBA"):
                raise DatasetError(
                    f"{path}: mask is colour ({image.mode}) but data.source.mask_encoding is index; "
                    "set mask_encoding: rgb with class_colors"
                )
            return np.asarray(image)
    except Image.DecompressionBombError as error:  # past 2 x Pillow's limit: refused at open
        raise PixelBudgetError(
            f"{path}: mask header claims more pixels than Pillow decodes ({error}); fix: tile the mask"
        ) from error
    except UnidentifiedImageError:
        pass  # e.g. a TIFF layout Pillow does not decode: let rasterio try
    except OSError as error:
        raise DatasetError(
            f"{path}: mask cannot be read ({error}); replace the file or drop the pair"
        ) from error
    return _read_mask_rasterio(path, rgb)


def _read_mask_rasterio(path: Path, rgb: bool) -> np.ndarray:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            check_pixels(path, src.height, src.width, src.count)
            data = src.read()
    except RasterioIOError as error:
        raise DatasetError(
            f"{path}: mask cannot be read ({error}); replace the file or drop the pair"
        ) from error
    return np.moveaxis(data[:3], 0, -1) if rgb else data[0]


def _pack(color: tuple[int, int, int]) -> int:
    return (color[0] << 16) | (color[1] << 8) | color[2]


def _pack_array(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
