"""The checkpoint's preprocessing, applied exactly as recorded: band choice, scale, per-band normalisation.

Users never retype bands, scale or statistics: everything comes from ``meta["preprocessing"]``
(docs/ARCHITECTURE.md section 2). Numpy only, so scene and folder prediction share it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet_apps.errors import BandError, CheckpointError
from resnet_apps.io.bands import band_number, select_bands


@dataclass(frozen=True)
class Preprocessing:
    """What a checkpoint expects of its input.

    Attributes:
        bands: band names in model channel order, or None (all bands of the file, in file order).
        scale: raw value -> physical value factor (scene pixels; DICOM display values are not scaled).
        mean: per-channel mean of scaled values [C], or None (no normalisation).
        std: per-channel std of scaled values [C], or None.
        image_size: chip side the model was trained on (classification chips, folder images), or None.
        dicom_window: window passed to ``io.read_dicom`` (None = the header's).
        grayscale: images are read as one grey channel.
        in_chans: channels the model takes.
    """

    bands: tuple[str, ...] | None
    scale: float
    mean: np.ndarray | None
    std: np.ndarray | None
    image_size: int | None
    dicom_window: Any
    grayscale: bool
    in_chans: int

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], source: str = "checkpoint") -> Preprocessing:
        """Build from checkpoint metadata; ``source`` names the file in errors."""
        pre = meta.get("preprocessing")
        if not isinstance(pre, Mapping):
            raise CheckpointError(
                f"{source}: field 'preprocessing' is missing; re-save the checkpoint with save_checkpoint(...) "
                "so that bands, scale, mean and std travel with the weights"
            )
        in_chans = int(meta.get("model", {}).get("in_chans") or len(pre.get("mean") or []) or 3)
        mean = None if pre.get("mean") is None else np.asarray(pre["mean"], dtype=np.float32)
        std = None if pre.get("std") is None else np.asarray(pre["std"], dtype=np.float32)
        for name, stat in (("mean", mean), ("std", std)):
            if stat is not None and stat.size not in (1, in_chans):
                raise CheckpointError(
                    f"{source}: preprocessing.{name} has {stat.size} values for {in_chans} input channels; "
                    "it must have one value per band"
                )
        if std is not None and np.any(std <= 0):
            raise CheckpointError(
                f"{source}: preprocessing.std has a value <= 0; recompute the band statistics"
            )
        bands = pre.get("bands")
        return cls(
            bands=None if bands is None else tuple(str(b) for b in bands),
            scale=float(pre.get("scale", 1.0) if pre.get("scale") is not None else 1.0),
            mean=mean,
            std=std,
            image_size=None if pre.get("image_size") is None else int(pre["image_size"]),
            dicom_window=pre.get("dicom_window"),
            grayscale=bool(pre.get("grayscale", False)),
            in_chans=in_chans,
        )

    def band_indexes(self, descriptions: Sequence[str | None], path: str | Path) -> list[int]:
        """0-based band indexes of a file, in model channel order.

        Bands are matched by name against the file's band names (``io.bands.select_bands``: generic names
        ``band3`` mean band number 3, as training read them); a file without names whose band count equals
        the model's channels is taken in file order. Alpha bands never reach here: io folds them into the
        valid mask.

        Args:
            descriptions: the file's band descriptions (None where unnamed).
            path: the file, named in errors.

        Raises:
            BandError: the file lacks a band the checkpoint needs.
        """
        count = len(descriptions)
        if self.bands is None:
            if count != self.in_chans:
                raise BandError(
                    f"{path}: has {count} bands but the model takes {self.in_chans}; the checkpoint records "
                    "no band names (preprocessing.bands), so pass a file with exactly that many bands"
                )
            return list(range(count))
        # io names undescribed bands "band1", "band2", ...; select_bands reads such a name as its number,
        # so a model trained on bands 1-3 of undescribed RGBA files picks bands 1-3 of their siblings
        names = [d or f"band{i + 1}" for i, d in enumerate(descriptions)]
        try:
            return select_bands(self.bands, names, str(path))
        except BandError:
            pass
        unnamed = all(band_number(n) == i + 1 for i, n in enumerate(names))
        if unnamed and count == len(self.bands):
            return list(range(count))  # e.g. trained on named single-band stacks, given one unnamed file
        missing = [b for b in self.bands if b.lower() not in {n.lower() for n in names}]
        raise BandError(
            f"{path}: bands {missing} of preprocessing.bands {list(self.bands)} are not among the file's "
            f"{count} bands {names}; give a file with these band names, or with exactly "
            f"{len(self.bands)} unnamed bands in that order"
        )

    def normalise(
        self, array: np.ndarray, valid: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Scale, then standardise raw scene values (the data layer's order); invalid pixels become 0.

        Args:
            array: raw values [C, H, W] (any dtype; GeoTIFF values, never DICOM display values).
            valid: [H, W] bool, False for nodata / padding, or None.
            out: float32 [C, H, W] to write into (saves a copy of a large block), or None.

        Returns:
            float32 [C, H, W] (``out`` when given).
        """
        if out is None:
            out = array.astype(np.float32, copy=True)
        else:
            out[...] = array
        if self.scale != 1.0:
            out *= np.float32(self.scale)
        return self.standardise(out, valid)

    def standardise(self, image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """``(x - mean) / std`` per band in place on scaled float32 [C, H, W]; NaN and invalid pixels -> 0."""
        if self.mean is not None:
            image -= self.mean.reshape(-1, 1, 1)
        if self.std is not None:
            image /= self.std.reshape(-1, 1, 1)
        # NaN (float nodata) must not reach the model: it would spread through every overlapping tile
        np.nan_to_num(image, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        if valid is not None:
            image[:, ~valid] = 0.0
        return image

    def match_channels(self, array: np.ndarray, path: str | Path) -> np.ndarray:
        """Grey <-> RGB for images without band names: [C, H, W] -> [in_chans, H, W]."""
        c = array.shape[0]
        if c == self.in_chans:
            return array
        if c == 1:
            return np.repeat(array, self.in_chans, axis=0)
        if self.in_chans == 1 and c in (3, 4):
            return array[:3].astype(np.float32).mean(axis=0, keepdims=True).astype(array.dtype)
        if c == 4 and self.in_chans == 3:
            return array[:3]  # RGBA PNG: drop alpha
        raise BandError(f"{path}: image has {c} channels but the model takes {self.in_chans}")
