"""How stored pixels become model input: the one ``Preprocessing`` that training, the cache and prediction share.

Training builds it from the recipe (``train.datasets.recipe_preprocessing``), a checkpoint stores it as
``meta["preprocessing"]`` (docs/ARCHITECTURE.md section 2) and prediction reads it back with
:meth:`Preprocessing.from_dict`, so users never retype bands, scale or statistics. Numpy only, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet_apps.errors import BandError, CheckpointError
from resnet_apps.io.bands import band_number, select_bands

# None: the header's window; "percentile" / "voi_lut"; an index into the header's windows; (center, width)
DicomWindow = str | int | tuple[float, float] | None


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input.

    Attributes:
        bands: band names or 1-based band numbers to read, in model channel order (``io.bands``; None: all
            the file has, alpha excepted).
        scale: raw -> physical factor applied to non-DICOM pixels (EuroSAT DN -> reflectance: 1e-4;
            8-bit: 1/255). DICOM is read as display values in [0, 1] by ``read_dicom`` and is not scaled.
        mean, std: per output band, applied after augmentation: ``(x - mean) / std`` (None: not normalised).
        image_size: side (or (H, W)) to resize to before caching; None keeps the file's size.
        dicom_window: passed to ``read_dicom``.
        grayscale: average RGB into one band (chest films stored as R=G=B JPEG).
        in_chans: channels the model takes (checkpoints), or None (training: whatever the files hold).
        dicom_frame: frame of multi-frame DICOM files (index or "first" / "middle" / "last"; None: a
            multi-frame file is an error that names this setting).
        max_pixels: pixel budget of one read in values (H x W x bands), checked from the header before
            the decode (``io.budget``; None: its default 4.5e8). Not part of the cache key.
    """

    bands: tuple[str | int, ...] | None = None
    scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    image_size: int | tuple[int, int] | None = None
    dicom_window: DicomWindow = None
    grayscale: bool = False
    in_chans: int | None = None
    dicom_frame: int | str | None = None
    max_pixels: int | None = None

    def cache_params(self) -> dict[str, Any]:
        """Everything that shapes the cached (pre-normalisation) arrays."""
        params = asdict(self)
        for name in (
            "mean",
            "std",
            "in_chans",
            "max_pixels",
        ):  # applied after the cache, or not a pixel setting
            params.pop(name)
        if params["dicom_frame"] is None:
            params.pop("dicom_frame")  # keys of caches written before the field existed stay valid
        if any(isinstance(b, int) for b in self.bands or ()):
            params["band_numbers"] = "1-based"  # integer bands were 0-based before: never reuse such a cache
        return params

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, the form a checkpoint's ``preprocessing`` block takes."""
        return {
            "bands": None if self.bands is None else list(self.bands),
            "scale": self.scale,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "image_size": list(self.image_size) if isinstance(self.image_size, tuple) else self.image_size,
            "dicom_window": list(self.dicom_window)
            if isinstance(self.dicom_window, tuple)
            else self.dicom_window,
            "grayscale": self.grayscale,
            "dicom_frame": self.dicom_frame,
        }

    @classmethod
    def from_dict(cls, raw: Any, in_chans: int, source: str = "checkpoint") -> Preprocessing:
        """Read a checkpoint's ``preprocessing`` block, checking every field's type and size.

        Args:
            raw: the JSON block (``bands``, ``scale``, ``mean``, ``std``, ``image_size``, ``dicom_window``,
                ``grayscale``, ``dicom_frame``; other keys such as ``normalize`` are informational and ignored).
            in_chans: the model's input channels (``mean``/``std`` need one value each, or a single one).
            source: the file named in errors.

        Raises:
            CheckpointError: naming the file, the field and the fix.
        """
        if not isinstance(raw, Mapping):
            raise CheckpointError(
                f"{source}: field 'preprocessing' is missing or not a mapping ({type(raw).__name__}); "
                "re-save the checkpoint with save_checkpoint(...) so that bands, scale, mean and std travel "
                "with the weights"
            )

        def bad(name: str, expected: str) -> CheckpointError:
            return CheckpointError(
                f"{source}: field 'preprocessing.{name}' = {raw.get(name)!r} is not {expected}; fix that field "
                "of the checkpoint JSON, or re-save it from the run that trained the weights"
            )

        bands = raw.get("bands")
        if bands is not None:
            if not isinstance(bands, list) or not all(_is_band(b) for b in bands):
                raise bad("bands", "null or a list of band names / 0-based indices")
            bands = tuple(bands)
        scale = raw.get("scale", 1.0)
        scale = 1.0 if scale is None else scale
        if not _is_number(scale) or not scale > 0:
            raise bad("scale", "a finite number above 0")
        stats = {}
        for name in ("mean", "std"):
            value = raw.get(name)
            if value is not None:
                if not isinstance(value, list) or not value or not all(_is_number(v) for v in value):
                    raise bad(name, "null or a non-empty list of finite numbers")
                if len(value) not in (1, in_chans):
                    raise bad(name, f"one value per input channel ({in_chans}, or a single value)")
                value = tuple(float(v) for v in value)
            stats[name] = value
        if stats["std"] is not None and min(stats["std"]) <= 0:
            raise bad("std", "all above 0 (recompute the band statistics)")
        size = raw.get("image_size")
        if size is not None:
            if isinstance(size, list) and len(size) == 2 and all(_is_int(s) and s > 0 for s in size):
                size = (int(size[0]), int(size[1]))
            elif not (_is_int(size) and size > 0):
                raise bad("image_size", "null, a positive integer or [height, width]")
        window = raw.get("dicom_window")
        if isinstance(window, list):
            if len(window) != 2 or not all(_is_number(v) for v in window):
                raise bad("dicom_window", "null, a name, an index or [center, width]")
            window = (float(window[0]), float(window[1]))
        elif not (window is None or isinstance(window, str) or _is_int(window)):
            raise bad("dicom_window", "null, a name, an index or [center, width]")
        grayscale = raw.get("grayscale", False)
        if not isinstance(grayscale, bool | None):
            raise bad("grayscale", "true or false")
        frame = raw.get("dicom_frame")
        if not (frame is None or (_is_int(frame) and frame >= 0) or frame in ("first", "middle", "last")):
            raise bad("dicom_frame", "null, a 0-based frame index, or first / middle / last")
        return cls(
            bands=bands,
            scale=float(scale),
            mean=stats["mean"],
            std=stats["std"],
            image_size=size,
            dicom_window=window,
            grayscale=bool(grayscale),
            in_chans=in_chans,
            dicom_frame=frame,
        )

    def band_indexes(self, descriptions: Sequence[str | None], path: str | Path) -> list[int]:
        """0-based band indexes of a file, in model channel order.

        Bands are matched by name against the file's band names (``io.bands.select_bands``: generic names
        ``band3`` mean band number 3, as training read them; ints are 1-based band numbers); a file without
        names whose band count equals the model's channels is taken in file order. Alpha bands never reach
        here: io folds them into the valid mask.

        Args:
            descriptions: the file's band descriptions (None where unnamed).
            path: the file, named in errors.

        Raises:
            BandError: the file lacks a band the checkpoint needs.
        """
        count = len(descriptions)
        if self.bands is None:
            if self.in_chans is not None and count != self.in_chans:
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
        missing = [b for b in self.bands if str(b).lower() not in {n.lower() for n in names}]
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
            image -= np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        if self.std is not None:
            image /= np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)
        # NaN (float nodata) must not reach the model: it would spread through every overlapping tile
        np.nan_to_num(image, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        if valid is not None:
            image[:, ~valid] = 0.0
        return image

    def match_channels(self, array: np.ndarray, path: str | Path) -> np.ndarray:
        """Grey <-> RGB for images without band names: [C, H, W] -> [in_chans, H, W]."""
        c = array.shape[0]
        if self.in_chans is None or c == self.in_chans:
            return array
        if c == 1:
            return np.repeat(array, self.in_chans, axis=0)
        if self.in_chans == 1 and c in (3, 4):
            return array[:3].astype(np.float32).mean(axis=0, keepdims=True).astype(array.dtype)
        if c == 4 and self.in_chans == 3:
            return array[:3]  # RGBA PNG: drop alpha
        raise BandError(f"{path}: image has {c} channels but the model takes {self.in_chans}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_band(value: Any) -> bool:
    return isinstance(value, str) or (_is_int(value) and value >= 0)
