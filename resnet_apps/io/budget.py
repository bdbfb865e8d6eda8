"""The pixel budget: what a file's *header* claims is checked before any decode (no torch).

A 74-byte PNG header or a 157 KB sparse GeoTIFF can claim 20000 x 20000 pixels; decoding it first and
failing later costs gigabytes. Every reader in ``resnet_apps.io`` therefore multiplies what it is about
to decode (height x width x bands, times frames for DICOM) and refuses more than ``max_pixels`` values
with a ``PixelBudgetError`` (an ``ImageReadError``, so ``data.on_error: skip`` skips and lists it).

The default, 4.5e8 values, is 1.5e8 pixels x 3 bands (a 12 247 x 12 247 RGB photograph, or a
21 213 x 21 213 single-band scene): one float32 working copy of that is 4.5e8 x 4 B = 1.8 GB, and the
native read beside it at most as much again for 32-bit data, so a reader stays near 3.6 GB at worst.
Larger scenes are predicted block by block (``predict`` on a GeoTIFF streams windows, each within the
budget); raise ``data.max_pixels`` / ``--max-pixels`` only on a machine with the memory.
"""

from __future__ import annotations

import os

from resnet_apps.errors import PixelBudgetError

DEFAULT_MAX_PIXELS = 450_000_000  # 1.5e8 px x 3 bands; see the module docstring for the arithmetic


def check_pixels(
    path: str | os.PathLike[str],
    height: int,
    width: int,
    bands: int = 1,
    *,
    frames: int = 1,
    max_pixels: int | None = None,
) -> int:
    """Refuse a decode of more than ``max_pixels`` values, from the header's numbers only.

    Args:
        path: the file, named in the error.
        height, width: pixels to decode (the window's, when only a window is read).
        bands: bands (samples per pixel) decoded.
        frames: frames decoded (DICOM).
        max_pixels: the budget in values (height x width x bands x frames); None: ``DEFAULT_MAX_PIXELS``.

    Returns:
        the number of values the decode will produce.

    Raises:
        PixelBudgetError: over the budget, or a header with a negative size.
    """
    budget = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    dims = (int(height), int(width), max(int(bands), 1), max(int(frames), 1))
    if min(dims) < 0:
        raise PixelBudgetError(f"{path}: header claims a negative size {dims}; the file is corrupt")
    values = dims[0] * dims[1] * dims[2] * dims[3]
    if values > budget:
        frames_text = f" x {dims[3]} frames" if dims[3] > 1 else ""
        raise PixelBudgetError(
            f"{path}: header claims {dims[0]} x {dims[1]} px x {dims[2]} band(s){frames_text} = "
            f"{values:.3g} values, over the pixel budget of {budget:.3g} (data.max_pixels / --max-pixels); "
            f"decoding it would take about {values * 4 / 2**30:.1f} GiB as float32; fix: tile or crop the "
            "file (e.g. gdal_translate -srcwin), or raise the budget on a machine with that memory"
        )
    return values
