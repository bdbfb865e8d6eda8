"""Band selection, the one home for it (no torch): 1-based numbers like GDAL and rasterio, or names.

``select_bands(wanted, names, where) -> [0-based positions]`` is used by every reader
(``read_geotiff``, ``read_image``, the data layer's band stacks) and by prediction, so a recipe, a
``--set data.bands=[...]`` override and a checkpoint select the same bands the same way:

- an ``int`` is the band *number*, 1-based: ``1`` is the first band, as ``gdalinfo``, rasterio's
  ``src.read(1)`` and ``resnet-apps inspect`` (``band1`` ...) count;
- a ``str`` is a band name, case-insensitive (``"B04"``, ``"red"``); a generic ``"band3"`` also means
  number 3 when the file has no band of that name, so names recorded from an undescribed file work on
  its siblings;
- an alpha band (GDAL colour interpretation alpha, or a constant 255/65535 last band) is part of the
  valid mask, never a model input: ``None`` (all bands) skips it and asking for it is an error.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import numpy as np

from resnet_apps.errors import BandError

_GENERIC = re.compile(r"^band\s*(\d+)$", re.IGNORECASE)


def band_number(name: str) -> int | None:
    """``"band3"`` -> 3 (the generic name of an undescribed band); anything else -> None."""
    match = _GENERIC.match(name.strip())
    return int(match.group(1)) if match else None


def select_bands(
    wanted: None | str | int | Sequence[str | int],
    names: Sequence[str],
    where: str,
    alpha: Collection[int] = (),
) -> list[int]:
    """0-based positions of the wanted bands among ``names``, in the order wanted.

    Args:
        wanted: None (every band but alpha), or band numbers (1-based) and names, in model order.
        names: the file's (or stack's) band names in file order.
        where: the file, named in errors.
        alpha: 0-based positions of alpha bands (valid-mask bands, not inputs).

    Raises:
        BandError: a band the file does not have, or an alpha band asked as an input.
    """
    if wanted is None:
        return [i for i in range(len(names)) if i not in alpha]
    if isinstance(wanted, (str, int, np.integer)):
        wanted = [wanted]
    lower = [n.lower() for n in names]
    picked: list[int] = []
    for band in wanted:
        index: int | None = None
        if isinstance(band, (int, np.integer)) and not isinstance(band, bool):
            if not 1 <= int(band) <= len(names):
                raise BandError(
                    f"{where}: band number {band} asked but it has {len(names)} band(s) {list(names)}; "
                    f"band numbers are 1-based like GDAL and rasterio (band1 is 1); fix: ask for "
                    f"1..{len(names)}, or a band name"
                )
            index = int(band) - 1
        elif isinstance(band, str) and band.lower() in lower:
            index = lower.index(band.lower())
        elif isinstance(band, str) and (number := band_number(band)) and 1 <= number <= len(names):
            index = number - 1
        if index is None:
            raise BandError(
                f"{where}: band {band!r} asked but it has {len(names)} band(s) {list(names)}; fix: ask for "
                "bands it has (by these names, or 1-based numbers) or use files that carry the band"
            )
        if index in alpha:
            raise BandError(
                f"{where}: band {index + 1} ({names[index]}) is an alpha band: it marks valid pixels and "
                "is never a model input; fix: drop it from data.bands"
            )
        picked.append(index)
    return picked


def constant_bands(image: np.ndarray, names: Sequence[str], valid: np.ndarray | None = None) -> list[str]:
    """Names of the bands of ``image`` [C, H, W] that hold one value over the valid pixels.

    A constant band carries no information (an alpha channel, a blank sensor band, a band chosen by the
    wrong number); training on it wastes a channel and normalising it divides by a zero std.
    """
    out = []
    for band, name in zip(image, names, strict=False):
        values = band[valid] if valid is not None else band
        values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if values.size and values.min() == values.max():
            out.append(str(name))
    return out
