"""Per-band statistics of scaled pixel values for a data card's ``statistics:`` block (no torch).

``compute_band_stats`` streams files one at a time and keeps, per band:
- mean and std: Chan et al.'s pairwise merge of per-image (count, mean, M2) in float64 (exact up to
  rounding; population std, ddof=0);
- min and max: exact;
- percentiles p01, p50, p99: **exact** for integer images (uint8/uint16/int16: a 65,536-bin histogram
  of the raw integers, percentiles by numpy's default "linear" rule over the order statistics, then
  scaled); for float images, from a seeded uniform reservoir of up to 1,000,000 values per band
  (approximate: rank error about 1/sqrt(reservoir size)).
Only valid pixels count (nodata, NaN and DICOM padding excluded, from each reader's ``valid`` mask).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet_apps.errors import DatasetError
from resnet_apps.io.sniff import is_image_file

_RESERVOIR = 1_000_000
_INT_OFFSET = 32768  # int16 values shifted into 0..65535 for the histogram


class _BandAccumulator:
    """Streaming statistics of one band."""

    def __init__(self, seed: int) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.hist: np.ndarray | None = None
        self.offset = 0
        self.reservoir = np.empty(0, dtype=np.float64)
        self.seen_float = 0
        self.integer = True
        self.rng = np.random.default_rng(seed)

    def add(self, raw: np.ndarray) -> None:
        """Add the valid raw values of one image (1-D)."""
        if raw.size == 0:
            return
        values = raw.astype(np.float64)
        n, mean = values.size, float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        delta = mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        if self.integer and np.issubdtype(raw.dtype, np.integer) and raw.dtype.itemsize <= 2:
            offset = _INT_OFFSET if np.issubdtype(raw.dtype, np.signedinteger) else 0
            if self.hist is None:
                self.hist, self.offset = np.zeros(65536, dtype=np.int64), offset
            self.hist += np.bincount((raw.astype(np.int64) + self.offset).ravel(), minlength=65536)[:65536]
        else:
            self.integer = False
            self._sample(values)

    def _sample(self, values: np.ndarray) -> None:
        # reservoir sampling (algorithm R, vectorised): each value kept with probability k / seen
        room = _RESERVOIR - self.reservoir.size
        head, tail = values[:room], values[room:]
        self.reservoir = np.concatenate([self.reservoir, head])
        seen = self.seen_float + head.size
        if tail.size:
            positions = self.rng.integers(0, seen + np.arange(1, tail.size + 1))
            keep = positions < _RESERVOIR
            self.reservoir[positions[keep]] = tail[keep]
        self.seen_float = seen + tail.size

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """Raw-value percentiles (numpy's linear interpolation between order statistics)."""
        if self.integer and self.hist is not None:
            cumulative = np.cumsum(self.hist)
            out = []
            for q in qs:
                pos = q / 100.0 * (self.count - 1)
                lo, hi = math.floor(pos), math.ceil(pos)
                v_lo = float(np.searchsorted(cumulative, lo, side="right")) - self.offset
                v_hi = float(np.searchsorted(cumulative, hi, side="right")) - self.offset
                out.append(v_lo + (v_hi - v_lo) * (pos - lo))
            return out
        return [float(v) for v in np.percentile(self.reservoir, qs)]


def _read(path: Path, bands: Sequence[str | int] | None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    import resnet_apps.io as rio

    image, meta = rio.read_image(path, bands=list(bands) if bands is not None else None)
    names = list(getattr(meta, "band_names", None) or (["gray"] if image.shape[0] == 1 else []))
    return image, meta.valid, names


def compute_band_stats(
    paths: Iterable[str | Path], bands: Sequence[str | int] | None = None, scale: float = 1.0
) -> dict[str, dict[str, float]]:
    """Mean, std, p01, p50, p99, min and max per band of ``raw * scale`` over valid pixels.

    Args:
        paths: image files (any format ``resnet_apps.io.read_image`` reads); streamed one at a time.
        bands: names or 1-based band numbers to read (None: all bands of the files).
        scale: raw -> physical factor (EuroSAT DN -> reflectance: 0.0001).

    Returns:
        ``{band: {"mean", "std", "p01", "p50", "p99", "min", "max"}}`` in band order; names from
        ``bands``, else the reader's band names.

    Raises:
        DatasetError: no files, or files whose band counts differ.
    """
    accumulators: list[_BandAccumulator] = []
    names: list[str] = []
    count = 0
    for path in paths:
        image, valid, file_names = _read(Path(path), bands)
        if not accumulators:
            accumulators = [_BandAccumulator(seed=i) for i in range(image.shape[0])]
            names = (
                [str(b) for b in bands]
                if bands is not None
                else (file_names or [f"band{i + 1}" for i in range(image.shape[0])])
            )
        if image.shape[0] != len(accumulators):
            raise DatasetError(
                f"{path}: {image.shape[0]} band(s), but earlier files have {len(accumulators)}; pass --bands"
            )
        keep = (
            np.isfinite(image).all(axis=0)
            if np.issubdtype(image.dtype, np.floating)
            else np.ones(image.shape[1:], bool)
        )
        if valid is not None:
            keep &= valid
        for band, acc in zip(image, accumulators, strict=True):
            acc.add(band[keep])
        count += 1
    if count == 0:
        raise DatasetError("compute_band_stats: no files given; check the folder and --pattern")
    stats: dict[str, dict[str, float]] = {}
    for name, acc in zip(names, accumulators, strict=True):
        if acc.count == 0:
            raise DatasetError(f"band {name}: no valid pixel in {count} file(s)")
        p01, p50, p99 = acc.percentiles([1.0, 50.0, 99.0])
        std = math.sqrt(acc.m2 / acc.count)
        stats[name] = {
            "mean": acc.mean * scale,
            "std": std * abs(scale),
            "p01": p01 * scale,
            "p50": p50 * scale,
            "p99": p99 * scale,
            "min": acc.min * scale,
            "max": acc.max * scale,
        }
        if scale < 0:  # a negative scale swaps the order statistics
            stats[name].update(min=acc.max * scale, max=acc.min * scale, p01=p99 * scale, p99=p01 * scale)
    return stats


def find_images(folder: str | Path, pattern: str | None = None) -> list[Path]:
    """Image files under ``folder`` (recursive), or those matching a glob ``pattern`` relative to it."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found; give the dataset folder")
    files = (
        root.glob(pattern) if pattern else (p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    )
    found = sorted(p for p in files if p.is_file())
    if not found:
        raise DatasetError(
            f"{root}: no image files{f' match {pattern!r}' if pattern else ''}; check --pattern"
        )
    return found


def stats_yaml(stats: dict[str, dict[str, float]], digits: int = 6) -> str:
    """The ``statistics:`` block to paste into a data card's front matter (one flow mapping per band)."""
    lines = ["statistics:"]
    for band, values in stats.items():
        inner = ", ".join(f"{k}: {_fmt(v, digits)}" for k, v in values.items())
        lines.append(f"  {_key(band)}: {{{inner}}}")
    return "\n".join(lines) + "\n"


def _fmt(value: float, digits: int) -> str:
    text = f"{value:.{digits}g}"
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"  # PyYAML reads "1e-05" as a string, "1.0e-05" as a float
    return text


def _key(name: Any) -> str:
    text = str(name)
    return text if text.replace("_", "").isalnum() and not text[0].isdigit() else repr(text)
