"""The torch Dataset: records in, sample dicts out (ARCHITECTURE.md section 4).

A sample is ``{"image": float32 [C, H, W], "label": int64 [] (multi-label: float32 [K], NaN = unknown) |
"mask": int64 [H, W], "valid": bool [H, W], "meta": {"path", "id", "group"}, "index": int}``.

Order of operations: read (``resnet_apps.io``) -> scale -> invalid pixels to 0 -> resize -> [cache] ->
augment -> ``(x - mean) / std`` per band -> invalid pixels to 0 (and mask to ``IGNORE_INDEX``).

Bad files (``on_error``):
- ``fail`` (default): the first bad file raises its typed error (file, field, fix).
- ``skip``: a bad file is recorded once in ``dataset.skipped`` as ``{"path", "reason"}`` and the next
  good sample is returned in its place. DataLoader workers are separate processes, so their skips do not
  reach the parent: call :meth:`RecordDataset.validate` first (one pass in this process that reads every
  file, fills the cache and drops the bad records), then train. ``write_skipped`` writes ``skipped.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from resnet_apps.constants import IGNORE_INDEX
from resnet_apps.data.cache import ArrayCache
from resnet_apps.data.config import as_source_config
from resnet_apps.data.loading import load_arrays
from resnet_apps.data.masks import MaskDecoder
from resnet_apps.data.npz import cache_identity
from resnet_apps.data.preprocessing import Preprocessing
from resnet_apps.data.records import Record, hash_id
from resnet_apps.errors import DatasetError, ImageReadError, ResnetAppsError
from resnet_apps.io.tables import write_csv

log = logging.getLogger(__name__)

Transform = Callable[
    [np.ndarray, "np.ndarray | None", np.ndarray], tuple[np.ndarray, "np.ndarray | None", np.ndarray]
]


class RecordDataset(Dataset):
    """Samples for classification, multi-label classification or segmentation.

    Args:
        records: from :func:`build_records` (possibly one split of them).
        root: the dataset root the record paths are relative to.
        preprocessing: bands, scale, per-band mean/std, size, DICOM window.
        classes: class names (segmentation: mask values beyond them become ``IGNORE_INDEX``).
        source: the ``data.source`` block; needed for masks (encoding, colours, value map).
        transform: augmentation (:func:`transforms.build_transforms`), applied before normalisation.
        on_error: ``fail`` | ``skip``.
        cache: True (default folder), a folder, an :class:`ArrayCache`, or False/None for no cache.
        seed: with a transform that has ``set_seed`` (:class:`transforms.Augment`), each sample's augmentation
            is seeded from ``(seed, epoch, index)`` (:meth:`set_epoch`), so it does not depend on worker
            count, batch order or a resume; None leaves the transform's own random state running.
    """

    def __init__(
        self,
        records: Sequence[Record],
        root: str | Path,
        preprocessing: Preprocessing | None = None,
        *,
        classes: Sequence[str] = (),
        source: Any = None,
        transform: Transform | None = None,
        on_error: str = "fail",
        cache: bool | str | Path | ArrayCache | None = False,
        seed: int | None = None,
    ) -> None:
        if on_error not in ("fail", "skip"):
            raise DatasetError(f"data.on_error: {on_error!r} is not fail or skip")
        self.records = list(records)
        self.root = Path(root)
        self.prep = preprocessing or Preprocessing()
        self.classes = list(classes)
        self.source = source  # the data.source block (masks; named in errors about mask codes)
        self.transform = transform
        self.on_error = on_error
        self.seed = seed
        self.epoch = 0
        self.skipped: list[dict[str, str]] = []
        self._bad: set[int] = set()
        self.decoder = None
        if any(r.mask_path for r in self.records):
            self.decoder = MaskDecoder(
                as_source_config(source or {"kind": "pairs"}), self.root, len(self.classes)
            )
        if isinstance(cache, ArrayCache):
            self.cache: ArrayCache | None = cache
        elif cache is True:
            self.cache = ArrayCache()
        elif cache:
            self.cache = ArrayCache(cache)
        else:
            self.cache = None
        if self.cache is not None and not isinstance(cache, ArrayCache):
            problem = self.cache.writable()
            if problem is not None:  # a read-only or full cache folder costs speed, never the run
                log.warning(
                    "cache disabled: %s cannot be written (%s); set RESNET_APPS_CACHE_DIR to a writable "
                    "folder, or data.cache: false",
                    self.cache.arrays,
                    problem,
                )
                self.cache = None
        self._mean = None if self.prep.mean is None else np.asarray(self.prep.mean, np.float32)[:, None, None]
        self._std = None if self.prep.std is None else np.asarray(self.prep.std, np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """The epoch that, with ``seed`` and the sample index, seeds each sample's augmentation."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            if i in self._bad:
                continue
            try:
                return self._sample(i)
            except ResnetAppsError as error:
                if self.on_error == "fail":
                    raise
                self._skip(i, error)
        raise DatasetError(
            f"{self.root}: every one of {len(self.records)} files was skipped; see dataset.skipped"
        )

    def arrays(self, index: int) -> dict[str, np.ndarray]:
        """Pre-augmentation arrays of one record, from the cache when present (read-only memory maps)."""
        record = self.records[index]
        if self.cache is None:
            return self._load(record)
        first, member = cache_identity(record.path)
        files = [self.root / p for p in (*(record.band_paths or (first,)), record.mask_path) if p]
        params = {
            "prep": self.prep.cache_params(),
            "mask": self.decoder.params() if self.decoder else None,
            "bands": record.band_names,
            **member,
        }
        try:
            key = self.cache.key(files, params)
        except OSError as error:
            raise ImageReadError(
                f"{files[0]}: cannot be read ({error}); check the file and its permissions"
            ) from error
        cached = self.cache.load(key)
        if cached is not None:
            return cached
        arrays = self._load(record)
        self.cache.store(key, arrays)
        return arrays

    def _load(self, record: Record) -> dict[str, np.ndarray]:
        try:
            return load_arrays(record, self.root, self.prep, self.decoder)
        except ResnetAppsError:
            raise
        except (OSError, ValueError, RuntimeError) as error:  # a reader failing without a typed error
            raise ImageReadError(
                f"{self.root / record.path}: cannot be read ({type(error).__name__}: {error}); "
                "replace or remove "
                "the file, or set data.on_error: skip"
            ) from error

    def _sample(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        arrays = self.arrays(index)
        image = np.array(arrays["image"], dtype=np.float32)  # copy: the cache is read-only
        valid = np.array(arrays["valid"], dtype=bool)
        mask = np.array(arrays["mask"]) if "mask" in arrays else None
        if self.transform is not None:
            if self.seed is not None and hasattr(self.transform, "set_seed"):
                self.transform.set_seed(sample_seed(self.seed, self.epoch, index))
            image, mask, valid = self.transform(image, mask, valid)
        if self._mean is not None and self._std is not None:
            if len(self._mean) != image.shape[0]:
                raise DatasetError(
                    f"{self.root / record.path}: {image.shape[0]} band(s) read but "
                    f"{len(self._mean)} mean/std values "
                    "given; make data.bands and the card statistics agree"
                )
            image = (image - self._mean) / self._std
        image[:, ~valid] = 0.0
        sample: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "valid": torch.from_numpy(valid),
            "meta": {"path": record.path, "id": hash_id(record.path), "group": record.group or ""},
            "index": index,  # the record actually read (on_error: skip may substitute the next one)
        }
        if mask is not None:
            mask = mask.astype(np.int64)
            mask[~valid] = IGNORE_INDEX
            sample["mask"] = torch.from_numpy(mask)
        elif record.labels is not None:
            sample["label"] = torch.tensor(
                record.labels, dtype=torch.float32
            )  # multi-label: [K], NaN = unknown
        elif record.label is not None:
            sample["label"] = torch.tensor(record.label, dtype=torch.int64)
        return sample

    def _skip(self, index: int, error: BaseException) -> None:
        self._bad.add(index)
        path = self.records[index].path
        self.skipped.append({"path": path, "reason": f"{type(error).__name__}: {error}"})
        log.warning("skipping %s: %s", path, error)

    def validate(self) -> list[dict[str, str]]:
        """Read every record once (filling the cache); with ``on_error: skip`` drop the bad ones.

        Returns:
            The skipped files ``[{"path", "reason"}]`` (also in ``self.skipped``).
        """
        keep = []
        for i in range(len(self.records)):
            if i in self._bad:
                continue
            try:
                self.arrays(i)
                keep.append(self.records[i])
            except ResnetAppsError as error:
                if self.on_error == "fail":
                    raise
                self._skip(i, error)
        self.records, self._bad = keep, set()
        if not keep:
            raise DatasetError(f"{self.root}: every file was skipped; see dataset.skipped")
        return self.skipped


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends on (seed, epoch, index) only (numpy's SeedSequence mixes the three)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def write_skipped(skipped: Sequence[dict[str, str]], path: str | Path) -> None:
    """Write the skip manifest as CSV (columns path, reason), atomically, formula-safe cells."""
    write_csv(path, ["path", "reason"], skipped)
