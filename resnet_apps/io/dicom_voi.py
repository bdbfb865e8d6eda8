"""DICOM VOI (value of interest) step: from modality values to display values in [0, 1].

Kept apart from ``dicom.py`` (decode, header, metadata) because the VOI choice has its own small
vocabulary: the header's windows, a VOI LUT Sequence, an explicit window or a percentile window.
VOI LUT Sequences go through pydicom's ``apply_voi``; windows use the PS3.3 C.11.2 formulas
(LINEAR, LINEAR_EXACT, SIGMOID) in float32, checked against ``pydicom.pixels.apply_windowing`` in
the tests. Outputs are normalised to [0, 1]. No torch here.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi

from resnet_apps.errors import DicomError

# What callers may pass as ``window``: None (automatic), "percentile", "voi_lut", an int index of
# the header's windows, or an explicit (center, width) pair in modality units.
WindowArg: TypeAlias = None | str | int | tuple[float, float]

# The percentile window used when a file has neither a window nor a VOI LUT (and on request).
PERCENTILE_WINDOW: tuple[float, float] = (0.5, 99.5)


def header_windows(ds: Dataset) -> list[tuple[float, float]]:
    """The (center, width) pairs in the header, in file order (WindowCenter/WindowWidth are VM 1-n)."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return []
    centers, widths = ds["WindowCenter"].value, ds["WindowWidth"].value
    centers = list(centers) if ds["WindowCenter"].VM > 1 else [centers]
    widths = list(widths) if ds["WindowWidth"].VM > 1 else [widths]
    pairs = []
    for center, width in zip(centers, widths, strict=False):
        if center is None or width is None or float(width) <= 0:
            continue  # empty or nonsensical entries are skipped, not guessed at
        pairs.append((float(center), float(width)))
    return pairs


def has_voi_lut(ds: Dataset) -> bool:
    """True when the header carries a usable VOI LUT Sequence item."""
    seq = ds.get("VOILUTSequence")
    return bool(seq) and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing with output range exactly [0, 1], in float32.

    Same formulas as ``pydicom.pixels.apply_windowing`` (a test checks they agree to 1e-6), written
    as one clip in float32 because pydicom's float64 masked assignments cost ~0.18 s per 2000 x 1800
    radiograph, three times the decode itself.
    """
    x = values.astype(np.float32, copy=False)
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - np.float32(center)) / np.float32(width)))).astype(np.float32)
    if function == "LINEAR" and width < 1:
        function = "LINEAR_EXACT"  # LINEAR needs width >= 1 (PS3.3 C.11.2.1.2.1)
    if function == "LINEAR":
        # y = ((x - (c - 0.5)) / (w - 1) + 0.5), clipped: the standard's two branches are exactly the clip
        center, width = center - 0.5, width - 1.0
    elif function != "LINEAR_EXACT":
        raise DicomError(f"VOI LUT Function {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID")
    if width <= 0:  # LINEAR with width 1: a threshold at the centre
        return (x > center).astype(np.float32)
    out = (x - np.float32(center)) * np.float32(1.0 / width) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _lut(values: np.ndarray, ds: Dataset, path: str) -> np.ndarray:
    """Apply the first VOI LUT Sequence item; output divided by its 2**bits - 1 range."""
    item = ds.VOILUTSequence[0]
    bits = int(item.LUTDescriptor[2])
    try:
        out = apply_voi(values, ds, index=0)
    except (ValueError, IndexError, TypeError) as error:
        raise DicomError(
            f"{path}: VOI LUT Sequence cannot be applied ({error}); "
            "fix: pass window='percentile' or an explicit (center, width)"
        ) from error
    return out.astype(np.float32) / float(2**bits - 1)


def apply_voi_choice(
    values: np.ndarray,
    ds: Dataset,
    window: WindowArg,
    valid: np.ndarray | None,
    path: str,
) -> tuple[np.ndarray, tuple[float, float] | None, str]:
    """Map modality values to [0, 1] display values (0 = low value; MONOCHROME1 is handled later).

    Args:
        values: modality values (after the modality LUT), [H, W].
        ds: the header (windows, VOI LUT, VOI LUT Function).
        window: see ``read_dicom``.
        valid: [H, W] False on padding, excluded from percentiles; None means all valid.
        path: the file, for error messages.

    Returns:
        (display [H, W] float32 in [0, 1], the (center, width) used or None for a LUT, the source:
        "header[i]", "voi_lut", "explicit", "percentile").
    """
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    windows = header_windows(ds)
    if window is None:
        if windows:
            window = 0
        elif has_voi_lut(ds):
            window = "voi_lut"
        else:
            window = "percentile"

    if isinstance(window, bool):  # bool is an int subclass; refuse it rather than read index 1
        raise DicomError(f"{path}: window={window!r} is not a window; fix: None, an index, (center, width)")
    if isinstance(window, int):
        if not 0 <= window < len(windows):
            raise DicomError(
                f"{path}: window index {window} asked but the header has {len(windows)} window(s) "
                f"(WindowCenter/WindowWidth); fix: pass an index below {len(windows)}, "
                "window='percentile' or an explicit (center, width)"
            )
        center, width = windows[window]
        out = _window(values, center, width, function)
        return out.astype(np.float32), (center, width), f"header[{window}]"
    if window == "voi_lut":
        if not has_voi_lut(ds):
            raise DicomError(
                f"{path}: window='voi_lut' but the file has no VOI LUT Sequence; fix: window=None"
            )
        return np.clip(_lut(values, ds, path), 0.0, 1.0), None, "voi_lut"
    if window == "percentile":
        sample = values[valid] if valid is not None else values.ravel()
        if sample.size == 0:
            raise DicomError(f"{path}: every pixel is padding; nothing to window")
        low, high = (float(v) for v in np.percentile(sample, PERCENTILE_WINDOW))
        width = max(high - low, 1e-6)
        # LINEAR_EXACT maps [low, high] exactly onto [0, 1]
        out = _window(values, (low + high) / 2.0, width, "LINEAR_EXACT")
        return out.astype(np.float32), ((low + high) / 2.0, width), "percentile"
    if isinstance(window, (tuple, list)) and len(window) == 2:
        center, width = float(window[0]), float(window[1])
        if width <= 0:
            raise DicomError(f"{path}: window width {width} must be > 0; fix: pass (center, width > 0)")
        out = _window(values, center, width, function)
        return out.astype(np.float32), (center, width), "explicit"
    raise DicomError(
        f"{path}: window={window!r} not understood; fix: None, an int index, 'percentile', "
        "'voi_lut' or (center, width)"
    )
