"""The cache as arrays: one memory-mapped ``[N, C, H, W]`` shard per (dataset content, preprocessing).

The per-sample cache (:mod:`cache`) costs two ``np.load`` header parses and a key computation per sample
per access; a shard is opened once and a batch is one fancy-index gather (``image[indices]``), so the
cached data path runs at memory speed.

Stored dtype (decided on the first record, escalated when a later one does not fit):
- ``uint8`` / ``int16`` / ``uint16`` when every cached image is ``raw * scale`` with integer ``raw`` in
  range (8- and 16-bit sources such as EuroSAT DN with ``data.scale: 1e-4``): the shard holds ``raw``
  exactly and the consumer multiplies by ``scale`` in float32, which gives the float32 values the
  per-sample path computes (``float32(raw) * float32(scale)``), at a half or a quarter of the bytes.
  16-bit data below 32768 (EuroSAT's DN) is stored as ``int16``, same bytes as ``uint16``: torch's
  ``uint16`` is a shell dtype without most kernels, ``int16`` has them all.
- ``float16`` when the values are not such integers (windowed DICOM display values in [0, 1], images
  averaged to grey, resized images): spacing 2**-11 in [0.5, 1), finer than an 8-bit display and about
  half a grey level of a 12-bit window, at half the bytes of float32.
- ``float32`` only when a value lies beyond float16's range (|x| > 65504).

Key: sha256 over every record's per-sample key (:meth:`ArrayCache.key`: input file content + the
preprocessing + mask decoding + band names) and the labels; computed once per dataset. Crash safety: the
arrays are written into a temporary folder, ``meta.json`` is written last (atomically) and the folder is
renamed into place, so a killed writer leaves no entry that :func:`open_shard` accepts.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet_apps.data.dataset import RecordDataset
from resnet_apps.data.loading import Preprocessing, load_arrays
from resnet_apps.data.masks import MaskDecoder
from resnet_apps.data.npz import cache_identity
from resnet_apps.data.records import Record
from resnet_apps.errors import ResnetAppsError
from resnet_apps.io.atomic import atomic_write_text

log = logging.getLogger(__name__)

_VERSION = "v1"
_DTYPES = ("uint8", "int16", "uint16", "float16", "float32")


@dataclass
class Shard:
    """One dataset's pre-augmentation arrays, memory-mapped read-only.

    Attributes:
        image: ``[N, C, H, W]`` in ``dtype`` (multiply by ``scale`` for the float32 values).
        valid: ``[N, H, W]`` bool.
        mask: ``[N, H, W]`` uint8 (segmentation) or None.
        label: ``[N]`` int64 (class) or ``[N, K]`` float32 (multi-label, NaN unknown) or None.
        mean: ``[N]`` float64, each image's mean over (C, H, W) in float values (brightness changes are
            relative to it; flips and rotations keep it).
        scale: factor from stored integers to float values (1.0 for float dtypes).
        key: the shard's cache key.
    """

    image: np.ndarray
    valid: np.ndarray
    mask: np.ndarray | None
    label: np.ndarray | None
    mean: np.ndarray
    scale: float
    key: str

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @functools.cached_property
    def whole(self) -> np.ndarray:
        """``[N]`` bool: the images with every pixel valid (one pass over ``valid``, on first use)."""
        return np.asarray(self.valid.reshape(len(self), -1).all(axis=1))

    def gather(
        self, indices: Sequence[int] | np.ndarray, pin: bool = False, image: bool = True, valid: bool = True
    ) -> dict[str, torch.Tensor]:
        """One batch in the stored dtypes: one fancy-index gather per array.

        Args:
            indices: shard rows.
            pin: page-locked copies (for a ``non_blocking`` transfer to a GPU).
            image: gather the images too (False: the caller reads them itself, e.g.
                ``batch_kernels.gather_dihedral``).
            valid: gather the valid masks too (False: the caller makes its own, e.g.
                ``batch_kernels.gather_affine`` for rows that are all :attr:`whole`).

        Returns:
            ``image`` [B, C, H, W] (stored dtype), ``valid`` [B, H, W] bool, ``index`` [B] int64 and
            ``mean`` [B] float64 and ``mask`` [B, H, W] uint8 and/or ``label`` [B] | [B, K]; pinned when ``pin`` (for a
            ``non_blocking`` copy to a GPU).
        """
        idx = np.asarray(indices, dtype=np.int64)
        # one copy per array: rows straight from the memory map (the page cache) into the batch
        out = {"index": torch.from_numpy(idx.copy())}
        if valid:
            out["valid"] = torch.from_numpy(self.valid[idx])
        if image:
            out["image"] = torch.from_numpy(self.image[idx])
        if self.mask is not None:
            out["mask"] = torch.from_numpy(self.mask[idx])
        if self.label is not None:
            out["label"] = torch.from_numpy(self.label[idx])
        out["mean"] = torch.from_numpy(self.mean[idx])
        if pin:
            out = {k: v.pin_memory() for k, v in out.items()}
        return out

    def to_float(self, image: torch.Tensor) -> torch.Tensor:
        """Stored image (any device) -> float32 values equal to the per-sample path's."""
        out = image.to(torch.float32)
        return out * self.scale if self.scale != 1.0 else out


def shard_dir(dataset: RecordDataset) -> Path | None:
    """Where the dataset's shards live (None: the dataset has no cache)."""
    return None if dataset.cache is None else dataset.cache.root / "shards" / _VERSION


def shard_key(dataset: RecordDataset) -> str:
    """sha256 over every record's per-sample cache key and the labels (one ``stat`` per file, memoised)."""
    cache = dataset.cache
    if cache is None:
        raise ValueError("shard_key needs a dataset with a cache")
    params = {
        "prep": dataset.prep.cache_params(),
        "mask": dataset.decoder.params() if dataset.decoder else None,
    }
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for record in dataset.records:
        first, member = cache_identity(record.path)  # an npz member: its archive plus its name
        files = [dataset.root / p for p in (*(record.band_paths or (first,)), record.mask_path) if p]
        digest.update(cache.key(files, {**params, "bands": record.band_names, **member}).encode())
        digest.update(json.dumps([record.label, record.labels]).encode())
    return digest.hexdigest()


def open_shard(directory: Path, key: str) -> Shard | None:
    """The complete shard under ``directory`` for ``key``, memory-mapped; None when absent or damaged."""
    entry = directory / key[:2] / key
    try:
        meta = json.loads((entry / "meta.json").read_text())
        # plain ndarray views of the maps: np.memmap's __getitem__ wrapping costs more than a batch's copy
        arrays = {name: np.asarray(np.load(entry / f"{name}.npy", mmap_mode="r")) for name in meta["arrays"]}
        n, scale = int(meta["n"]), float(meta["scale"])
        if any(a.shape[0] != n for a in arrays.values()):
            return None  # truncated file: rebuild
        return Shard(
            arrays["image"],
            arrays["valid"],
            arrays.get("mask"),
            arrays.get("label"),
            arrays["mean"],
            scale,
            key,
        )
    except (OSError, ValueError, KeyError, TypeError):  # damaged, or a layout without an array: rebuild
        return None


def shard_for(dataset: RecordDataset, workers: int = 0, progress: bool = False) -> Shard | None:
    """The dataset's shard: opened when cached, else decoded (``workers`` processes) and written once.

    Returns None (the per-sample path is used) when the dataset has no cache, its images differ in
    shape (segmentation without ``data.resize``), a file is unreadable under ``on_error: skip``, or the
    folder cannot be written.
    """
    directory = shard_dir(dataset)
    if directory is None or not dataset.records:
        return None
    key = shard_key(dataset)
    shard = open_shard(directory, key)
    if shard is not None:
        return shard
    try:
        return _build(dataset, directory, key, workers, progress)
    except _NotShardable as why:
        log.info("array cache: per-sample path (%s)", why)
        return None


class _NotShardable(Exception):
    """The dataset cannot be one [N, C, H, W] array (the message says why)."""


class _Escalate(Exception):
    """A record does not fit the stored dtype chosen so far; restart with a wider one."""


def _decode(job: tuple[Record, Path, Preprocessing, MaskDecoder | None]) -> dict[str, np.ndarray]:
    return load_arrays(*job)


# Below this many seconds per image (the mean over the first records, decoded here) the rest is decoded in this
# process too: for 64 px GeoTIFF chips a pool's start-up, pickling and the main process's share of two cores cost
# more than they save (EuroSAT-MS first epoch 229 images/s in-process, 153 with 2 processes), while 2k DICOM
# films (0.2-0.3 s each) decode 1.6 x as fast in 2 processes (`resnet-apps bench decode`).
CHEAP_DECODE_S = 0.02
PROBE_RECORDS, PROBE_SECONDS = 8, 0.5  # decoded here first: at most this many, or until this much time passed


def _decoded(dataset: RecordDataset, workers: int, progress: bool) -> Iterator[dict[str, np.ndarray]]:
    """Records' arrays in order, decoded in ``workers`` processes (0 or 1: this process).

    The first records (:data:`PROBE_RECORDS`, or :data:`PROBE_SECONDS` of them) are decoded here; the rest
    go to the pool only when those took at least :data:`CHEAP_DECODE_S` each on average (the very first is
    left out of the mean: it pays one-time set-up).
    """
    jobs = [(r, dataset.root, dataset.prep, dataset.decoder) for r in dataset.records]
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="array cache", unit="img", dynamic_ncols=True)
    try:
        done, spent = 0, 0.0
        while done < min(PROBE_RECORDS, len(jobs)) and (done < 2 or spent < PROBE_SECONDS):
            started = time.perf_counter()
            arrays = _decode(jobs[done])
            spent += (time.perf_counter() - started) if done else 0.0
            done += 1
            yield arrays
            if bar is not None:
                bar.update(1)
        costly = done > 1 and spent / (done - 1) >= CHEAP_DECODE_S
        if workers > 1 and len(jobs) > done and costly:
            pool = ProcessPoolExecutor(max_workers=workers)
            try:
                for arrays in pool.map(_decode, jobs[done:], chunksize=8):
                    yield arrays
                    if bar is not None:
                        bar.update(1)
            finally:  # an abandoned build (dtype escalation, error) must not wait for every decode
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            for i in range(done, len(jobs)):
                yield _decode(jobs[i])
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _fits(image: np.ndarray, dtype: str, scale: float) -> np.ndarray | None:
    """``image`` as stored in ``dtype`` when that holds it to float32 rounding (integers) or in range (floats)."""
    if dtype in ("uint8", "int16", "uint16"):
        raw = np.rint(image / np.float32(scale))
        top = {"uint8": 255, "int16": 32767, "uint16": 65535}[dtype]
        if raw.min(initial=0) < 0 or raw.max(initial=0) > top:
            return None
        # Integers times the scale, up to float32 rounding: an RGB film made grey, or a division where
        # the scale multiplies, lands an ulp or two off (measured: 1.5e-5 in 254 on Kermany JPEGs),
        # and then uint8 keeps it within 3 ulp, where float16 would round it to 2.4e-4.
        if not np.allclose(raw.astype(np.float32) * np.float32(scale), image, rtol=4e-7, atol=0.0):
            return None
        return raw.astype(dtype)
    if dtype == "float16":
        return image.astype(np.float16) if np.abs(image).max(initial=0) <= 65504 else None
    return image.astype(np.float32)


def _build(dataset: RecordDataset, directory: Path, key: str, workers: int, progress: bool) -> Shard | None:
    scale = float(dataset.prep.scale) if dataset.prep.scale else 1.0
    start = 0
    while True:
        try:
            return _write(dataset, directory, key, workers, progress, _DTYPES[start], scale)
        except _Escalate as wider:
            start = _DTYPES.index(str(wider))


def _write(
    dataset: RecordDataset,
    directory: Path,
    key: str,
    workers: int,
    progress: bool,
    first: str,
    scale: float,
) -> Shard | None:
    entry = directory / key[:2] / key
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=entry.parent))
    except OSError as error:
        log.warning("array cache disabled: %s cannot be written (%s)", directory, error)
        return None
    n = len(dataset.records)
    files: dict[str, np.ndarray] = {}
    dtype = first
    try:
        for i, arrays in enumerate(_decoded(dataset, workers, progress)):
            image = arrays["image"]
            if i == 0:
                dtype = next(d for d in _DTYPES[_DTYPES.index(first) :] if _fits(image, d, scale) is not None)
                files = _allocate(tmp, n, arrays, dataset, dtype)
            if image.shape != files["image"].shape[1:]:
                raise _NotShardable(f"image {i} is {image.shape}, image 0 is {files['image'].shape[1:]}")
            stored = _fits(image, dtype, scale)
            if stored is None:
                raise _Escalate(_DTYPES[_DTYPES.index(dtype) + 1])
            files["image"][i] = stored
            files["valid"][i] = arrays["valid"]
            files["mean"][i] = image.mean(dtype=np.float64)
            if "mask" in files:
                files["mask"][i] = arrays["mask"]
        _fill_labels(files, dataset, tmp)
        for array in files.values():
            if isinstance(array, np.memmap):
                array.flush()
        meta = {"n": n, "arrays": sorted(files), "dtype": dtype, "scale": scale if dtype[0] in "ui" else 1.0}
        del files  # close the maps before the rename
        atomic_write_text(tmp / "meta.json", json.dumps(meta))  # the completion marker, written last
        _install(tmp, entry)
    except ResnetAppsError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if dataset.on_error == "fail":
            raise
        raise _NotShardable(f"unreadable file ({error})") from error
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("array cache disabled: %s cannot be written (%s)", directory, error)
        return None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("array cache: wrote %d images as %s to %s", n, dtype, entry)
    return open_shard(directory, key)


def _install(tmp: Path, entry: Path) -> None:
    """Rename the finished folder into place; an incomplete entry in the way is moved aside first."""
    try:
        os.replace(tmp, entry)
        return
    except OSError:
        if (entry / "meta.json").is_file():  # another process finished first: its shard is as good
            shutil.rmtree(tmp, ignore_errors=True)
            return
    stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=entry.parent))
    try:
        os.replace(entry, stale / "old")  # a killed writer's leftovers: never opened, now removed
        os.replace(tmp, entry)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def _allocate(
    tmp: Path, n: int, first: dict[str, np.ndarray], dataset: RecordDataset, dtype: str
) -> dict[str, np.ndarray]:
    fmt = np.lib.format
    image = first["image"]
    files: dict[str, np.ndarray] = {
        "image": fmt.open_memmap(tmp / "image.npy", mode="w+", dtype=dtype, shape=(n, *image.shape)),
        "valid": fmt.open_memmap(tmp / "valid.npy", mode="w+", dtype=bool, shape=(n, *image.shape[1:])),
    }
    if "mask" in first:
        files["mask"] = fmt.open_memmap(
            tmp / "mask.npy", mode="w+", dtype=np.uint8, shape=(n, *image.shape[1:])
        )
    files["mean"] = np.zeros(n, np.float64)
    if dataset.records[0].labels is not None:
        files["label"] = np.zeros((n, len(dataset.records[0].labels or ())), np.float32)
    elif dataset.records[0].label is not None:
        files["label"] = np.zeros(n, np.int64)
    return files


def _fill_labels(files: dict[str, np.ndarray], dataset: RecordDataset, tmp: Path) -> None:
    np.save(tmp / "mean.npy", files["mean"])
    if "label" not in files:
        return
    if files["label"].ndim == 2:
        files["label"][:] = [r.labels for r in dataset.records]
    else:
        files["label"][:] = [r.label for r in dataset.records]
    np.save(tmp / "label.npy", files["label"])
